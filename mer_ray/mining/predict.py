"""Apply a finished run to new clips (or to features already in a store).

    predict_with_run(run_dir, corpus=..., out=...)   →  predictions.csv (+ the MER 2023 format)

Uses exactly what the run used: its config (streams, encoders, learners), the normalisation
statistics saved with it, the last complete round's learner weights (loaded with
`torch.load(weights_only=True)`: a checkpoint can never run code) and its dev ranking.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mer_ray.config import config_from_dict
from mer_ray.corpus.manifest import read_corpus
from mer_ray.features.extract import extract_features
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import load_feature_table, load_norm
from mer_ray.mining.ensemble import ensemble
from mer_ray.mining.run import init_ray, write_predictions
from mer_ray.mining.state import read_rounds, round_dir
from mer_ray.storage import Mirror, is_remote
from mer_ray.train import build_model, predict_outputs


def predict_with_run(run_dir: str | Path, corpus: str | Path, out: str | Path, *,
                     store: str | Path | None = None) -> Path:
    import yaml

    if is_remote(run_dir):   # a run kept in an object store: its local copy, brought up to date
        mirror = Mirror.of(str(run_dir))
        mirror.pull(skip=("ray/",))
        run_dir = mirror.local
    run_dir, out = Path(run_dir), Path(out)
    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    metrics = read_rounds(run_dir)[-1]
    last = round_dir(run_dir, metrics["round"])

    manifest = read_corpus(corpus)
    store = FeatureStore(store or cfg.store)
    store.sync()
    missing = set(manifest["name"]) - set.intersection(*(store.stored_names(s) for s in cfg.extract.streams))
    if missing:
        init_ray()
        print(extract_features(manifest, store, cfg.extract).line(), flush=True)
    table, dropped = load_feature_table(manifest, store, sorted(cfg.extract.streams),
                                        norm=load_norm(run_dir / "norm.npz"))
    probs, valence = [], []
    for spec in cfg.learners:
        model = build_model(spec, table)
        model.load_state_dict(torch.load(last / f"{spec.name}.pt", weights_only=True, map_location="cpu"))
        p, v = predict_outputs(model, table, spec)
        probs.append(p)
        valence.append(v)
    dev_scores = [metrics["learners"][spec.name]["dev_waf"] for spec in cfg.learners]
    labels = ensemble(cfg.mining.ensemble, np.stack(probs), dev_scores)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out, table.names, labels, np.nanmean(np.stack(valence), 0))
    print(f"predicted {len(table)} clips with {run_dir} (round {metrics['round']}); "
          f"{len(dropped)} without features; wrote {out / 'predictions.csv'}")
    return out / "predictions.csv"
