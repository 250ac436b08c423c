"""Cyclic pseudo-label mining (seed 004), round by round, as one Ray Train worker function.

Ray Train starts its workers once per run (about 20 s here), not once per learner per round:
the whole loop runs inside `mining_loop`, each worker owns some of the learners, and the
workers swap their predictions with one all-gather per round. Every worker then runs the same
deterministic vote, so they agree on the mined set without another message; rank 0 writes.
`run_rounds` is the loop itself, plain Python: Ray Train calls it on each worker, and a
benchmark can call it in one process.

The labeled clips are cut into *splits* — seed 003's k folds (default), or one dev split —
and every learner fits one model per split. Split k keeps its own mined set, voted by split
k's models only, so nothing split k's models learn ever comes from its held-out clips: the
out-of-fold score stays honest in every round, and it is what ranks learners, stops training
and decides whether a round is adopted.

Round r:
    r > 0: each split's learners of round r-1 vote on the pool; the policy chain selects
           (class-balanced by default) and the selection replaces that split's mined set
           (or, revisit: false, adds to it); the mined clips are dealt across the learners
    train every learner from scratch: one model per split on its labeled clips + its mined
           clips (weighted `mined_weight`), all stopped at the best pooled held-out epoch
    predict every clip; all-gather; score the ensemble out of fold; adopt the round or stop
    rank 0 audits the round and checkpoints it
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from mer_ray.config import LearnerSpec, RunConfig, config_from_dict
from mer_ray.features.table import FeatureTable
from mer_ray.labels import EMOTIONS, NUM_CLASSES
from mer_ray.metrics import accuracy, paired_noise, score_block, waf
from mer_ray.mining.ensemble import cross_fitted, ensemble, learner_weights
from mer_ray.mining.policies import PolicyContext, assign_learners, check_roster, create_policy
from mer_ray.mining.state import Mined, MiningState, read_rounds, round_dir, write_json
from mer_ray.storage import Mirror
from mer_ray.train import Extra, FoldEnsemble, Split, fit_splits, fold_splits, predict_outputs


@dataclass
class MiningData:
    """Everything the workers read, put once in the object store and shared by every round."""
    table: FeatureTable
    train: np.ndarray        # labeled rows the learners fit on (with folds: every labeled row)
    dev: np.ndarray          # labeled rows held out for early stopping and ranking (dev split only)
    pool: np.ndarray         # unlabeled rows the learners may mine
    test: np.ndarray         # held-out rows, scored against truth only
    test_labels: np.ndarray  # [len(test)] true labels (evaluation only)
    pool_truth: np.ndarray   # [N] true label where known (demo, canaries), else -1: audit only
    canaries: np.ndarray     # labeled rows hidden in the pool: precision on real labels
    # MER-NOISE (seed 003): corrupted copies of test clips, scored apart from the clean ones
    noisy_test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    noisy_test_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


NOISY_TEST_KEYS = ("noisy_test_waf", "noisy_test_acc", "noisy_test_uar")


def labeled_splits(cfg: RunConfig, data: MiningData) -> list[Split]:
    """Seed 003's k stratified folds of every labeled clip, or the one dev split."""
    if cfg.mining.folds >= 2:
        labeled = np.union1d(data.train, data.dev)
        return fold_splits(labeled, data.table.label[labeled], cfg.mining.folds, seed=cfg.seed)
    if not len(data.dev):
        raise ValueError("mining.folds < 2 needs a labeled dev split (mining.dev_fraction > 0)")
    return [Split(data.train, data.dev)]


def learner_seed(run_seed: int, r: int, learner: int) -> int:
    """Independent seed of learner `learner` in round `r` (no collisions, whatever the counts)."""
    return int(np.random.SeedSequence([run_seed, r, learner]).generate_state(1)[0])


def _all_gather(local: dict) -> dict:
    """Merge every worker's {learner: result}; a no-op in one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, local)
        return {k: v for part in parts for k, v in part.items()}
    return local


def mining_loop(config: dict) -> None:
    """Ray Train's train_loop_per_worker: run (or resume) every round of the mining."""
    import ray

    torch.set_num_threads(1)  # one learner per core; also makes results independent of world size
    context = ray.train.get_context()
    mirror = Mirror(config["run_remote"], Path(config["run_dir"])) if config.get("run_remote") else None
    run_rounds(config_from_dict(config["run"]), ray.get(config["data"]), Path(config["run_dir"]),
               rank=context.get_world_rank(), world=context.get_world_size(), exchange=_all_gather,
               report=ray.train.report, mirror=mirror,
               # the driver prints each round's row once, as its metrics.json lands (mining/progress.py)
               echo=False)


def run_rounds(cfg: RunConfig, data: MiningData, run_dir: Path, *, rank: int = 0, world: int = 1,
               exchange: Callable[[dict], dict] = lambda local: local,
               report: Callable[[dict], None] | None = None, mirror: Mirror | None = None,
               echo: bool = True) -> list[dict]:
    """Every round of the mining (resuming after the last complete one); returns their metrics."""
    table, learners, mining = data.table, cfg.learners, cfg.mining
    # Ray Train sets CUDA_VISIBLE_DEVICES per worker, so "cuda" is this worker's own GPU
    device = torch.device("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu")
    from mer_ray.mining.placement import learners_of_worker  # balanced by estimated cost, alike on every rank
    my_learners = learners_of_worker(learners, table, rank, world, folds=mining.folds)
    splits = labeled_splits(cfg, data)
    policy = create_policy(mining)
    check_roster(mining, len(learners))
    if mirror:   # an object-store run: this node's copy of the run folder, up to date with the bucket
        mirror.pull(skip=("ray/",))
    state = MiningState.load(run_dir, table.names, n_splits=len(splits), revisit=mining.revisit)
    history = read_rounds(run_dir)
    best = _best_round(history)
    best_oof = (np.load(round_dir(run_dir, best["round"]) / "probs.npz")["oof_pred"] if best else None)
    oof_labels = np.concatenate([table.label[s.held_out] for s in splits])
    round0_oof = np.load(round_dir(run_dir, 0) / "probs.npz")["oof_pred"] if history else None

    for r in range(state.next_round, mining.rounds + 1):
        if state.stopped:
            break
        started = time.perf_counter()
        partial = round_dir(run_dir, r, partial=True)
        partial.mkdir(parents=True, exist_ok=True)

        # 1. vote: each split's learners of round r-1 label the pool; the policy picks the mined set
        votes = None
        if r > 0:
            parts = []
            for k, split in enumerate(splits):
                mined, part = vote(state, k, splits, data, policy, cfg, r)
                state.set_mined(k, mined, replace=mining.revisit)
                parts.append(part)
            votes = pd.concat(parts, ignore_index=True)

        # 2. train this worker's learners from scratch, one model per split; predict every clip
        local = {}
        for i in my_learners:
            extras = [Extra(*state.mined[k].of_learner(i), weight=mining.mined_weight) for k in range(len(splits))]
            fit = fit_splits(_round_spec(learners[i], r, history), table, splits, seed=learner_seed(cfg.seed, r, i),
                             extras=extras, device=device)
            model = FoldEnsemble(fit.models) if len(fit.models) > 1 else fit.models[0]
            weights = partial / f"{learners[i].name}.pt"
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, weights)
            if mirror:   # straight to its final place: rank 0 may be on another node
                mirror.upload(weights, f"{round_dir(Path(''), r).name}/{weights.name}")
            outputs = [predict_outputs(m, table, learners[i], device=device) for m in fit.models]
            local[i] = dict(split_probs=np.stack([p for p, _ in outputs]).astype(np.float32),
                            valence=np.mean([v for _, v in outputs], axis=0).astype(np.float32),
                            held_out_waf=fit.oof_waf, best_epoch=fit.best_epoch, c=fit.c,
                            held_out_acc=accuracy(oof_labels, np.concatenate(fit.held_out_probs).argmax(1)),
                            train_size=float(np.mean([len(s.fit_rows) + len(e.rows) for s, e in zip(splits, extras)])))

        # 3. exchange predictions; every worker now holds all learners' outputs
        results = exchange(local)
        state.split_probs = np.stack([results[i]["split_probs"] for i in range(len(learners))])

        # 4. score out of fold, decide whether the round is adopted (every worker decides alike)
        scores = [results[i]["held_out_waf"] for i in range(len(learners))]
        held_probs = np.concatenate([state.split_probs[:, k, s.held_out] for k, s in enumerate(splits)], axis=1)
        # a weighing ensemble's weights: chosen on every labeled clip's out-of-fold prediction
        # for the test and pool, cross-fitted for the out-of-fold score itself (others: none)
        weights = learner_weights(mining.ensemble, held_probs, oof_labels, seed=learner_seed(cfg.seed, r, 99_996))
        oof_pred = cross_fitted(mining.ensemble, held_probs, oof_labels, scores, seed=learner_seed(cfg.seed, r, 99_998))
        metrics = _round_metrics(r, data, state, results, learners, votes, cfg, scores, weights)
        metrics["dev_waf"] = round(waf(oof_labels, oof_pred), 4)
        metrics.update(adoption(mining, metrics["dev_waf"], oof_pred, oof_labels, best, best_oof,
                                seed=learner_seed(cfg.seed, r, 99_999)))
        if r == 0:
            round0_oof = oof_pred
        else:   # what the round gained over labeled-only, and how much of that luck can give
            metrics["vs_round0"] = dict(gain=round(metrics["dev_waf"] - history[0]["dev_waf"], 4), noise=round(
                paired_noise(oof_pred, round0_oof, oof_labels, seed=learner_seed(cfg.seed, r, 99_997)), 4))
        if metrics["adopted"] and (best is None or metrics["dev_waf"] >= best["dev_waf"]):
            best, best_oof = metrics, oof_pred
        state.stopped = not metrics["adopted"]
        metrics["seconds"] = round(time.perf_counter() - started, 2)

        # 5. audit and checkpoint (rank 0 writes; the others already agree on the state)
        history.append(metrics)
        if rank == 0:
            valence = np.stack([results[i]["valence"] for i in range(len(learners))])
            np.savez(partial / "probs.npz", names=table.names.astype(str), probs=state.probs,
                     split_probs=state.split_probs, valence=valence, oof_pred=oof_pred)
            if votes is not None:
                votes.to_parquet(partial / "vote_table.parquet", index=False)
            write_json(partial / "metrics.json", metrics)
            state.commit_round(run_dir, r)
            write_json(run_dir / "metrics.json", {"rounds": history})
            if mirror:   # the round's files, then the state.json that names it complete
                mirror.push_tree(round_dir(Path(""), r).name)
                mirror.push("metrics.json", "state.json")
            if echo:
                print(format_round(metrics, header=(r == 0)), flush=True)
        else:
            state.complete.append(r)
        if report:
            report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return history


def _round_spec(spec: LearnerSpec, r: int, history: list[dict]) -> LearnerSpec:
    """The learner as round r trains it: a convex learner (`solver: lbfgs`) keeps the L2
    strength its round 0 chose on the labeled clips alone (`c_from: round0`). Chosen again with
    mined clips in training, the held-out cross-entropy prefers ever stronger L2 and the learner
    unlearns what the mined clips teach (docs/mining.md, session 13)."""
    if r == 0 or spec.solver != "lbfgs" or spec.c_from != "round0":
        return spec
    return replace(spec, cs=(history[0]["learners"][spec.name]["C"],))


def vote(state: MiningState, k: int, splits: list[Split], data: MiningData, policy, cfg: RunConfig, r: int):
    """Split k's vote of round r: its learners of round r-1 label the candidate clips (the whole
    pool when revisiting, else the clips not mined yet) and the policy chain keeps some; the kept
    clips are dealt across the learners. Returns (the split's mined clips, its vote table)."""
    mining, table, split = cfg.mining, data.table, splits[k]
    probs = state.split_probs[:, k]                                    # [L, N, C]
    candidates = data.pool if mining.revisit else np.setdiff1d(data.pool, state.mined[k].rows)
    fit_labels = table.label[split.fit_rows]
    # labeled clips split k fits on, each as predicted by the split that held it out
    dev_probs, dev_labels = _held_out(state.split_probs, split.fit_rows, splits, table.label)
    context = PolicyContext(
        dev_probs=dev_probs, dev_labels=dev_labels, pool_size=len(data.pool), round=r,
        labeled_prior=np.bincount(fit_labels, minlength=NUM_CLASSES) / max(len(fit_labels), 1),
        cumulative=mining.revisit)
    selection = policy(probs[:, candidates], context)
    picked = np.flatnonzero(selection.selected)
    assigned = np.full(len(candidates), -1, np.int64)
    assigned[picked] = assign_learners(candidates[picked], selection.labels[picked], probs.shape[0],
                                       mining.split, seed=learner_seed(cfg.seed, r, 10_000 + k))
    mined = Mined(candidates[picked], selection.labels[picked], assigned[picked])
    columns = {"split": np.full(len(candidates), k, np.int64), "name": table.names[candidates].astype(str)}
    for i, spec in enumerate(cfg.learners):
        columns[f"{spec.name}_label"] = probs[i, candidates].argmax(-1)
        columns[f"{spec.name}_conf"] = probs[i, candidates].max(-1)
    columns.update(agreed=selection.labels, agree=selection.agree, confidence=selection.confidence,
                   selected=selection.selected, assigned=assigned)
    return mined, pd.DataFrame(columns)


def _held_out(split_probs: np.ndarray, rows: np.ndarray, splits: list[Split], labels: np.ndarray):
    """(probs [L, D, C], labels [D]): labeled rows as predicted by a model that did not fit on
    them, with their labels (with folds: each of `rows` by the fold that held it out; with a dev
    split there is one model, so the dev rows)."""
    if len(splits) == 1:   # dev split: thresholds from the dev clips (seed 003, Algorithm 1)
        held = splits[0].held_out
        return split_probs[:, 0, held], labels[held]
    owner = np.zeros(len(labels), np.int64)
    for k, s in enumerate(splits):
        owner[s.held_out] = k
    return split_probs[:, owner[rows], rows], labels[rows]


def adoption(mining, oof_waf: float, oof_pred: np.ndarray, labels: np.ndarray, best: dict | None,
             best_pred: np.ndarray | None, *, seed: int) -> dict:
    """Is this round adopted? Not when its out-of-fold WAF is below the best adopted round's by
    more than `adopt_noise` standard deviations of the paired difference. Round 0 always is."""
    if best is None:
        return dict(adopted=True, noise=None, reason="round 0: the labeled-only learners")
    noise = paired_noise(oof_pred, best_pred, labels, seed=seed)
    drop = best["dev_waf"] - oof_waf
    if mining.adopt == "always":
        return dict(adopted=True, noise=round(noise, 4), reason="adopt: always")
    if drop > mining.adopt_noise * noise:
        return dict(adopted=False, noise=round(noise, 4),
                    reason=f"held-out WAF {oof_waf:.4f} is {drop:.4f} below round {best['round']}'s "
                           f"(noise {noise:.4f}): not adopted, mining stops")
    return dict(adopted=True, noise=round(noise, 4),
                reason=f"held-out WAF {oof_waf:.4f} vs round {best['round']}'s {best['dev_waf']:.4f} "
                       f"(noise {noise:.4f})")


def _best_round(history: list[dict]) -> dict | None:
    """The adopted round with the best out-of-fold WAF (the later one on a tie)."""
    adopted = [m for m in history if m.get("adopted", True)]
    return max(reversed(adopted), key=lambda m: m["dev_waf"]) if adopted else None


def _earns_its_place(m: dict, margin: float) -> bool:
    """Round 0, or a round whose out-of-fold WAF beats round 0's by more than `margin` sd of
    the paired difference (a round of a run made before this was recorded: yes)."""
    vs = m.get("vs_round0")
    return m["round"] == 0 or vs is None or vs["gain"] > margin * vs["noise"]


def final_round(history: list[dict], mining) -> tuple[int, str]:
    """The round whose learners make the final ensemble, and why: the adopted round with the
    best out-of-fold WAF among those that beat round 0 beyond its noise (`final_margin`)."""
    if mining.adopt == "always":
        return history[-1]["round"], "the last round (mining.adopt: always)"
    best = _best_round(history)
    rounds = [m["round"] for m in history]
    if _earns_its_place(best, mining.final_margin):
        return best["round"], (f"the adopted round with the best held-out WAF ({best['dev_waf']:.4f}; out of fold, "
                               f"or on the dev split) of rounds {rounds}")
    # mining that cannot be told from the luck of the labeled clips is not worth its risk
    earned = _best_round([m for m in history if _earns_its_place(m, mining.final_margin)])
    vs = best["vs_round0"]
    return earned["round"], (f"round {earned['round']}: the best held-out round, {best['round']}, beats round 0 "
                             f"by {vs['gain']:+.4f}, within {mining.final_margin:g} x its noise {vs['noise']:.4f}")


def _round_metrics(r, data: MiningData, state: MiningState, results, learners, votes, cfg, scores, weights) -> dict:
    probs = state.probs
    learner_metrics = {spec.name: dict(dev_waf=round(results[i]["held_out_waf"], 4),
                                       dev_acc=round(results[i]["held_out_acc"], 4),
                                       train_size=round(results[i]["train_size"], 1),
                                       best_epoch=results[i]["best_epoch"],
                                       **({"C": results[i]["c"]} if results[i]["c"] is not None else {}))
                       for i, spec in enumerate(learners)}
    if weights is not None:   # a weighing ensemble's: steps of 1/20 (weighted) or 1/kept (pruned)
        for i, spec in enumerate(learners):
            learner_metrics[spec.name]["weight"] = round(float(weights[i]), 4)
    n_splits = len(state.mined)
    in_training = sum(len(m) for m in state.mined) / n_splits
    metrics = dict(round=r, train_size=int(round(len(data.train) + len(data.dev) * (cfg.mining.folds >= 2)
                                                 + in_training)),
                   dev_size=len(data.dev), mined=0, pseudo_label_precision=None, mined_per_class={},
                   learners=learner_metrics)
    if votes is not None:
        # this round's selection (per split, averaged over the splits): with `revisit` the whole
        # mined set that trained this round, otherwise the clips added to it
        picked = votes[votes["selected"]]
        rows = data.table.index_of(picked["name"])
        labels = picked["agreed"].to_numpy()
        metrics["mined"] = int(round(len(picked) / n_splits))
        metrics["mined_per_class"] = {EMOTIONS[c]: int(round((labels == c).sum() / n_splits))
                                      for c in range(NUM_CLASSES)}
        truth = data.pool_truth[rows]
        known = truth >= 0
        correct = labels == truth
        if known.any():
            metrics["pseudo_label_precision"] = round(float(correct[known].mean()), 4)
        canary = np.isin(rows, data.canaries)
        metrics["canaries_mined"] = int(round(canary.sum() / n_splits))
        metrics["canary_precision"] = round(float(correct[canary].mean()), 4) if canary.any() else None
    metrics["test_waf"] = metrics["test_acc"] = metrics["test_uar"] = None
    if len(data.test):
        # each learner alone too: does the ensemble earn its place over its best member?
        for i, spec in enumerate(learners):
            learner_metrics[spec.name]["test_waf"] = round(waf(data.test_labels, probs[i, data.test].argmax(-1)), 4)
        test_pred = ensemble(cfg.mining.ensemble, probs[:, data.test], scores, weights)
        metrics.update(score_block(data.test_labels, test_pred, "test"))
    if len(data.noisy_test):
        noisy_pred = ensemble(cfg.mining.ensemble, probs[:, data.noisy_test], scores, weights)
        metrics.update(score_block(data.noisy_test_labels, noisy_pred, "noisy_test"))
    return metrics


def format_round(m: dict, *, header: bool = False) -> str:
    """The per-round summary line printed while the mining runs. `held-out` is the learners'
    (and the ensemble's) out-of-fold WAF (dev WAF with a dev split)."""
    def f(x):
        return "   -  " if x is None else f"{x:.4f}"
    names = list(m["learners"])
    adopted = "yes" if m.get("adopted", True) else "no"
    line = (f"{m['round']:>5} {m['train_size']:>10} {m['mined']:>6} {f(m['pseudo_label_precision']):>9} "
            + " ".join(f"{f(m['learners'][n]['dev_waf']):>7}" for n in names)
            + f" {f(m['dev_waf']):>8} {adopted:>7} {f(m['test_waf']):>8} {m.get('seconds', 0):>6.1f}s")
    if not header:
        return line
    head = (f"{'round':>5} {'train_size':>10} {'mined':>6} {'precision':>9} "
            + " ".join(f"{n:>7}" for n in names) + f" {'held-out':>8} {'adopted':>7} {'test_waf':>8} {'time':>7}")
    return head + "\n" + line
