"""Apply a finished run to new clips (or to features already in a store).

    predict_with_run(run_dir, corpus=..., out=...)   →  predictions.csv (+ the MER 2023 format)

Uses exactly what the run used: its config (streams, encoders, learners), the normalisation
statistics saved with it, the learner weights of the round its final ensemble came from
(`metrics.json` → `final.round`; the last complete round for older runs), loaded with
`torch.load(weights_only=True)` so a checkpoint can never run code, and its dev ranking. A
k-fold run's checkpoints (`mining.folds >= 2`) hold every fold's model (`folds.<i>.*`): they are
rebuilt as the same `FoldEnsemble` (fold probabilities averaged) that the run predicted with.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from mer_ray.config import config_from_dict
from mer_ray.corpus.manifest import load_corpus
from mer_ray.features.stage import extract_with_progress
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import load_feature_table, load_norm
from mer_ray.mining.ensemble import ensemble
from mer_ray.mining.outputs import learner_scores, write_predictions
from mer_ray.mining.state import read_rounds, round_dir
from mer_ray.session import init_ray
from mer_ray.storage import Mirror, is_remote
from mer_ray.train import FoldEnsemble, build_model, predict_outputs

_FOLD_KEY = re.compile(r"^folds\.(\d+)\.")


def load_learner(spec, table, path: Path) -> torch.nn.Module:
    """One learner's checkpoint: a single model, or a FoldEnsemble of k fold models."""
    state = torch.load(path, weights_only=True, map_location="cpu")
    folds = {int(m.group(1)) for k in state for m in [_FOLD_KEY.match(k)] if m}
    model = FoldEnsemble([build_model(spec, table) for _ in range(max(folds) + 1)]) if folds \
        else build_model(spec, table)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: these weights do not fit learner {spec.name} of the run's config "
                         f"({spec.fusion} over {', '.join(spec.streams)}): {str(err).splitlines()[0]}; was the "
                         f"run folder's config.yaml or feature store changed after it ran?") from None
    return model.eval()


def final_round_metrics(run_dir: Path) -> dict:
    """The metrics of the round whose learners made the run's final predictions."""
    rounds = read_rounds(run_dir)
    if not rounds:
        raise ValueError(f"{run_dir}: no complete round (state.json); is it a finished mining run folder?")
    summary = run_dir / "metrics.json"
    chosen = json.loads(summary.read_text()).get("final", {}).get("round") if summary.exists() else None
    return next((m for m in rounds if m["round"] == chosen), rounds[-1])


def predict_with_run(run_dir: str | Path, corpus: str | Path, out: str | Path, *,
                     store: str | Path | None = None, strict: bool = False) -> Path:
    import yaml

    if is_remote(run_dir):   # a run kept in an object store: its local copy, brought up to date
        mirror = Mirror.of(str(run_dir))
        mirror.pull(skip=("ray/",))
        run_dir = mirror.local
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir}: no config.yaml; --run takes the output folder of a mining run")
    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    metrics = final_round_metrics(run_dir)
    used = round_dir(run_dir, metrics["round"])

    out.mkdir(parents=True, exist_ok=True)
    manifest, _ = load_corpus(corpus, strict=strict, report_dir=out)
    store = FeatureStore(store or cfg.store)
    store.sync()
    streams = sorted(cfg.extract.streams)
    stored = [store.stored_names(s) | {e["name"] for e in store.errors(s)} for s in streams]
    if set(manifest["name"]) - set.intersection(*stored):
        init_ray()
        print(extract_with_progress(manifest, store, cfg.extract).line(), flush=True)
    table, dropped = load_feature_table(manifest, store, streams, norm=load_norm(run_dir / "norm.npz"))
    probs, valence = [], []
    for spec in cfg.learners:
        p, v = predict_outputs(load_learner(spec, table, used / f"{spec.name}.pt"), table, spec)
        probs.append(p)
        valence.append(v)
    dev_scores, weights = learner_scores(metrics, cfg)
    labels = ensemble(cfg.mining.ensemble, np.stack(probs), dev_scores, weights)
    write_predictions(out, table.names, labels, np.nanmean(np.stack(valence), 0))
    folds = f", {cfg.mining.folds}-fold ensembles" if cfg.mining.folds >= 2 else ""
    print(f"predicted {len(table)} clips with {run_dir} (round {metrics['round']}{folds}); "
          f"{len(dropped)} without features; wrote {out / 'predictions.csv'}", flush=True)
    return out / "predictions.csv"
