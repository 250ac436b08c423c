"""Decoded-frame cache: clips → Ray Data decode tasks → Parquet parts of uint8 frames.

Pre-training reads every clip once per epoch; decoding an .mp4 costs far more than reading its
frames back from Parquet (benchmarks/mae_adaptation.py measures both), so the clips are decoded
once, centre- or face-cropped and resized to the model's input size, and the epochs stream the
cache. Like the feature store, each decode task writes its own part file under a temporary name
and renames it when complete: a killed run keeps what it finished and a rerun decodes only the
clips not cached yet. A clip that cannot be decoded (or has no video stream) is skipped with its
reason in the cache's `errors.parquet` (`mer_ray.errorlog`, like the feature store's); the rest go on.

Layout: `<cache>/cache.json` (the decoding settings; a cache made with others is refused),
`<cache>/part-*.parquet` (`name` string, `frames` binary = uint8 [num_frames, side, side, 3]),
`<cache>/errors.parquet` (name, stage, message).
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from mer_ray.errorlog import ErrorLog
from mer_ray.faces import FaceSettings, create_detector
from mer_ray.faces.boxes import box_cells
from mer_ray.raydata import DecodeSettings, dataset_of, decode_map

__all__ = ["FrameCache", "FrameSettings", "build_frame_cache", "frames_dataset"]


@dataclass(frozen=True)
class FrameSettings:
    num_frames: int
    side: int
    crop: str = "center"           # "center" | "none" | "face" (mer_ray.faces: detected while decoding)
    face_boxes: str | None = None
    face_detector: str = "haar"    # crop: face
    face_margin: float = 0.2       # crop: face, and boxes from face_boxes.parquet

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.side, self.side, 3)


class FrameCache:
    def __init__(self, root: str | Path, settings: FrameSettings):
        self.root = Path(root)
        self.settings = settings
        meta = self.root / "cache.json"
        if meta.exists():
            # a cache made before a setting existed was made with that setting's default
            saved = {**asdict(FrameSettings(1, 1)), **json.loads(meta.read_text())}
            if saved != asdict(settings):
                raise ValueError(f"frame cache {self.root} holds frames decoded with {saved}, not "
                                 f"{asdict(settings)}; give another --frame-cache folder or delete this one")
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps(asdict(settings)))

    def parts(self) -> list[str]:
        return sorted(str(p) for p in self.root.glob("part-*.parquet"))

    def cached_names(self) -> set[str]:
        return {n for part in self.parts() for n in pq.read_table(part, columns=["name"])["name"].to_pylist()}

    def nbytes(self) -> int:
        return sum(Path(p).stat().st_size for p in self.parts())

    @property
    def errors(self) -> ErrorLog:
        return ErrorLog(self.root / "errors.parquet")

    def skipped(self) -> dict[str, str]:
        """The clips not cached, name → why."""
        return {r["name"]: r["message"] for r in self.errors.read()}

    def write_part(self, names: list[str], frames: list[bytes]) -> None:
        """One part of clips' frames, each uint8 [num_frames, side, side, 3] as raw bytes."""
        table = pa.table({"name": pa.array(names, pa.string()), "frames": pa.array(frames, pa.binary())})
        final = self.root / f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.root / f".{final.name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, final)



def _frames_cell(rec, clip, track) -> dict:
    # raw bytes (b"": no frames): a column of equal-shaped arrays would not stay one cell per clip
    return {"frames": b"" if clip is None or clip.frames is None
            else np.ascontiguousarray(clip.frames, dtype=np.uint8).tobytes()}


def _decode_to_cache(batch: pd.DataFrame, *, cache_root: str, settings: dict) -> pd.DataFrame:
    """CPU task: decode a batch of clips (`mer_ray.raydata.decode_map`), write the good ones as
    one part; returns name, error."""
    cfg = FrameSettings(**settings)
    cache = FrameCache(cache_root, cfg)
    decode = DecodeSettings(want=("video",), num_frames=cfg.num_frames, frame_size=cfg.side, crop=cfg.crop,
                            faces=FaceSettings(cfg.face_detector, cfg.face_margin))
    decoded = decode_map(batch, settings=decode, cells=_frames_cell)
    errors = [error or (f"{rec.name}: no video stream in {rec.video}; nothing to pre-train on" if not frames else "")
              for rec, frames, error in zip(decoded.itertuples(index=False), decoded["frames"], decoded["error"])]
    good = [i for i, e in enumerate(errors) if not e]
    if good:
        cache.write_part([decoded["name"].iloc[i] for i in good], [decoded["frames"].iloc[i] for i in good])
    return pd.DataFrame({"name": list(batch["name"]), "error": errors})


def build_frame_cache(clips: pd.DataFrame, cache: FrameCache, *, batch_size: int = 16) -> dict[str, int]:
    """Decode every clip of `clips` (manifest rows: name, video) not cached yet; returns counts."""
    todo = clips[~clips["name"].isin(cache.cached_names())]
    todo = todo[["name", "video"]].astype(object).reset_index(drop=True)
    without_video = todo["video"].isna()
    skipped = {n: f"{n}: the manifest gives no video file" for n in todo.loc[without_video, "name"]}
    todo = todo[~without_video]
    if len(todo):
        if cache.settings.crop == "face":
            create_detector(cache.settings.face_detector)   # missing weights: fail before any work
        if cache.settings.face_boxes:
            todo["face_box"] = box_cells(cache.settings.face_boxes, todo["name"], cache.settings.face_margin)
        ds = (dataset_of(todo, rows_per_block=batch_size, max_blocks=512)
              .map_batches(_decode_to_cache, fn_kwargs=dict(cache_root=str(cache.root),
                                                            settings=asdict(cache.settings)),
                           batch_format="pandas", batch_size=batch_size, num_cpus=1))
        for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
            skipped.update({n: e for n, e in zip(batch["name"], batch["error"]) if e})
    # a clip decoded now leaves the log; one that failed again gets its new reason
    cache.errors.merge([dict(name=n, stage="decode", message=e) for n, e in skipped.items()],
                       done=set(todo["name"]) - set(skipped))
    return {"decoded": int((~todo["name"].isin(skipped)).sum()), "skipped": len(skipped),
            "cached": len(cache.cached_names())}


def _to_array(batch: dict, *, shape: tuple[int, ...], names: frozenset[str] | None) -> dict:
    """Parquet bytes → one uint8 tensor column [B, T, S, S, 3] that iter_torch_batches can stack."""
    keep = [i for i, n in enumerate(batch["name"]) if names is None or n in names]
    frames = [np.frombuffer(batch["frames"][i], np.uint8).reshape(shape) for i in keep]
    return {"frames": np.stack(frames) if frames else np.zeros((0, *shape), np.uint8)}


def frames_dataset(cache: FrameCache, names: list[str] | None = None, *,
                   in_memory: bool | None = None) -> ray.data.Dataset:
    """The cache as a Ray Dataset of {"frames": uint8 [T, S, S, 3]} rows, one per clip; only the
    clips in `names` when given (a cache shared by runs over different splits holds more).

    `in_memory` materialises it in the object store once, so that the epochs iterate blocks
    already in memory: re-reading and unpacking the Parquet parts every epoch cost the demo's
    tiny MAE 3x its compute (benchmarks/mae_adaptation.py). None: when the frames fill at most a
    third of the object store (MER-scale caches stream from Parquet instead).
    """
    parts = cache.parts()
    if not parts:
        raise ValueError(f"frame cache {cache.root} is empty: no clip could be decoded "
                         f"(see {cache.errors.path})")
    wanted = None if names is None or set(names) >= cache.cached_names() else frozenset(names)
    unpack = dict(shape=cache.settings.shape, names=wanted)
    if in_memory is None:
        in_memory = cache.nbytes() <= ray.cluster_resources().get("object_store_memory", 0) / 3
    if in_memory:
        # a cache that fits is read here, a block per part: `read_parquet` + `materialize` would
        # start a file-listing task, footer-reader actors and map tasks (cold workers, seconds)
        from ray.data.block import BlockAccessor

        batches = (_to_array(pq.read_table(part, columns=["name", "frames"]).to_pydict(), **unpack) for part in parts)
        return ray.data.from_blocks([BlockAccessor.batch_to_block(b) for b in batches if len(b["frames"])])
    return ray.data.read_parquet(parts, columns=["name", "frames"]).map_batches(_to_array, fn_kwargs=unpack,
                                                                                batch_format="numpy")
