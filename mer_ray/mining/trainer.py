"""The Ray Train run that holds every mining round: its workers, storage and failure policy."""
from __future__ import annotations

from pathlib import Path

from ray.train import FailureConfig, RunConfig as TrainRunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from mer_ray.config import RunConfig
from mer_ray.mining.cycle import mining_loop
from mer_ray.mining.progress import RoundPrinter
from mer_ray.plugins import load_plugins, loaded
from mer_ray.storage import join

RAY_DIR = "ray"   # Ray Train's own files inside a run folder


def learner_scaling(cfg: RunConfig) -> ScalingConfig:
    """The Ray Train workers the mining asks for (tests/test_cluster.py fits them to cluster.yaml)."""
    return ScalingConfig(num_workers=cfg.train_workers, use_gpu=cfg.use_gpu)


def _worker_loop(config: dict) -> None:
    """A Ray Train worker's entry: the driver's plugins first (the policies and fusions they
    register are looked up here, not in the driver), then the rounds."""
    load_plugins(config.get("plugins", ()))
    mining_loop(config)


def run_mining(cfg: RunConfig, data_ref, *, remote: str | None = None, on_round=()) -> None:
    """All mining rounds in one Ray Train run (resumes after the last complete round); the driver
    prints each round's row as it is committed and hands it to the `on_round` callbacks.
    `data_ref`: the `MiningData` in the object store; `remote`: the object-store folder the run's
    local copy mirrors (the workers upload each round)."""
    out = Path(cfg.out)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=dict(run=cfg.to_dict(), run_dir=str(out.resolve()), run_remote=remote, data=data_ref,
                               plugins=loaded()),
        scaling_config=learner_scaling(cfg),
        # the workers only swap small CPU objects (predictions): gloo, also on GPU workers
        torch_config=TorchConfig(backend="gloo"),
        run_config=TrainRunConfig(
            name="mining", storage_path=join(remote, RAY_DIR) if remote else str((out / RAY_DIR).resolve()),
            # a worker that dies restarts the group, which resumes from the last complete round
            failure_config=FailureConfig(max_failures=2),
        ),
    )
    with RoundPrinter(out, remote=remote, on_round=list(on_round)):
        trainer.fit()
