"""MER 2024-scale cyclic mining through the real `jobs/cyclic_mining.py` code path.

Synthetic feature rows at MER 2024 size (5,030 labeled + 115,595 unlabeled; streams of 1024,
768, 768 and 512 dims, float32, class-dependent with noise) are written to a Parquet feature
store with a generic CSV manifest; then `run_cyclic_mining` runs four learners for three
rounds exactly as the job does. Prints and writes benchmarks/results/mer2024_scale.json with
wall_s, peak_pss_gib (PSS of every Ray process together, GiB), feature_gib, and per round the
clips mined, the pseudo-label precision, the dev / test WAF, whether it was adopted and why (the
quality, not only the speed); final_round / final_test_waf: the round the predictions come from.
A round that is not adopted ends the loop, so fewer than 3 mined rounds can be recorded.

    python benchmarks/mer2024_scale.py                 # full size (~10-25 min on 2 cores)
    python benchmarks/mer2024_scale.py --scale 0.05    # a quick look
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import PeakMemory  # noqa: E402
from record import load_average, write_record  # noqa: E402

from mer_ray.config import ExtractConfig, LearnerSpec, MiningConfig, RunConfig  # noqa: E402
from mer_ray.features.store import FeatureStore  # noqa: E402
from mer_ray.labels import EMOTIONS  # noqa: E402

STREAMS = {"audio": 1024, "video": 768, "text": 768, "joint": 512}
PRIORS = np.array([0.27, 0.24, 0.22, 0.14, 0.07, 0.06])
FIELDS = ("rows_labeled", "rows_unlabeled", "scale", "epochs", "wall_s", "peak_pss_gib", "feature_gib",
          "peak_over_features", "ray_footprint_pss_gib", "above_footprint_over_features", "mined_per_round",
          "seconds_per_round", "pseudo_label_precision_per_round", "dev_waf_per_round", "test_waf_per_round",
          "adopted_per_round", "reason_per_round", "final_round", "final_test_waf")


def make_rows(root: Path, n_labeled: int, n_unlabeled: int, n_test: int, seed: int = 0) -> float:
    """Write the manifest, truth and feature store; returns the raw feature size in GiB."""
    rng = np.random.default_rng(seed)
    n = n_labeled + n_unlabeled + n_test
    names = np.array([f"sample_{i:08d}" for i in rng.permutation(n)])
    labels = rng.choice(len(EMOTIONS), size=n, p=PRIORS)
    split = np.array(["train"] * n_labeled + ["unlabeled"] * (n_unlabeled + n_test))
    # features only, no media: a transcript makes each row usable (load_corpus leaves out a clip
    # with neither media nor transcript); the text stream's features come from the store all the same
    manifest = pd.DataFrame({"name": names, "split": split, "transcript": "synthetic feature row",
                             "label": [EMOTIONS[c] if s == "train" else "" for c, s in zip(labels, split)]})
    root.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(root / "manifest.csv", index=False)
    (root / "truth").mkdir(exist_ok=True)
    test = slice(n_labeled + n_unlabeled, n)
    pool = slice(n_labeled, n_labeled + n_unlabeled)
    pd.DataFrame({"name": names[test], "discrete": [EMOTIONS[c] for c in labels[test]]}).to_csv(root / "truth" / "test.csv", index=False)
    pd.DataFrame({"name": names[pool], "discrete": [EMOTIONS[c] for c in labels[pool]]}).to_csv(root / "truth" / "unlabeled.csv", index=False)

    store = FeatureStore(root / "features")
    for s, (stream, dim) in enumerate(STREAMS.items()):
        srng = np.random.default_rng(seed + 1 + s)
        # each stream separates the classes only weakly (class centres ~1.2 noise sd apart), so
        # the learners need the fusion and the vote has something to do
        centres = srng.normal(0, 1, size=(len(EMOTIONS), dim)).astype(np.float32) * (0.85 / np.sqrt(dim))
        for start in range(0, n, 8192):
            stop = min(n, start + 8192)
            block = srng.normal(0, 1, size=(stop - start, dim)).astype(np.float32)
            block += centres[labels[start:stop]]
            store.write_part(stream, list(names[start:stop]), block)
        store.write_meta(stream, {"spec": f"synthetic-{dim}", "modality": "synthetic", "dim": dim,
                                  "pooling": "none", "dtype": "float32", "standardize": True})
    return n * sum(STREAMS.values()) * 4 / 2**30


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--work", default=".cache/bench-mer2024")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", default="benchmarks/results/mer2024_scale.json")
    args = p.parse_args(argv)
    load_start = load_average()

    # Ray's own processes (GCS, raylet, dashboard, Train controller and workers with torch
    # loaded) take a few GB whatever the data: measure that footprint on a 1 % run first, so
    # the features' share of the peak can be told apart from it.
    footprint = run_once(args, scale=0.01, epochs=1)
    result = run_once(args, scale=args.scale, epochs=args.epochs)
    result["ray_footprint_pss_gib"] = footprint["peak_pss_gib"]
    result["above_footprint_over_features"] = round(
        (result["peak_pss_gib"] - footprint["peak_pss_gib"]) / result["feature_gib"], 2)
    print("\n| wall s | peak PSS GiB (all Ray processes) | Ray footprint GiB (1 % run) | raw features GiB "
          "| peak / features | (peak - footprint) / features | mined per round | precision per round "
          "| dev WAF per round | test WAF per round |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {result['wall_s']} | {result['peak_pss_gib']} | {result['ray_footprint_pss_gib']} | {result['feature_gib']} | "
          f"{result['peak_over_features']} | {result['above_footprint_over_features']} | "
          f"{result['mined_per_round']} | {result['pseudo_label_precision_per_round']} | "
          f"{result['dev_waf_per_round']} | {result['test_waf_per_round']} |")
    print(f"final predictions from round {result['final_round']}: test WAF {result['final_test_waf']}; "
          f"last round: {result['reason_per_round'][-1]}")
    write_record(args.out, result, script=__file__, fields=FIELDS, argv=argv, load_start=load_start)


def run_once(args, *, scale: float, epochs: int) -> dict:
    n_labeled, n_unlabeled = int(5030 * scale), int(115595 * scale)
    n_test = int(1169 * scale)
    root = Path(args.work) / f"scale-{scale}"
    t0 = time.perf_counter()
    feature_gb = make_rows(root, n_labeled, n_unlabeled - n_test, n_test)
    print(f"synthetic rows: {n_labeled} labeled + {n_unlabeled} unlabeled ({n_test} held out), "
          f"{feature_gb:.2f} GiB of float32 features, written in {time.perf_counter() - t0:.0f} s", flush=True)

    # M1..M4 over different stream combinations, as at MER 2024 (seed 004)
    common = dict(hidden=128, max_epochs=epochs, patience=3, batch_size=256)
    learners = (
        LearnerSpec("M1", ("audio", "text", "video"), fusion="attention", **common),
        LearnerSpec("M2", ("audio", "joint", "video"), fusion="concat-mlp", **common),
        LearnerSpec("M3", ("joint", "text", "video"), fusion="attention", **common),
        LearnerSpec("M4", ("audio", "text"), fusion="concat-mlp", **common),
    )
    cfg = RunConfig(corpus=str(root / "manifest.csv"), truth=str(root / "truth"), store=str(root / "features"),
                    out=str(root / "run"), train_workers=2, learners=learners,
                    extract=ExtractConfig(streams={s: f"synthetic-{d}" for s, d in STREAMS.items()}),
                    mining=MiningConfig(rounds=3))
    import ray
    from mer_ray.mining.run import run_cyclic_mining

    shutil.rmtree(cfg.out, ignore_errors=True)
    start = time.perf_counter()
    with PeakMemory() as memory:
        ray.init(address="local", dashboard_host="127.0.0.1", log_to_driver=True)
        out = run_cyclic_mining(cfg)
        wall = time.perf_counter() - start
        ray.shutdown()
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "rows_labeled": n_labeled, "rows_unlabeled": n_unlabeled, "scale": scale, "epochs": epochs,
        "wall_s": round(wall, 1), "peak_pss_gib": round(memory.peak_gib, 2), "feature_gib": round(feature_gb, 2),
        "peak_over_features": round(memory.peak_gib / feature_gb, 2),
        "mined_per_round": [r["mined"] for r in metrics["rounds"]],
        "seconds_per_round": [r["seconds"] for r in metrics["rounds"]],
        # quality beside the speed: the selection's precision against the pool's truth, the
        # learners' dev WAF and the ensemble's test WAF, round by round
        "pseudo_label_precision_per_round": [r.get("pseudo_label_precision") for r in metrics["rounds"]],
        "dev_waf_per_round": [r.get("dev_waf") for r in metrics["rounds"]],
        "test_waf_per_round": [r["test_waf"] for r in metrics["rounds"]],
        "adopted_per_round": [r.get("adopted") for r in metrics["rounds"]],
        # why each round was adopted or not, and whether the loop stopped there (a round that
        # is not adopted ends the mining); the final predictions come from `final_round`
        "reason_per_round": [r.get("reason") for r in metrics["rounds"]],
        "final_round": metrics["final"]["round"], "final_test_waf": metrics["final"]["test_waf"],
    }


if __name__ == "__main__":
    main()
