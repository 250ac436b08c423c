"""The Parquet feature store (DESIGN.md, "Feature store").

    <store>/<stream>/part-<digest>.parquet   name (string), feature (fixed-size list of float32)
    <store>/<stream>/meta.json               encoder spec, dim, pooling, dtype, code version, count
    <store>/<stream>/errors.parquet          name, stage, message of quarantined clips

A part file is written under a temporary name and renamed once complete, so a killed run never
leaves half a part, and a rerun only does the names not stored yet.

The root may be an object-store URI (`s3://bucket/features`): the store then works on a local
mirror (`mer_ray.storage`), uploads every file it completes, and `sync()` pulls the files other
nodes wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import mer_ray
from mer_ray.errorlog import ErrorLog
from mer_ray.storage import Mirror, is_remote



def _atomic_write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


class FeatureStore:
    def __init__(self, root: str | Path, *, cache: str | Path | None = None):
        """`cache`: the local copy of a remote store (default: under MER_RAY_CACHE)."""
        self.mirror = None
        if is_remote(root):
            self.mirror = Mirror(str(root), Path(cache)) if cache else Mirror.of(str(root))
        self.root = self.mirror.local if self.mirror else Path(root)
        self.location = str(root)   # what every process opens (the URI of a remote store)

    def sync(self) -> int:
        """Pull the files other nodes uploaded (remote stores; a no-op on a shared folder)."""
        return self.mirror.pull() if self.mirror else 0

    def publish(self, path: Path) -> Path:
        """A file of this store is complete: upload it (remote stores; a no-op on a folder)."""
        if self.mirror:
            self.mirror.push(path)
        return path

    def folder(self, stream: str) -> Path:
        return self.root / stream

    def part_files(self, stream: str) -> list[Path]:
        return sorted(self.folder(stream).glob("part-*.parquet"))

    def streams(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/meta.json"))

    # -- writing ---------------------------------------------------------------------------
    def write_part(self, stream: str, names: list[str], features: np.ndarray) -> Path | None:
        """One atomic part file; named by its content so a retried batch overwrites itself."""
        if not names:
            return None
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or len(features) != len(names):
            raise ValueError(f"{stream}: features {features.shape} do not match {len(names)} names")
        folder = self.folder(stream)
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:16]
        column = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1])
        table = pa.table({"name": pa.array(names, pa.string()), "feature": column})
        path = folder / f"part-{digest}.parquet"
        _atomic_write_table(table, path)
        return self.publish(path)

    def write_errors(self, stream: str, records: list[dict]) -> None:
        """Quarantined clips: merged with earlier errors, minus clips that have features now."""
        self.publish(ErrorLog(self.folder(stream) / "errors.parquet").merge(records, done=self.stored_names(stream)))

    def write_meta(self, stream: str, info: dict) -> None:
        meta = {**info, "stream": stream, "count": len(self.stored_names(stream)),
                "code_version": mer_ray.__version__}
        folder = self.folder(stream)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, folder / "meta.json")
        self.publish(folder / "meta.json")

    # -- reading ---------------------------------------------------------------------------
    def meta(self, stream: str) -> dict:
        path = self.folder(stream) / "meta.json"
        if not path.exists():
            raise FileNotFoundError(
                f"no features for stream {stream!r} in {self.root} (missing {path}); run "
                f"`python jobs/extract_features.py` first or check the stream name")
        return json.loads(path.read_text())

    def stored_names(self, stream: str) -> set[str]:
        names: set[str] = set()
        for part in self.part_files(stream):
            names.update(pq.read_table(part, columns=["name"]).column("name").to_pylist())
        return names

    def errors(self, stream: str) -> list[dict]:
        return ErrorLog(self.folder(stream) / "errors.parquet").read()

    def load(self, stream: str) -> tuple[np.ndarray, np.ndarray]:
        """(names [N], features float32 [N, dim]) sorted by name; duplicates keep the last part."""
        parts = self.part_files(stream)
        if not parts:
            self.meta(stream)  # raises the helpful error when the stream was never extracted
            return np.array([], dtype=object), np.zeros((0, 0), np.float32)
        table = pa.concat_tables(pq.read_table(p) for p in parts)
        names = np.asarray(table.column("name").to_pylist(), dtype=object)
        column = table.column("feature").combine_chunks()
        dim = column.type.list_size
        features = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
        del table, column
        order = np.argsort(names, kind="stable")
        names = names[order]
        keep = np.ones(len(names), bool)
        keep[:-1] = names[:-1] != names[1:]
        # one gather (sort + de-duplicate together): the matrix can be gigabytes
        return names[keep], features[order[keep]]
