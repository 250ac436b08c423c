"""What every Ray Data stage of mer-ray (extraction, denoise, the MAE frame cache) does the same
way: the blocks a manifest is cut into, the size of a GPU-aware actor pool, what decode tasks and
actors ask for, and the decode-and-quarantine map every stage starts with (`decode_map`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import ray


def dataset_of(rows: pd.DataFrame, *, rows_per_block: int = 8, max_blocks: int = 256) -> "ray.data.Dataset":
    """A dataset of `rows` in blocks of ~`rows_per_block`, so the first stage runs in parallel.

    A small manifest would arrive as one block. The blocks are cut here rather than by
    `repartition`, whose tasks need a CPU of their own and wait forever once an actor pool holds
    every CPU. `from_blocks` reads their metadata in this process: `from_pandas` sends a Ray task
    per block for it, and on a cold worker that cost ~5 s of every extraction's start-up."""
    size = max(rows_per_block, -(-len(rows) // max_blocks))
    return ray.data.from_blocks([rows.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(rows), size)])


def gpus_per_actor(requested: float | None) -> float:
    """`None`: one GPU per actor when the cluster has GPUs, none otherwise."""
    if requested is not None:
        return requested
    return 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0


def actor_pool_size(requested: int, clips: int, batch_size: int, gpus: float) -> int:
    """At most `requested` actors, no more than there are batches, and never more GPU actors than
    the cluster has now (an autoscaling cluster with no GPU node yet keeps the requested number
    and scales up for it)."""
    actors = max(1, min(requested, -(-clips // batch_size)))
    have = ray.cluster_resources().get("GPU", 0)
    if gpus and have >= gpus:
        actors = min(actors, int(have // gpus))
    return actors


def decode_and_encode_resources(gpus: float) -> tuple[dict, dict]:
    """What a decode task and an encoder actor ask Ray for (the one place these requests live;
    tests/test_cluster.py checks cluster.yaml's node types against them).

    GPU actors: PyAV decodes in 1-CPU tasks so that a GPU never waits for a decoder. CPU only:
    both stages ask for the same resources, so Ray Data fuses them and each actor decodes its own
    batch. A separate decode stage only adds work there: every decoded clip (~0.3 MB) would cross
    the object store, and decode tasks and actors would share the same cores with idle gaps
    between them (measured in benchmarks/extraction.py)."""
    if gpus:
        return dict(num_cpus=1), dict(num_cpus=1, num_gpus=gpus)
    return dict(num_cpus=1), dict(num_cpus=1)


@dataclass(frozen=True)
class DecodeSettings:
    """What a stage decodes of each clip (`mer_ray.corpus.media.decode_clip`'s options)."""
    want: tuple[str, ...] = ("video", "audio")   # () decodes nothing (a text-only extraction)
    num_frames: int = 16
    frame_size: int | None = None
    crop: str = "center"            # "center" | "none" | "face" (detected while decoding)
    faces: Any = None               # crop: face: a mer_ray.faces.FaceSettings
    sample_rate: int = 16000


def decode_one(rec, box_cell, settings: DecodeSettings):
    """One clip → (DecodedClip, its face track or None). A stored face box (`box_cell`, from the
    `face_boxes` option) crops to it; `crop="face"` without one detects the face here. Raises
    `MediaError` for a clip that cannot be decoded."""
    from mer_ray.corpus.media import decode_clip
    from mer_ray.faces import decode_face_clip
    from mer_ray.faces.boxes import parse_box_cell

    video, audio = rec.video, getattr(rec, "audio", None)
    stored = parse_box_cell(box_cell)
    if settings.crop == "face" and stored is None and "video" in settings.want:
        return decode_face_clip(video, audio, num_frames=settings.num_frames, frame_size=settings.frame_size,
                                settings=settings.faces, want=settings.want, sample_rate=settings.sample_rate)
    clip = decode_clip(video, audio, num_frames=settings.num_frames, frame_size=settings.frame_size,
                       sample_rate=settings.sample_rate, crop="none" if settings.crop == "face" else settings.crop,
                       face_box=stored[0] if stored else None, margin=stored[1] if stored else 0.0,
                       want=settings.want)
    return clip, None


def decode_map(batch: pd.DataFrame, *, settings: DecodeSettings, cells: Callable[..., dict],
               corruption=None) -> pd.DataFrame:
    """The CPU map every stage starts with: one decode per clip; a bad clip becomes an `error`
    cell naming it, never an exception, and the rest of the batch goes on.

    `cells(rec, clip, track)` turns a decoded clip (None when it failed) into the stage's own
    columns (an `error` among them: the stage's own reason to skip a decoded clip); `corruption` (a `mer_ray.corpus.noise.Corruption`) corrupts each decoded clip,
    seeded by its name (seed 003's MER-NOISE noisy view). A `face_box` column is consumed."""
    from mer_ray.corpus.media import DecodedClip, MediaError

    out: dict[str, list] = {}
    boxes = batch["face_box"] if "face_box" in batch else [None] * len(batch)
    errors = []
    for rec, box in zip(batch.itertuples(index=False), boxes):
        clip = track = None
        error = ""
        if settings.want:
            try:
                clip, track = decode_one(rec, box, settings)
                if corruption is not None:
                    clip = DecodedClip(*corruption.apply(rec.name, clip.frames, clip.audio), indices=clip.indices)
            except MediaError as exc:
                clip, track, error = None, None, str(exc)
            except Exception as exc:  # a decoder crash on one clip must not end the job
                clip, track = None, None
                error = f"{rec.name}: unexpected decode failure: {type(exc).__name__}: {exc}"
        values = cells(rec, clip, track)
        error = error or values.pop("error", "")
        for key, value in values.items():
            out.setdefault(key, []).append(value)
        errors.append(error)
    return batch.drop(columns=["face_box"], errors="ignore").assign(**out, error=errors)


def decode_then_actors(rows: pd.DataFrame, *, decode: Callable, decode_kwargs: dict | None = None, actor: type,
                       actor_kwargs: dict, batch_size: int, actors: int, gpus: float | None,
                       progress: bool = True) -> "ray.data.Dataset":
    """The pipeline every stage runs: `rows` in blocks → `decode` (a `decode_map` per batch, CPU
    tasks) → a pool of at most `actors` `actor`s (a GPU each when `gpus` says so, see
    `gpus_per_actor`). Each actor gets `torch_threads` (1 on CPU: one actor per core, no
    oversubscription) and the driver's `plugins` besides `actor_kwargs`."""
    from mer_ray.plugins import loaded

    gpus = gpus_per_actor(gpus)
    pool = actor_pool_size(actors, len(rows), batch_size, gpus)
    # GPU actors: separate decode tasks; CPU only: one fused stage (see the function)
    decode_resources, actor_resources = decode_and_encode_resources(gpus)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress and ctx.enable_progress_bars
    return (
        # blocks and decode batches of the encoder's batch size: each fused call decodes and encodes
        # one whole batch, where 8-row blocks cost Ray Data a re-batching and 4x the calls
        # (benchmarks/extraction.py, 2,100 clips: steady state 22 -> 28.5 clips/s on 2 cores)
        dataset_of(rows, rows_per_block=batch_size)
        .map_batches(decode, fn_kwargs=decode_kwargs or {}, batch_format="pandas", batch_size=batch_size,
                     **decode_resources)
        .map_batches(
            actor,
            fn_constructor_kwargs=dict(actor_kwargs, torch_threads=None if gpus else 1, plugins=loaded()),
            batch_format="pandas", batch_size=batch_size,
            # start the whole pool at once: an actor's start (imports, weights) takes
            # seconds and overlaps the first decodes only if it begins right away
            compute=ray.data.ActorPoolStrategy(min_size=pool, max_size=pool),
            **actor_resources,
        )
    )
