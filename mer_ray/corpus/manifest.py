"""Corpus layouts → one validated manifest table (DESIGN.md, "Manifest").

Every reader returns a DataFrame with the manifest columns; `read_corpus` picks the reader for a
folder's layout. Readers validate at the boundary: a bad row raises with the file and row named.
Given a `problems` list instead, a reader records every bad row there and goes on (the row is
left out, or its bad valence blanked): that is what `validate_corpus` / `mer-ray validate` use
to report all problems at once rather than the first, and what `load_corpus` (every job's
reader) uses to go on with the good rows and write the rest to the run's problems.csv.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mer_ray.labels import check_valence, label_index
from mer_ray.registry import Registry

log = logging.getLogger(__name__)

COLUMNS = ("name", "video", "audio", "transcript", "split", "label", "valence")
SPLITS = ("train", "test", "unlabeled")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")

# A layout reader: (root, problems or None) → manifest. Each registers how to recognise its
# folder in DETECTORS, so `detect_layout` needs no if-chain.
LAYOUTS: Registry[Callable[..., pd.DataFrame]] = Registry("corpus layout")
DETECTORS: dict[str, Callable[[Path], bool]] = {}


def _layout(name: str, detect: Callable[[Path], bool]):
    def add(reader):
        DETECTORS[name] = detect
        return LAYOUTS.register(name)(reader)
    return add


def _videos_in(folder: Path) -> dict[str, Path]:
    """name → video path for every video file directly in `folder`."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_EXTENSIONS}


class Problem(str):
    """One thing wrong with a corpus: the message (it is the string), the clip and a `kind` that
    groups problems in the summary: duplicate, missing-file, no-media, bad-label, bad-valence,
    bad-split, no-transcript, label-on-unlabeled, no-label, unreadable."""

    name: str
    kind: str

    def __new__(cls, name: str, kind: str, message: str) -> "Problem":
        problem = super().__new__(cls, message)
        problem.name, problem.kind = str(name), kind
        return problem

    @property
    def message(self) -> str:
        return str.__str__(self)


def _check(problems: list[Problem] | None, name: str, kind: str, check: Callable[[], Any]) -> Any:
    """Run a validating `check`; raise its error, or record it in `problems` and return None."""
    try:
        return check()
    except ValueError as err:
        if problems is None:
            raise
        problems.append(Problem(str(name), kind, str(err)))
        return None


def read_label_file(csv: Path, problems: list[Problem] | None = None) -> pd.DataFrame:
    """name, label, valence from a `name,discrete[,valence]` file; errors name the row.

    With `problems`, a row with an unknown label is recorded and left out, and a valence out of
    range is recorded and blanked (the label is still good)."""
    if not csv.exists():
        raise FileNotFoundError(f"{csv}: label file not found; is this the corpus root folder?")
    table = pd.read_csv(csv, dtype={"name": str})
    missing = {"name", "discrete"} - set(table.columns)
    if missing:
        raise ValueError(f"{csv}: missing column(s) {sorted(missing)}; expected name,discrete[,valence]")
    names, labels, valences = [], [], []
    for row, rec in enumerate(table.itertuples(index=False), start=2):
        where = f"{csv.name} line {row}, clip {rec.name}"
        label = _check(problems, rec.name, "bad-label", lambda: label_index(rec.discrete, where=where))
        if label is None:
            continue
        valence = _check(problems, rec.name, "bad-valence",
                         lambda: check_valence(getattr(rec, "valence", None), where=where))
        names.append(rec.name)
        labels.append(label)
        valences.append(np.nan if valence is None else valence)
    return pd.DataFrame({"name": pd.Series(names, dtype=object), "label": labels, "valence": valences})


def _read_transcripts(csv: Path, columns: tuple[str, ...]) -> dict[str, str | None]:
    """name → the first non-empty transcript among `columns` (English before Chinese)."""
    if not csv.exists():
        return {}
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if "name" not in table.columns or not set(columns) & set(table.columns):
        raise ValueError(f"{csv}: expected columns name and one of {', '.join(columns)}; "
                         f"have {', '.join(table.columns)}")
    out: dict[str, str | None] = {}
    for rec in table.to_dict("records"):
        texts = [rec.get(c, "").strip() for c in columns if rec.get(c, "").strip()]
        out[rec["name"]] = texts[0] if texts else None
    return out


def _labeled_rows(labels: pd.DataFrame, videos: dict[str, Path], transcripts: dict) -> list[dict]:
    """Manifest rows of the labeled clips (split "train"); a missing video stays None so that
    validation names it instead of the clip silently vanishing."""
    return [dict(name=rec.name, video=str(videos[rec.name]) if rec.name in videos else None, audio=None,
                 transcript=transcripts.get(rec.name), split="train", label=rec.label, valence=rec.valence)
            for rec in labels.itertuples(index=False)]


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["label"] = df["label"].astype("Int8")
    df["valence"] = df["valence"].astype("float32")
    return df


@_layout("mer2023", lambda root: (root / "train-label.csv").is_file())
def read_mer2023(root: Path, problems: list[Problem] | None = None) -> pd.DataFrame:
    """MER 2023: train/ + train-label.csv (name,discrete,valence), test1/ test2/ test3/ (the
    three test sets, unlabeled here: split "test"), transcription.csv (name,sentence)."""
    train_videos = _videos_in(root / "train")
    labels = read_label_file(root / "train-label.csv", problems)
    transcripts = _read_transcripts(root / "transcription.csv", ("sentence", "english", "chinese"))
    rows = _labeled_rows(labels, train_videos, transcripts)
    _report_unlabeled(problems, train_videos, labels, "train", "train-label.csv")
    for folder in ("test1", "test2", "test3"):
        for name, video in _videos_in(root / folder).items():
            rows.append(dict(name=name, video=str(video), audio=None, transcript=transcripts.get(name),
                             split="test", label=None, valence=np.nan))
    return _frame(rows)


def _report_unlabeled(problems: list[Problem] | None, videos: dict[str, Path], labels: pd.DataFrame,
                      folder: str, label_file: str) -> None:
    """A labeled folder's video without a row in the label file: reported, left out."""
    if problems is None:
        return
    reported = {p.name for p in problems}   # a row already reported (e.g. its label is unknown) is not "no row"
    for name in sorted(set(videos) - set(labels["name"]) - reported):
        problems.append(Problem(name, "no-label", f"{name}: {folder}/{videos[name].name} has no "
                                f"row in {label_file}; it is left out"))


@_layout("mer2024", lambda root: (root / "label-disdim.csv").is_file())
def read_mer2024(root: Path, problems: list[Problem] | None = None) -> pd.DataFrame:
    """MER 2024 / 2025: video-labeled/ + label-disdim.csv, video-unlabeled-with-test2noise/,
    label-transcription.csv (name,chinese[,english])."""
    labeled_videos = _videos_in(root / "video-labeled")
    pool_videos = _videos_in(root / "video-unlabeled-with-test2noise")
    labels = read_label_file(root / "label-disdim.csv", problems)
    transcripts = _read_transcripts(root / "label-transcription.csv", ("english", "chinese"))
    rows = _labeled_rows(labels, labeled_videos, transcripts)
    _report_unlabeled(problems, labeled_videos, labels, "video-labeled", "label-disdim.csv")
    for name, video in pool_videos.items():
        rows.append(dict(name=name, video=str(video), audio=None, transcript=transcripts.get(name),
                         split="unlabeled", label=None, valence=np.nan))
    return _frame(rows)


@_layout("csv", lambda root: root.is_file() and root.suffix.lower() == ".csv")
def read_csv_manifest(path: Path, problems: list[Problem] | None = None) -> pd.DataFrame:
    """A generic CSV with the manifest's columns (label as a name or index, paths relative to it)."""
    table = pd.read_csv(path, dtype={"name": str, "video": str, "audio": str, "transcript": str})
    if "name" not in table.columns:
        raise ValueError(f"{path}: a manifest CSV needs at least a 'name' column; have {list(table.columns)}")
    rows = []
    for row, rec in enumerate(table.to_dict("records"), start=2):
        where = f"{path.name} line {row}, clip {rec['name']}"
        label = rec.get("label")
        has_label = label is not None and not (isinstance(label, float) and np.isnan(label))
        split = rec.get("split") if isinstance(rec.get("split"), str) else ("train" if has_label else "unlabeled")
        def check_split():
            if split not in SPLITS:
                raise ValueError(f"split {split!r} ({where}) must be one of {SPLITS}; the row is left out")
            return split
        if _check(problems, rec["name"], "bad-split", check_split) is None:
            continue
        label_value = None
        if has_label:
            label_value = _check(problems, rec["name"], "bad-label", lambda: label_index(label, where=where))
            if label_value is None:
                continue
        valence = _check(problems, rec["name"], "bad-valence",
                         lambda: check_valence(rec.get("valence"), where=where))

        def resolve(p):
            return None if not isinstance(p, str) or not p else str((path.parent / p).resolve())

        rows.append(dict(
            name=rec["name"], video=resolve(rec.get("video")), audio=resolve(rec.get("audio")),
            transcript=rec.get("transcript") if isinstance(rec.get("transcript"), str) else None,
            split=split, label=label_value, valence=np.nan if valence is None else valence,
        ))
    return _frame(rows)


def detect_layout(root: Path) -> str:
    for name, detect in DETECTORS.items():
        if detect(root):
            return name
    raise ValueError(
        f"{root}: not a known corpus layout (looked for train-label.csv for MER 2023, "
        f"label-disdim.csv for MER 2024/2025, or a .csv manifest); pass a MER corpus folder or a "
        f"CSV with name,video,transcript,label columns"
    )


def read_corpus(root: str | Path, layout: str | None = None) -> pd.DataFrame:
    """Read a corpus into the manifest table, validating it (duplicates, missing files).

    A bad label or valence raises naming the row; `validate_corpus` reports them all instead."""
    root = Path(root)
    manifest = LAYOUTS.get(layout or detect_layout(root))(root)
    problems = find_problems(manifest)
    duplicates = [p.name for p in problems if p.kind == "duplicate"]
    if duplicates:
        raise ValueError(f"{root}: {len(duplicates)} duplicate clip name(s): {duplicates[:5]}; names must be unique")
    return manifest


def find_problems(manifest: pd.DataFrame) -> list[Problem]:
    """Problems of a manifest table; each names the clip and what is wrong (str() is the message)."""
    problems = []
    for name in manifest.loc[manifest["name"].duplicated(), "name"]:
        problems.append(Problem(name, "duplicate", f"duplicate name {name}: only its first row is used"))
    for rec in manifest.itertuples(index=False):
        if pd.isna(rec.video) and pd.isna(rec.audio):
            problems.append(Problem(rec.name, "no-media", f"{rec.name}: no media file found "
                                    f"(expected a video next to the label file)"))
        for column in ("video", "audio"):
            path = getattr(rec, column)
            if not pd.isna(path) and not Path(path).exists():
                problems.append(Problem(rec.name, "missing-file", f"{rec.name}: {column} {path} does not exist"))
        if pd.isna(rec.transcript) or not str(rec.transcript).strip():
            problems.append(Problem(rec.name, "no-transcript", f"{rec.name}: empty or missing transcript"))
        if rec.split != "train" and not pd.isna(rec.label):
            problems.append(Problem(rec.name, "label-on-unlabeled", f"{rec.name}: split {rec.split} but "
                                    f"has a label; it is not used for training"))
    return problems


@dataclass
class CorpusReport:
    """What `mer-ray validate` prints: counts per split and class, every problem, what is usable."""

    root: str
    layout: str
    manifest: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    usable: list[str] = field(default_factory=list)   # clips the pipeline can still use

    def counts(self) -> pd.DataFrame:
        """Clips per class (rows, '-' for none) and split (columns); a duplicate counts once."""
        from mer_ray.labels import EMOTIONS

        unique = self.manifest.drop_duplicates("name")
        label = unique["label"].map(lambda v: "-" if pd.isna(v) else EMOTIONS[int(v)])
        table = pd.crosstab(label.rename("class"), unique["split"], margins=True, margins_name="total")
        order = [e for e in (*EMOTIONS, "-") if e in table.index] + ["total"]
        return table.loc[order]

    def text(self) -> str:
        from collections import Counter

        lines = [f"corpus {self.root} (layout {self.layout}): {len(self.manifest)} clips, "
                 f"{len(self.usable)} usable", "", self.counts().to_string(), ""]
        kinds = Counter(p.kind for p in self.problems)
        if kinds:
            lines.append(f"{len(self.problems)} problem(s): "
                         + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()))
            lines += [f"  [{p.kind}] {p.message}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def validate_corpus(root: str | Path, layout: str | None = None, *, probe: bool = True,
                    workers: int = 8) -> CorpusReport:
    """Every problem of a corpus, collected rather than raised (bad rows are left out).

    `probe` opens every media file and decodes its first frame (in `workers` threads: PyAV
    releases the GIL while it decodes), so unreadable files show before any extraction starts.
    A clip is usable when it has a readable media file or a transcript.
    """
    from .media import probe_media

    root = Path(root)
    layout = layout or detect_layout(root)
    problems: list[Problem] = []
    manifest = LAYOUTS.get(layout)(root, problems)
    problems += find_problems(manifest)
    unique = manifest.drop_duplicates("name")
    bad_media = {p.name for p in problems if p.kind in ("missing-file", "no-media")}
    if probe:
        paths = [(rec.name, path) for rec in unique.itertuples(index=False) if rec.name not in bad_media
                 for path in (rec.video, rec.audio) if isinstance(path, str)]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for (name, _), problem in zip(paths, pool.map(lambda item: probe_media(item[1]), paths)):
                if problem:
                    problems.append(Problem(name, "unreadable", f"{name}: {problem}"))
                    bad_media.add(name)
    has_text = unique["transcript"].map(lambda t: isinstance(t, str) and bool(t.strip()))
    usable = [n for n, text in zip(unique["name"], has_text) if text or n not in bad_media]
    return CorpusReport(str(root), layout, manifest, problems, usable)


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    manifest.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


# A clip without a transcript is normal in MER (and gets no text features); every other kind
# means a row is left out, changed or partly unusable, which `--strict` refuses.
TOLERATED_UNDER_STRICT = frozenset({"no-transcript"})
PROBLEMS_FILE = "problems.csv"


def load_corpus(root: str | Path, layout: str | None = None, *, strict: bool = False,
                report_dir: str | Path | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """What every job reads: the rows `mer-ray validate` would keep, and the problems of the rest.

    A bad label row, a valence out of range, a duplicated name or a video in the labeled
    folder without a label row does not stop the job: the row is left out (a bad valence is
    blanked, a duplicate's first row kept), every problem is written to
    `<report_dir>/problems.csv` (name, kind, message) and one warning line sums them up.
    `strict=True` refuses such a corpus instead (ValueError naming the first problems). Media
    files are not opened here (extraction quarantines an unreadable one with its reason).
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    problems: list[Problem] = []
    manifest = LAYOUTS.get(layout)(root, problems)
    problems += find_problems(manifest)
    serious = [p for p in problems if p.kind not in TOLERATED_UNDER_STRICT]
    if strict and serious:
        listed = "; ".join(p.message for p in serious[:5])
        raise ValueError(f"{root}: --strict and {len(serious)} problem row(s), e.g. {listed}. Fix them "
                         f"(`mer-ray validate {root}` lists them all) or run without --strict to leave "
                         f"those rows out")
    unique = manifest.drop_duplicates("name", keep="first")
    no_media = {p.name for p in problems if p.kind in ("missing-file", "no-media")}
    has_text = unique["transcript"].map(lambda t: isinstance(t, str) and bool(t.strip()))
    usable = unique[has_text.to_numpy() | ~unique["name"].isin(no_media).to_numpy()].reset_index(drop=True)
    if report_dir is not None:
        write_problems(problems, Path(report_dir) / PROBLEMS_FILE)
    if problems:
        from collections import Counter

        kinds = Counter(p.kind for p in problems)
        where = f"listed in {Path(report_dir) / PROBLEMS_FILE}" if report_dir is not None else \
            f"`mer-ray validate {root}` lists them"
        log.warning("corpus %s: %d problem(s) (%s); %d clip(s) used, the rest left out or fixed as %s "
                    "(--strict refuses such a corpus)", root, len(problems),
                    ", ".join(f"{n} {k}" for k, n in kinds.most_common()), len(usable), where)
    if usable.empty:
        raise ValueError(f"{root}: no usable clip (every row has a problem); run `mer-ray validate {root}`")
    return usable, problems


def write_problems(problems: list[Problem], path: Path) -> None:
    """problems.csv (name, kind, message); an earlier run's file goes when there are none now."""
    if not problems:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"name": [p.name for p in problems], "kind": [p.kind for p in problems],
                          "message": [p.message for p in problems]})
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
