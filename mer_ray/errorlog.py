"""`errors.parquet`: the quarantined clips of a stage (feature store streams, denoise), one row
a clip with `name`, `stage` (decode, encode, missing, separate, asr, write...) and `message`
(which names the clip and says what is wrong).

A rerun merges its new records into the file: a clip's latest record wins, and a clip the rerun
finished (stored, decided) leaves the log. Written under a temporary name and renamed, so a
killed run never leaves half a log."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

ERROR_COLUMNS = ("name", "stage", "message")


class ErrorLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        return pq.read_table(self.path).to_pylist() if self.path.exists() else []

    def merge(self, records: Iterable[dict], *, done: Iterable[str] = ()) -> Path:
        """Write the earlier records updated by `records`, minus the clips in `done`."""
        by_name = {r["name"]: r for r in self.read()}
        by_name.update({r["name"]: r for r in records})
        for name in done:
            by_name.pop(name, None)
        rows = [by_name[n] for n in sorted(by_name)]
        table = pa.table({c: pa.array([str(r[c]) for r in rows], pa.string()) for c in ERROR_COLUMNS})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)
        return self.path
