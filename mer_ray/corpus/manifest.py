"""Corpus layouts → one validated manifest table (DESIGN.md, "Manifest").

Every reader returns a DataFrame with the manifest columns; `read_corpus` picks the reader for a
folder's layout. Readers validate at the boundary: a bad row raises with the file and row named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mer_ray.labels import check_valence, label_index
from mer_ray.registry import Registry

COLUMNS = ("name", "video", "audio", "transcript", "split", "label", "valence")
SPLITS = ("train", "test", "unlabeled")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")

LAYOUTS: Registry[Callable[[Path], pd.DataFrame]] = Registry("corpus layout")


def _videos_in(folder: Path) -> dict[str, Path]:
    """name → video path for every video file directly in `folder`."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_EXTENSIONS}


def read_label_file(csv: Path) -> pd.DataFrame:
    """name, label, valence from a `name,discrete[,valence]` file; errors name the row."""
    table = pd.read_csv(csv, dtype={"name": str})
    missing = {"name", "discrete"} - set(table.columns)
    if missing:
        raise ValueError(f"{csv}: missing column(s) {sorted(missing)}; expected name,discrete[,valence]")
    labels, valences = [], []
    for row, rec in enumerate(table.itertuples(index=False), start=2):
        where = f"{csv.name} line {row}, clip {rec.name}"
        labels.append(label_index(rec.discrete, where=where))
        valences.append(check_valence(getattr(rec, "valence", None), where=where))
    return pd.DataFrame({"name": table["name"], "label": labels,
                         "valence": [np.nan if v is None else v for v in valences]})


def _read_transcripts(csv: Path, columns: tuple[str, ...]) -> dict[str, str | None]:
    """name → the first non-empty transcript among `columns` (English before Chinese)."""
    if not csv.exists():
        return {}
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    out: dict[str, str | None] = {}
    for rec in table.to_dict("records"):
        texts = [rec.get(c, "").strip() for c in columns if rec.get(c, "").strip()]
        out[rec["name"]] = texts[0] if texts else None
    return out


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["label"] = df["label"].astype("Int8")
    df["valence"] = df["valence"].astype("float32")
    return df


@LAYOUTS.register("mer2024")
def read_mer2024(root: Path) -> pd.DataFrame:
    """MER 2024 / 2025: video-labeled/ + label-disdim.csv, video-unlabeled-with-test2noise/,
    label-transcription.csv (name,chinese[,english])."""
    labeled_videos = _videos_in(root / "video-labeled")
    pool_videos = _videos_in(root / "video-unlabeled-with-test2noise")
    labels = read_label_file(root / "label-disdim.csv")
    transcripts = _read_transcripts(root / "label-transcription.csv", ("english", "chinese"))
    rows = []
    for rec in labels.itertuples(index=False):
        video = labeled_videos.get(rec.name)
        rows.append(dict(name=rec.name, video=str(video) if video else None, audio=None,
                         transcript=transcripts.get(rec.name), split="train",
                         label=rec.label, valence=rec.valence))
    for name, video in pool_videos.items():
        rows.append(dict(name=name, video=str(video), audio=None, transcript=transcripts.get(name),
                         split="unlabeled", label=None, valence=np.nan))
    return _frame(rows)


@LAYOUTS.register("csv")
def read_csv_manifest(path: Path) -> pd.DataFrame:
    """A generic CSV with the manifest's columns (label as a name or index, paths relative to it)."""
    table = pd.read_csv(path, dtype={"name": str, "video": str, "audio": str, "transcript": str})
    if "name" not in table.columns:
        raise ValueError(f"{path}: a manifest CSV needs at least a 'name' column; have {list(table.columns)}")
    rows = []
    for row, rec in enumerate(table.to_dict("records"), start=2):
        where = f"{path.name} line {row}, clip {rec['name']}"
        label = rec.get("label")
        has_label = label is not None and not (isinstance(label, float) and np.isnan(label))
        split = rec.get("split") or ("train" if has_label else "unlabeled")
        if split not in SPLITS:
            raise ValueError(f"split {split!r} ({where}) must be one of {SPLITS}")

        def resolve(p):
            return None if not isinstance(p, str) or not p else str((path.parent / p).resolve())

        rows.append(dict(
            name=rec["name"], video=resolve(rec.get("video")), audio=resolve(rec.get("audio")),
            transcript=rec.get("transcript") if isinstance(rec.get("transcript"), str) else None,
            split=split,
            label=label_index(label, where=where) if has_label else None,
            valence=check_valence(rec.get("valence"), where=where) or np.nan,
        ))
    return _frame(rows)


def detect_layout(root: Path) -> str:
    if root.is_file() and root.suffix == ".csv":
        return "csv"
    if (root / "label-disdim.csv").exists():
        return "mer2024"
    raise ValueError(
        f"{root}: not a known corpus layout (looked for label-disdim.csv for MER 2024/2025, or a "
        f".csv manifest); pass a MER corpus folder or a CSV with name,video,transcript,label columns"
    )


def read_corpus(root: str | Path, layout: str | None = None) -> pd.DataFrame:
    """Read a corpus into the manifest table, validating it (duplicates, missing files)."""
    root = Path(root)
    manifest = LAYOUTS.get(layout or detect_layout(root))(root)
    problems = find_problems(manifest)
    duplicates = [p for p in problems if p.startswith("duplicate")]
    if duplicates:
        raise ValueError(f"{root}: {len(duplicates)} duplicate clip name(s): {duplicates[:5]}; names must be unique")
    return manifest


def find_problems(manifest: pd.DataFrame) -> list[str]:
    """Human-readable problems; each names the clip and what is wrong."""
    problems = []
    for name in manifest.loc[manifest["name"].duplicated(), "name"]:
        problems.append(f"duplicate name {name}")
    for rec in manifest.itertuples(index=False):
        if pd.isna(rec.video) and pd.isna(rec.audio):
            problems.append(f"{rec.name}: no media file found (expected a video next to the label file)")
        elif not pd.isna(rec.video) and not Path(rec.video).exists():
            problems.append(f"{rec.name}: video {rec.video} does not exist")
        if pd.isna(rec.transcript) or not str(rec.transcript).strip():
            problems.append(f"{rec.name}: empty or missing transcript")
    return problems


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    manifest.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
