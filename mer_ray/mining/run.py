"""The whole run: corpus → manifest → features (Ray Data) → mining rounds (Ray Train) → outputs.

`run_cyclic_mining(RunConfig())` is what `python jobs/cyclic_mining.py` does with no arguments.
Read it top to bottom: each step is one call into the stage that owns it. The console gets the
short config (the full one is saved), one line per stage (extraction with a periodic progress
line), the per-round table once, row by row as rounds finish (`mer_ray.mining.progress`), and
the final summary; the corpus's bad rows are left out and listed in `<out>/problems.csv`
(`strict=True` refuses them instead).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from mer_ray import console
from mer_ray.config import RunConfig
from mer_ray.corpus.manifest import load_corpus, write_manifest
from mer_ray.corpus.truth import read_truth
from mer_ray.features.stage import extract_noisy_view, extract_with_progress
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import load_feature_table, save_norm, with_noisy_view
from mer_ray.mining.cycle import MiningData
from mer_ray.mining.data import data_line, mining_data
from mer_ray.mining.outputs import final_lines, finalize, run_baselines
from mer_ray.mining.resolve import config_summary, resolve
from mer_ray.mining.trainer import RAY_DIR, run_mining
from mer_ray.report import write_report
from mer_ray.session import init_ray
from mer_ray.storage import Mirror, is_remote


def run_cyclic_mining(cfg: RunConfig, *, strict: bool = False, mlflow: str | None = None) -> Path:
    """The run (see the module docstring). `strict`: refuse a corpus with bad rows instead of
    leaving them out; `mlflow`: log it to MLflow ("" = ./mlruns, a folder or a tracking URI)."""
    cfg = resolve(cfg)
    # An object-store run works on a local mirror of its folder: pulled first (a rerun resumes
    # from the bucket's rounds), each round pushed by the workers as it completes, the rest at the end.
    mirror = Mirror.of(cfg.out) if is_remote(cfg.out) else None
    if mirror:
        pulled = mirror.pull(skip=(RAY_DIR + "/",))
        print(f"run {cfg.out}: {pulled} files pulled into {mirror.local}", flush=True)
    remote, cfg = cfg.out, (dataclasses.replace(cfg, out=str(mirror.local)) if mirror else cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    print("mer-ray cyclic mining\n" + config_summary(cfg) + f"\n  (full config: {out / 'config.yaml'})", flush=True)
    (out / "config.yaml").write_text(cfg.dumps())
    tracker = None
    if mlflow is not None:
        from mer_ray.tracking import MlflowTracker

        tracker = MlflowTracker(mlflow, out)
        tracker.start(cfg.to_dict(), cfg.dumps())
        print(f"MLflow: run {tracker.run_id} in {tracker.uri}", flush=True)
    try:
        final, report = _mine(cfg, out, remote=remote if mirror else None, strict=strict,
                              on_round=[tracker.log_round] if tracker else [])
    except BaseException:
        if tracker:
            tracker.finish(None, status="FAILED")
        raise
    if tracker:
        tracker.finish(final)
    print(final_lines(final))
    if mirror:
        mirror.push_tree(last=("state.json",))
        print(f"uploaded to {remote}", flush=True)
    problems = " problems.csv," if (out / "problems.csv").exists() else ""
    print(f"outputs in {out}: predictions.csv, predictions-mer2023.csv, metrics.json, {report.name},{problems} "
          f"round-*/ (vote tables, checkpoints); Ray's logs: {console.log_location()}", flush=True)
    return out


def _mine(cfg: RunConfig, out: Path, *, remote: str | None, strict: bool, on_round) -> tuple[dict, Path]:
    """Ray up → data → every round → final ensemble → baselines → report."""
    init_ray()
    if not cfg.storage and len([n for n in ray.nodes() if n["Alive"]]) > 1:
        print("warning: a multi-node cluster without --storage: workers on other nodes write the "
              "feature store and round state to their own disks; pass --storage <shared folder>", flush=True)

    data, _ = prepare_data(cfg, strict=strict)
    data_ref = ray.put(data)   # once: every worker, round and baseline reads the same arrays
    # The driver keeps names, splits and labels only: the feature matrices now live in the
    # object store, and a second copy here would double the run's peak memory at MER scale.
    data = dataclasses.replace(data, table=dataclasses.replace(data.table, streams={}))
    where = f"{cfg.train_workers} Ray Train workers" if cfg.train_workers else "the driver process"
    print(f"mining: round 0 + {cfg.mining.rounds} rounds, {len(cfg.learners)} learners in {where}; "
          f"a row per round as it finishes:", flush=True)
    run_mining(cfg, data_ref, remote=remote, on_round=on_round)
    if remote:
        Mirror(remote, out).pull(skip=(RAY_DIR + "/",))   # the checkpoints of learners trained on other nodes
    final = finalize(cfg, data)
    if cfg.baselines:
        run_baselines(cfg, data, data_ref)
    return final, write_report(out)


def prepare_data(cfg: RunConfig, *, strict: bool = False) -> tuple[MiningData, pd.DataFrame]:
    """Manifest → features (only what is missing) → the aligned table → the splits."""
    manifest, _ = load_corpus(cfg.corpus, strict=strict, report_dir=cfg.out)
    write_manifest(manifest, Path(cfg.out) / "manifest.parquet")
    counts = manifest["split"].value_counts().to_dict()
    print(f"corpus {cfg.corpus}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)

    store = FeatureStore(cfg.store)
    print(extract_with_progress(manifest, store, cfg.extract).line(), flush=True)
    table, dropped = load_feature_table(manifest, store, sorted(cfg.extract.streams))
    save_norm(table.norm, Path(cfg.out) / "norm.npz")   # jobs/predict.py scales new clips the same way

    noisy_rows = noisy_source = np.zeros(0, np.int64)
    if cfg.extract.noisy_view:
        labeled = manifest[manifest["split"] == "train"]
        views = extract_noisy_view(labeled, store, cfg.extract, seed=cfg.seed)
        table, noisy_rows, noisy_source = with_noisy_view(table, store, views, labeled["name"])

    data = mining_data(cfg, table, read_truth(cfg.truth), noisy_rows=noisy_rows, noisy_source=noisy_source)
    print(data_line(data, noisy_rows, len(dropped)), flush=True)
    return data, manifest
