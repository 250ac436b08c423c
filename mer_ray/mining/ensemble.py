"""Final prediction from the learners' outputs (seed 004, Figure 4)."""
from __future__ import annotations

import numpy as np

from mer_ray.registry import Registry

ENSEMBLES = Registry("ensemble")


@ENSEMBLES.register("ranked-mode")
def ranked_mode(probs: np.ndarray, dev_scores: np.ndarray) -> np.ndarray:
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
def mean_prob(probs: np.ndarray, dev_scores: np.ndarray) -> np.ndarray:
    """Alternative: average the learners' probabilities."""
    return probs.mean(0).argmax(-1)


def ensemble(name: str, probs: np.ndarray, dev_scores) -> np.ndarray:
    return ENSEMBLES.get(name)(probs, np.asarray(dev_scores, dtype=float))
