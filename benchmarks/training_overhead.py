"""Does Ray pay for itself in training? The real mining loop vs plain sequential PyTorch.

Same synthetic feature rows, same four learners, same rounds of train + predict + vote, same
epochs and seeds, measured side by side in one run:
  (a) ray:   `mer_ray.mining.cycle.mining_loop` inside one Ray Train `TorchTrainer` with two
             workers (each owns two learners; predictions are all-gathered once per round),
             started the way `mer_ray.mining.run.run_cyclic_mining` starts it; the timing
             includes `ray.init`, `ray.put` of the features and the trainer's start-up;
  (b) plain: one process, torch on one thread, the same rounds calling `fit_learner`,
             `predict_proba`, the vote and the even split directly.
Both sides train with one torch thread per learner and the per-(round, learner) seeds of the
mining loop, so their predictions should be bit-identical: the script checks that.

    python benchmarks/training_overhead.py               # 5,000 labeled + 20,000 pool rows
    python benchmarks/training_overhead.py --scale 0.1   # a quick run

Prints a table and writes benchmarks/results/training_overhead.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mer_ray.config import LearnerSpec, MiningConfig, RunConfig
from mer_ray.mining.cycle import MiningData, mine, mining_loop, stratified_split
from mer_ray.mining.policies import create_policy
from mer_ray.mining.state import MiningState
from mer_ray.synthetic import synthetic_table
from mer_ray.train import fit_learner, predict_proba

RESULTS = Path(__file__).resolve().parent / "results" / "training_overhead.json"
# Four streams of 256-1024 dims, like audio / text / visual / face encoders of MER.
DIMS = {"audio": 1024, "text": 768, "video": 512, "face": 256}


def learners(epochs: int) -> tuple[LearnerSpec, ...]:
    """Seed 004's style: four different stream combinations and fusions. Patience = epochs, so
    every fit runs exactly `epochs` epochs and the runtime is bounded and equal on both sides."""
    combos = [("M1", ("audio", "text", "video"), "attention"), ("M2", ("audio", "face", "video"), "concat-mlp"),
              ("M3", ("face", "text", "video"), "fbp"), ("M4", ("audio", "face", "text"), "cross-attention")]
    return tuple(LearnerSpec(name, streams, fusion=fusion, max_epochs=epochs, patience=epochs)
                 for name, streams, fusion in combos)


def make_data(n_labeled: int, n_pool: int, seed: int, dev_fraction: float) -> MiningData:
    table, truth = synthetic_table(n_labeled, n_pool, DIMS, seed=seed, separation=1.5)
    train, dev = stratified_split(table.label, table.rows("train"), dev_fraction, seed)
    pool = table.rows("unlabeled")
    none = np.zeros(0, np.int64)
    return MiningData(table=table, train=train, dev=dev, pool=pool, test=none, test_labels=none,
                      pool_truth=np.where(table.split == "unlabeled", truth, -1), canaries=none)


def run_ray(cfg: RunConfig, data: MiningData, run_dir: Path) -> dict:
    """(a) the real thing: one TorchTrainer for the whole run, as run_cyclic_mining does it."""
    import ray
    from ray.train import RunConfig as TrainRunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(dashboard_host="127.0.0.1", log_to_driver=True)   # as mer_ray.mining.run.init_ray
    initialised = time.perf_counter()
    trainer = TorchTrainer(
        mining_loop,
        train_loop_config=dict(run=cfg.to_dict(), run_dir=str(run_dir), data=ray.put(data)),
        scaling_config=ScalingConfig(num_workers=cfg.train_workers, use_gpu=False),
        run_config=TrainRunConfig(name="bench", storage_path=str(run_dir / "ray")),
    )
    trainer.fit()
    total = time.perf_counter() - started
    rounds = json.loads((run_dir / "metrics.json").read_text())["rounds"]
    state = json.loads((run_dir / "state.json").read_text())
    last = np.load(run_dir / f"round-{state['complete'][-1]}" / "probs.npz", allow_pickle=False)["probs"]
    return dict(seconds=total, init_s=initialised - started,
                rounds_s=sum(r["seconds"] for r in rounds),
                mined=[r["mined"] for r in rounds], probs=last)


def run_plain(cfg: RunConfig, data: MiningData) -> dict:
    """(b) the same rounds, sequentially, in this process: what a plain PyTorch script does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    table, specs = data.table, cfg.learners
    policy = create_policy(cfg.mining)
    state = MiningState()
    mined = []
    for r in range(cfg.mining.rounds + 1):
        new = 0
        if r > 0:   # vote on what is left of the pool, split the agreed clips evenly
            _, selection, _ = mine(state, data, policy, seed=cfg.seed * 1000 + r)
            new = int(selection.selected.sum())
        probs = []
        for i, spec in enumerate(specs):
            rows, labels = state.training_set(i, data.train, table.label)
            fit = fit_learner(spec, table, rows, labels, data.dev, seed=cfg.seed * 1000 + 10 * r + i)
            probs.append(predict_proba(fit.model, table, spec).astype(np.float32))
        state.probs = np.stack(probs)
        mined.append(new)
        print(f"plain round {r}: mined {new}, {time.perf_counter() - started:.1f}s so far", flush=True)
    torch.set_num_threads(threads)
    return dict(seconds=time.perf_counter() - started, mined=mined, probs=state.probs)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="shrink the row counts (0.1: a quick run)")
    p.add_argument("--labeled", type=int, default=5000)
    p.add_argument("--pool", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=15, help="fixed epochs per fit (no early stop)")
    p.add_argument("--rounds", type=int, default=2,
                   help="mining rounds after round 0 (2: three rounds of train + predict)")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    n_labeled, n_pool = int(args.labeled * args.scale), int(args.pool * args.scale)
    cfg = RunConfig(seed=args.seed, train_workers=args.workers, mining=MiningConfig(rounds=args.rounds),
                    learners=learners(args.epochs))
    data = make_data(n_labeled, n_pool, args.seed, cfg.mining.dev_fraction)
    print(f"{n_labeled} labeled ({len(data.train)} train + {len(data.dev)} dev) + {n_pool} pool rows, "
          f"streams {DIMS}, {len(cfg.learners)} learners, {args.rounds + 1} rounds, {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs", flush=True)

    # plain first, before Ray's processes exist: it gets the machine to itself
    plain = run_plain(cfg, data)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        ray_run = run_ray(cfg, data, run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    same = bool(np.array_equal(plain["probs"], ray_run["probs"]))
    diff = float(np.abs(plain["probs"] - ray_run["probs"]).max())
    startup = ray_run["seconds"] - ray_run["rounds_s"]
    result = {
        "ray_s": round(ray_run["seconds"], 2),
        "plain_s": round(plain["seconds"], 2),
        "ratio": round(ray_run["seconds"] / plain["seconds"], 3),
        "ray_init_s": round(ray_run["init_s"], 2),
        "ray_rounds_s": round(ray_run["rounds_s"], 2),
        "ray_startup_s": round(startup, 2),
        "ray_startup_share": round(startup / ray_run["seconds"], 3),
        "predictions_match": same,
        "max_abs_prob_diff": diff,
        "mined_per_round": {"ray": ray_run["mined"], "plain": plain["mined"]},
        "setup": {"labeled": n_labeled, "pool": n_pool, "dims": DIMS, "learners": len(cfg.learners),
                  "rounds": args.rounds + 1, "epochs": args.epochs, "ray_workers": args.workers,
                  "torch_threads_per_learner": 1, "cpus": os.cpu_count(), "seed": args.seed,
                  "machine": platform.processor() or platform.machine(),
                  "torch": torch.__version__, "ray": __import__("ray").__version__},
    }
    print()
    print(f"{'implementation':<44} {'wall s':>8} {'vs plain':>9}")
    print(f"{'plain PyTorch, sequential, 1 process':<44} {result['plain_s']:>8.1f} {1.0:>8.2f}x")
    print(f"{f'Ray Train, 1 TorchTrainer x {args.workers} workers':<44} {result['ray_s']:>8.1f} "
          f"{result['ratio']:>8.2f}x")
    print(f"{'  of which Ray start-up/teardown (+init)':<44} {startup:>8.1f} "
          f"{result['ray_startup_share']:>8.0%} of ray")
    print(f"{'  of which rounds inside the workers':<44} {ray_run['rounds_s']:>8.1f}")
    print(f"predictions identical: {same} (max |diff| {diff:.2e}); mined per round "
          f"ray {ray_run['mined']} plain {plain['mined']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
