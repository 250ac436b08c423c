"""Continued MAE pre-training on a corpus's unlabeled clips: Ray Data → Ray Train (DDP) → encoder folder.

Seed 000 (expMAE) adapts image-MAE and VideoMAE encoders to the MER faces before extracting
features: the unlabeled pool helps twice, once here and once as mined pseudo-labels. The job:

1. the manifest's unlabeled clips (or all of them) are decoded once by Ray Data CPU tasks into a
   Parquet frame cache (`mer_ray.adapt.frames`; centre or face crops at the model's input size);
2. a Ray Train `TorchTrainer` streams the cache to `workers` data-parallel workers
   (`get_dataset_shard("train")`, DDP through `prepare_model`; a GPU each with `use_gpu`);
3. every epoch reports its mean loss and throughput with a checkpoint (model + optimizer state,
   the loss history and the exported encoder); rerunning with the same `out` resumes after the
   last finished epoch (Ray Train restores the run from `<out>/ray/pretrain-mae`);
4. the last checkpoint's encoder is copied to `<out>/encoder`, a Hugging Face folder that
   extraction loads by path: `hf-image:<out>/encoder` or `videomae:<out>/encoder`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
import yaml
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig as TrainRunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from mer_ray.corpus.manifest import read_corpus
from mer_ray.plugins import load_plugins, loaded
from mer_ray.session import init_ray

from .clips import pretrain_clips, truth_folder
from .config import PretrainConfig
from .frames import FrameCache, FrameSettings, build_frame_cache, frames_dataset
from .mae import MAEKind, create_mae_kind, unwrap

__all__ = ["PretrainResult", "pretrain_loop", "pretrain_mae"]

RUN_NAME = "pretrain-mae"


@dataclass
class PretrainResult:
    encoder: Path              # <out>/encoder, the adapted encoder
    spec: str                  # its encoder spec, e.g. hf-image:/abs/out/encoder
    history: list[dict]        # per epoch: epoch, loss, clips, images, seconds, images_per_s_per_worker, resumed_from
    frame_cache: dict          # decoded / skipped / cached clip counts, decode and dataset seconds


def _lr(cfg: PretrainConfig, progress: float) -> float:
    """Linear warm-up then cosine decay (MAE's schedule); `progress` in epochs, fractional."""
    if progress < cfg.warmup_epochs:
        return cfg.lr * progress / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - cfg.warmup_epochs) / span)))


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _summed(values: list[float]) -> list[float]:
    """Sum across the data-parallel workers (the loss is averaged over every worker's clips)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def _restore(model: torch.nn.Module) -> tuple[int, list[dict], dict | None]:
    """(next epoch, history, optimizer state) from Ray Train's latest checkpoint, loading the weights."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, [], None
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / "state.pt", weights_only=True, map_location="cpu")
        history = json.loads((Path(folder) / "history.json").read_text())
    model.load_state_dict(state["model"])
    return int(state["epoch"]), history, state["optimizer"]


def _save(folder: Path, kind: MAEKind, model, optimizer, epoch: int, history: list[dict],
          cfg: PretrainConfig) -> None:
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "epoch": epoch}, folder / "state.pt")
    (folder / "history.json").write_text(json.dumps(history, indent=1))
    kind.export(model, folder / "encoder", provenance=dict(
        adapted_by="mer_ray.adapt (continued MAE pre-training)", model=cfg.model, size=cfg.size,
        init=cfg.init, corpus=cfg.corpus, split=cfg.split, transductive=cfg.transductive, epochs=epoch,
        mask_ratio=kind.mask_ratio(cfg), final_loss=history[-1]["loss"] if history else None))


def pretrain_loop(config: dict) -> None:
    """Ray Train's train_loop_per_worker: (resume and) run the remaining epochs."""
    load_plugins(config.get("plugins", ()))   # the driver's --plugin modules (an MAE kind of yours)
    cfg = PretrainConfig.from_dict(config["pretrain"])
    kind = create_mae_kind(cfg.model)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    model = kind.build(cfg)
    start, history, optimizer_state = _restore(model)
    model = ray.train.torch.prepare_model(model)   # to this worker's device; DDP when world > 1
    device = next(model.parameters()).device
    # MAE: AdamW with beta2 = 0.95
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                                  weight_decay=cfg.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if rank == 0 and start:
        print(f"pretrain-mae: resuming after epoch {start} of {cfg.epochs}", flush=True)
    steps_per_epoch = max(1, math.ceil(config["clips"] / world / cfg.batch_size))
    shard = ray.train.get_dataset_shard("train")

    for epoch in range(start, cfg.epochs):
        generator = torch.Generator().manual_seed(_seed(cfg.seed, epoch, rank))
        model.train()
        started = time.perf_counter()
        loss_sum, clips, step = 0.0, 0, 0
        for batch in shard.iter_torch_batches(batch_size=cfg.batch_size, device=device,
                                              local_shuffle_buffer_size=4 * cfg.batch_size,
                                              local_shuffle_seed=_seed(cfg.seed, epoch, rank, 1)):
            frames = batch["frames"]
            for group in optimizer.param_groups:
                group["lr"] = _lr(cfg, epoch + min(step / steps_per_epoch, 1.0))
            loss = kind.loss(model, frames, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(frames)
            clips += len(frames)
            step += 1
            if rank == 0 and step % cfg.log_every == 0:
                print(f"pretrain-mae: epoch {epoch + 1}/{cfg.epochs} step {step}/~{steps_per_epoch} "
                      f"loss {float(loss):.4f}", flush=True)
        seconds = time.perf_counter() - started
        total_loss, total_clips = _summed([loss_sum, clips])
        images = int(total_clips) * kind.images_per_clip(model)
        metrics = dict(epoch=epoch + 1, loss=total_loss / max(total_clips, 1), clips=int(total_clips),
                       images=images, seconds=round(seconds, 3),
                       images_per_s_per_worker=round(images / world / max(seconds, 1e-9), 2),
                       resumed_from=start)   # 0: a fresh run; k: this run restarted after epoch k
        history.append(metrics)
        if rank == 0:
            print(f"pretrain-mae: epoch {epoch + 1}/{cfg.epochs} loss {metrics['loss']:.4f}, "
                  f"{int(total_clips)} clips in {seconds:.1f} s "
                  f"({metrics['images_per_s_per_worker']} images/s per worker)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:   # one copy of the (replicated) DDP weights is enough
                _save(Path(tmp), kind, model, optimizer, epoch + 1, history, cfg)
                checkpoint = Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def _copy_atomic(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp) if source.is_dir() else shutil.copy2(source, tmp)
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(tmp, target)


# What a resumed run must share with the run it continues; epochs, workers, batch size and the
# learning rate may change between reruns (more epochs is how a finished run goes on).
SAME_ON_RESUME = ("corpus", "model", "size", "init", "image_size", "mask_ratio", "norm_pix_loss", "split",
                  "transductive", "num_frames", "crop", "face_boxes", "seed")


def _check_resume(out: Path, cfg: PretrainConfig) -> None:
    saved_path = out / "config.yaml"
    if not saved_path.exists():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    changed = [f"{k}: {saved.get(k)!r} → {getattr(cfg, k)!r}" for k in SAME_ON_RESUME
               if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        raise ValueError(f"{out} holds a pre-training run with other settings ({'; '.join(changed)}); "
                         f"rerun with the same ones to resume it, or give a new --out")


def worker_scaling(cfg: PretrainConfig) -> ScalingConfig:
    """The Ray Train workers pre-training asks for (tests/test_cluster.py fits them to cluster.yaml)."""
    return ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.use_gpu,
                         resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})})


def pretrain_mae(cfg: PretrainConfig) -> PretrainResult:
    """Adapt an MAE encoder on the corpus's clips; see the module doc. Resumes a finished epoch."""
    kind = create_mae_kind(cfg.model)      # an unknown model fails before any work
    if cfg.corpus is None:
        from mer_ray.corpus.demo import demo_corpus   # only for the demo default

        cfg = dataclasses.replace(cfg, corpus=str(demo_corpus(cfg.seed)))
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, cfg)
    print("mer-ray pretrain-mae, config:\n" + cfg.dumps(), flush=True)
    (out / "config.yaml").write_text(cfg.dumps())

    history_path = out / "history.json"
    if (out / "encoder" / "config.json").exists() and history_path.exists():
        history = json.loads(history_path.read_text())
        if history and history[-1]["epoch"] >= cfg.epochs:   # nothing left: no decode, no workers
            print(f"{out}: all {cfg.epochs} epochs are done; raise --epochs to go on", flush=True)
            return PretrainResult(encoder=out / "encoder", spec=kind.encoder_spec(out / "encoder"),
                                  history=history, frame_cache={})

    init_ray()   # joins RAY_ADDRESS when set (ray job submit)
    clips, left_out = pretrain_clips(read_corpus(cfg.corpus), cfg.split, truth=truth_folder(cfg.corpus, cfg.truth),
                                     transductive=cfg.transductive)
    print(f"pre-training on {len(clips)} {cfg.split} clips; "
          + ("transductive: the held-out test clips are in" if cfg.transductive
             else f"{left_out} held-out test clips left out"), flush=True)
    settings = FrameSettings(cfg.num_frames, kind.input_size(cfg), cfg.crop, cfg.face_boxes)
    cache = FrameCache(cfg.frame_cache or out / "frames", settings)
    started = time.perf_counter()
    counts = build_frame_cache(clips, cache)
    counts["decode_seconds"] = round(time.perf_counter() - started, 3)
    print(f"frame cache {cache.root}: {counts['decoded']} clips decoded now, {counts['cached']} cached, "
          f"{counts['skipped']} skipped (reasons in {cache.errors.path}) in {counts['decode_seconds']} s", flush=True)
    names = sorted(set(clips["name"]) - set(cache.skipped()))
    started = time.perf_counter()
    dataset = frames_dataset(cache, names, in_memory=cfg.frames_in_memory)
    counts["dataset_seconds"] = round(time.perf_counter() - started, 3)   # materialising, when in memory

    trainer = TorchTrainer(
        pretrain_loop,
        train_loop_config=dict(pretrain=cfg.to_dict(), clips=len(names), plugins=loaded()),
        datasets={"train": dataset},
        scaling_config=worker_scaling(cfg),
        # DDP gradients: NCCL between GPUs, gloo on CPU workers
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=TrainRunConfig(
            name=RUN_NAME, storage_path=str(out / "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # a worker that dies restarts the group, which resumes from the last epoch's checkpoint
            failure_config=FailureConfig(max_failures=2),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"pre-training in {out / 'ray' / RUN_NAME} finished without a checkpoint; "
                           f"see the worker log above")
    with result.checkpoint.as_directory() as folder:
        _copy_atomic(Path(folder) / "encoder", out / "encoder")
        _copy_atomic(Path(folder) / "history.json", out / "history.json")
    history = json.loads((out / "history.json").read_text())
    spec = kind.encoder_spec(out / "encoder")
    print(f"adapted encoder after {history[-1]['epoch'] if history else 0} epochs: {spec}", flush=True)
    return PretrainResult(encoder=out / "encoder", spec=spec, history=history, frame_cache=counts)
