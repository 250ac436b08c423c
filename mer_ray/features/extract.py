"""Ray Data extraction: manifest → CPU decode tasks → encoder actors → Parquet feature store.

The decode stage (PyAV, CPU tasks) and the encoder stage (actors, a GPU each when the cluster has
them) get different resources so Ray Data streams between them instead of fusing them. Decoding
is the expensive part for every clip, so each clip is decoded once and fed to every encoder that
still needs it. The encoder actors write their own part files (atomically) after every batch, so
a killed run keeps every finished batch and a rerun only does the clips not stored yet.

What happens to a clip, per stream (recorded in `<store>/<stream>/errors.parquet` unless stored):
- features stored: the normal case;
- stage "missing": the clip has no such modality (no audio / no video stream, as the real MER 2024
  `samplenew3_*` files, or an empty transcript). Nothing is stored for that stream and nothing is
  wrong with the clip: `load_feature_table` fills the stream with zeros (its mean after z-scoring)
  and marks it absent, so every clip still gets a prediction from the modalities it has. Zeros are
  not written to the store because they would skew the stream's normalisation statistics and be
  indistinguishable from real features. A rerun does not retry these (the file has not changed;
  delete errors.parquet to force it);
- stage "decode" / "encode": the clip is broken for this stream (corrupt, truncated, not a video,
  the encoder failed or gave NaN). It is quarantined with the reason, the rest of the job goes
  on, and a rerun retries it. At training time it is treated like a missing stream, so a corrupt
  video with a good transcript still gets a prediction.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mer_ray.config import ExtractConfig
from mer_ray.corpus.media import CROPS
from mer_ray.encoders import INPUT_MODALITY, create_encoder, encoder_inputs
from mer_ray.faces import FaceSettings, create_detector
from mer_ray.faces.boxes import box_cells, records_json, records_table, summarise, track_records, write_box_table
from mer_ray.features.store import FeatureStore
from mer_ray.plugins import load_plugins
from mer_ray.raydata import DecodeSettings, decode_map, decode_then_actors

MISSING = "missing"
INFO_FILE = ".encoder-info.json"   # written by an encoder actor, read back for meta.json
FACE_BOXES = "face_boxes.parquet"  # <store>/face_boxes.parquet: the boxes `crop: face` used, per frame


@dataclass
class ExtractSummary:
    clips: int = 0                 # clips that needed work in this run
    stored: Counter = field(default_factory=Counter)       # stream → features written
    missing: Counter = field(default_factory=Counter)      # "stream: reason" → clips without it
    quarantined: Counter = field(default_factory=Counter)  # reason → clips
    faces: Counter = field(default_factory=Counter)        # crop: face: what was found, fallbacks
    seconds: float = 0.0
    stats: str = ""                # Ray Data's per-operator timing of the run (where time went)

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        bad = ", ".join(f"{n} {reason}" for reason, n in self.quarantined.most_common()) or "none"
        done = ", ".join(f"{s} {n}" for s, n in sorted(self.stored.items())) or "nothing new"
        absent = ", ".join(f"{n} {what}" for what, n in sorted(self.missing.items())) or "none"
        faces = ", ".join(f"{n} {what}" for what, n in self.faces.items())
        return (f"extraction: {self.clips} clips in {self.seconds:.1f} s ({self.clips_per_s:.1f} clips/s); "
                f"stored: {done}; missing modality: {absent}; quarantined: {bad}"
                + (f"; faces: {faces}" if faces else ""))


def _pack(array: np.ndarray | None) -> tuple[bytes, list[int]]:
    """Arrays travel between stages as raw bytes + shape: decoded clips differ in length, and
    plain binary columns avoid Arrow's variable-shape tensor corner cases (a None among arrays)."""
    if array is None:
        return b"", []
    return np.ascontiguousarray(array).tobytes(), list(array.shape)


def _unpack(data: bytes, shape, dtype) -> np.ndarray | None:
    return np.frombuffer(data, dtype=dtype).reshape(shape) if len(data) else None


def _extract_cells(rec, clip, track) -> dict:
    """A decoded clip's cells for the encoder stage: frames and audio packed, its face boxes."""
    out = {}
    for key in ("frames", "audio"):
        out[key], out[f"{key}_shape"] = _pack(getattr(clip, key) if clip is not None else None)
    out["faces"] = records_json(track_records(rec.name, track)) if track is not None else ""
    return out


def decode_batch(batch: pd.DataFrame, *, num_frames: int, frame_size: int | None, crop: str = "center",
                 need_frames: bool = True, need_audio: bool = True, corruption=None,
                 faces: FaceSettings | None = None) -> pd.DataFrame:
    """CPU stage: one PyAV decode per clip (`mer_ray.raydata.decode_map`); a bad clip becomes an
    error row, never an exception.

    `crop="face"` finds the face here (`faces`: how), unless the clip has stored boxes (a
    `face_box` cell, from the `face_boxes` option); the clip's boxes come back in its `faces` cell
    (face_boxes.parquet rows as JSON). `corruption` (a `mer_ray.corpus.noise.Corruption`)
    corrupts each decoded clip, seeded by its name: the "noisy view" of the labeled clips (seed
    003's MER-NOISE augmentation)."""
    settings = DecodeSettings(want=("video",) * need_frames + ("audio",) * need_audio, num_frames=num_frames,
                              frame_size=frame_size, crop=crop, faces=faces)
    return decode_map(batch, settings=settings, cells=_extract_cells, corruption=corruption)


def _missing_message(name: str, modality: str, video, stream_modality: str | None = None) -> str:
    """Why a clip has no input for a stream; `modality` is the absent part of a fused stream."""
    needs = (f" (the {stream_modality} encoder needs both)"
             if stream_modality and stream_modality != modality else "")
    if modality == "text":
        return f"{name}: no transcript (empty or missing){needs}; this stream is zeros at training time"
    return (f"{name}: no {modality} stream in {video}{needs}; this stream is zeros at training time "
            f"(normal for MER clips, e.g. samplenew3_* have no video)")


class EncodeAndStore:
    """Encoder stage: runs every stream's encoder on a batch and writes one part per stream."""

    def __init__(self, store_root: str, streams: dict[str, str], todo: dict[str, list[str]],
                 torch_threads: int | None = 1, store_cache: str | None = None, plugins: tuple[str, ...] = ()):
        load_plugins(plugins)   # the driver's --plugin modules: their encoders are built here
        self.store = FeatureStore(store_root, cache=store_cache)
        self.encoders = {stream: create_encoder(spec) for stream, spec in streams.items()}
        # which decoded inputs each encoder takes (registered with its family); a fused encoder
        # gets one tuple of them per clip, and a clip lacking any part is missing for that stream
        self.inputs = {stream: encoder_inputs(spec) for stream, spec in streams.items()}
        if torch_threads and "torch" in sys.modules:   # light encoders never import torch (seconds)
            sys.modules["torch"].set_num_threads(torch_threads)  # one actor per core: no oversubscription
        self.todo = {stream: set(names) for stream, names in todo.items()}
        for stream, encoder in self.encoders.items():
            folder = self.store.folder(stream)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{INFO_FILE}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(encoder.info()))
            os.replace(tmp, folder / INFO_FILE)
            self.store.publish(folder / INFO_FILE)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        inputs = {
            "frames": [_unpack(d, s, np.uint8) for d, s in zip(batch["frames"], batch["frames_shape"])],
            "audio": [_unpack(d, s, np.float32) for d, s in zip(batch["audio"], batch["audio_shape"])],
            "transcript": [t.strip() if isinstance(t, str) else "" for t in batch["transcript"]],
        }
        names = list(batch["name"])
        decode_errors = list(batch["error"])
        face_cells = dict(zip(names, batch["faces"])) if "faces" in batch else {}
        rows = []
        for stream, encoder in self.encoders.items():
            parts = self.inputs[stream]
            keep = []
            for i, name in enumerate(names):
                if name not in self.todo[stream]:
                    continue
                absent = [p for p in parts if inputs[p][i] is None or len(inputs[p][i]) == 0]
                if parts != ("transcript",) and decode_errors[i]:
                    rows.append((name, stream, "decode", decode_errors[i]))
                elif absent:
                    rows.append((name, stream, MISSING, _missing_message(
                        name, INPUT_MODALITY[absent[0]], batch["video"].iloc[i], encoder.modality)))
                else:
                    keep.append(i)
            if not keep:
                continue
            try:
                if len(parts) == 1:
                    clip_inputs = [inputs[parts[0]][i] for i in keep]
                else:
                    clip_inputs = [tuple(inputs[p][i] for p in parts) for i in keep]
                features = encoder.encode(clip_inputs)
            except Exception as exc:
                rows += [(names[i], stream, "encode", f"{names[i]}: {type(exc).__name__}: {exc}")
                         for i in keep]
                continue
            finite = np.isfinite(features).all(axis=1)
            for i in np.flatnonzero(~finite):
                rows.append((names[keep[i]], stream, "encode", f"{names[keep[i]]}: encoder gave NaN/inf"))
            good = [keep[i] for i in np.flatnonzero(finite)]
            self.store.write_part(stream, [names[i] for i in good], features[finite])
            rows += [(names[i], stream, "ok", "") for i in good]
        table = pd.DataFrame(rows, columns=["name", "stream", "stage", "message"])
        # the clip's face boxes ride back to the driver with its rows (face_boxes.parquet there)
        return table.assign(faces=[face_cells.get(n, "") for n in table["name"]])


def plan(manifest: pd.DataFrame, store: FeatureStore, streams: dict[str, str]) -> dict[str, list[str]]:
    """stream → clip names still to do: not stored and not known to lack the modality."""
    for stream, spec in streams.items():
        folder = store.folder(stream)
        if (folder / "meta.json").exists() and store.meta(stream).get("spec") != spec:
            raise ValueError(
                f"stream {stream!r} in {store.root} holds features of {store.meta(stream).get('spec')!r}, "
                f"not {spec!r}; give this encoder another stream name or use a new store")
    names = set(manifest["name"])
    todo = {}
    for stream in streams:
        absent = {e["name"] for e in store.errors(stream) if e["stage"] == MISSING}
        todo[stream] = sorted(names - store.stored_names(stream) - absent)
    return todo


def extract_features(manifest: pd.DataFrame, store: FeatureStore, cfg: ExtractConfig, *,
                     progress: bool = True, corruption=None) -> ExtractSummary:
    """Extract every stream in `cfg.streams` for every clip of `manifest` not stored yet
    (corrupted by `corruption` right after decoding when given, see `decode_batch`)."""
    start = time.perf_counter()
    summary = ExtractSummary()
    if cfg.crop not in (*CROPS, "face"):
        raise ValueError(f"extract.crop must be one of {(*CROPS, 'face')}, got {cfg.crop!r}")
    faces = None
    if cfg.crop == "face":
        faces = FaceSettings(detector=cfg.face_detector, margin=cfg.face_margin)
        create_detector(faces.detector)   # unknown detector or missing weights: fail before any work
    store.sync()   # a remote store: what earlier runs and other nodes uploaded counts as done
    todo = plan(manifest, store, dict(cfg.streams))
    pending = sorted(set().union(*todo.values())) if todo else []
    summary.clips = len(pending)
    # Only streams with work need a known encoder: features imported from MERTools (npy:) or
    # written by another tool are used as they are.
    inputs = {part for s, names in todo.items() if names for part in encoder_inputs(cfg.streams[s])}
    if pending:
        clips = manifest.drop_duplicates("name").set_index("name").loc[pending].reset_index()
        clips = clips[["name", "video", "audio", "transcript"]].astype(object)
        clips = clips.where(clips.notna(), None)
        if cfg.face_boxes:
            clips["face_box"] = box_cells(cfg.face_boxes, clips["name"], cfg.face_margin)
            summary.faces["clips cropped to stored boxes"] = int(clips["face_box"].notna().sum())
        ds = decode_then_actors(
            clips, decode=decode_batch,
            decode_kwargs=dict(num_frames=cfg.num_frames, frame_size=cfg.frame_size, crop=cfg.crop,
                               corruption=corruption, faces=faces, need_frames="frames" in inputs,
                               need_audio="audio" in inputs),
            actor=EncodeAndStore,
            actor_kwargs=dict(store_root=store.location, store_cache=str(store.root), streams=dict(cfg.streams),
                              todo=todo),
            batch_size=cfg.batch_size, actors=cfg.encoder_actors, gpus=cfg.gpus_per_actor, progress=progress)
        errors: dict[str, list[dict]] = {s: [] for s in cfg.streams}
        face_cells: dict[str, str] = {}
        for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
            face_cells.update((n, c) for n, c in zip(batch["name"], batch["faces"]) if c)
            for rec in batch.itertuples(index=False):
                if rec.stage == "ok":
                    summary.stored[rec.stream] += 1
                    continue
                errors[rec.stream].append(dict(name=rec.name, stage=rec.stage, message=rec.message))
                if rec.stage == MISSING:
                    summary.missing[f"{rec.stream} ({_reason(rec.message)})"] += 1
                else:
                    summary.quarantined[f"{rec.stream}: {_reason(rec.message)}"] += 1
        summary.stats = ds.stats()
        store.sync()   # parts written by actors on other nodes
        for stream, records in errors.items():
            store.write_errors(stream, records)
        if face_cells:
            face_records = records_table(face_cells.values())
            summary.faces.update(summarise(face_records))
            store.publish(write_box_table(store.root / FACE_BOXES, face_records))
    for stream, spec in cfg.streams.items():
        if todo.get(stream) or not (store.folder(stream) / "meta.json").exists():
            store.write_meta(stream, _encoder_info(store, stream, spec))
    summary.seconds = time.perf_counter() - start
    return summary


def _encoder_info(store: FeatureStore, stream: str, spec: str) -> dict:
    """The encoder's info for meta.json: from an actor of this run, an earlier meta.json, or (only
    when neither exists, e.g. an empty manifest) by building the encoder here."""
    for path in (store.folder(stream) / INFO_FILE, store.folder(stream) / "meta.json"):
        if path.exists():
            info = json.loads(path.read_text())
            if info.get("spec") == spec:
                return {k: v for k, v in info.items() if k not in ("count", "stream", "code_version")}
    return create_encoder(spec).info()


def _reason(message: str) -> str:
    """A short bucket for the summary line ("no audio stream", "unreadable", ...)."""
    text = message.lower()
    for reason in ("no audio stream", "no video stream", "no transcript", "not found", "empty",
                   "not a readable", "corrupt", "no decodable", "nan/inf"):
        if reason in text:
            return reason
    return "other"
