"""Does Ray pay for itself in training? The real mining loop against the best plain alternative.

Same synthetic feature rows, same four learners, same rounds of train + predict + vote, same
epochs and seeds, on three sides, each in a fresh process of its own started one after the
other in one run (`--repeats 2` runs them again in the reverse order, A B C C B A, and keeps
each side's mean, so a load change on the shared machine hits every side alike):
  ray:        `mer_ray.mining.cycle.mining_loop` in one Ray Train run with 2 workers, started
              by `mer_ray.mining.trainer.run_mining` as `run_cyclic_mining` starts it; the time includes
              `ray.init`, `ray.put` of the features and the trainer's start-up and teardown;
  parallel:   plain PyTorch, the fair alternative: the mining loop's own rounds
              (`mer_ray.mining.cycle.run_rounds`, no Ray in it) in 2 forked processes (the
              features inherited, no copy) that swap each round's predictions with one
              `torch.distributed` all-gather over gloo, the same vote in each; the time
              includes the fork and the process group;
  sequential: the same `run_rounds` in one process (one core of the two).
Both 2-process sides place the learners alike (`mer_ray.mining.placement`, by estimated cost).
Every side starts its clock after the rows are generated (the same on every side) and trains
with one torch thread per learner and the mining loop's per-(round, learner) seeds, so all
three give bit-identical predictions: the script checks that. Memory: the peak PSS of the
side's process tree (Ray's raylet, GCS and workers included; PSS counts shared pages once).

Where Ray's time goes: `ray_startup_s` (everything outside the rounds, `ray_init_s` of it) against
the plain side's, and the rounds against `ideal_round_s`: the learners' fit times measured on
the sequential side, placed on 2 workers (by estimated cost, and `rank::world` as before) —
what any 2-worker loop must wait.

    python benchmarks/training_overhead.py                     # 800 labeled + 3,200 pool rows, 4 epochs
    python benchmarks/training_overhead.py --scale 5 --epochs 15 --folds 0   # the old size: 5,000 + 20,000

Prints a table and writes benchmarks/results/training_overhead.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import PeakMemory  # noqa: E402
from record import RESULTS, load_average, write_record  # noqa: E402

# Four streams of 256-1024 dims, like audio / text / visual / face encoders of MER.
DIMS = {"audio": 1024, "text": 768, "video": 512, "face": 256}
SIDES = ("ray", "parallel", "sequential")
FIELDS = ("ray_s", "parallel_plain_s", "sequential_plain_s", "ratio_vs_parallel_plain",
          "ratio_vs_sequential_plain", "target_ratio_vs_parallel_plain", "ray_init_s", "ray_startup_s",
          "parallel_startup_s", "ray_rounds_s", "parallel_rounds_s", "ray_round_s", "parallel_round_s",
          "sequential_round_s", "parallel_busy_s_per_process", "ideal_round_s", "ideal_round_s_round_robin",
          "learner_fit_s", "placement", "peak_pss_mib", "cpu_s", "cpu_s_by_process", "cores_used", "runs_s",
          "predictions_match", "max_abs_prob_diff", "mined_per_round", "dev_waf_per_round", "setup")


def learners(epochs: int):
    """Seed 004's style: four different stream combinations and fusions. Patience = epochs, so
    every fit runs exactly `epochs` epochs and the runtime is bounded and equal on every side."""
    from mer_ray.config import LearnerSpec

    combos = [("M1", ("audio", "text", "video"), "attention"), ("M2", ("audio", "face", "video"), "concat-mlp"),
              ("M3", ("face", "text", "video"), "fbp"), ("M4", ("audio", "face", "text"), "cross-attention")]
    return tuple(LearnerSpec(name, streams, fusion=fusion, max_epochs=epochs, patience=epochs)
                 for name, streams, fusion in combos)


def make_data(n_labeled: int, n_pool: int, seed: int, dev_fraction: float):
    from mer_ray.mining.cycle import MiningData
    from mer_ray.splits import holdout
    from mer_ray.synthetic import synthetic_table

    table, truth = synthetic_table(n_labeled, n_pool, DIMS, seed=seed, separation=1.5)
    train, dev = holdout(table.label, table.rows("train"), dev_fraction, seed)
    pool = table.rows("unlabeled")
    none = np.zeros(0, np.int64)
    return MiningData(table=table, train=train, dev=dev, pool=pool, test=none, test_labels=none,
                      pool_truth=np.where(table.split == "unlabeled", truth, -1), canaries=none)


def run_config(job: dict):
    """The shipped mining settings, with every round run (adopt: always, so that no side stops
    early and the time is the rounds asked for) and `folds` when given."""
    from mer_ray.config import MiningConfig, RunConfig

    mining = dict(rounds=job["rounds"], adopt="always", **({"folds": job["folds"]} if job["folds"] is not None else {}))
    return RunConfig(seed=job["seed"], train_workers=job["workers"], mining=MiningConfig(**mining),
                     learners=learners(job["epochs"]))


# ---- the sides, each run in its own process (`--side`) -----------------------------------------

_FITS: list = []   # (learner, seconds) of every fit in this process, in order (the plain sides)


def _timed_fits() -> None:
    """Time every learner fit of `run_rounds` in this process (and the processes it forks)."""
    from mer_ray.mining import cycle

    fit = cycle.fit_splits

    def timed(spec, *args, **kwargs):
        t = time.perf_counter()
        out = fit(spec, *args, **kwargs)
        _FITS.append((spec.name, time.perf_counter() - t))
        return out
    cycle.fit_splits = timed


def side_ray(cfg, data, run_dir: Path) -> dict:
    import ray

    from mer_ray.mining.trainer import run_mining
    from mer_ray.session import init_ray

    started = time.perf_counter()
    init_ray()
    initialised = time.perf_counter()
    run_mining(dataclasses.replace(cfg, out=str(run_dir)), ray.put(data))
    return dict(seconds=time.perf_counter() - started, init_s=initialised - started)


def _gather(local: dict) -> dict:
    import torch.distributed as dist

    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return {k: v for part in parts for k, v in part.items()}


def _plain_rank(rank: int, world: int, cfg, data, run_dir: Path, address: str, fits_file: str) -> None:
    """One process of the plain 2-process loop: torch.distributed (gloo) without Ray."""
    import torch
    import torch.distributed as dist

    from mer_ray.mining.cycle import run_rounds

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)
    run_rounds(cfg, data, run_dir, rank=rank, world=world, exchange=_gather, echo=False)
    dist.destroy_process_group()
    Path(f"{fits_file}.{rank}").write_text(json.dumps(_FITS))


def side_plain(cfg, data, run_dir: Path, *, processes: int, fits_file: str) -> dict:
    """The mining loop's own rounds (`run_rounds`) without Ray: in this process, or in
    `processes` forked processes that swap predictions over torch.distributed (gloo)."""
    import socket

    import torch
    import torch.multiprocessing as mp

    from mer_ray.mining.cycle import run_rounds

    _timed_fits()
    torch.set_num_threads(1)
    started = time.perf_counter()
    if processes == 1:
        run_rounds(cfg, data, run_dir, echo=False)
        Path(f"{fits_file}.0").write_text(json.dumps(_FITS))
    else:
        with socket.socket() as probe:   # a free local port for the process group
            probe.bind(("127.0.0.1", 0))
            address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
        # fork: the processes inherit the features instead of a pickled copy each
        mp.start_processes(_plain_rank, args=(processes, cfg, data, run_dir, address, fits_file),
                           nprocs=processes, start_method="fork")
    return dict(seconds=time.perf_counter() - started)


def run_side(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    cfg = run_config(job)
    data = make_data(job["labeled"], job["pool"], job["seed"], cfg.mining.dev_fraction)
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-training-{job['side']}-"))
    try:
        if job["side"] == "ray":
            out = side_ray(cfg, data, run_dir)
        else:
            out = side_plain(cfg, data, run_dir, processes=job["workers"] if job["side"] == "parallel" else 1,
                             fits_file=job["result"] + ".fits")
            out["fits"] = [json.loads(f.read_text()) for f in sorted(Path(job["result"]).parent.glob(
                Path(job["result"]).name + ".fits.*"))]
        rounds = json.loads((run_dir / "metrics.json").read_text())["rounds"]
        out.update(round_s=[r["seconds"] for r in rounds], mined=[r["mined"] for r in rounds],
                   dev_waf=[r["dev_waf"] for r in rounds])
        last = np.load(run_dir / f"round-{rounds[-1]['round']}" / "probs.npz", allow_pickle=False)
        np.savez(job["probs"], **{k: last[k] for k in last.files if k != "names"})
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    Path(job["result"]).write_text(json.dumps(out))


# ---- the driver: the sides one after another, side by side in one run ------------------------

def ideal_round(fit_s: list[float], owned: list[list[int]]) -> float:
    """A round's makespan on these workers: the slowest worker's summed fit times."""
    return max(sum(fit_s[i] for i in o) for o in owned)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the row counts")
    p.add_argument("--labeled", type=int, default=800)
    p.add_argument("--pool", type=int, default=3200)
    p.add_argument("--epochs", type=int, default=4, help="fixed epochs per fit (no early stop)")
    p.add_argument("--folds", type=int, default=None, help="mining.folds (default: the shipped MiningConfig's)")
    p.add_argument("--rounds", type=int, default=2,
                   help="mining rounds after round 0 (2: three rounds of train + predict)")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers and plain processes")
    p.add_argument("--repeats", type=int, default=1, help="2: the sides again in reverse order, means kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "training_overhead.json"))
    p.add_argument("--side", help=argparse.SUPPRESS)   # child process: a job file
    args = p.parse_args(argv)
    if args.side:
        run_side(args.side)
        return {}
    load_start = load_average()
    n_labeled, n_pool = int(args.labeled * args.scale), int(args.pool * args.scale)
    work = Path(tempfile.mkdtemp(prefix="bench-training-sides-"))
    base = dict(labeled=n_labeled, pool=n_pool, epochs=args.epochs, rounds=args.rounds, folds=args.folds,
                workers=args.workers, seed=args.seed)
    cfg = run_config(base)
    print(f"{n_labeled} labeled + {n_pool} pool rows, streams {DIMS}, 4 learners, {args.rounds + 1} rounds, "
          f"{args.epochs} epochs, folds {cfg.mining.folds}, {os.cpu_count()} CPUs; sides in fresh processes",
          flush=True)
    order = [s for k in range(args.repeats) for s in (SIDES if k % 2 == 0 else SIDES[::-1])]
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    peak: dict[str, int] = {s: 0 for s in SIDES}
    probs: dict[str, dict] = {}
    for k, side in enumerate(order):
        job = dict(base, side=side, probs=str(work / f"{k}.npz"), result=str(work / f"{k}.json"))
        (work / f"{k}-job.json").write_text(json.dumps(job))
        env = {key: v for key, v in os.environ.items() if key != "RAY_ADDRESS"}   # a fresh local Ray
        child = subprocess.Popen([sys.executable, __file__, "--side", str(work / f"{k}-job.json")], env=env)
        with PeakMemory(interval=0.5, pid=child.pid) as memory:
            if child.wait() != 0:
                raise SystemExit(f"the {side} side failed (exit {child.returncode}); its output is above")
        out = json.loads((work / f"{k}.json").read_text())
        out["load_average_1min"] = load_average()
        out["cpu_s"] = memory.cpu_seconds
        out["cpu_by_process"] = memory.cpu_by_process()
        runs[side].append(out)
        peak[side] = max(peak[side], memory.peak_bytes)
        if side not in probs:
            with np.load(work / f"{k}.npz") as saved:
                probs[side] = {key: saved[key] for key in saved.files}
        print(f"{side}: {out['seconds']:.1f} s (load average {out['load_average_1min']})", flush=True)
    shutil.rmtree(work, ignore_errors=True)

    from mer_ray.mining.placement import estimate_cost, place

    def mean(side, key):
        return float(np.mean([r[key] for r in runs[side]]))

    def mean_rounds(side):
        return [round(float(v), 2) for v in np.mean([r["round_s"] for r in runs[side]], axis=0)]

    specs, rounds = cfg.learners, args.rounds + 1
    # [round, learner] seconds per fit, measured on the sequential side (nothing else running)
    seq_fit = np.mean([np.array([sec for _, sec in r["fits"][0]]).reshape(rounds, len(specs))
                       for r in runs["sequential"]], axis=0)
    # the plain 2-process side, per process: its learners' summed fit time per round
    rank_busy = [[round(float(v), 2) for v in np.array([sec for _, sec in fits]).reshape(rounds, -1).sum(1)]
                 for fits in runs["parallel"][0]["fits"]]
    table = make_data(8, 8, args.seed, 0.2).table   # dims only: the cost estimate reads no rows
    lpt = place([estimate_cost(s, table, folds=cfg.mining.folds) for s in specs], args.workers)
    round_robin = [[i for i in range(len(specs)) if i % args.workers == w] for w in range(args.workers)]
    ray_s, par_s, seq_s = mean("ray", "seconds"), mean("parallel", "seconds"), mean("sequential", "seconds")
    ray_rounds = float(np.mean([sum(r["round_s"]) for r in runs["ray"]]))
    par_rounds = float(np.mean([sum(r["round_s"]) for r in runs["parallel"]]))
    diffs = {s: max(float(np.abs(probs[s][key] - probs["sequential"][key]).max()) for key in probs[s])
             for s in SIDES}
    result = {
        "ray_s": round(ray_s, 2), "parallel_plain_s": round(par_s, 2), "sequential_plain_s": round(seq_s, 2),
        "ratio_vs_parallel_plain": round(ray_s / par_s, 3), "ratio_vs_sequential_plain": round(ray_s / seq_s, 3),
        "target_ratio_vs_parallel_plain": 1.10,
        "ray_init_s": round(mean("ray", "init_s"), 2),
        # everything outside the rounds: ray.init, ray.put, the trainer's and its workers' start,
        # the teardown; for the plain side the fork and the process group
        "ray_startup_s": round(ray_s - ray_rounds, 2), "parallel_startup_s": round(par_s - par_rounds, 2),
        "ray_rounds_s": round(ray_rounds, 2), "parallel_rounds_s": round(par_rounds, 2),
        "ray_round_s": mean_rounds("ray"), "parallel_round_s": mean_rounds("parallel"),
        "sequential_round_s": mean_rounds("sequential"),
        "parallel_busy_s_per_process": rank_busy,
        "ideal_round_s": [round(float(ideal_round(f, lpt)), 2) for f in seq_fit],
        "ideal_round_s_round_robin": [round(float(ideal_round(f, round_robin)), 2) for f in seq_fit],
        "learner_fit_s": {s.name: [round(float(f[i]), 2) for f in seq_fit] for i, s in enumerate(specs)},
        "placement": {"by_estimated_cost": [[specs[i].name for i in o] for o in lpt],
                      "round_robin_before": [[specs[i].name for i in o] for o in round_robin]},
        "peak_pss_mib": {s: round(peak[s] / 2**20) for s in SIDES},
        # CPU-s of each side's process tree (its data generation included) and the cores it kept busy
        "cpu_s": {s: round(mean(s, "cpu_s"), 1) for s in SIDES},
        "cpu_s_by_process": {s: runs[s][0]["cpu_by_process"] for s in SIDES},   # the first run of each side
        "cores_used": {s: round(mean(s, "cpu_s") / mean(s, "seconds"), 2) for s in SIDES},
        "runs_s": {s: [round(r["seconds"], 2) for r in runs[s]] for s in SIDES},
        "predictions_match": all(d == 0.0 for d in diffs.values()),
        "max_abs_prob_diff": max(diffs.values()),
        "mined_per_round": {s: runs[s][0]["mined"] for s in SIDES},
        "dev_waf_per_round": {s: runs[s][0]["dev_waf"] for s in SIDES},
        "setup": {"labeled": n_labeled, "pool": n_pool, "dims": DIMS, "learners": len(specs),
                  "rounds": rounds, "epochs": args.epochs, "folds": cfg.mining.folds, "workers": args.workers,
                  "repeats": args.repeats, "order": order, "torch_threads_per_learner": 1, "seed": args.seed,
                  "load_average_1min_per_run": {s: [r["load_average_1min"] for r in runs[s]] for s in SIDES}},
    }
    print()
    print(f"{'implementation':<52} {'wall s':>8} {'Ray vs it':>9} {'peak PSS MiB':>13}")
    for side, label, key in (("sequential", "plain, sequential, 1 process", "ratio_vs_sequential_plain"),
                             ("parallel", f"plain, {args.workers} processes + torch.distributed (fair)",
                              "ratio_vs_parallel_plain"),
                             ("ray", f"Ray Train, 1 TorchTrainer x {args.workers} workers", None)):
        ratio = f"{result[key]:>8.2f}x" if key else f"{'':>9}"
        print(f"{label:<52} {mean(side, 'seconds'):>8.1f} {ratio} {result['peak_pss_mib'][side]:>13}")
    print(f"outside the rounds: Ray {result['ray_startup_s']} s (ray.init {result['ray_init_s']} s), plain "
          f"{result['parallel_startup_s']} s; rounds: Ray {result['ray_round_s']} s, plain {result['parallel_round_s']} s, "
          f"ideal on {args.workers} workers (measured fits, cost placement) {result['ideal_round_s']} s, "
          f"round-robin placement {result['ideal_round_s_round_robin']} s")
    print(f"predictions identical on all sides: {result['predictions_match']} "
          f"(max |diff| {result['max_abs_prob_diff']:.2e}); mined per round {result['mined_per_round']}")
    return write_record(args.out, result, script=__file__, fields=FIELDS, argv=argv, load_start=load_start)


if __name__ == "__main__":
    main()
