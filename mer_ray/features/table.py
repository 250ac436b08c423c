"""Feature streams aligned by clip name: the in-memory table the learners train on.

Loaded once by the driver and put in the Ray object store; every learner and every round reads
the same zero-copy arrays.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mer_ray.features.store import FeatureStore

log = logging.getLogger(__name__)


@dataclass
class FeatureTable:
    names: np.ndarray                 # [N] clip names (object), sorted
    streams: dict[str, np.ndarray]    # stream → float32 [N, dim], standardised
    label: np.ndarray                 # [N] int64, -1 where unknown
    valence: np.ndarray               # [N] float32, NaN where unknown
    split: np.ndarray                 # [N] 'train' | 'test' | 'unlabeled'

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dims(self) -> dict[str, int]:
        return {s: m.shape[1] for s, m in self.streams.items()}

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def index_of(self, names) -> np.ndarray:
        position = {n: i for i, n in enumerate(self.names)}
        return np.array([position[n] for n in names], dtype=np.int64)


def normalize(matrix: np.ndarray, per_column: bool) -> np.ndarray:
    """Z-score each column, or (for sparse encoders) scale the whole stream to unit RMS.

    Statistics come from every clip, labeled or not: unsupervised, and they match the pool.
    """
    if per_column:
        mean, std = matrix.mean(0), matrix.std(0)
        return (matrix - mean) / np.where(std > 1e-6, std, 1.0)
    rms = float(np.sqrt(np.mean(matrix ** 2)))
    return matrix / (rms if rms > 1e-12 else 1.0)


def load_feature_table(manifest: pd.DataFrame, store: FeatureStore, streams: list[str]) -> tuple[FeatureTable, dict[str, str]]:
    """Clips with every requested stream; returns the table and {dropped clip: reason}."""
    keep = set(manifest["name"])
    dropped: dict[str, str] = {}
    loaded = {}
    for stream in streams:
        names, features = store.load(stream)
        loaded[stream] = dict(zip(names, features))
        errors = {e["name"]: e["message"] for e in store.errors(stream)}
        for name in sorted(keep - set(names)):
            dropped[name] = errors.get(name, f"{name}: no {stream} features in {store.folder(stream)}")
        keep &= set(names)
    if not keep:
        raise ValueError(f"no clip has all of the streams {streams} in {store.root}; run extraction first")
    rows = manifest[manifest["name"].isin(keep)].sort_values("name")
    names = rows["name"].to_numpy(dtype=object)
    matrices = {}
    for stream in streams:
        matrix = np.stack([loaded[stream][n] for n in names]).astype(np.float32)
        matrices[stream] = normalize(matrix, store.meta(stream).get("standardize", True))
    if dropped:
        log.warning("%d clip(s) lack a feature stream and are left out, e.g. %s",
                    len(dropped), "; ".join(list(dropped.values())[:3]))
    table = FeatureTable(
        names=names,
        streams=matrices,
        label=rows["label"].fillna(-1).astype(np.int64).to_numpy(),
        valence=rows["valence"].astype(np.float32).to_numpy(),
        split=rows["split"].to_numpy(dtype=object),
    )
    return table, dropped
