"""The round loop with a dev split (mining.folds: 0) and a policy that learns from held-out
predictions: class-quantile's thresholds come from the dev clips' probabilities and labels,
which must travel together through `run_rounds` (they once came with the fit rows' labels and
the first vote failed with a shape error)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mer_ray.config import LearnerSpec, MiningConfig, RunConfig
from mer_ray.mining.cycle import run_rounds
from mer_ray.splits import holdout
from mer_ray.viewdata import load_viewset, mining_data

LINEAR = dict(fusion="linear", lr=1e-2, dropout=0.0, weight_decay=1e-3, max_epochs=30, patience=5)
LEARNERS = (LearnerSpec("A", ("audio", "text", "video"), **LINEAR), LearnerSpec("B", ("audio", "text"), **LINEAR),
            LearnerSpec("C", ("text", "video"), **LINEAR), LearnerSpec("D", ("audio", "video"), **LINEAR))


def test_class_quantile_mines_through_the_round_loop_with_a_dev_split(tmp_path, one_torch_thread):
    data, truth = mining_data(load_viewset("digits", seed=1), 1)
    train, dev = holdout(data.table.label, data.train, 0.3, 1)
    data = dataclasses.replace(data, train=train, dev=dev)
    mining = MiningConfig(rounds=1, folds=0, policy=("vote", "class-quantile"),
                          options={"class-quantile": {"eta": 0.5}}, adopt="always")
    cfg = RunConfig(seed=1, train_workers=0, learners=LEARNERS, mining=mining)

    history = run_rounds(cfg, data, tmp_path / "run", echo=False)

    assert [m["round"] for m in history] == [0, 1]
    mined = history[1]
    # the thresholds are per class quantiles of correct dev predictions: clips get through, and
    # what gets through is mostly right (the dev split, not the test clips, set the bar)
    assert mined["mined"] > 0
    assert mined["pseudo_label_precision"] > 0.8
    assert len(dev) and mined["dev_waf"] is not None


def test_a_misspelt_choice_is_refused_before_any_training():
    with pytest.raises(ValueError, match="mining.adopt must be one of oof, always; got 'none'"):
        MiningConfig(adopt="none")
    with pytest.raises(ValueError, match="mining.split"):
        MiningConfig(split="evenly")


def test_a_weighted_ensemble_records_its_weights_and_scores_the_test_with_them(tmp_path, one_torch_thread):
    import numpy as np

    from mer_ray.mining.ensemble import ensemble
    from mer_ray.mining.state import round_dir

    data, truth = mining_data(load_viewset("digits", seed=1), 1)
    mining = MiningConfig(rounds=0, folds=3, ensemble="weighted")
    cfg = RunConfig(seed=1, train_workers=0, learners=LEARNERS, mining=mining)

    history = run_rounds(cfg, data, tmp_path / "run", echo=False)

    weights = [history[0]["learners"][s.name]["weight"] for s in LEARNERS]
    assert sum(weights) == pytest.approx(1.0) and all(w >= 0 for w in weights)
    probs = np.load(round_dir(tmp_path / "run", 0) / "probs.npz")["probs"]
    scores = [history[0]["learners"][s.name]["dev_waf"] for s in LEARNERS]
    pred = ensemble("weighted", probs[:, data.test], scores, weights)
    assert history[0]["test_acc"] == pytest.approx(float((pred == data.test_labels).mean()), abs=1e-4)
    # a plain ensemble has no weights to record
    plain = run_rounds(dataclasses.replace(cfg, mining=MiningConfig(rounds=0, folds=3)), data,
                       tmp_path / "plain", echo=False)
    assert "weight" not in plain[0]["learners"]["A"]
