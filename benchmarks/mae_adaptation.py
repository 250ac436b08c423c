"""Does adapting an image MAE on the unlabeled pool give better features? (issue #9, seed 000)

On the demo corpus, side by side in one run:
  (a) before: a tiny ViT-MAE, random-initialised with the run's seed, saved as an `hf-image:`
      folder — exactly the weights pre-training starts from;
  (b) after:  the same model after `--epochs` epochs of `mer_ray.adapt.pretrain_mae` on the
      1,500 unlabeled clips (Ray Data frame cache → Ray Train).
Both encoders extract features of the labeled and the held-out test clips through the normal
extraction pipeline (`extract_features`, one stream each); then a labeled-only video learner
(`fit_learner`, concat-MLP on that one stream) is trained on the project's stratified split of
the labeled clips and scored on its dev clips (dev WAF, what the mining loop ranks by) and on the
test clips (test WAF, from truth/). Learner seeds are averaged, since 60 dev clips are few.

Also measured: the frame cache's decode time (what every epoch would pay again without it) and
seconds / images per second per epoch.

    python benchmarks/mae_adaptation.py                 # 30 epochs, 1 worker, 10 learner seeds
    python benchmarks/mae_adaptation.py --epochs 3 --workers 2

Prints a table and writes benchmarks/results/mae_adaptation.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import ray
import torch

from mer_ray.adapt import PretrainConfig, create_mae_kind, pretrain_mae
from mer_ray.config import ExtractConfig, LearnerSpec
from mer_ray.corpus.manifest import read_corpus
from mer_ray.corpus.truth import read_truth
from mer_ray.features.extract import extract_features
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import load_feature_table
from mer_ray.metrics import waf
from mer_ray.mining.cycle import stratified_split
from mer_ray.mining.run import demo_corpus
from mer_ray.train import fit_learner, predict_proba

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "mae_adaptation.json"


def labeled_only_waf(table, stream: str, test_names: dict[str, int], seeds: list[int]) -> dict:
    """Dev and test WAF of a labeled-only learner on one stream, per seed and averaged."""
    labeled = table.rows("train")
    train, dev = stratified_split(table.label, labeled, 0.2, 0)   # the mining loop's dev split (seed 0)
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--norm-pix-loss", type=int, default=1, help="1: MAE's normalised-pixel target; 0: raw pixels")
    p.add_argument("--seeds", type=int, default=10, help="learner seeds averaged")
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench-mae")
    p.add_argument("--keep", action="store_true", help="reuse an earlier run in --work (resume) instead of a fresh one")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

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
                         torch_threads=1, log_every=1000)
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
    result = {
        "corpus": str(corpus), "clips_pretrained": epochs[-1]["clips"], "labeled": int(len(table.rows("train"))),
        "test": len(truth.test), "model": "ViT-MAE tiny (64 px, patch 8, 4 blocks, hidden 128), random init",
        "epochs": args.epochs, "workers": args.workers, "batch_size": args.batch_size, "lr": args.lr,
        "norm_pix_loss": bool(args.norm_pix_loss), "mask_ratio": kind.mask_ratio(cfg),
        "before": scores["before"], "after": scores["after"],
        "dev_waf_gain": round(scores["after"]["dev_waf"] - scores["before"]["dev_waf"], 4),
        "test_waf_gain": round(scores["after"]["test_waf"] - scores["before"]["test_waf"], 4),
        "loss_per_epoch": [round(e["loss"], 4) for e in epochs],
        "seconds_per_epoch": [e["seconds"] for e in epochs],
        "mean_seconds_per_epoch": round(float(np.mean([e["seconds"] for e in epochs])), 2),
        "images_per_s_per_worker": [e["images_per_s_per_worker"] for e in epochs],
        "frame_cache_decode_seconds": adapted.frame_cache["decode_seconds"],
        "frames_to_object_store_seconds": adapted.frame_cache["dataset_seconds"],
        "pretrain_seconds_total": round(pretrain_seconds, 1),
        "extraction_seconds": round(summary.seconds, 1),
        # other jobs on the machine slow every timing here: the 1-minute load average at the end
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "gpu": None,
                    "load_average_1min": round(os.getloadavg()[0], 1)},
        "command": "python benchmarks/mae_adaptation.py " + " ".join(argv if argv is not None else os.sys.argv[1:]),
    }
    print(f"\nencoder  dev WAF  test WAF   (labeled-only concat-MLP on the video stream, mean of {len(seeds)} seeds)")
    for stream in streams:
        print(f"{stream:7s}  {scores[stream]['dev_waf']:.4f}   {scores[stream]['test_waf']:.4f}")
    print(f"gain     {result['dev_waf_gain']:+.4f}  {result['test_waf_gain']:+.4f}")
    print(f"pre-training: {args.epochs} epochs, {result['mean_seconds_per_epoch']} s per epoch "
          f"({result['clips_pretrained']} clips), loss {result['loss_per_epoch'][0]} → {result['loss_per_epoch'][-1]}; "
          f"decoding the frame cache once: {result['frame_cache_decode_seconds']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
