"""Final prediction from the learners' outputs (seed 004, Figure 4), and the learner weights the
`weighted` ensemble reads from the labeled clips' out-of-fold predictions.

Why weights: on the demo corpus the linear learner alone scored 0.71-0.75 test WAF while the
four learners' plain mean scored 0.65-0.69 (benchmarks/mining_quality.py): three weaker learners
outvoted it. Ensemble selection (Caruana et al., ICML 2004) picks, greedily and with
replacement, the learner whose addition most raises the out-of-fold WAF of the averaged
probabilities; the counts are the weights. On the real data sets, where every learner is about
as good, it keeps them all.
"""
from __future__ import annotations

import numpy as np

from mer_ray.metrics import waf
from mer_ray.registry import Registry
from mer_ray.splits import deal

ENSEMBLES = Registry("ensemble")

SELECTION_STEPS = 20   # greedy additions: weights in steps of 1/20


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


@ENSEMBLES.register("weighted", weighted=True)
def weighted(probs: np.ndarray, dev_scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The learners' probabilities averaged with out-of-fold weights (`select_weights`)."""
    if weights is None:
        raise ValueError("the weighted ensemble needs the round's learner weights (select_weights)")
    return np.tensordot(np.asarray(weights, np.float64), probs, axes=1).argmax(-1)


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


def cross_fitted(name: str, probs: np.ndarray, labels: np.ndarray, dev_scores, *, seed: int,
                 groups: int = 5) -> np.ndarray:
    """The ensemble's labels for held-out clips `probs` [L, D, C] such that no clip's label
    comes from weights chosen on that clip: the clips are dealt into `groups` stratified groups
    and each group is ensembled with weights selected on the others (a plain ensemble needs no
    weights and is applied as it is). What the round's out-of-fold score is read from."""
    if not ENSEMBLES.meta(name).get("weighted"):
        return ensemble(name, probs, dev_scores)
    out = np.empty(len(labels), np.int64)
    parts = deal(labels, min(groups, len(labels)), seed)
    for part in parts:
        rest = np.setdiff1d(np.arange(len(labels)), part)
        weights = select_weights(probs[:, rest], labels[rest]) if len(rest) else np.full(len(probs), 1 / len(probs))
        out[part] = ensemble(name, probs[:, part], dev_scores, weights)
    return out
