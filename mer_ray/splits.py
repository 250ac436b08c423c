"""Deterministic, class-stratified ways to cut labeled rows: one dealer, one hold-out.

`deal` is the one stratified dealer: k folds of the labeled clips (seed 003's CV) and seed
004's even split of the mined clips across the learners are both "shuffle each class and deal
it round-robin, the dealer carrying on from class to class", so every group gets the same class
mix and group sizes differ by at most one. `holdout` takes a fraction of each class out (the
dev split, the canaries). Randomness is local: each call draws from its own
`numpy.random.default_rng(seed)`.
"""
from __future__ import annotations

import numpy as np


def deal(labels: np.ndarray, k: int, seed: int, keys: np.ndarray | None = None) -> list[np.ndarray]:
    """k groups of positions into `labels`, each class shuffled and dealt round-robin.

    `keys` (one per position, e.g. row ids) fixes the order a class is shuffled from, so the
    groups do not depend on the order the positions came in. Returns sorted int64 arrays.
    """
    labels = np.asarray(labels)
    if k < 1:
        raise ValueError(f"dealing needs at least one group, got {k}")
    rng = np.random.default_rng(seed)
    groups: list[list[int]] = [[] for _ in range(k)]
    dealer = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if keys is not None:
            members = members[np.argsort(np.asarray(keys)[members], kind="stable")]
        for position in rng.permutation(members):
            groups[dealer].append(int(position))
            dealer = (dealer + 1) % k
    return [np.array(sorted(g), dtype=np.int64) for g in groups]


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Seed 003's stratified k-fold split: positions into `labels`, one sorted array per fold."""
    if k < 2:
        raise ValueError(f"k-fold CV needs at least 2 folds, got {k}")
    if len(labels) < k:
        raise ValueError(f"{k}-fold CV needs at least {k} labeled rows, got {len(labels)}")
    return deal(labels, k, seed)


def holdout(labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held out): `fraction` of each class of `rows` held out (none of a one-clip class).
    `labels` is indexed by row id."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels[rows]):
        members = rows[labels[rows] == c]
        take = int(round(len(members) * fraction)) if len(members) > 1 else 0
        held.extend(rng.permutation(members)[:take])
    held = np.array(sorted(held), dtype=np.int64)
    return np.setdiff1d(rows, held), held
