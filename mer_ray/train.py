"""The training loop every learner shares: fit on labeled splits, early-stop on held-out clips, predict.

One way to fit, deterministic for a given seed: `fit_splits` trains one model per *split* of the
labeled clips (a split = the rows a model fits on + the labeled rows it is scored on) in
lockstep, and stops all of them at the one epoch where their pooled held-out predictions are
best. Two kinds of splits:
- k stratified folds (seed 003, section 3.6: five-fold CV, fold predictions averaged): every
  labeled clip is held out once, so the out-of-fold score covers every labeled clip;
- one dev split (`fit_learner`): the labeled dev clips are held out.

Why one epoch for all folds: each fold holds out ~1/k of a few hundred (or a few dozen) clips.
Letting every fold pick its own best epoch on its own 12 held-out clips fits the epoch to those
very clips, so the out-of-fold score reads high and varies by seed; one epoch chosen on every
held-out clip together is one number fitted on the whole labeled set. The criterion is the
pooled held-out cross-entropy (`spec.stop_on: loss`), which moves smoothly, or WAF.

Plain PyTorch on in-memory feature arrays (the rows are a few thousand feature vectors, so a
learner fits in seconds on one CPU thread). Ray Train and Ray Tune decide *where* this runs
(mer_ray.mining.cycle, mer_ray.tune); nothing here knows about Ray. Randomness is local: each
model's initialisation and dropout draw from its own saved RNG state inside
`torch.random.fork_rng`, so the caller's (and the process's) RNG is never touched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mer_ray.config import LearnerSpec
from mer_ray.features.table import FeatureTable
from mer_ray.labels import NUM_CLASSES
from mer_ray.learners import LearnerOutput, create_learner, multitask_loss
from mer_ray.metrics import waf
from mer_ray.splits import stratified_folds

__all__ = [
    "CVResult",
    "Extra",
    "FitResult",
    "FoldEnsemble",
    "Split",
    "build_model",
    "class_weights",
    "cross_validate",
    "fit_learner",
    "fit_splits",
    "fold_seed",
    "predict_proba",
]


@dataclass(frozen=True)
class Split:
    """One model's view of the labeled clips: the rows it fits on, the rows it is scored on."""
    fit_rows: np.ndarray
    held_out: np.ndarray


@dataclass(frozen=True)
class Extra:
    """Rows added to one split's training set (pseudo-labeled clips) with their labels and the
    weight of each row in the loss (labeled rows weigh 1)."""
    rows: np.ndarray
    labels: np.ndarray
    weight: float = 1.0

    @staticmethod
    def none() -> "Extra":
        return Extra(np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass
class FitResult:
    model: torch.nn.Module
    dev_waf: float           # held-out WAF at the kept epoch (out-of-fold over every split)
    best_epoch: int
    epochs: int


def _batch(table: FeatureTable, spec: LearnerSpec, rows: np.ndarray, device) -> dict[str, torch.Tensor]:
    return {s: torch.from_numpy(table.streams[s][rows]).to(device) for s in spec.streams}


def build_model(spec: LearnerSpec, table: FeatureTable) -> torch.nn.Module:
    missing = [s for s in spec.streams if s not in table.streams]
    if missing:
        raise ValueError(f"learner {spec.name} asks for stream(s) {missing}, but the features hold "
                         f"{sorted(table.streams)}; change its `streams` or extract the missing ones")
    dims = {s: table.dims[s] for s in spec.streams}
    return create_learner(spec.fusion, dims, hidden=spec.hidden, dropout=spec.dropout, **dict(spec.options))


def class_weights(labels: np.ndarray, n_classes: int = NUM_CLASSES) -> torch.Tensor:
    """'balanced' class weights n / (C * n_c) of the training labels (absent classes: 0)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, table: FeatureTable, spec: LearnerSpec,
                    rows: np.ndarray | None = None, *, device="cpu",
                    batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probabilities [n, C], valence [n] — NaN without a valence head) for `rows`
    (all rows when None), in batches so the pool never has to fit through the model at once."""
    rows = np.arange(len(table)) if rows is None else rows
    model.eval()
    probs, valence = [], []
    for i in range(0, len(rows), batch_size):
        out = model(_batch(table, spec, rows[i:i + batch_size], device))
        probs.append(torch.softmax(out.logits, -1).cpu())
        valence.append(out.valence.cpu() if out.valence is not None
                       else torch.full((len(out.logits),), float("nan")))
    if not probs:
        return np.zeros((0, NUM_CLASSES), np.float32), np.zeros(0, np.float32)
    return torch.cat(probs).numpy(), torch.cat(valence).numpy().astype(np.float32)


def predict_proba(model: torch.nn.Module, table: FeatureTable, spec: LearnerSpec,
                  rows: np.ndarray | None = None, *, device="cpu", batch_size: int = 8192) -> np.ndarray:
    """Softmax probabilities [len(rows), C] (all rows when `rows` is None)."""
    return predict_outputs(model, table, spec, rows, device=device, batch_size=batch_size)[0]


class _KeepsBest:
    """A model being fitted that remembers its best state so far (`keep`) and returns it."""
    model: nn.Module

    def keep(self) -> None:
        self.best_state = copy.deepcopy(self.model.state_dict())

    def best_model(self) -> nn.Module:
        self.model.load_state_dict(self.best_state)
        return self.model.eval()


class _Run(_KeepsBest):
    """One model trained epoch by epoch on its rows; its RNG state (weight init, dropout, batch
    order) is its own, so runs stepped in lockstep give what each would give alone."""

    def __init__(self, spec: LearnerSpec, table: FeatureTable, rows: np.ndarray, labels: np.ndarray,
                 weights: np.ndarray, class_weight, held_out: np.ndarray, *, seed: int, device):
        self.spec, self.table, self.device = spec, table, device
        self.rows, self.held_out = rows, held_out
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = build_model(spec, table).to(device)
            self._rng_state = torch.get_rng_state()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.weights = torch.from_numpy(weights.astype(np.float32))
        self.valence = torch.from_numpy(table.valence[rows])
        self.class_weight = None if class_weight is None else class_weight.to(device)
        self.keep()

    def step(self) -> np.ndarray:
        """Train one epoch; returns the held-out rows' probabilities after it."""
        spec, model = self.spec, self.model
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            model.train()
            size = max(1, min(spec.batch_size, -(-len(self.rows) // spec.min_steps_per_epoch)))
            for batch in torch.randperm(len(self.rows), generator=self.generator).split(size):
                out = model(_batch(self.table, spec, self.rows[batch.numpy()], self.device))
                v = self.valence[batch].to(self.device)
                loss = multitask_loss(out, self.labels[batch].to(self.device), v, ~torch.isnan(v),
                                      class_weights=self.class_weight,
                                      sample_weight=self.weights[batch].to(self.device))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            self._rng_state = torch.get_rng_state()
        return predict_proba(model, self.table, spec, self.held_out, device=self.device)


def check_training(spec: LearnerSpec) -> None:
    """Refuse training settings that cannot work, with what to change (`resolve_learners` calls
    this before any extraction; every fit calls it again)."""
    if spec.class_weight not in (None, "balanced"):   # a typo would otherwise train unweighted, silently
        raise ValueError(f"learner {spec.name}: class_weight must be 'balanced' or null, got {spec.class_weight!r}")
    if spec.solver not in ("adam", "lbfgs"):
        raise ValueError(f"learner {spec.name}: solver must be 'adam' or 'lbfgs', got {spec.solver!r}")
    if spec.solver == "lbfgs" and (spec.fusion != "linear" or spec.dropout):
        raise ValueError(f"learner {spec.name}: solver 'lbfgs' solves a convex problem, so it needs "
                         f"fusion 'linear' and dropout 0 (got fusion {spec.fusion!r}, dropout {spec.dropout})")
    if spec.solver == "lbfgs" and (not spec.cs or min(spec.cs) <= 0):
        raise ValueError(f"learner {spec.name}: solver 'lbfgs' needs `cs`, the positive inverse L2 strengths "
                         f"to choose from (e.g. [0.01, 0.1, 1, 10]), got {list(spec.cs)}")
    if spec.c_from not in ("round0", "every-round"):
        raise ValueError(f"learner {spec.name}: c_from must be 'round0' or 'every-round', got {spec.c_from!r}")


def held_out_loss(pooled: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of pooled held-out probabilities [n, C] against their labels (0 when empty)."""
    if not len(pooled):
        return 0.0
    return float(F.nll_loss(torch.log(torch.from_numpy(pooled).clamp_min(1e-8)), torch.from_numpy(labels)))


def _fit_sets(spec: LearnerSpec, table: FeatureTable, splits: list[Split], labels: np.ndarray,
              extras: list[Extra] | None) -> list[tuple]:
    """Per split, what its model fits on: (rows, labels, row weights, class weights or None);
    the split's labeled rows weigh 1, its extra (mined) rows `extra.weight`."""
    extras = extras or [Extra.none()] * len(splits)
    if len(extras) != len(splits):
        raise ValueError(f"{len(splits)} splits but {len(extras)} extra row sets")
    sets = []
    for k, (split, extra) in enumerate(zip(splits, extras)):
        rows = np.concatenate([split.fit_rows, extra.rows]).astype(np.int64)
        fit_labels = np.concatenate([labels[split.fit_rows], extra.labels]).astype(np.int64)
        if (fit_labels < 0).any():
            bad = rows[fit_labels < 0][0]
            raise ValueError(f"clip {table.names[bad]} (row {bad}) has no label but is in split {k}'s training set")
        weights = np.concatenate([np.ones(len(split.fit_rows)), np.full(len(extra.rows), extra.weight)])
        cw = class_weights(fit_labels) if spec.class_weight == "balanced" else None
        sets.append((rows, fit_labels, weights, cw))
    return sets


EpochCallback = Callable[[int, dict], None]


@dataclass
class SplitsFit:
    """Every split's model at the kept epoch, and their held-out predictions."""
    models: list[nn.Module]
    held_out_probs: list[np.ndarray]     # per split: [len(held_out), C] at the kept epoch
    oof_waf: float                       # WAF of the pooled held-out predictions
    best_epoch: int
    epochs: int
    c: float | None = None               # solver lbfgs: the inverse L2 strength kept


def fit_splits(spec: LearnerSpec, table: FeatureTable, splits: list[Split], *, seed: int,
               labels: np.ndarray | None = None, extras: list[Extra] | None = None,
               on_epoch: EpochCallback | None = None, device="cpu") -> SplitsFit:
    """One model per split, from scratch, in lockstep; all stop at the epoch whose pooled
    held-out score is best (patience `spec.patience`, at most `spec.max_epochs`).

    `labels` [N]: the label of every row (default `table.label`); `extras[k]` joins split k's
    training set only and is never held out: scoring on pseudo-labels would grade the learners
    against their own votes. Split k's model is seeded `fold_seed(seed, k)`.
    """
    check_training(spec)
    labels = table.label if labels is None else labels
    if spec.solver == "lbfgs":
        return _fit_splits_lbfgs(spec, table, splits, labels=labels, extras=extras, on_epoch=on_epoch, device=device)
    runs = [_Run(spec, table, *fit_set, split.held_out, seed=fold_seed(seed, k), device=device)
            for k, (split, fit_set) in enumerate(zip(splits, _fit_sets(spec, table, splits, labels, extras)))]
    held_labels = np.concatenate([labels[s.held_out] for s in splits]).astype(np.int64)
    best_score, best_epoch = -np.inf, 0
    best_probs = [np.full((len(s.held_out), NUM_CLASSES), 1 / NUM_CLASSES, np.float32) for s in splits]
    epoch = 0
    while epoch < spec.max_epochs and epoch - best_epoch < spec.patience:
        epoch += 1
        probs = [run.step() for run in runs]
        pooled = np.concatenate(probs)
        epoch_waf = waf(held_labels, pooled.argmax(1)) if len(pooled) else 0.0
        if spec.stop_on == "waf":
            score = epoch_waf
        else:   # mean held-out cross-entropy, negated: higher is better
            score = -held_out_loss(pooled, held_labels)
        if score > best_score:
            best_score, best_epoch, best_probs = score, epoch, probs
            for run in runs:
                run.keep()
        if on_epoch is not None:
            kept = np.concatenate(best_probs)
            on_epoch(epoch, {"cv_waf": waf(held_labels, kept.argmax(1)) if len(kept) else 0.0,
                             "epoch_waf": epoch_waf, "best_epoch": best_epoch})
    kept = np.concatenate(best_probs)
    return SplitsFit(models=[run.best_model() for run in runs], held_out_probs=best_probs,
                     oof_waf=float(waf(held_labels, kept.argmax(1))) if len(kept) else 0.0,
                     best_epoch=best_epoch, epochs=epoch)


class _Problem(_KeepsBest):
    """One split's convex problem: every training row at once, solved by L-BFGS to the optimum.

    The objective is the training loss every learner uses (`multitask_loss`: weighted
    cross-entropy, + valence MSE where known) plus |W|^2 / (2 C n) on the weights (not the
    biases), n the rows' total weight: for unweighted rows, scikit-learn's LogisticRegression(C)."""

    def __init__(self, spec: LearnerSpec, table: FeatureTable, rows: np.ndarray, labels: np.ndarray,
                 weights: np.ndarray, class_weight, held_out: np.ndarray, *, device):
        self.spec, self.table, self.held_out, self.device = spec, table, held_out, device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)   # the optimum does not depend on the start: zeros, like scikit-learn
            self.model = build_model(spec, table).to(device)
        with torch.no_grad():
            for p in self.model.parameters():
                p.zero_()
        self.rows = rows   # the inputs are gathered per solve: k splits' copies need not live at once
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(device)
        self.weights = torch.from_numpy(weights.astype(np.float32)).to(device)
        self.valence = torch.from_numpy(table.valence[rows]).to(device)
        self.class_weight = None if class_weight is None else class_weight.to(device)
        self.penalised = [p for name, p in self.model.named_parameters() if name.endswith("weight")]
        self.n = float(weights.sum())
        self.keep()

    def solve(self, c: float) -> np.ndarray:
        """Minimise the objective at strength `c`, from the last solution (a warm start along
        the path); returns the held-out rows' probabilities."""
        optimizer = torch.optim.LBFGS(self.model.parameters(), lr=1.0, max_iter=LBFGS_MAX_ITER, history_size=20,
                                      tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")
        scale = 1.0 / (2.0 * c * max(self.n, 1e-12))
        self.model.eval()   # no dropout: the objective must be deterministic
        inputs = _batch(self.table, self.spec, self.rows, self.device)

        def closure():
            optimizer.zero_grad(set_to_none=True)
            out = self.model(inputs)
            loss = multitask_loss(out, self.labels, self.valence, ~torch.isnan(self.valence),
                                  class_weights=self.class_weight, sample_weight=self.weights)
            loss = loss + scale * sum((p * p).sum() for p in self.penalised)
            loss.backward()
            return loss

        optimizer.step(closure)
        return predict_proba(self.model, self.table, self.spec, self.held_out, device=self.device)


LBFGS_MAX_ITER = 100   # scikit-learn's default for lbfgs; 500 gave the same C and WAF on the benchmark's sets, 2.6x slower


def _fit_splits_lbfgs(spec: LearnerSpec, table: FeatureTable, splits: list[Split], *, labels: np.ndarray,
                      extras: list[Extra] | None, on_epoch: EpochCallback | None, device) -> SplitsFit:
    """`fit_splits` for a convex learner (`solver: lbfgs`): every split's problem solved at each
    C of `spec.cs`, from the strongest L2 to the weakest (warm starts), keeping the C whose pooled
    held-out cross-entropy is lowest: LogisticRegressionCV's choice, made on the same held-out
    clips that stop every other learner. Deterministic, no seed: the optimum is unique.
    `on_epoch` is called once per C (its index as the epoch). Reached through `fit_splits`,
    which has checked `spec` and resolved `labels`."""
    problems = [_Problem(spec, table, *fit_set, split.held_out, device=device)
                for split, fit_set in zip(splits, _fit_sets(spec, table, splits, labels, extras))]
    held_labels = np.concatenate([labels[s.held_out] for s in splits]).astype(np.int64)
    best_loss, best_c, best_probs, best_step = np.inf, None, None, 0
    for step, c in enumerate(sorted(spec.cs), start=1):
        probs = [problem.solve(c) for problem in problems]
        pooled = np.concatenate(probs)
        loss = held_out_loss(pooled, held_labels)
        if loss < best_loss:
            best_loss, best_c, best_probs, best_step = loss, c, probs, step
            for problem in problems:
                problem.keep()
        if on_epoch is not None:
            kept = np.concatenate(best_probs)
            on_epoch(step, {"cv_waf": waf(held_labels, kept.argmax(1)) if len(kept) else 0.0,
                            "epoch_waf": waf(held_labels, pooled.argmax(1)) if len(pooled) else 0.0,
                            "best_epoch": best_step})
    kept = np.concatenate(best_probs)
    return SplitsFit(models=[p.best_model() for p in problems], held_out_probs=best_probs,
                     oof_waf=float(waf(held_labels, kept.argmax(1))) if len(kept) else 0.0,
                     best_epoch=best_step, epochs=len(spec.cs), c=best_c)


def fit_learner(spec: LearnerSpec, table: FeatureTable, train_rows: np.ndarray, train_labels: np.ndarray,
                dev_rows: np.ndarray, *, seed: int, device="cpu") -> FitResult:
    """Train one learner from scratch on `train_rows` (labels given: true or pseudo), keeping the
    epoch that scores best on the labeled `dev_rows` (seed 003 early stopping).

    Valence is learned only where it is known (labeled clips); pseudo-labeled clips add to the
    classification loss alone."""
    labels = table.label.copy()
    labels[train_rows] = train_labels
    fit = fit_splits(spec, table, [Split(np.asarray(train_rows, np.int64), np.asarray(dev_rows, np.int64))],
                     seed=seed, labels=labels, device=device)
    return FitResult(model=fit.models[0], dev_waf=fit.oof_waf, best_epoch=fit.best_epoch, epochs=fit.epochs)


# ---- k-fold cross-validation (seed 003) ------------------------------------------------------

def fold_splits(rows: np.ndarray, labels: np.ndarray, k: int, seed: int) -> list[Split]:
    """k stratified folds of the labeled `rows` as Splits (fit on k-1 folds, held out: one)."""
    rows = np.asarray(rows, np.int64)
    positions = stratified_folds(labels, k, seed)
    return [Split(rows[np.setdiff1d(np.arange(len(rows)), p)], rows[p]) for p in positions]


def fold_seed(seed: int, fold: int) -> int:
    """Independent, collision-free seed of fold `fold` of a run seeded `seed`."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


class FoldEnsemble(nn.Module):
    """The k fold models as one learner: their probabilities averaged (seed 003).

    `logits` are the log of the mean softmax, so softmax(logits) — what `predict_proba` computes
    — is the fold average itself; the mining loop can use a CV-trained learner unchanged, and
    `state_dict()` holds every fold's weights (`folds.<i>.*`).
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.folds = nn.ModuleList(models)

    def forward(self, streams: dict[str, torch.Tensor]) -> LearnerOutput:
        outs = [m(streams) for m in self.folds]
        probs = torch.stack([torch.softmax(o.logits, -1) for o in outs]).mean(0)
        valence = None
        if all(o.valence is not None for o in outs):
            valence = torch.stack([o.valence for o in outs]).mean(0)
        return LearnerOutput(torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny)), valence, [])


@dataclass
class CVResult(FitResult):
    """A learner trained by k-fold CV. `model` is the `FoldEnsemble`; `dev_waf` is the
    out-of-fold WAF (every labeled row predicted by the one fold model that never saw it)."""
    spec: LearnerSpec = None
    rows: np.ndarray = None                  # the labeled rows that were split into folds
    fold_rows: list[np.ndarray] = field(default_factory=list)   # held-out rows of each fold
    oof_pred: np.ndarray = None              # [len(rows)] out-of-fold predicted label

    @property
    def oof_waf(self) -> float:
        return self.dev_waf

    @property
    def fold_models(self) -> list[nn.Module]:
        return list(self.model.folds)

    def predict_proba(self, table: FeatureTable, rows: np.ndarray | None = None, *,
                      device="cpu") -> np.ndarray:
        """Mean of the fold models' softmax probabilities [len(rows), C]."""
        probs = [predict_proba(m, table, self.spec, rows, device=device) for m in self.fold_models]
        return np.mean(probs, axis=0, dtype=np.float64).astype(np.float32)


def cross_validate(spec: LearnerSpec, table: FeatureTable, rows: np.ndarray, labels: np.ndarray, *,
                   folds: int = 5, seed: int, mined_rows: np.ndarray | None = None,
                   mined_labels: np.ndarray | None = None, on_epoch: EpochCallback | None = None,
                   device="cpu") -> CVResult:
    """Seed 003's k-fold CV of the labeled `rows` / `labels`: one model per stratified fold,
    all stopped at the epoch with the best out-of-fold score.

    `mined_rows` / `mined_labels` (pseudo-labeled clips) join every fold's training set and are
    never held out. `on_epoch(epoch, {"cv_waf", "epoch_waf", "best_epoch"})` reports progress
    after every epoch (Ray Tune's ASHA stops bad trials on it). The split and every fold's model
    depend on `seed` only: same seed, same result."""
    rows = np.asarray(rows, np.int64)
    labels = np.asarray(labels, np.int64)
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    all_labels = table.label.copy()
    all_labels[rows] = labels
    splits = fold_splits(rows, labels, folds, seed)
    extra = (Extra.none() if mined_rows is None else
             Extra(np.asarray(mined_rows, np.int64), np.asarray(mined_labels, np.int64)))
    fit = fit_splits(spec, table, splits, seed=seed, labels=all_labels, extras=[extra] * folds,
                     on_epoch=on_epoch, device=device)
    position = {int(r): i for i, r in enumerate(rows)}
    oof_pred = np.zeros(len(rows), np.int64)
    for split, probs in zip(splits, fit.held_out_probs):
        oof_pred[[position[int(r)] for r in split.held_out]] = probs.argmax(1)
    return CVResult(model=FoldEnsemble(fit.models), dev_waf=fit.oof_waf, best_epoch=fit.best_epoch,
                    epochs=fit.epochs, spec=spec, rows=rows, fold_rows=[s.held_out for s in splits],
                    oof_pred=oof_pred)
