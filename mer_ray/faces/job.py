"""`mer-ray faces`: detect the face in every clip of a corpus once, as a Ray Data job.

manifest → Ray Data CPU tasks (decode the sampled frames, `track_faces`) → the driver, which
writes what arrives to `<out>.parts/` after every batch (so a killed run keeps it and a rerun
detects only the clips not done) and merges everything into `<out>` (face_boxes.parquet, see
mer_ray.faces.boxes) at the end. A clip that cannot be decoded, or has no video, is listed with
its reason in `<out stem>.errors.parquet` (`mer_ray.errorlog`); the rest go on. Extraction and pre-training read `<out>`
through their `face_boxes` option, so the corpus is not detected again.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from mer_ray.errorlog import ErrorLog
from mer_ray.raydata import DecodeSettings, dataset_of, decode_map

from .boxes import read_box_table, records_json, records_table, summarise, track_records, write_box_table
from .detectors import create_detector
from .track import FaceSettings

__all__ = ["FacesSummary", "detect_corpus_faces"]


@dataclass
class FacesSummary:
    clips: int = 0                 # clips detected in this run
    counts: Counter = field(default_factory=Counter)   # summarise(): faces, fallbacks
    skipped: int = 0
    seconds: float = 0.0
    frames: int = 0

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        found = ", ".join(f"{n} {what}" for what, n in self.counts.items()) or "nothing new"
        return (f"faces: {self.clips} clips in {self.seconds:.1f} s ({rate:.1f} frames/s); {found}; "
                f"skipped: {self.skipped}")


def _records_cell(rec, clip, track) -> dict:
    """A decoded clip's face_boxes rows as one JSON cell, or why it has none."""
    if clip is not None and track is None:
        return {"records": "", "error": f"{rec.name}: no video stream in {rec.video}; no face to find"}
    return {"records": records_json(track_records(rec.name, track)) if track is not None else ""}


def _parts(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def errors_path(out: Path) -> Path:
    """The clips `mer-ray faces` could not detect, with why (name, stage, message)."""
    return out.with_name(out.stem + ".errors.parquet")


def _settings_path(out: Path) -> Path:
    return _parts(out) / "settings.json"


def detect_corpus_faces(manifest: pd.DataFrame, out: str | Path, settings: FaceSettings = FaceSettings(), *,
                        num_frames: int = 16, batch_size: int = 8) -> FacesSummary:
    """Write `out` (face_boxes.parquet) for every manifest clip with a video; resumes. The
    settings of a half-finished run must match (its parts were made with them)."""
    import ray

    start = time.perf_counter()
    create_detector(settings.detector)   # unknown detector or missing weights: fail before any work
    out = Path(out)
    parts = _parts(out)
    wanted = {**asdict(settings), "num_frames": num_frames}
    if _settings_path(out).exists() and json.loads(_settings_path(out).read_text()) != wanted:
        raise ValueError(f"{parts} holds an unfinished run with settings "
                         f"{json.loads(_settings_path(out).read_text())}, not {wanted}; rerun with those "
                         f"to finish it, or delete {parts}")
    done = set(read_box_table(out)["name"]) if out.exists() else set()
    done |= {n for p in sorted(parts.glob("part-*.parquet")) for n in pd.read_parquet(p, columns=["name"])["name"]}
    log = ErrorLog(errors_path(out))
    skipped = {r["name"]: r["message"] for r in log.read()}
    previous = set(skipped)
    clips = manifest.drop_duplicates("name")
    clips = clips[~clips["name"].isin(done)][["name", "video"]].astype(object).reset_index(drop=True)
    no_video = clips["video"].isna()
    skipped.update({n: f"{n}: the manifest gives no video file" for n in clips.loc[no_video, "name"]})
    clips = clips[~no_video]

    summary = FacesSummary(clips=len(clips))
    if len(clips):
        parts.mkdir(parents=True, exist_ok=True)
        _settings_path(out).write_text(json.dumps(wanted))
        # extraction's decode-and-quarantine map, its crop: face path: the same boxes it would find
        decode = DecodeSettings(want=("video",), num_frames=num_frames, crop="face", faces=settings)
        ds = dataset_of(clips, rows_per_block=batch_size).map_batches(
            decode_map, fn_kwargs=dict(settings=decode, cells=_records_cell),
            batch_format="pandas", batch_size=batch_size, num_cpus=1)
        for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
            skipped.update({n: e for n, e in zip(batch["name"], batch["error"]) if e})
            for name in batch.loc[batch["records"] != "", "name"]:
                skipped.pop(name, None)   # decoded now: an earlier failure is no longer true
            records = records_table(batch["records"])
            if len(records):
                part = parts / f"part-{uuid.uuid4().hex}.parquet"
                write_box_table(part, records)
                summary.counts.update(summarise(records))
                summary.frames += len(records)
    part_files = sorted(parts.glob("part-*.parquet"))
    if part_files or not out.exists():   # an empty file too: the face_boxes option can always read it
        write_box_table(out, pd.concat([records_table([])] + [read_box_table(p) for p in part_files],
                                       ignore_index=True))
    shutil.rmtree(parts, ignore_errors=True)
    log.merge([dict(name=n, stage="decode", message=e) for n, e in skipped.items()],
              done=previous - set(skipped))   # decoded now: no longer an error
    summary.skipped = len(skipped)
    summary.seconds = time.perf_counter() - start
    return summary
