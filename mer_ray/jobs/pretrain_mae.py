"""Adapt an image MAE or a VideoMAE to the corpus's unlabeled clips (seed 000's expMAE).

    mer-ray pretrain-mae --epochs 5                       # tiny image MAE on the demo corpus
    mer-ray pretrain-mae --corpus /data/MER2024 --out runs/expmae --model image-mae \\
        --init /models/vit-mae-base --face-boxes faces.csv --epochs 50 --workers 4 --use-gpu
    mer-ray pretrain-mae --model video-mae --init /models/videomae-base --out runs/expvideomae
    ray job submit --working-dir . -- mer-ray pretrain-mae --config mae.yaml

Rerunning with the same --out resumes after the last finished epoch (raise --epochs to go on).
The adapted encoder lands in <out>/encoder; extract with it like any other encoder:
    mer-ray extract --corpus ... --stream expmae=hf-image:<out>/encoder
"""
from __future__ import annotations

import argparse

from mer_ray.jobs import JOBS, add_common, formatter, parse


@JOBS.register("pretrain-mae", summary="MAE adaptation to the corpus's clips (seed 000)", script="pretrain_mae.py")
def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    import yaml

    from mer_ray.adapt import MAE_KINDS, PretrainConfig, pretrain_mae
    from mer_ray.adapt.config import SPLITS

    p = argparse.ArgumentParser(prog="mer-ray pretrain-mae", description=__doc__, **formatter())
    p.add_argument("--config", help="YAML with any PretrainConfig fields (mer_ray/adapt/config.py)")
    p.add_argument("--corpus", help="MER 2023 / 2024 / 2025 folder or manifest CSV (default: the demo corpus)")
    p.add_argument("--out", help="output folder (default: runs/mae); reuse it to resume")
    p.add_argument("--model", choices=MAE_KINDS.names(), help="image-mae (frames) or video-mae (16-frame clips)")
    p.add_argument("--size", help="architecture preset for a random start: tiny | base")
    p.add_argument("--init", help="a local Hugging Face MAE / VideoMAE folder to continue from")
    p.add_argument("--image-size", type=int)
    p.add_argument("--mask-ratio", type=float, help="default 0.75 (image) / 0.9 (video, tube masking)")
    p.add_argument("--norm-pix-loss", action=argparse.BooleanOptionalAction, default=None,
                   help="reconstruct per-patch normalised pixels (MAE's default) or raw pixels")
    p.add_argument("--frames-in-memory", action=argparse.BooleanOptionalAction, default=None,
                   help="keep decoded frames in the object store across epochs (default: when they fit)")
    p.add_argument("--split", choices=SPLITS, help="clips to adapt on (default: unlabeled)")
    p.add_argument("--transductive", action="store_true", default=None,
                   help="also adapt on the held-out test clips (left out by default; report such a run apart)")
    p.add_argument("--truth", help="truth folder naming the held-out test clips (default: <corpus>/truth)")
    p.add_argument("--num-frames", type=int)
    p.add_argument("--crop", choices=("center", "none", "face"), help="face: detect and crop the face (docs/faces.md)")
    p.add_argument("--face-boxes", help="face_boxes.parquet from `mer-ray faces`, or a CSV name,left,top,width,height")
    p.add_argument("--frame-cache", help="decoded-frame cache folder (default: <out>/frames)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="clips per step per worker")
    p.add_argument("--lr", type=float)
    p.add_argument("--workers", type=int, help="Ray Train data-parallel workers")
    p.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker")
    p.add_argument("--seed", type=int)
    add_common(p, corpus=False)
    args = vars(parse(p, argv))
    args.pop("verbose")
    args.pop("plugin")

    config = args.pop("config")
    data = (yaml.safe_load(Path(config).read_text()) or {}) if config else {}
    data.update({k: v for k, v in args.items() if v is not None})
    pretrain_mae(PretrainConfig.from_dict(data))
    return 0
