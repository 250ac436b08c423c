"""What every Ray Data stage of mer-ray (extraction, denoise, the MAE frame cache) plans the same
way: the blocks a manifest is cut into, and the size of a GPU-aware actor pool."""
from __future__ import annotations

import pandas as pd
import ray


def dataset_of(rows: pd.DataFrame, *, rows_per_block: int = 8, max_blocks: int = 256) -> "ray.data.Dataset":
    """A dataset of `rows` in blocks of ~`rows_per_block`, so the first stage runs in parallel.

    A small manifest would arrive as one block. The blocks are cut here rather than by
    `repartition`, whose tasks need a CPU of their own and wait forever once an actor pool holds
    every CPU."""
    size = max(rows_per_block, -(-len(rows) // max_blocks))
    return ray.data.from_pandas([rows.iloc[i : i + size] for i in range(0, len(rows), size)])


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
