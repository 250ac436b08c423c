"""The training loop every learner shares: fit on a set of rows, early-stop on held-out WAF, predict.

Two ways to fit, both from scratch and both deterministic for a given seed:
- `fit_learner`: one model, early stopping on a labeled dev split (the mining loop's default);
- `cross_validate`: k models on stratified folds of the labeled rows, each early-stopped on its
  held-out fold; the fold models' probabilities are averaged and the out-of-fold WAF is the
  score (seed 003, section 3.6: five-fold CV, fold predictions averaged).

Plain PyTorch on in-memory feature arrays (the rows are a few thousand feature vectors, so a
learner fits in seconds on one CPU thread). Ray Train and Ray Tune decide *where* this runs
(mer_ray.mining.cycle, mer_ray.tune); nothing here knows about Ray.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from mer_ray.config import LearnerSpec
from mer_ray.features.table import FeatureTable
from mer_ray.learners import LearnerOutput, create_learner, multitask_loss
from mer_ray.metrics import waf

__all__ = [
    "CVResult",
    "FitResult",
    "FoldEnsemble",
    "build_model",
    "cross_validate",
    "fit_learner",
    "fold_seed",
    "predict_proba",
    "seed_everything",
    "stratified_folds",
]


@dataclass
class FitResult:
    model: torch.nn.Module
    dev_waf: float
    best_epoch: int
    epochs: int


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def _batch(table: FeatureTable, spec: LearnerSpec, rows: np.ndarray, device) -> dict[str, torch.Tensor]:
    return {s: torch.from_numpy(table.streams[s][rows]).to(device) for s in spec.streams}


def build_model(spec: LearnerSpec, table: FeatureTable) -> torch.nn.Module:
    dims = {s: table.dims[s] for s in spec.streams}
    return create_learner(spec.fusion, dims, hidden=spec.hidden, dropout=spec.dropout)


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
        return np.zeros((0, 6), np.float32), np.zeros(0, np.float32)
    return torch.cat(probs).numpy(), torch.cat(valence).numpy().astype(np.float32)


def predict_proba(model: torch.nn.Module, table: FeatureTable, spec: LearnerSpec,
                  rows: np.ndarray | None = None, *, device="cpu", batch_size: int = 8192) -> np.ndarray:
    """Softmax probabilities [len(rows), C] (all rows when `rows` is None)."""
    return predict_outputs(model, table, spec, rows, device=device, batch_size=batch_size)[0]


class _EarlyStoppedRun:
    """One model trained epoch by epoch on `train_rows`, scored on `held_out_rows` after each
    epoch; keeps the weights (and held-out predictions) of the best epoch by WAF.

    The global torch RNG (weight init, dropout) is saved after every epoch and restored before
    the next, so several runs stepped in lockstep (the CV folds) give exactly what each would
    give alone: a fold's model depends on its seed only.
    """

    def __init__(self, spec: LearnerSpec, table: FeatureTable, train_rows: np.ndarray,
                 train_labels: np.ndarray, held_out_rows: np.ndarray, held_out_labels: np.ndarray,
                 *, seed: int, device):
        self.spec, self.table, self.device = spec, table, device
        self.train_rows, self.held_out_rows = train_rows, held_out_rows
        self.held_out_labels = held_out_labels
        self.generator = seed_everything(seed)
        self.model = build_model(spec, table).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec.lr,
                                          weight_decay=spec.weight_decay)
        self.labels = torch.from_numpy(train_labels.astype(np.int64))
        self.valence = torch.from_numpy(table.valence[train_rows])
        self.best_waf, self.best_epoch = -1.0, 0
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.best_pred = np.zeros(len(held_out_rows), np.int64)
        self.epoch, self.stopped = 0, False
        self._rng_state = torch.get_rng_state()

    def step(self) -> float:
        """Train one epoch, score it on the held-out rows; returns that epoch's WAF."""
        spec, model = self.spec, self.model
        torch.set_rng_state(self._rng_state)
        self.epoch += 1
        model.train()
        for batch in torch.randperm(len(self.train_rows), generator=self.generator).split(spec.batch_size):
            rows = self.train_rows[batch.numpy()]
            out = model(_batch(self.table, spec, rows, self.device))
            v = self.valence[batch].to(self.device)
            loss = multitask_loss(out, self.labels[batch].to(self.device), v, ~torch.isnan(v))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self._rng_state = torch.get_rng_state()
        pred = predict_proba(model, self.table, spec, self.held_out_rows, device=self.device).argmax(1)
        score = waf(self.held_out_labels, pred)
        if score > self.best_waf:
            self.best_waf, self.best_epoch = score, self.epoch
            self.best_state = copy.deepcopy(model.state_dict())
            self.best_pred = pred
        elif self.epoch - self.best_epoch >= spec.patience:
            self.stopped = True          # seed 003: early stopping on held-out WAF
        if self.epoch >= spec.max_epochs:
            self.stopped = True
        return score

    def best_model(self) -> nn.Module:
        self.model.load_state_dict(self.best_state)
        return self.model.eval()


def fit_learner(spec: LearnerSpec, table: FeatureTable, train_rows: np.ndarray, train_labels: np.ndarray,
                dev_rows: np.ndarray, *, seed: int, device="cpu") -> FitResult:
    """Train one learner from scratch on `train_rows` (labels given: true or pseudo).

    Valence is learned only where it is known (labeled clips); pseudo-labeled clips add to the
    classification loss alone. The best epoch by dev WAF is kept (seed 003 early stopping).
    """
    run = _EarlyStoppedRun(spec, table, train_rows, train_labels, dev_rows, table.label[dev_rows],
                           seed=seed, device=device)
    while not run.stopped:
        run.step()
    return FitResult(model=run.best_model(), dev_waf=float(run.best_waf),
                     best_epoch=run.best_epoch, epochs=run.epoch)


# ---- k-fold cross-validation (seed 003) ------------------------------------------------------

def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Deterministic stratified k-fold split: positions into `labels`, one sorted array per fold.

    Each class is shuffled and dealt round-robin over the folds, the dealer carrying on from
    class to class, so every fold has the same class mix and fold sizes differ by at most one.
    """
    labels = np.asarray(labels)
    if k < 2:
        raise ValueError(f"k-fold CV needs at least 2 folds, got {k}")
    if len(labels) < k:
        raise ValueError(f"{k}-fold CV needs at least {k} labeled rows, got {len(labels)}")
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    dealer = 0
    for c in np.unique(labels):
        for position in rng.permutation(np.flatnonzero(labels == c)):
            folds[dealer].append(int(position))
            dealer = (dealer + 1) % k
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


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
    fold_waf: list[float] = field(default_factory=list)         # best held-out WAF per fold
    fold_best_epochs: list[int] = field(default_factory=list)
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


EpochCallback = Callable[[int, dict], None]


def cross_validate(spec: LearnerSpec, table: FeatureTable, rows: np.ndarray, labels: np.ndarray, *,
                   folds: int = 5, seed: int, mined_rows: np.ndarray | None = None,
                   mined_labels: np.ndarray | None = None, on_epoch: EpochCallback | None = None,
                   device="cpu") -> CVResult:
    """Seed 003's k-fold CV: one model per stratified fold, early-stopped on its held-out fold.

    `rows` / `labels` are the labeled rows that are split into folds. `mined_rows` /
    `mined_labels` (pseudo-labeled clips) join every fold's training set and are never held
    out: scoring on them would grade the learners against their own votes.

    The folds train in lockstep, one epoch each at a time, so that after every epoch
    `on_epoch(epoch, {"cv_waf", "fold_waf_mean", "folds_running"})` can report progress (Ray
    Tune's ASHA stops bad trials on it). `cv_waf` is the out-of-fold WAF of each fold's best
    epoch so far: it never decreases and its last value is the result's `dev_waf`. The split and
    every fold's model depend on `seed` only: same seed, same result.
    """
    rows = np.asarray(rows, np.int64)
    labels = np.asarray(labels, np.int64)
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    mined_rows = np.zeros(0, np.int64) if mined_rows is None else np.asarray(mined_rows, np.int64)
    mined_labels = np.zeros(0, np.int64) if mined_labels is None else np.asarray(mined_labels, np.int64)
    positions = stratified_folds(labels, folds, seed)
    runs = []
    for k, held_out in enumerate(positions):
        train = np.setdiff1d(np.arange(len(rows)), held_out)
        runs.append(_EarlyStoppedRun(
            spec, table,
            np.concatenate([rows[train], mined_rows]), np.concatenate([labels[train], mined_labels]),
            rows[held_out], labels[held_out], seed=fold_seed(seed, k), device=device))

    oof_pred = np.zeros(len(rows), np.int64)
    epoch = 0
    while not all(run.stopped for run in runs):
        epoch += 1
        scores = [run.step() if not run.stopped else run.best_waf for run in runs]
        if on_epoch is not None:
            for run, held_out in zip(runs, positions):
                oof_pred[held_out] = run.best_pred
            on_epoch(epoch, {"cv_waf": waf(labels, oof_pred), "fold_waf_mean": float(np.mean(scores)),
                             "folds_running": sum(not run.stopped for run in runs)})
    for run, held_out in zip(runs, positions):
        oof_pred[held_out] = run.best_pred
    return CVResult(
        model=FoldEnsemble([run.best_model() for run in runs]),
        dev_waf=waf(labels, oof_pred),
        best_epoch=int(round(np.mean([run.best_epoch for run in runs]))),
        epochs=max(run.epoch for run in runs),
        spec=spec, rows=rows,
        fold_rows=[rows[p] for p in positions],
        fold_waf=[float(run.best_waf) for run in runs],
        fold_best_epochs=[run.best_epoch for run in runs],
        oof_pred=oof_pred,
    )
