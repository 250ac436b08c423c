"""Seed 004's denoise step over a corpus: Ray Data decode tasks → separation + ASR actors → a new manifest.

Per clip: decode the audio at 16 kHz (CPU task), separate it into tracks, transcribe the original
and every track, apply `rule.choose_track` (mer_ray.denoise.rule quotes the paper). A winning
track is written as `<out>/audio/<name>.wav` (16 kHz, 16-bit); a clip that keeps its original
audio gets no file, its manifest row points where it did before.

    <out>/denoise.json              the settings; a rerun with other settings is refused
    <out>/decisions/part-*.parquet  one row per decided clip (what a rerun skips), written by the
                                    actors after every batch, atomically
    <out>/decisions.csv             the same, one column per value, for auditing by eye
    <out>/errors.parquet            name, stage, message of quarantined clips (retried on rerun)
    <out>/manifest.csv              the input manifest with `audio` pointing at the chosen tracks,
                                    in the generic CSV layout (`mer-ray extract --corpus` reads it)

A clip that cannot be decoded, separated or transcribed is quarantined with its reason and keeps
its original audio in the manifest; the rest of the job goes on. A clip without an audio stream
is decided at once ("original", noted) and never sent to the models.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import uuid
import wave
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mer_ray.corpus.manifest import COLUMNS
from mer_ray.errorlog import ErrorLog
from mer_ray.labels import EMOTIONS
from mer_ray.plugins import load_plugins
from mer_ray.raydata import DecodeSettings, decode_map, decode_then_actors

from .rule import THRESHOLD, decide

__all__ = ["DenoiseConfig", "DenoiseSummary", "Denoiser", "denoise_corpus", "read_decisions", "write_wav"]

SAMPLE_RATE = 16000
ORIGINAL = "original"
NO_AUDIO_NOTE = "no audio stream: nothing to separate, kept as is"


@dataclass(frozen=True)
class DenoiseConfig:
    """What `denoise_corpus` runs; the first three are saved in denoise.json and must match on resume."""
    separator: str                 # e.g. convtasnet:/models/convtasnet-libri2mix.pt
    asr: str                       # e.g. whisper:/models/whisper-large-v3?language=zh
    threshold: float = THRESHOLD   # seed 004: a track wins when its similarity leads by more than this
    batch_size: int = 8            # clips per actor call and per decisions part file
    actors: int = 1                # separation + ASR actors at most (one GPU each on GPU nodes)
    gpus_per_actor: float | None = None   # None: 1 when the cluster has GPUs, else 0
    plugins: tuple[str, ...] = ()  # modules imported first (in every actor too): your registered models

    def __post_init__(self):
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number (seed 004: 0.1), got {self.threshold}")
        if self.batch_size < 1 or self.actors < 1:
            raise ValueError(f"batch_size and actors must be >= 1, got {self.batch_size} and {self.actors}")

    def settings(self) -> dict[str, Any]:
        return {"separator": self.separator, "asr": self.asr, "threshold": self.threshold}


@dataclass
class ClipDecision:
    name: str
    track: int | None              # the separated track chosen, None: the original audio
    similarities: list[float]      # each track's transcript against the original's (the template)
    template: str
    transcripts: list[str]
    audio: np.ndarray | None = None   # the chosen track, 16 kHz; None for the original
    note: str = ""

    @property
    def choice(self) -> str:
        return ORIGINAL if self.track is None else f"separated-{self.track}"


import_plugins = load_plugins   # the name this module's callers know (mer_ray.plugins)


class Denoiser:
    """The per-clip work, no Ray: separate, transcribe, apply the rule."""

    def __init__(self, separator, asr, threshold: float = THRESHOLD):
        self.separator, self.asr, self.threshold = separator, asr, float(threshold)

    def decide(self, names: Sequence[str], waveforms: Sequence[np.ndarray]) -> tuple[list[ClipDecision], list[dict]]:
        """Decisions for the clips that went through, error records (name, stage, message) for the rest."""
        errors: list[dict] = []
        separated: list[tuple[str, np.ndarray, list[np.ndarray]]] = []
        for name, waveform in zip(names, waveforms):
            try:
                tracks = self.separator.separate(waveform)
                if len(tracks) < 2:
                    raise ValueError(f"gave {len(tracks)} track(s); seed 004's rule needs at least two")
                if not all(np.isfinite(t).all() for t in tracks):
                    raise ValueError("gave NaN/inf samples")
                separated.append((name, waveform, tracks))
            except Exception as exc:  # one clip's failure must not end the batch
                errors.append(_error(name, "separate", f"{type(exc).__name__}: {exc}"))
        texts = self._transcribe(separated, errors)
        decisions = []
        for (name, _, tracks), clip_texts in zip(separated, texts):
            if clip_texts is None:
                continue
            template, transcripts = clip_texts[0], clip_texts[1:]
            track, similarities = decide(template, transcripts, self.threshold)
            decisions.append(ClipDecision(name, track, similarities, template, transcripts,
                                          audio=None if track is None else tracks[track]))
        return decisions, errors

    def _transcribe(self, separated, errors: list[dict]) -> list[list[str] | None]:
        """[original, track 0, track 1, ...] transcripts per clip, all clips in one ASR call; when
        that call fails, clip by clip, so only the clip that breaks it is quarantined."""
        audio = [[waveform, *tracks] for _, waveform, tracks in separated]
        if not audio:
            return []
        try:
            flat = list(self.asr.transcribe([w for clip in audio for w in clip]))
            if len(flat) == sum(len(clip) for clip in audio):
                it = iter(flat)
                return [[next(it) for _ in clip] for clip in audio]
        except Exception:
            pass  # retried clip by clip below, which names the clip that fails
        out: list[list[str] | None] = []
        for (name, _, _), clip in zip(separated, audio):
            try:
                texts = list(self.asr.transcribe(clip))
                if len(texts) != len(clip):
                    raise ValueError(f"gave {len(texts)} transcripts for {len(clip)} waveforms")
                out.append(texts)
            except Exception as exc:
                errors.append(_error(name, "asr", f"{type(exc).__name__}: {exc}"))
                out.append(None)
        return out


def _error(name: str, stage: str, message: str) -> dict:
    return {"name": name, "stage": stage, "message": f"{name}: {message}"}   # a model's message never names the clip


# -- files ---------------------------------------------------------------------------------------
def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Mono 16-bit PCM, written under a temporary name and renamed (never half a file)."""
    path = Path(path)
    pcm = (np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes(pcm.tobytes())

    _atomic(path, write)
    return path


def _match_peak(track: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Separators trained on scale-invariant SNR give tracks at an arbitrary level; giving the
    track the original's peak keeps the clip's loudness (an emotion cue) and never clips."""
    peak, target = float(np.abs(track).max(initial=0.0)), float(np.abs(original).max(initial=0.0))
    return track * (target / peak) if peak > 0 and target > 0 else track


def _wav_name(name: str) -> str:
    # names become file names: anything but letters, digits, '-', '_' and '.' is replaced, and a
    # digest of the real name keeps two names that differ only there apart
    safe = re.sub(r"[^\w.-]", "_", name)
    return f"{safe}.wav" if safe == name else f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}.wav"


DECISION_SCHEMA = pa.schema([
    ("name", pa.string()), ("choice", pa.string()), ("audio", pa.string()),
    ("similarities", pa.list_(pa.float64())), ("template", pa.string()),
    ("transcripts", pa.list_(pa.string())), ("note", pa.string()),
])


def _write_decisions(out: Path, rows: list[dict]) -> None:
    if not rows:
        return
    names = [r["name"] for r in rows]
    digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:16]   # a retried batch overwrites itself
    table = pa.Table.from_pylist(rows, schema=DECISION_SCHEMA)
    _atomic(out / "decisions" / f"part-{digest}.parquet", lambda tmp: pq.write_table(table, tmp))


def read_decisions(out: str | Path) -> pd.DataFrame:
    """Every decided clip of a denoise output folder (name, choice, audio, similarities, template,
    transcripts, note); a clip decided twice (a retried batch) keeps its last row."""
    parts = sorted((Path(out) / "decisions").glob("part-*.parquet"))
    if not parts:
        return DECISION_SCHEMA.empty_table().to_pandas()
    table = pa.concat_tables(pq.read_table(p, schema=DECISION_SCHEMA) for p in parts).to_pandas()
    return table.drop_duplicates("name", keep="last").sort_values("name").reset_index(drop=True)


# -- Ray Data stages -----------------------------------------------------------------------------
AUDIO_ONLY = DecodeSettings(want=("audio",), sample_rate=SAMPLE_RATE)


def _waveform_cell(rec, clip, track) -> dict:
    """The clip's 16 kHz mono audio as raw float32 bytes (empty: no audio stream or not decoded)."""
    audio = clip.audio if clip is not None else None
    return {"waveform": b"" if audio is None else np.ascontiguousarray(audio, dtype=np.float32).tobytes()}


def decode_audio_batch(batch: pd.DataFrame) -> pd.DataFrame:
    """CPU stage: the shared decode-and-quarantine map (`mer_ray.raydata.decode_map`), audio only."""
    return decode_map(batch, settings=AUDIO_ONLY, cells=_waveform_cell)


class DenoiseAndWrite:
    """Actor stage: loads the models once, decides a batch, writes the wavs, then its decisions part."""

    def __init__(self, out: str, cfg: DenoiseConfig, torch_threads: int | None = 1, plugins: tuple[str, ...] = ()):
        load_plugins((*plugins, *cfg.plugins))   # the driver's --plugin modules, then the config's
        from .asr import create_asr
        from .separators import create_separator

        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)   # one actor per core: no oversubscription
        self.out = Path(out)
        self.denoiser = Denoiser(create_separator(cfg.separator), create_asr(cfg.asr), cfg.threshold)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        status: list[tuple[str, str, str]] = []
        rows: list[dict] = []
        names, waveforms = [], []
        for rec in batch.itertuples(index=False):
            if rec.error:
                status.append((rec.name, "decode", rec.error))
            elif not len(rec.waveform):
                rows.append(dict(name=rec.name, choice=ORIGINAL, audio="", similarities=[], template="",
                                 transcripts=[], note=NO_AUDIO_NOTE))
                status.append((rec.name, "ok", ORIGINAL))
            else:
                names.append(rec.name)
                waveforms.append(np.frombuffer(rec.waveform, dtype=np.float32))
        decisions, errors = self.denoiser.decide(names, waveforms) if names else ([], [])
        originals = dict(zip(names, waveforms))
        for decision in decisions:
            audio = ""
            if decision.audio is not None:
                try:
                    path = self.out / "audio" / _wav_name(decision.name)
                    audio = str(write_wav(path, _match_peak(decision.audio, originals[decision.name])))
                except OSError as exc:
                    errors.append(_error(decision.name, "write", f"{type(exc).__name__}: {exc}"))
                    continue
            rows.append(dict(name=decision.name, choice=decision.choice, audio=audio,
                             similarities=decision.similarities, template=decision.template,
                             transcripts=decision.transcripts, note=decision.note))
            status.append((decision.name, "ok", decision.choice))
        status += [(e["name"], e["stage"], e["message"]) for e in errors]
        _write_decisions(self.out, rows)   # after the wavs: a decided clip always has its file
        return pd.DataFrame(status, columns=["name", "stage", "message"])


# -- driver --------------------------------------------------------------------------------------
@dataclass
class DenoiseSummary:
    clips: int = 0                                          # clips that needed work in this run
    choices: Counter = field(default_factory=Counter)       # original / separated-<i> → clips
    quarantined: Counter = field(default_factory=Counter)   # stage → clips
    seconds: float = 0.0

    def line(self) -> str:
        chosen = ", ".join(f"{n} {c}" for c, n in sorted(self.choices.items())) or "nothing new"
        bad = ", ".join(f"{n} at {stage}" for stage, n in self.quarantined.most_common()) or "none"
        return f"denoise: {self.clips} clips in {self.seconds:.1f} s; chosen: {chosen}; quarantined: {bad}"


def _check_settings(out: Path, cfg: DenoiseConfig) -> None:
    path = out / "denoise.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != cfg.settings():
            raise ValueError(f"{out} holds decisions made with {saved}, not {cfg.settings()}; rerun with "
                             f"those settings to resume, or pick a new output folder")
        return
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(cfg.settings(), indent=2)))


def _write_audit(out: Path, decisions: pd.DataFrame) -> None:
    """decisions.csv: similarity_<i> and transcript_<i> columns instead of lists."""
    width = max((len(s) for s in decisions["similarities"]), default=0)
    flat = decisions[["name", "choice"]].copy()
    for i in range(width):
        flat[f"similarity_{i}"] = [s[i] if len(s) > i else None for s in decisions["similarities"]]
    flat["template"] = decisions["template"]
    for i in range(width):
        flat[f"transcript_{i}"] = [t[i] if len(t) > i else None for t in decisions["transcripts"]]
    flat["audio"], flat["note"] = decisions["audio"], decisions["note"]
    _atomic(out / "decisions.csv", lambda tmp: flat.to_csv(tmp, index=False))


def _write_manifest(out: Path, manifest: pd.DataFrame, decisions: pd.DataFrame) -> Path:
    """The generic CSV layout, absolute paths (the reader resolves relative ones against the CSV's
    folder), labels by name."""
    chosen = {n: a for n, a in zip(decisions["name"], decisions["audio"]) if a}

    def absolute(path) -> str | None:
        return str(Path(path).resolve()) if isinstance(path, str) and path else None

    table = manifest.loc[:, list(COLUMNS)].copy()
    table["video"] = table["video"].map(absolute)
    table["audio"] = [absolute(chosen.get(n, a)) for n, a in zip(table["name"], table["audio"])]
    table["label"] = table["label"].map(lambda v: None if pd.isna(v) else EMOTIONS[int(v)])
    path = out / "manifest.csv"
    _atomic(path, lambda tmp: table.to_csv(tmp, index=False))
    return path


def denoise_corpus(manifest: pd.DataFrame, out: str | Path, cfg: DenoiseConfig, *,
                   progress: bool = True) -> DenoiseSummary:
    """Seed 004's denoise step for every clip of `manifest` not decided in `out` yet; then the
    decisions table and the new manifest. Needs a running Ray (`mer_ray.session.init_ray()`)."""

    start = time.perf_counter()
    from .asr import check_asr
    from .separators import check_separator

    load_plugins(cfg.plugins)
    check_separator(cfg.separator)   # a wrong path fails here, not in every actor's start
    check_asr(cfg.asr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, cfg)
    summary = DenoiseSummary()
    unique = manifest.drop_duplicates("name")
    pending = sorted(set(unique["name"]) - set(read_decisions(out)["name"]))
    summary.clips = len(pending)
    errors: list[dict] = []
    if pending:
        clips = unique.set_index("name").loc[pending].reset_index()[["name", "video", "audio"]].astype(object)
        clips = clips.where(clips.notna(), None)
        # the same resource requests as extraction's decode tasks and encoder actors (mer_ray.raydata)
        ds = decode_then_actors(clips, decode=decode_audio_batch, actor=DenoiseAndWrite,
                                actor_kwargs=dict(out=str(out), cfg=cfg), batch_size=cfg.batch_size,
                                actors=cfg.actors, gpus=cfg.gpus_per_actor, progress=progress)
        for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
            for rec in batch.itertuples(index=False):
                if rec.stage == "ok":
                    summary.choices[rec.message] += 1
                else:
                    summary.quarantined[rec.stage] += 1
                    errors.append(dict(name=rec.name, stage=rec.stage, message=rec.message))
    decisions = read_decisions(out)
    ErrorLog(out / "errors.parquet").merge(errors, done=decisions["name"])
    _write_audit(out, decisions)
    _write_manifest(out, manifest, decisions)
    summary.seconds = time.perf_counter() - start
    return summary


def config_text(cfg: DenoiseConfig) -> str:
    return "\n".join(f"  {k}: {v}" for k, v in asdict(cfg).items())
