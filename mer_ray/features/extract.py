"""Ray Data extraction: manifest → CPU decode tasks → encoder actors → Parquet feature store.

The decode stage (PyAV, CPU tasks) and the encoder stage (actors, a GPU each when the cluster has
them) get different resources so Ray Data streams between them instead of fusing them. Decoding
is the expensive part for every clip, so each clip is decoded once and fed to every encoder that
still needs it. The encoder actors write their own part files (atomically) after every batch, so
a killed run keeps every finished batch and a rerun only does the clips not stored yet.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import ray

from mer_ray.config import ExtractConfig
from mer_ray.corpus.media import MediaError, decode_clip
from mer_ray.encoders import create_encoder
from mer_ray.features.store import FeatureStore

# Which decoded input each modality's encoders take.
MODALITY_INPUT = {"audio": "audio", "video": "frames", "text": "transcript"}


@dataclass
class ExtractSummary:
    clips: int = 0                 # clips that needed work in this run
    stored: Counter = field(default_factory=Counter)       # stream → features written
    quarantined: Counter = field(default_factory=Counter)  # reason → clips
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.clips / self.seconds if self.seconds else 0.0
        bad = ", ".join(f"{n} {reason}" for reason, n in self.quarantined.most_common()) or "none"
        done = ", ".join(f"{s} {n}" for s, n in sorted(self.stored.items())) or "nothing new"
        return (f"extraction: {self.clips} clips in {self.seconds:.1f} s ({rate:.1f} clips/s); "
                f"stored: {done}; quarantined: {bad}")


def _pack(array: np.ndarray | None) -> tuple[bytes, list[int]]:
    """Arrays travel between stages as raw bytes + shape: decoded clips differ in length, and
    plain binary columns avoid Arrow's variable-shape tensor corner cases (a None among arrays)."""
    if array is None:
        return b"", []
    return np.ascontiguousarray(array).tobytes(), list(array.shape)


def _unpack(data: bytes, shape, dtype) -> np.ndarray | None:
    return np.frombuffer(data, dtype=dtype).reshape(shape) if len(data) else None


def decode_batch(batch: pd.DataFrame, *, num_frames: int, frame_size: int | None,
                 need_media: bool) -> pd.DataFrame:
    """CPU stage: one PyAV decode per clip; a bad clip becomes an error row, never an exception."""
    out = {k: [] for k in ("frames", "frames_shape", "audio", "audio_shape", "error")}
    for rec in batch.itertuples(index=False):
        frames = audio = None
        error = ""
        if need_media:
            try:
                clip = decode_clip(rec.video, rec.audio, num_frames=num_frames, frame_size=frame_size)
                frames, audio = clip.frames, clip.audio
            except MediaError as exc:
                error = str(exc)
            except Exception as exc:  # a decoder crash on one clip must not end the job
                error = f"{rec.name}: unexpected decode failure: {type(exc).__name__}: {exc}"
        for key, array in (("frames", frames), ("audio", audio)):
            data, shape = _pack(array)
            out[key].append(data)
            out[f"{key}_shape"].append(shape)
        out["error"].append(error)
    return batch.assign(**out)


class EncodeAndStore:
    """Encoder stage: runs every stream's encoder on a batch and writes one part per stream."""

    def __init__(self, store_root: str, streams: dict[str, str], todo: dict[str, list[str]]):
        import torch

        torch.set_num_threads(1)  # one actor per core: intra-op threads would oversubscribe
        self.store = FeatureStore(store_root)
        self.encoders = {stream: create_encoder(spec) for stream, spec in streams.items()}
        self.todo = {stream: set(names) for stream, names in todo.items()}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        inputs = {
            "frames": [_unpack(d, s, np.uint8) for d, s in zip(batch["frames"], batch["frames_shape"])],
            "audio": [_unpack(d, s, np.float32) for d, s in zip(batch["audio"], batch["audio_shape"])],
            "transcript": [t if isinstance(t, str) else "" for t in batch["transcript"]],
        }
        names = list(batch["name"])
        decode_errors = list(batch["error"])
        rows = []
        for stream, encoder in self.encoders.items():
            key = MODALITY_INPUT[encoder.modality]
            keep, reasons = [], []
            for i, name in enumerate(names):
                if name not in self.todo[stream]:
                    continue
                if key != "transcript" and decode_errors[i]:
                    rows.append((name, stream, "decode", decode_errors[i]))
                elif key != "transcript" and inputs[key][i] is None:
                    rows.append((name, stream, "decode", f"{name}: no {encoder.modality} stream in "
                                 f"{batch['video'].iloc[i]}; give an audio path or drop the stream"))
                else:
                    keep.append(i)
            if not keep:
                continue
            try:
                features = encoder.encode([inputs[key][i] for i in keep])
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
        return pd.DataFrame(rows, columns=["name", "stream", "stage", "message"])


def extract_features(manifest: pd.DataFrame, store: FeatureStore, cfg: ExtractConfig) -> ExtractSummary:
    """Extract every stream in `cfg.streams` for every clip of `manifest` not stored yet."""
    start = time.perf_counter()
    summary = ExtractSummary()
    todo = {s: sorted(set(manifest["name"]) - store.stored_names(s)) for s in cfg.streams}
    pending = sorted(set().union(*todo.values()))
    summary.clips = len(pending)
    modalities = {create_encoder(spec).modality for spec in cfg.streams.values()}
    if pending:
        clips = manifest.set_index("name").loc[pending].reset_index()
        clips = clips[["name", "video", "audio", "transcript"]].astype(object)
        clips = clips.where(clips.notna(), None)
        gpus = cfg.gpus_per_actor
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        n_blocks = max(1, min(len(clips) // cfg.batch_size + 1, 64))
        ds = (
            ray.data.from_pandas(clips)
            # a small manifest arrives as one block: split it so decode runs in parallel
            .repartition(n_blocks)
            .map_batches(
                decode_batch,
                fn_kwargs=dict(num_frames=cfg.num_frames, frame_size=cfg.frame_size,
                               need_media=bool(modalities & {"audio", "video"})),
                batch_format="pandas", batch_size=8, num_cpus=1,
            )
            .map_batches(
                EncodeAndStore,
                fn_constructor_kwargs=dict(store_root=str(store.root), streams=dict(cfg.streams), todo=todo),
                batch_format="pandas", batch_size=cfg.batch_size,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.encoder_actors),
                num_gpus=gpus, num_cpus=0.5 if not gpus else 1,
            )
        )
        errors: dict[str, list[dict]] = {s: [] for s in cfg.streams}
        for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
            for rec in batch.itertuples(index=False):
                if rec.stage == "ok":
                    summary.stored[rec.stream] += 1
                else:
                    errors[rec.stream].append(dict(name=rec.name, stage=rec.stage, message=rec.message))
                    summary.quarantined[_reason(rec.message)] += 1
        for stream, records in errors.items():
            store.write_errors(stream, records)
    for stream, spec in cfg.streams.items():
        store.write_meta(stream, create_encoder(spec).info())
    summary.seconds = time.perf_counter() - start
    return summary


def _reason(message: str) -> str:
    """A short bucket for the summary line ("no audio stream", "unreadable", ...)."""
    text = message.lower()
    for reason in ("no audio", "no video", "empty", "unreadable", "zero", "nan"):
        if reason in text:
            return reason
    return "other"
