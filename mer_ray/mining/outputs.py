"""What a finished mining leaves: the final ensemble's predictions.csv (the challenge formats),
metrics.json with the final scores, and the baselines beside it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mer_ray.config import RunConfig
from mer_ray.labels import EMOTIONS
from mer_ray.metrics import confusion, describe_change, paired_change
from mer_ray.mining.cycle import NOISY_TEST_KEYS, MiningData, final_round
from mer_ray.mining.ensemble import ensemble
from mer_ray.mining.policies import policy_params
from mer_ray.mining.state import read_rounds, round_dir, write_json
from mer_ray.mining.trainer import run_mining

TEST_KEYS = ("test_waf", "test_acc", "test_uar")


def test_scores(metrics: dict) -> dict:
    """The clean and (when scored) noisy test block of a round's or the final metrics."""
    return {k: metrics[k] for k in (*TEST_KEYS, *NOISY_TEST_KEYS) if k in metrics}


def write_predictions(out: Path, names, labels, valence) -> None:
    """predictions.csv in the MER 2024 / 2025 format (name,discrete) and
    predictions-mer2023.csv with the learners' mean valence (name,discrete,valence)."""
    table = pd.DataFrame({"name": names, "discrete": [EMOTIONS[c] for c in labels]})
    table.to_csv(out / "predictions.csv", index=False)
    table.assign(valence=np.round(np.clip(valence, -5, 5), 4)).to_csv(out / "predictions-mer2023.csv", index=False)


def learner_scores(round_metrics: dict, cfg: RunConfig) -> tuple[list[float], list[float] | None]:
    """A round's out-of-fold WAF per learner and its ensemble weights (None unless the ensemble
    weighs its learners: `weighted`, `pruned`), in the order of cfg.learners."""
    learners = [round_metrics["learners"][spec.name] for spec in cfg.learners]
    weights = [m["weight"] for m in learners] if all("weight" in m for m in learners) else None
    return [m["dev_waf"] for m in learners], weights


def round_prediction(run_dir: Path, round_metrics: dict, cfg: RunConfig, rows: np.ndarray) -> np.ndarray:
    """A finished round's ensemble prediction for `rows`, from its saved probabilities."""
    probs = np.load(round_dir(run_dir, round_metrics["round"]) / "probs.npz", allow_pickle=False)["probs"]
    return ensemble(cfg.mining.ensemble, probs[:, rows], *learner_scores(round_metrics, cfg))


def finalize(cfg: RunConfig, data: MiningData) -> dict:
    """Ensemble the chosen round's learners → predictions.csv, final metrics."""
    out = Path(cfg.out)
    rounds = read_rounds(out)
    chosen, why = final_round(rounds, cfg.mining)   # the best adopted round, not blindly the last
    used = next(m for m in rounds if m["round"] == chosen)
    saved = np.load(round_dir(out, chosen) / "probs.npz", allow_pickle=False)
    probs = saved["probs"]
    dev_scores, weights = learner_scores(used, cfg)

    targets = np.flatnonzero(data.table.split != "train")   # pool + test: what MER asks for
    predicted = ensemble(cfg.mining.ensemble, probs[:, targets], dev_scores, weights)
    write_predictions(out, data.table.names[targets], predicted, np.nanmean(saved["valence"][:, targets], 0))

    # that round's test scores are already in its metrics
    final = {"round": chosen, "why": why, **test_scores(used)}
    if len(data.test):
        test_pred = ensemble(cfg.mining.ensemble, probs[:, data.test], dev_scores, weights)
        final["confusion"] = confusion(data.test_labels, test_pred).tolist()
        # the final round against round 0 on the test clips, with the luck of which clips those are
        round0_pred = test_pred if chosen == 0 else round_prediction(out, rounds[0], cfg, data.test)
        final["vs_round0_test"] = paired_change(round0_pred, test_pred, data.test_labels)
    # the mined clips the final learners trained on (per split, averaged over the splits)
    final["mined_total"] = int(used["mined"] if cfg.mining.revisit
                               else sum(r["mined"] for r in rounds if r["round"] <= chosen))
    write_json(out / "metrics.json", {"rounds": rounds, "final": final})

    # the per-round table was printed row by row as the rounds finished (RoundPrinter)
    print(f"final ensemble: round {chosen}, {why}", flush=True)
    return final


def run_baselines(cfg: RunConfig, data: MiningData, data_ref) -> None:
    """Baselines beside the mining, on the same features and splits:
    labeled-only (round 0 of the mining itself: the four learners before any pseudo-label) and
    single-model self-training (the first learner alone, softmax >= 0.8, seed 000)."""
    out = Path(cfg.out)
    metrics = json.loads((out / "metrics.json").read_text())
    round0 = metrics["rounds"][0]
    baselines = {"labeled-only": {"final": {k: round0.get(k) for k in (*TEST_KEYS, *NOISY_TEST_KEYS)}}}
    self_training = dataclasses.replace(
        cfg, out=str(out / "baselines" / "self-training"), learners=cfg.learners[:1], train_workers=0,
        mining=dataclasses.replace(cfg.mining, policy=("confidence",),
                                   options={"confidence": cfg.mining.options.get("confidence", {})}),
        baselines=False)
    Path(self_training.out).mkdir(parents=True, exist_ok=True)
    threshold = policy_params(self_training.mining, "confidence").threshold
    print(f"baseline: self-training of {cfg.learners[0].name} alone at confidence {threshold}", flush=True)
    run_mining(self_training, data_ref)
    finalize(self_training, data)
    baselines["self-training"] = json.loads((Path(self_training.out) / "metrics.json").read_text())
    metrics["baselines"] = baselines
    write_json(out / "metrics.json", metrics)


def final_lines(final: dict) -> str:
    """The console's closing test scores (clean, and MER-NOISE when scored)."""
    lines = [f"final: test WAF {final['test_waf']}  ACC {final['test_acc']}  "
             f"UAR {final['test_uar']}; mined {final['mined_total']} clips"]
    change = final.get("vs_round0_test")
    if change and final.get("round"):
        lines.append(f"against round 0 on the test clips: {describe_change(change)}")
    if final.get("noisy_test_waf") is not None:
        lines.append(f"noisy test (MER-NOISE): WAF {final['noisy_test_waf']}  ACC {final['noisy_test_acc']}  "
                     f"UAR {final['noisy_test_uar']}")
    return "\n".join(lines)
