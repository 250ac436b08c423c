"""Selection policies: which unlabeled clips become pseudo-labeled training data.

A policy takes the learners' probabilities on the pool, `probs [L, N, C]`, and returns a
`Selection`. Adding one is one decorated factory; the mining driver never changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mer_ray.registry import Registry


@dataclass
class Selection:
    selected: np.ndarray     # bool [N]
    labels: np.ndarray       # int64 [N]: the agreed (pseudo) label of every clip
    agree: np.ndarray        # int64 [N]: how many learners gave that label
    confidence: np.ndarray   # float32 [N]: mean probability of the agreeing learners


Policy = Callable[[np.ndarray], Selection]
POLICIES: Registry[Policy] = Registry("selection policy")


def majority(probs: np.ndarray) -> Selection:
    """The most voted label per clip; ties go to the label with the larger summed probability."""
    n_learners, n_clips, n_classes = probs.shape
    votes = probs.argmax(-1)                                       # [L, N]
    counts = np.stack([(votes == c).sum(0) for c in range(n_classes)], -1)  # [N, C]
    mass = probs.sum(0)                                            # [N, C]
    # counts dominate; summed probability (< L) only breaks ties between equal counts
    labels = (counts * (n_learners + 1) + mass).argmax(-1)
    agree = counts[np.arange(n_clips), labels]
    agreeing = votes == labels[None, :]
    picked = probs[:, np.arange(n_clips), labels]                  # [L, N]
    confidence = (picked * agreeing).sum(0) / np.maximum(agree, 1)
    return Selection(np.zeros(n_clips, bool), labels.astype(np.int64), agree.astype(np.int64),
                     confidence.astype(np.float32))


@POLICIES.register("vote")
def vote(agree: int = 3, min_confidence: float = 0.0, **_) -> Policy:
    """Seed 004: keep a clip when at least `agree` learners predict the same label."""
    def select(probs: np.ndarray) -> Selection:
        if agree > probs.shape[0]:
            raise ValueError(f"vote needs {agree} agreeing learners but only {probs.shape[0]} exist")
        sel = majority(probs)
        sel.selected = (sel.agree >= agree) & (sel.confidence >= min_confidence)
        return sel
    return select


def create_policy(name: str, **kwargs) -> Policy:
    return POLICIES.create(name, **kwargs)


def split_evenly(rows: np.ndarray, labels: np.ndarray, n_learners: int, seed: int) -> list[np.ndarray]:
    """Seed 004: divide the mined set evenly and disjointly across the learners.

    Class-stratified: each class is shuffled and dealt round-robin, the dealer carrying on from
    class to class, so every learner gets the same class mix and totals differ by at most one.
    Returns positions into `rows`/`labels` for each learner.
    """
    rng = np.random.default_rng(seed)
    shares: list[list[int]] = [[] for _ in range(n_learners)]
    dealer = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(rows[members], kind="stable")]   # order independent of input order
        for position in rng.permutation(members):
            shares[dealer].append(position)
            dealer = (dealer + 1) % n_learners
    return [np.array(sorted(s), dtype=np.int64) for s in shares]
