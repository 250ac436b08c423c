"""Feature streams aligned by clip name: the in-memory table the learners train on.

Loaded once by the driver and put in the Ray object store; every learner and every round reads
the same zero-copy arrays.
"""
from __future__ import annotations

import logging
from pathlib import Path
from dataclasses import dataclass, field

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
    # stream → bool [N]: False where the clip has no such modality (or it failed to decode) and
    # the row is zeros — the stream's mean after z-scoring (see mer_ray.features.extract)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    # stream → (shift, scale) applied to the raw features; saved with a run for prediction
    norm: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def dims(self) -> dict[str, int]:
        return {s: m.shape[1] for s, m in self.streams.items()}

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def index_of(self, names) -> np.ndarray:
        return rows_of(self.names, names)


def rows_of(names, wanted, *, where: str = "the feature table") -> np.ndarray:
    """The row of each of the `wanted` clip names in `names` (the one name → row map); a name
    that is not there is an error naming it."""
    position = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in position]
    if missing:
        raise KeyError(f"{len(missing)} clip(s) not in {where}, e.g. {missing[0]!r}; were the features or "
                       f"the corpus changed since these names were written?")
    return np.array([position[n] for n in wanted], dtype=np.int64)


def norm_stats(matrix: np.ndarray, per_column: bool) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) that z-score each column, or (for sparse encoders) scale the whole stream
    to unit RMS. Statistics come from every clip, labeled or not: unsupervised, and they match
    the pool. A run saves them (norm.npz) so new clips are scaled exactly like its training."""
    if per_column:
        std = matrix.std(0)
        return matrix.mean(0), np.where(std > 1e-6, std, 1.0).astype(np.float32)
    rms = float(np.sqrt(np.mean(matrix ** 2)))
    dim = matrix.shape[1]
    return np.zeros(dim, np.float32), np.full(dim, rms if rms > 1e-12 else 1.0, np.float32)


def save_norm(norm: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    np.savez(path, **{f"{s}.shift": v[0] for s, v in norm.items()}, **{f"{s}.scale": v[1] for s, v in norm.items()})


def load_norm(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    saved = np.load(path, allow_pickle=False)
    streams = {k.rsplit(".", 1)[0] for k in saved.files}
    return {s: (saved[f"{s}.shift"], saved[f"{s}.scale"]) for s in streams}


def load_feature_table(manifest: pd.DataFrame, store: FeatureStore, streams: list[str], *,
                       require_all: bool = False,
                       norm: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                       ) -> tuple[FeatureTable, dict[str, str]]:
    """Clips with at least one of `streams` (all of them when `require_all`); returns the table
    and {dropped clip: reason}.

    MER scores every clip, so a clip without video (or whose video is corrupt) keeps its audio
    and text: its video rows are zeros, which after z-scoring is the stream's mean — the
    "know nothing" value — and `present[stream]` says which rows are real. Normalisation
    statistics come from the real rows only, unless `norm` (a finished run's) is given.
    """
    norm = dict(norm or {})
    manifest = manifest.drop_duplicates("name")
    wanted = set(manifest["name"])
    # Names first (the name column only), features one stream at a time below: at MER scale
    # the raw streams are gigabytes, and holding them all beside the normalised copy would
    # double the driver's peak memory.
    loaded, reasons = {}, {}
    for stream in streams:
        loaded[stream] = store.stored_names(stream)
        reasons[stream] = {e["name"]: e["message"] for e in store.errors(stream)}
    has = {n: [s for s in streams if n in loaded[s]] for n in wanted}
    keep = {n for n, got in has.items() if (len(got) == len(streams) if require_all else got)}
    dropped = {}
    for name in sorted(wanted - keep):
        lacking = [s for s in streams if name not in loaded[s]]
        dropped[name] = "; ".join(reasons[s].get(name, f"{name}: no {s} features in {store.folder(s)}")
                                  for s in lacking)
    if not keep:
        raise ValueError(f"no clip has {'all' if require_all else 'any'} of the streams {streams} "
                         f"in {store.root}; run extraction first")
    rows = manifest[manifest["name"].isin(keep)].sort_values("name")
    names = rows["name"].to_numpy(dtype=object)
    matrices, present = {}, {}
    for stream in streams:
        stored_names, features = store.load(stream)
        position = dict(zip(stored_names, range(len(stored_names))))
        index = np.array([position.get(n, -1) for n in names], dtype=np.int64)
        mask = index >= 0
        real = features[index[mask]]          # the one copy: gathered in table order
        del features, stored_names, position
        if stream not in norm:
            norm[stream] = norm_stats(real, store.meta(stream).get("standardize", True))
        shift, scale = norm[stream]
        real -= shift
        real /= scale
        if mask.all():
            matrix = real
        else:
            matrix = np.zeros((len(names), int(store.meta(stream)["dim"])), np.float32)
            matrix[mask] = real
        matrices[stream], present[stream] = matrix, mask
        if not mask.all():
            log.warning("%s: %d of %d clip(s) have no features (zeros), e.g. %s", stream,
                        int((~mask).sum()), len(names),
                        reasons[stream].get(names[~mask][0], f"{names[~mask][0]}: not extracted"))
    if dropped:
        log.warning("%d clip(s) are left out, e.g. %s", len(dropped), "; ".join(list(dropped.values())[:3]))
    table = FeatureTable(
        names=names,
        streams=matrices,
        label=rows["label"].fillna(-1).astype(np.int64).to_numpy(),
        valence=rows["valence"].astype(np.float32).to_numpy(),
        split=rows["split"].to_numpy(dtype=object),
        present=present,
        norm=norm,
    )
    return table, dropped


NOISY_VIEW = "@noisy"   # row `<clip>@noisy` holds the noisy view of clip <clip>


def with_noisy_view(table: FeatureTable, store: FeatureStore, views: dict[str, str],
                    names) -> tuple[FeatureTable, np.ndarray, np.ndarray]:
    """`table` plus one row `<name>@noisy` per clip of `names` with noisy features stored:
    stream s of the row is the store's `views[s]` (a corrupted copy, seed 003's MER-NOISE
    augmentation), or the clean row's where s has no view (transcripts are not corrupted) or the
    clip has no noisy features for it. Label, valence and split are the clean clip's.

    Noisy features are scaled with the clean stream's statistics: the learners must see them on
    the clean scale, and they never change that scale (a run's norm.npz stays the clean one).
    Returns (table, the new rows, the clean row of each)."""
    noisy = {stream: store.load(view) for stream, view in views.items()}
    have_view = set().union(*(set(saved[0]) for saved in noisy.values())) if noisy else set()
    with_view = sorted(set(names) & set(table.names) & have_view)
    source = table.index_of(with_view)
    rows = np.arange(len(table), len(table) + len(source), dtype=np.int64)
    streams, present = {}, {}
    for stream, matrix in table.streams.items():
        extra = matrix[source].copy()
        extra_present = table.present.get(stream, np.ones(len(table), bool))[source].copy()
        if stream in noisy:
            stored_names, features = noisy[stream]
            position = dict(zip(stored_names, range(len(stored_names))))
            index = np.array([position.get(n, -1) for n in with_view], dtype=np.int64)
            found = index >= 0
            shift, scale = table.norm[stream]
            extra[found] = (features[index[found]] - shift) / scale
            extra_present[found] = True
        streams[stream] = np.concatenate([matrix, extra])
        present[stream] = np.concatenate([table.present.get(stream, np.ones(len(table), bool)), extra_present])
    grown = FeatureTable(
        names=np.concatenate([table.names, np.array([n + NOISY_VIEW for n in with_view], dtype=object)]),
        streams=streams,
        label=np.concatenate([table.label, table.label[source]]),
        valence=np.concatenate([table.valence, table.valence[source]]),
        split=np.concatenate([table.split, table.split[source]]),
        present=present,
        norm=table.norm,
    )
    return grown, rows, source
