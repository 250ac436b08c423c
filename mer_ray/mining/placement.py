"""Which Ray Train worker trains which learner: balanced by estimated cost, the same on every rank.

The mining loop's round lasts as long as its slowest worker, so the learners are spread so
that every worker gets about the same work. `learners[rank::world]` ignored cost: with the
benchmark's four learners rank 0 got the attention and the bilinear (FBP) learner, 2.0 CPU-s
per fit against 1.6 for rank 1 (measured, benchmarks/training_overhead.py's learners).

The cost of a learner is estimated, not timed: every worker must compute the same placement
without a message (they run the vote in lockstep), and a timing differs from worker to worker.
The estimate is the FLOPs of one forward + backward pass per row (counted by torch's
`FlopCounterMode` on the real model), times the passes over the rows it may make (Adam: its
epochs; L-BFGS: its iterations at every C of its grid) and its folds; the training
rows are the same for every learner (mined clips are split evenly), so they cancel out.
Placement is greedy longest-first (LPT): within 4/3 of the best possible makespan.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mer_ray.config import LearnerSpec
from mer_ray.features.table import FeatureTable

__all__ = ["estimate_cost", "learners_of_worker", "place"]

PROBE_ROWS = 4   # rows of the FLOP probe; FLOPs are linear in the rows, any small number will do


def estimate_cost(spec: LearnerSpec, table: FeatureTable, *, folds: int = 1) -> float:
    """Relative cost of fitting `spec`: FLOPs per row (forward + backward) x epochs x folds."""
    from mer_ray.train import LBFGS_MAX_ITER, build_model   # train imports the learners; keep this module light

    with torch.random.fork_rng(devices=[]):   # building the probe model must not move the caller's RNG
        torch.manual_seed(0)
        model = build_model(spec, table)
        rows = {s: torch.zeros(PROBE_ROWS, table.dims[s]) for s in spec.streams}
        with FlopCounterMode(display=False) as counter:
            model(rows).logits.sum().backward()
    per_row = counter.get_total_flops() / PROBE_ROWS
    # an Adam epoch is one pass over the rows; an L-BFGS iteration is one full-batch pass too, and
    # a convex learner runs up to LBFGS_MAX_ITER of them for every C of its grid
    passes = spec.max_epochs if spec.solver == "adam" else LBFGS_MAX_ITER * max(len(spec.cs), 1)
    return float(max(per_row, 1.0) * passes * max(folds, 1))


def place(costs: Sequence[float], workers: int) -> list[list[int]]:
    """Greedy LPT: learner indices per worker, costliest first onto the least-loaded worker.

    Deterministic (ties go to the lower learner index and the lower worker), each worker's list
    sorted; with at least as many learners as workers every worker gets one."""
    if workers < 1:
        raise ValueError(f"placement needs at least one worker, got {workers}")
    load = np.zeros(workers)
    owned: list[list[int]] = [[] for _ in range(workers)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        # an idle worker first (no learner yet), then the least loaded one
        w = min(range(workers), key=lambda w: (len(owned[w]) > 0, load[w], w))
        owned[w].append(i)
        load[w] += costs[i]
    return [sorted(o) for o in owned]


def learners_of_worker(learners: Sequence[LearnerSpec], table: FeatureTable, rank: int, world: int, *,
                    folds: int = 1) -> list[int]:
    """The learner indices worker `rank` of `world` trains, balanced by `estimate_cost`."""
    costs = [estimate_cost(spec, table, folds=folds) for spec in learners]
    return place(costs, world)[rank]
