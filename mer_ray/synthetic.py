"""Synthetic feature rows for tests and benchmarks: a class-dependent Gaussian mixture.

Every stream holds, for each class, its own mean direction plus isotropic noise. Each stream's
class means are drawn independently, so learners that see different stream combinations make
different errors (which is what the vote of seed 004 needs). Class priors follow the imbalance
of MER (neutral most frequent, surprise least).
"""
from __future__ import annotations

import numpy as np

from mer_ray.features.table import FeatureTable
from mer_ray.labels import NUM_CLASSES

MER_PRIORS = np.array([0.28, 0.2, 0.22, 0.14, 0.09, 0.07])   # neutral .. surprise
VALENCE_MEANS = np.array([0.0, -3.0, 3.0, -2.5, -1.5, 1.0])


def synthetic_table(n_labeled: int, n_pool: int, dims: dict[str, int], *, seed: int = 0,
                    separation: float = 1.0) -> tuple[FeatureTable, np.ndarray]:
    """A `FeatureTable` of `n_labeled` 'train' rows then `n_pool` 'unlabeled' rows.

    `separation` is the distance between class means in each stream, in noise standard
    deviations (about 1: one stream alone is a weak classifier, three together a decent one).
    Returns the table and the true label of every row (the pool's truth, for audits).
    """
    rng = np.random.default_rng(seed)
    n = n_labeled + n_pool
    truth = rng.choice(NUM_CLASSES, size=n, p=MER_PRIORS / MER_PRIORS.sum()).astype(np.int64)
    streams = {}
    for name in sorted(dims):
        dim = dims[name]
        # means ~ N(0, s^2/(2 dim) I): the distance between two class means is about s
        means = rng.standard_normal((NUM_CLASSES, dim)).astype(np.float32) * (separation / np.sqrt(2 * dim))
        streams[name] = (means[truth] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)
    labeled = np.arange(n) < n_labeled
    valence = np.clip(VALENCE_MEANS[truth] + rng.normal(0, 1, n), -5, 5).astype(np.float32)
    table = FeatureTable(
        names=np.array([f"clip_{i:07d}" for i in range(n)], dtype=object),
        streams=streams,
        label=np.where(labeled, truth, -1),
        valence=np.where(labeled, valence, np.nan).astype(np.float32),
        split=np.where(labeled, "train", "unlabeled").astype(object),
    )
    return table, truth
