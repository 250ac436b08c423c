"""Final prediction from the learners' outputs (seed 004, Figure 4), and the learner weights the
`weighted` and `pruned` ensembles read from the labeled clips' out-of-fold predictions.

Why weights: on the demo corpus the linear learner alone scored 0.71-0.75 test WAF while the
four learners' plain mean scored 0.65-0.69 (benchmarks/mining_quality.py): three weaker learners
outvoted it. Ensemble selection (Caruana et al., ICML 2004) picks, greedily and with
replacement, the learner whose addition most raises the out-of-fold WAF of the averaged
probabilities; the counts are the weights. On the real data sets, where every learner is about
as good, it keeps them all.

Ensemble selection overfits the out-of-fold predictions it chooses on when there are only
50-100 labeled clips (it lost 0.01 test WAF on both real data sets). `pruned` makes a coarser
choice that luck cannot make: the plain mean of the learners, less those whose out-of-fold WAF
is below the best learner's by more than `PRUNE_SD` bootstrap standard deviations of the paired
difference. Measured (docs/mining.md), it lifts the demo (0.678 -> 0.692) but loses on the real
sets (segment 0.917 -> 0.906): a learner's own score does not say what its errors add to the
mean, so `mean-prob` stays the default and both weighing ensembles are options.
"""
from __future__ import annotations

import numpy as np

from mer_ray.metrics import paired_noise, waf
from mer_ray.registry import Registry
from mer_ray.splits import deal

ENSEMBLES = Registry("ensemble")

SELECTION_STEPS = 20   # greedy additions: weights in steps of 1/20
# a learner leaves the `pruned` mean when it is this many paired-bootstrap sds behind the best:
# two, so that on the real sets' 50-100 labeled clips a learner is dropped only when clearly worse
PRUNE_SD = 2.0


@ENSEMBLES.register("ranked-mode")
def ranked_mode(probs: np.ndarray, dev_scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Rank learners by dev metric (best first) and take the mode of their labels; while the mode
    is not unique, ignore the lowest-ranked learner still counted and repeat (seed 004)."""
    order = np.argsort(-np.asarray(dev_scores), kind="stable")
    votes = probs.argmax(-1)[order]                 # [L, N], best learner first
    n_classes = probs.shape[-1]
    out = np.empty(votes.shape[1], dtype=np.int64)
    for clip in range(votes.shape[1]):
        for used in range(len(order), 0, -1):
            counts = np.bincount(votes[:used, clip], minlength=n_classes)
            modes = np.flatnonzero(counts == counts.max())
            if len(modes) == 1:
                out[clip] = modes[0]
                break
    return out


@ENSEMBLES.register("mean-prob")
def mean_prob(probs: np.ndarray, dev_scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The learners' mean probability."""
    return probs.mean(0).argmax(-1)


def ensemble(name: str, probs: np.ndarray, dev_scores, weights=None) -> np.ndarray:
    return ENSEMBLES.get(name)(probs, np.asarray(dev_scores, dtype=float),
                               None if weights is None else np.asarray(weights, dtype=float))


def select_weights(probs: np.ndarray, labels: np.ndarray, steps: int = SELECTION_STEPS) -> np.ndarray:
    """Caruana's ensemble selection with replacement: `steps` greedy additions of the learner
    that most raises the WAF of the running mean of `probs` [L, D, C] on `labels` [D] (ties:
    the lower log-loss, then the earlier learner). Returns weights [L] summing to 1."""
    n_learners = probs.shape[0]
    counts = np.zeros(n_learners)
    total = np.zeros(probs.shape[1:])
    rows = np.arange(len(labels))
    for step in range(steps):
        best, best_key = 0, None
        for i in range(n_learners):
            mean = (total + probs[i]) / (step + 1)
            key = (waf(labels, mean.argmax(-1)), np.log(mean[rows, labels] + 1e-12).mean())
            if best_key is None or key > best_key:
                best, best_key = i, key
        counts[best] += 1
        total += probs[best]
    return counts / counts.sum()


def prune_weights(probs: np.ndarray, labels: np.ndarray, *, seed: int, sds: float = PRUNE_SD) -> np.ndarray:
    """Equal weights on every learner whose WAF on `labels` [D] is within `sds` paired-bootstrap
    standard deviations of the best learner's (`probs` [L, D, C]); zero on the others."""
    preds = probs.argmax(-1)
    scores = np.array([waf(labels, p) for p in preds])
    best = int(scores.argmax())
    keep = np.array([i == best or scores[best] - scores[i] <= sds * paired_noise(preds[i], preds[best], labels, seed=seed + i)
                     for i in range(len(preds))], np.float64)
    return keep / keep.sum()


def _caruana(probs: np.ndarray, labels: np.ndarray, *, seed: int) -> np.ndarray:
    return select_weights(probs, labels)   # greedy and deterministic: no seed to use


@ENSEMBLES.register("weighted", weigh=_caruana)
def weighted(probs: np.ndarray, dev_scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The learners' probabilities averaged with Caruana's ensemble-selection weights."""
    return _weighted_mean(probs, weights)


@ENSEMBLES.register("pruned", weigh=prune_weights)
def pruned(probs: np.ndarray, dev_scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The mean probability of the learners not clearly behind the best (`prune_weights`)."""
    return _weighted_mean(probs, weights)


def _weighted_mean(probs: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        raise ValueError("a weighing ensemble needs the round's learner weights (learner_weights)")
    return np.tensordot(np.asarray(weights, np.float64), probs, axes=1).argmax(-1)


def learner_weights(name: str, probs: np.ndarray, labels: np.ndarray, *, seed: int) -> np.ndarray | None:
    """The ensemble's learner weights [L] chosen on held-out `probs` [L, D, C] and `labels` [D];
    None for an ensemble that does not weigh its learners."""
    weigh = ENSEMBLES.meta(name).get("weigh")   # registered with the ensemble: weigh(probs, labels, *, seed)
    return None if weigh is None else weigh(probs, labels, seed=seed)


def cross_fitted(name: str, probs: np.ndarray, labels: np.ndarray, dev_scores, *, seed: int,
                 groups: int = 5) -> np.ndarray:
    """The ensemble's labels for held-out clips `probs` [L, D, C] such that no clip's label
    comes from weights chosen on that clip: the clips are dealt into `groups` stratified groups
    and each group is ensembled with weights selected on the others (a plain ensemble needs no
    weights and is applied as it is). What the round's out-of-fold score is read from."""
    if ENSEMBLES.meta(name).get("weigh") is None:
        return ensemble(name, probs, dev_scores)
    out = np.empty(len(labels), np.int64)
    parts = deal(labels, min(groups, len(labels)), seed)
    for part in parts:
        rest = np.setdiff1d(np.arange(len(labels)), part)
        weights = (learner_weights(name, probs[:, rest], labels[rest], seed=seed) if len(rest)
                   else np.full(len(probs), 1 / len(probs)))
        out[part] = ensemble(name, probs[:, part], dev_scores, weights)
    return out
