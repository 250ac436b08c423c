"""Does adapting an image MAE on the unlabeled pool give better features? (issue #9, seed 000)

On the demo corpus, side by side in one run:
  (a) before: a tiny ViT-MAE, random-initialised with the run's seed, saved as an `hf-image:`
      folder — exactly the weights pre-training starts from;
  (b) after:  the same model after `--epochs` epochs of `mer_ray.adapt.pretrain_mae` on the
      unlabeled pool less the held-out test clips (the demo keeps its test clips in the pool;
      pre-training leaves them out by default), Ray Data frame cache → Ray Train.
      `--transductive` pre-trains on the test clips too: a result reported apart
      (`transductive: true`), since the encoder has then seen the clips it is scored on.
Both encoders extract features of the labeled and the held-out test clips through the normal
extraction pipeline (`extract_features`, one stream each); then a labeled-only video learner
(`fit_learner`, concat-MLP on that one stream) is trained on the project's stratified split of
the labeled clips and scored on its dev clips (dev WAF, what the mining loop ranks by) and on the
test clips (test WAF, from truth/). Learner seeds are averaged, since 60 dev clips are few.

Also measured: the frame cache's decode time (what every epoch would pay again without it) and
seconds / images per second per epoch.

    python benchmarks/mae_adaptation.py                 # 30 epochs, 1 worker, 10 learner seeds
    python benchmarks/mae_adaptation.py --epochs 3 --workers 2

`scored_clips_seen_in_pretraining` counts the dev / test clips the pre-training read (0 unless
transductive). Prints a table and writes benchmarks/results/mae_adaptation.json (or --out).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import RESULTS as RESULTS_DIR, load_average, write_record  # noqa: E402

from mer_ray.adapt import PretrainConfig, create_mae_kind, pretrain_mae  # noqa: E402
from mer_ray.adapt.clips import pretrain_clips, truth_folder  # noqa: E402
from mer_ray.config import ExtractConfig, LearnerSpec  # noqa: E402
from mer_ray.corpus.manifest import read_corpus  # noqa: E402
from mer_ray.corpus.truth import read_truth  # noqa: E402
from mer_ray.features.extract import extract_features  # noqa: E402
from mer_ray.features.store import FeatureStore  # noqa: E402
from mer_ray.features.table import load_feature_table  # noqa: E402
from mer_ray.metrics import waf  # noqa: E402
from mer_ray.splits import holdout  # noqa: E402
from mer_ray.corpus.demo import demo_corpus  # noqa: E402
from mer_ray.train import fit_learner, predict_proba  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = RESULTS_DIR / "mae_adaptation.json"
FIELDS = ("corpus", "clips_pretrained", "held_out_left_out", "transductive", "scored_clips_seen_in_pretraining",
          "labeled", "test", "model", "epochs", "workers", "batch_size", "lr", "norm_pix_loss", "mask_ratio",
          "before", "after", "dev_waf_gain", "test_waf_gain", "dev_waf_gain_sd", "test_waf_gain_sd",
          "seeds_gaining_dev", "seeds_gaining_test", "loss_per_epoch", "seconds_per_epoch",
          "mean_seconds_per_epoch", "images_per_s_per_worker", "frame_cache_decode_s",
          "frames_to_object_store_s", "pretrain_s", "extraction_s")


def labeled_only_waf(table, stream: str, test_names: dict[str, int], seeds: list[int]) -> dict:
    """Dev and test WAF of a labeled-only learner on one stream, per seed and averaged."""
    labeled = table.rows("train")
    train, dev = holdout(table.label, labeled, 0.2, 0)   # the mining loop's dev split (seed 0)
    test = np.array([i for i, n in enumerate(table.names) if n in test_names], dtype=np.int64)
    test_labels = np.array([test_names[n] for n in table.names[test]])
    spec = LearnerSpec("V", (stream,), fusion="concat-mlp")
    dev_scores, test_scores = [], []
    for seed in seeds:
        fit = fit_learner(spec, table, train, table.label[train], dev, seed=seed)
        dev_scores.append(fit.dev_waf)
        test_scores.append(waf(test_labels, predict_proba(fit.model, table, spec, test).argmax(1)))
    return {"dev_waf": round(float(np.mean(dev_scores)), 4), "test_waf": round(float(np.mean(test_scores)), 4),
            # spread over learner seeds only (one pre-training run, one dev split)
            "dev_waf_sd": round(float(np.std(dev_scores, ddof=1)), 4) if len(seeds) > 1 else None,
            "test_waf_sd": round(float(np.std(test_scores, ddof=1)), 4) if len(seeds) > 1 else None,
            "dev_waf_per_seed": [round(s, 4) for s in dev_scores],
            "test_waf_per_seed": [round(float(s), 4) for s in test_scores]}


def paired_gain(before: dict, after: dict) -> dict:
    """sd of the per-seed gains (after - before) and how many seeds gained, dev and test."""
    out = {}
    for split in ("dev", "test"):
        gains = np.subtract(after[f"{split}_waf_per_seed"], before[f"{split}_waf_per_seed"])
        out[f"{split}_waf_gain_sd"] = round(float(np.std(gains, ddof=1)), 4) if len(gains) > 1 else None
        out[f"seeds_gaining_{split}"] = f"{int((gains > 0).sum())}/{len(gains)}"
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--norm-pix-loss", type=int, default=1, help="1: MAE's normalised-pixel target; 0: raw pixels")
    p.add_argument("--seeds", type=int, default=10, help="learner seeds averaged")
    p.add_argument("--transductive", action="store_true",
                   help="pre-train on the held-out test clips too (reported apart: transductive true)")
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-mae")
    p.add_argument("--keep", action="store_true", help="reuse an earlier run in --work (resume) instead of a fresh one")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    load_start = load_average()

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    corpus = demo_corpus(0)
    run = args.work / "run"
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
    # always re-extracted: the adapted encoder's folder keeps its path (and spec) across runs
    shutil.rmtree(args.work / "features", ignore_errors=True)
    ray.init(dashboard_host="127.0.0.1", log_to_driver=True)

    cfg = PretrainConfig(corpus=str(corpus), out=str(run), epochs=args.epochs, workers=args.workers,
                         batch_size=args.batch_size, lr=args.lr, norm_pix_loss=bool(args.norm_pix_loss),
                         torch_threads=1, log_every=1000, transductive=args.transductive)
    kind = create_mae_kind(cfg.model)
    before = kind.export(kind.build(cfg), args.work / "encoder-before")   # the weights epoch 1 starts from
    started = time.perf_counter()
    adapted = pretrain_mae(cfg)
    pretrain_seconds = time.perf_counter() - started

    # features of the labeled and test clips from both encoders, through the real extraction
    manifest = read_corpus(corpus)
    truth = read_truth(corpus / "truth")
    wanted = manifest[(manifest["split"] == "train") | manifest["name"].isin(truth.test)]
    store = FeatureStore(args.work / "features")
    streams = {"before": kind.encoder_spec(before), "after": adapted.spec}
    summary = extract_features(wanted, store, ExtractConfig(streams=streams, encoder_actors=1), progress=False)
    print(summary.line(), flush=True)
    table, _ = load_feature_table(wanted, store, ["before", "after"])
    seeds = list(range(args.seeds))
    scores = {stream: labeled_only_waf(table, stream, truth.test, seeds) for stream in streams}

    epochs = adapted.history
    seen, left_out = pretrain_clips(manifest, cfg.split, truth=truth_folder(corpus), transductive=args.transductive)
    scored = set(wanted["name"])   # dev clips are among the labeled ones, test clips among `wanted`
    result = {
        "corpus": str(corpus), "clips_pretrained": epochs[-1]["clips"], "held_out_left_out": left_out,
        "transductive": args.transductive, "scored_clips_seen_in_pretraining": len(scored & set(seen["name"])),
        "labeled": int(len(table.rows("train"))),
        "test": len(truth.test), "model": "ViT-MAE tiny (64 px, patch 8, 4 blocks, hidden 128), random init",
        "epochs": args.epochs, "workers": args.workers, "batch_size": args.batch_size, "lr": args.lr,
        "norm_pix_loss": bool(args.norm_pix_loss), "mask_ratio": kind.mask_ratio(cfg),
        "before": scores["before"], "after": scores["after"],
        "dev_waf_gain": round(scores["after"]["dev_waf"] - scores["before"]["dev_waf"], 4),
        "test_waf_gain": round(scores["after"]["test_waf"] - scores["before"]["test_waf"], 4),
        # the gain's spread: each learner seed is trained on both encoders' features, so the
        # per-seed differences are paired (one pre-training run and one dev split: the spread
        # says nothing about another pre-training seed)
        **paired_gain(scores["before"], scores["after"]),
        "loss_per_epoch": [round(e["loss"], 4) for e in epochs],
        "seconds_per_epoch": [e["seconds"] for e in epochs],
        "mean_seconds_per_epoch": round(float(np.mean([e["seconds"] for e in epochs])), 2),
        "images_per_s_per_worker": [e["images_per_s_per_worker"] for e in epochs],
        "frame_cache_decode_s": adapted.frame_cache["decode_seconds"],
        "frames_to_object_store_s": adapted.frame_cache["dataset_seconds"],
        "pretrain_s": round(pretrain_seconds, 1),
        "extraction_s": round(summary.seconds, 1),
    }
    print(f"\nencoder  dev WAF  test WAF   (labeled-only concat-MLP on the video stream, mean of {len(seeds)} seeds)")
    for stream in streams:
        print(f"{stream:7s}  {scores[stream]['dev_waf']:.4f}   {scores[stream]['test_waf']:.4f}")
    print(f"gain     {result['dev_waf_gain']:+.4f}  {result['test_waf_gain']:+.4f}   (sd of the paired per-seed "
          f"gains {result['dev_waf_gain_sd']} / {result['test_waf_gain_sd']}; seeds gaining "
          f"{result['seeds_gaining_dev']} / {result['seeds_gaining_test']})")
    print(f"pre-training: {args.epochs} epochs, {result['mean_seconds_per_epoch']} s per epoch "
          f"({result['clips_pretrained']} clips), loss {result['loss_per_epoch'][0]} → {result['loss_per_epoch'][-1]}; "
          f"decoding the frame cache once: {result['frame_cache_decode_s']} s; "
          + ("TRANSDUCTIVE: pre-trained on the test clips" if args.transductive
             else f"{left_out} held-out clips left out, {result['scored_clips_seen_in_pretraining']} scored clips seen"))
    return write_record(args.out, result, script=__file__, fields=FIELDS, argv=argv, load_start=load_start)


if __name__ == "__main__":
    main()
