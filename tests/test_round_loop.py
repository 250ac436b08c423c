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


def _round(r, oof, gain=None, noise=None, adopted=True):
    m = dict(round=r, dev_waf=oof, adopted=adopted)
    if gain is not None:
        m["vs_round0"] = dict(gain=gain, noise=noise)
    return m


def test_a_round_replaces_round_0_only_when_it_beats_it_beyond_the_noise():
    from mer_ray.mining.cycle import final_round

    close = [_round(0, 0.80), _round(1, 0.81, 0.01, 0.015), _round(2, 0.805, 0.005, 0.012)]
    guarded = MiningConfig()   # the default: final_margin 1.0
    chosen, why = final_round(close, guarded)
    assert chosen == 0 and "within 1 x its noise 0.0150" in why
    # no margin takes the best held-out round, however close
    assert final_round(close, MiningConfig(final_margin=0.0))[0] == 1
    # the best round is within the noise, an earlier one is clear of it: that one
    mixed = [_round(0, 0.80), _round(1, 0.84, 0.04, 0.01), _round(2, 0.85, 0.05, 0.06)]
    assert final_round(mixed, guarded)[0] == 1
    clear = [_round(0, 0.80), _round(1, 0.84, 0.04, 0.01), _round(2, 0.86, 0.06, 0.01), _round(3, 0.70, -0.1, 0.01, False)]
    assert final_round(clear, guarded)[0] == 2
    assert final_round(clear, dataclasses.replace(guarded, adopt="always"))[0] == 3
    with pytest.raises(ValueError, match="final_margin"):
        MiningConfig(final_margin=-1)


def test_each_round_records_its_gain_over_round_0_and_a_resumed_run_keeps_scoring_against_it(tmp_path, one_torch_thread):
    from mer_ray.mining.cycle import final_round

    data, truth = mining_data(load_viewset("digits", seed=1), 1)
    quick = tuple(dataclasses.replace(s, max_epochs=6, patience=2) for s in LEARNERS[:3])
    cfg = RunConfig(seed=1, train_workers=0, learners=quick, mining=MiningConfig(rounds=1, folds=2))
    history = run_rounds(cfg, data, tmp_path / "run", echo=False)
    assert "vs_round0" not in history[0]
    vs = history[1]["vs_round0"]
    assert vs["gain"] == pytest.approx(history[1]["dev_waf"] - history[0]["dev_waf"], abs=1e-4)
    assert 0 < vs["noise"] < 0.2
    # one round more, resumed from the folder: round 2 is scored against the saved round 0
    more = dataclasses.replace(cfg, mining=dataclasses.replace(cfg.mining, rounds=2))
    resumed = run_rounds(more, data, tmp_path / "run", echo=False)
    assert [m["round"] for m in resumed] == [0, 1, 2]
    if resumed[2]["adopted"]:
        assert resumed[2]["vs_round0"]["gain"] == pytest.approx(resumed[2]["dev_waf"] - resumed[0]["dev_waf"], abs=1e-4)
    chosen, why = final_round(resumed, more.mining)
    assert chosen in (0, 1, 2) and why


def test_a_convex_learner_keeps_the_l2_strength_its_round_0_chose(tmp_path, one_torch_thread):
    """`solver: lbfgs` chooses C on the labeled clips alone and keeps it (`c_from: round0`):
    chosen again with mined clips in training, the held-out loss picked ever stronger L2 and the
    learner unlearned what the mined clips taught (docs/mining.md, session 13)."""
    data, truth = mining_data(load_viewset("digits", seed=3), 3)
    lr = LearnerSpec("M2", ("audio", "text", "video"), fusion="linear", dropout=0.0, solver="lbfgs",
                     cs=(0.001, 0.01, 0.1, 1.0, 10.0, 100.0))
    mining = MiningConfig(rounds=3, folds=5, options={"vote": {"agree": 1}}, adopt="always")

    def cs_per_round(spec):
        cfg = RunConfig(seed=3, train_workers=0, learners=(spec,), mining=mining)
        return [m["learners"]["M2"]["C"] for m in run_rounds(cfg, data, tmp_path / spec.c_from, echo=False)]

    kept, chosen = cs_per_round(lr), cs_per_round(dataclasses.replace(lr, c_from="every-round"))
    assert kept[0] == chosen[0]                       # round 0 is the same fit
    assert kept == [kept[0]] * len(kept)              # and its C is the one every later round uses
    assert chosen[-1] < chosen[0]                     # what it prevents: the L2 creeping up
    with pytest.raises(ValueError, match="c_from must be 'round0' or 'every-round'"):
        run_rounds(RunConfig(seed=3, train_workers=0, learners=(dataclasses.replace(lr, c_from="last"),),
                             mining=mining), data, tmp_path / "bad", echo=False)


def test_a_vote_the_roster_cannot_reach_is_refused_before_round_0_trains(tmp_path):
    from mer_ray.mining.resolve import resolve_learners

    one = (LearnerSpec("A", ("audio", "text", "video"), **LINEAR),)
    cfg = RunConfig(seed=1, train_workers=0, learners=one, mining=MiningConfig(rounds=2, folds=3))
    with pytest.raises(ValueError, match=r"vote.agree is 3 but the run has 1 learner\(s\).*at most 1"):
        resolve_learners(cfg)
    data, _ = mining_data(load_viewset("digits", seed=1), 1)
    with pytest.raises(ValueError, match="vote.agree is 3"):
        run_rounds(cfg, data, tmp_path / "run", echo=False)
    assert not list((tmp_path / "run").glob("round-*"))          # no training was spent
    # what a one-learner run can do: no rounds to vote in, or a vote it can reach
    resolve_learners(dataclasses.replace(cfg, mining=MiningConfig(rounds=0)))
    resolve_learners(dataclasses.replace(cfg, mining=MiningConfig(rounds=2, options={"vote": {"agree": 1}})))
