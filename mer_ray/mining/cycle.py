"""Cyclic pseudo-label mining (seed 004), round by round, as one Ray Train worker function.

Ray Train starts its workers once per run (about 20 s here), not once per learner per round:
the whole loop runs inside `mining_loop`, each worker owns learners[rank::world_size], and the
workers swap their predictions with one all-gather per round. Every worker then runs the same
deterministic vote, so they agree on the mined set without another message; rank 0 writes.

Round r:
    r > 0: the learners of round r-1 vote on the clips still in the pool; the selected clips
           are split evenly across the learners and join their training sets (D_l ∪ D_w,k)
    train every learner from scratch on its training set, early stopping on the dev split
    predict every clip; all-gather; rank 0 audits the round and checkpoints it
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import torch

from mer_ray.config import RunConfig, config_from_dict
from mer_ray.features.table import FeatureTable
from mer_ray.labels import EMOTIONS
from mer_ray.metrics import accuracy, uar, waf
from mer_ray.mining.ensemble import ensemble
from mer_ray.mining.policies import PolicyContext, create_policy, split_evenly
from mer_ray.mining.state import MiningState, read_rounds, round_dir, write_json
from mer_ray.storage import Mirror
from mer_ray.train import cross_validate, fit_learner, predict_outputs


@dataclass
class MiningData:
    """Everything the workers read, put once in the object store and shared by every round."""
    table: FeatureTable
    train: np.ndarray        # labeled rows the learners fit on
    dev: np.ndarray          # labeled rows held out for early stopping and ranking
    pool: np.ndarray         # unlabeled rows the learners may mine
    test: np.ndarray         # held-out rows, scored against truth only
    test_labels: np.ndarray  # [len(test)] true labels (evaluation only)
    pool_truth: np.ndarray   # [N] true label where known (demo, canaries), else -1: audit only
    canaries: np.ndarray     # labeled rows hidden in the pool: precision on real labels
    # MER-NOISE (seed 003): corrupted copies of test clips, scored apart from the clean ones
    noisy_test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    noisy_test_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


NOISY_TEST_KEYS = ("noisy_test_waf", "noisy_test_acc", "noisy_test_uar")


def stratified_split(labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int):
    """Deterministic per-class split of `rows` into (rest, a `fraction` of each class)."""
    rng = np.random.default_rng(seed)
    dev = []
    for c in np.unique(labels[rows]):
        members = rows[labels[rows] == c]
        take = int(round(len(members) * fraction)) if len(members) > 1 else 0
        dev.extend(rng.permutation(members)[:take])
    dev = np.array(sorted(dev), dtype=np.int64)
    return np.setdiff1d(rows, dev), dev


def _all_gather(local: dict) -> dict:
    """Merge every worker's {learner: result}; a no-op in one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, local)
        return {k: v for part in parts for k, v in part.items()}
    return local


def _rank_and_world() -> tuple[int, int]:
    context = ray.train.get_context()
    return context.get_world_rank(), context.get_world_size()


def mining_loop(config: dict) -> None:
    """Ray Train's train_loop_per_worker: run (or resume) every round of the mining."""
    cfg: RunConfig = config_from_dict(config["run"])
    run_dir = Path(config["run_dir"])
    data: MiningData = ray.get(config["data"])
    table, learners = data.table, cfg.learners
    rank, world = _rank_and_world()
    torch.set_num_threads(1)  # one learner per core; also makes results independent of world size
    # Ray Train sets CUDA_VISIBLE_DEVICES per worker, so "cuda" is this worker's own GPU
    device = torch.device("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu")
    from mer_ray.mining.placement import learners_of_worker  # balanced by estimated cost, alike on every rank
    my_learners = learners_of_worker(learners, table, rank, world, folds=cfg.mining.folds)
    policy = create_policy(cfg.mining)
    # an object-store run: this node's copy of the run folder, up to date with the bucket
    mirror = Mirror(config["run_remote"], run_dir) if config.get("run_remote") else None
    if mirror:
        mirror.pull(skip=("ray/",))
    state = MiningState.load(run_dir, table.names)
    history = read_rounds(run_dir)

    for r in range(state.next_round, cfg.mining.rounds + 1):
        started = time.perf_counter()
        partial = round_dir(run_dir, r, partial=True)
        partial.mkdir(parents=True, exist_ok=True)

        # 1. vote: the previous round's learners label the clips still in the pool
        votes = None
        if r > 0:
            remaining, selection, assigned = mine(state, data, policy, seed=cfg.seed * 1000 + r)
            votes = _vote_table(table, learners, state.probs[:, remaining], remaining, selection, assigned)

        # 2. train this worker's learners from scratch on D_l ∪ D_w,k, predict every clip
        local = {}
        for i in my_learners:
            rows, labels = state.training_set(i, data.train, table.label)
            seed = cfg.seed * 1000 + 10 * r + i
            if cfg.mining.folds >= 2:   # seed 003: k folds of the labeled clips, mined clips in every fold
                own = state.mined_learner == i
                fit = cross_validate(learners[i], table, data.train, table.label[data.train],
                                     folds=cfg.mining.folds, seed=seed, mined_rows=state.mined_rows[own],
                                     mined_labels=state.mined_labels[own], device=device)
            else:
                fit = fit_learner(learners[i], table, rows, labels, data.dev, seed=seed, device=device)
            weights = partial / f"{learners[i].name}.pt"
            torch.save({k: v.cpu() for k, v in fit.model.state_dict().items()}, weights)
            if mirror:   # straight to its final place: rank 0 may be on another node
                mirror.upload(weights, f"{round_dir(Path(''), r).name}/{weights.name}")
            probs, valence = predict_outputs(fit.model, table, learners[i], device=device)
            local[i] = dict(probs=probs.astype(np.float32), valence=valence, dev_waf=fit.dev_waf,
                            train_size=len(rows), epochs=fit.best_epoch)

        # 3. exchange predictions; every worker now holds all learners' outputs
        results = _all_gather(local)
        state.probs = np.stack([results[i]["probs"] for i in range(len(learners))])

        # 4. audit and checkpoint (rank 0 writes; the others already agree on the state)
        metrics = _round_metrics(r, data, state, results, learners, votes, cfg)
        metrics["seconds"] = round(time.perf_counter() - started, 2)
        if rank == 0:
            valence = np.stack([results[i]["valence"] for i in range(len(learners))])
            np.savez(partial / "probs.npz", names=table.names.astype(str), probs=state.probs, valence=valence)
            if votes is not None:
                votes.to_parquet(partial / "vote_table.parquet", index=False)
            write_json(partial / "metrics.json", metrics)
            state.commit_round(run_dir, r)
            history.append(metrics)
            write_json(run_dir / "metrics.json", {"rounds": history})
            if mirror:   # the round's files, then the state.json that names it complete
                mirror.push_tree(round_dir(Path(""), r).name)
                mirror.push("metrics.json", "state.json")
            print(format_round(metrics, header=(r == 0)), flush=True)
        else:
            state.complete.append(r)
        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})


def mine(state: MiningState, data: MiningData, policy, *, seed: int):
    """One vote: the last round's learners label the clips still in the pool, the policy keeps
    some, and the kept clips are split evenly across the learners and recorded in `state`.
    Returns (remaining pool rows, the selection over them, assigned learner per row or -1)."""
    remaining = np.setdiff1d(data.pool, state.mined_rows)
    context = PolicyContext(dev_probs=state.probs[:, data.dev], dev_labels=data.table.label[data.dev],
                            pool_size=len(data.pool))
    selection = policy(state.probs[:, remaining], context)
    picked = np.flatnonzero(selection.selected)
    assigned = np.full(len(remaining), -1, np.int64)
    shares = split_evenly(remaining[picked], selection.labels[picked], state.probs.shape[0], seed=seed)
    for learner, share in enumerate(shares):
        assigned[picked[share]] = learner
    state.add(remaining[picked], selection.labels[picked], assigned[picked])
    return remaining, selection, assigned


def _vote_table(table, learners, probs, rows, selection, assigned) -> pd.DataFrame:
    """One row per pool clip voted on: each learner's label and confidence, the outcome."""
    columns = {"name": table.names[rows].astype(str)}
    for i, spec in enumerate(learners):
        columns[f"{spec.name}_label"] = probs[i].argmax(-1)
        columns[f"{spec.name}_conf"] = probs[i].max(-1)
    columns.update(agreed=selection.labels, agree=selection.agree, confidence=selection.confidence,
                   selected=selection.selected, assigned=assigned)
    return pd.DataFrame(columns)


def _round_metrics(r, data: MiningData, state: MiningState, results, learners, votes, cfg) -> dict:
    labels = data.table.label
    dev_scores = [results[i]["dev_waf"] for i in range(len(learners))]
    learner_metrics = {}
    for i, spec in enumerate(learners):
        dev_pred = results[i]["probs"][data.dev].argmax(-1)
        learner_metrics[spec.name] = dict(dev_waf=round(results[i]["dev_waf"], 4),
                                          dev_acc=round(accuracy(labels[data.dev], dev_pred), 4),
                                          train_size=results[i]["train_size"],
                                          best_epoch=results[i]["epochs"])
    metrics = dict(round=r, train_size=len(data.train) + len(state.mined_rows), dev_size=len(data.dev), mined=0,
                   pseudo_label_precision=None, mined_per_class={}, learners=learner_metrics)
    if votes is not None:
        new = votes[votes["selected"]]
        metrics["mined"] = int(len(new))
        metrics["mined_per_class"] = {EMOTIONS[c]: int((new["agreed"] == c).sum()) for c in range(len(EMOTIONS))}
        rows = data.table.index_of(new["name"])
        truth = data.pool_truth[rows]
        known = truth >= 0
        correct = new["agreed"].to_numpy() == truth
        if known.any():
            metrics["pseudo_label_precision"] = round(float(correct[known].mean()), 4)
        canary = np.isin(rows, data.canaries)
        metrics["canaries_mined"] = int(canary.sum())
        metrics["canary_precision"] = round(float(correct[canary].mean()), 4) if canary.any() else None
    dev_pred = ensemble(cfg.mining.ensemble, state.probs[:, data.dev], dev_scores)
    metrics["dev_waf"] = round(waf(labels[data.dev], dev_pred), 4)
    metrics["test_waf"] = metrics["test_acc"] = metrics["test_uar"] = None
    if len(data.test):
        test_pred = ensemble(cfg.mining.ensemble, state.probs[:, data.test], dev_scores)
        metrics["test_waf"] = round(waf(data.test_labels, test_pred), 4)
        metrics["test_acc"] = round(accuracy(data.test_labels, test_pred), 4)
        metrics["test_uar"] = round(uar(data.test_labels, test_pred), 4)
    if len(data.noisy_test):
        noisy_pred = ensemble(cfg.mining.ensemble, state.probs[:, data.noisy_test], dev_scores)
        metrics["noisy_test_waf"] = round(waf(data.noisy_test_labels, noisy_pred), 4)
        metrics["noisy_test_acc"] = round(accuracy(data.noisy_test_labels, noisy_pred), 4)
        metrics["noisy_test_uar"] = round(uar(data.noisy_test_labels, noisy_pred), 4)
    return metrics


def format_round(m: dict, *, header: bool = False) -> str:
    """The per-round summary line printed while the mining runs."""
    def f(x):
        return "   -  " if x is None else f"{x:.4f}"
    names = list(m["learners"])
    line = (f"{m['round']:>5} {m['train_size']:>10} {m['mined']:>6} {f(m['pseudo_label_precision']):>9} "
            + " ".join(f"{f(m['learners'][n]['dev_waf']):>7}" for n in names)
            + f" {f(m['dev_waf']):>8} {f(m['test_waf']):>8} {m.get('seconds', 0):>6.1f}s")
    if not header:
        return line
    head = (f"{'round':>5} {'train_size':>10} {'mined':>6} {'precision':>9} "
            + " ".join(f"{n + ' dev':>7}" for n in names) + f" {'dev_waf':>8} {'test_waf':>8} {'time':>7}")
    return head + "\n" + line
