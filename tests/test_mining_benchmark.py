"""benchmarks/mining_quality.py compares rosters: `--learners FILE` runs the default with the
file's learners, and the roster travels with the run's overrides (so a resumed benchmark does
not mix runs of two rosters)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import mining_quality  # noqa: E402


def test_the_default_runs_with_the_roster_it_is_given(one_torch_thread):
    data, truth = mining_quality.load_data("digits", 1, None)
    roster = [{"name": "LR", "streams": ["audio", "text", "video"], "fusion": "linear", "dropout": 0.0,
               "solver": "lbfgs", "cs": [0.1, 1.0, 10.0]}]
    overrides = {"learners": roster, "rounds": 1, "options": {"vote": {"agree": 1}}}

    out = mining_quality.run_mining("default", data, truth, 1, overrides)

    assert [list(r["learners_test_waf"]) for r in out["rounds"]] == [["LR"], ["LR"]]
    assert list(overrides) == ["learners", "rounds", "options"]    # the caller's record is left as it was
    assert out["round0_waf"] > 0.6                           # a real fit, not chance (1/6)


def test_what_the_final_round_changed_on_the_test_clips_is_weighed_against_their_noise(tmp_path, one_torch_thread):
    import dataclasses
    from mer_ray.config import RunConfig, config_from_dict
    from mer_ray.mining.cycle import run_rounds

    data, truth = mining_quality.load_data("digits", 1, None)
    roster = [{"name": "LR", "streams": ["audio", "text", "video"], "fusion": "linear", "dropout": 0.0,
               "solver": "lbfgs", "cs": [0.1, 1.0, 10.0]}]
    cfg = RunConfig(seed=1, train_workers=0, learners=config_from_dict({"learners": roster}).learners)
    cfg = dataclasses.replace(cfg, mining=dataclasses.replace(cfg.mining, rounds=1, adopt="always",
                                                              options={"vote": {"agree": 1}}))
    history = run_rounds(cfg, data, tmp_path, echo=False)

    change = mining_quality._test_change(tmp_path, history, 1, data, cfg)
    moved = round((history[1]["test_acc"] - history[0]["test_acc"]) * len(data.test))
    assert change["test_fixed"] - change["test_broken"] == moved       # the clips behind the accuracy's change
    assert change["test_fixed"] + change["test_broken"] > 0 and 0 < change["test_noise"] < 0.1
    assert mining_quality._test_change(tmp_path, history, 0, data, cfg)["test_noise"] == 0.0
    # a run below its round 0 by less than 2 sds of that noise is counted apart from one below by more
    runs = [dict(dataset="digits", method="default", test_waf=0.90, round0_waf=0.91, test_noise=0.01, rounds=[]),
            dict(dataset="digits", method="default", test_waf=0.85, round0_waf=0.91, test_noise=0.01, rounds=[])]
    entry = mining_quality.summarise(runs)["digits"]["default"]
    assert (entry["worse_than_round0"], entry["worse_beyond_test_noise"]) == (2, 1)


def test_a_roster_file_is_read_before_any_run(tmp_path):
    bad = tmp_path / "roster.yaml"
    bad.write_text("learners:\n  - {name: M2, streams: [audio], fusion: linear, solver: lbfgs}\n")
    args = ["--datasets", "digits", "--seeds", "1", "--methods", "default", "--out", str(tmp_path / "r.json")]
    with pytest.raises(ValueError, match="learner M2: solver 'lbfgs'"):
        mining_quality.main(args + ["--learners", str(bad)])
    one = tmp_path / "one.yaml"   # trainable, but one learner cannot reach the default >= 3-of-4 vote
    one.write_text("learners:\n  - {name: M2, streams: [audio], fusion: linear}\n")
    with pytest.raises(ValueError, match="vote.agree is 3 but the run has 1 learner"):
        mining_quality.main(args + ["--learners", str(one)])
    assert not list(tmp_path.glob("r.*"))   # no run started: nothing in its journal


def test_first_seed_runs_splits_kept_apart_from_seeds_0_to_4(tmp_path):
    out = tmp_path / "apart.json"
    mining_quality.main(["--datasets", "digits", "--seeds", "2", "--first-seed", "7", "--methods", "lr",
                         "lr-cb-self-train", "--train-seeds", "0", "--workers", "1", "--out", str(out)])

    record = json.loads(out.read_text())
    assert record["first_seed"] == 7
    assert sorted((r["seed"], r["method"]) for r in record["runs"]) == [
        (7, "lr"), (7, "lr-cb-self-train"), (8, "lr"), (8, "lr-cb-self-train")]
    assert "worse_than_round0" in record["summary"]["digits"]["lr-cb-self-train"]   # judged against its own start
    # split seed 7 is another cut of digits than split seed 0, not a relabelled copy
    seven, zero = (mining_quality.load_data("digits", s, None)[0] for s in (7, 0))
    assert not np.array_equal(seven.table.streams["audio"], zero.table.streams["audio"])


def test_labeled_share_labels_more_of_the_same_cut(tmp_path):
    out = tmp_path / "share.json"
    mining_quality.main(["--datasets", "digits", "--seeds", "1", "--methods", "lr", "--train-seeds", "0",
                         "--workers", "1", "--labeled-share", "0.3", "--out", str(out)])

    (run,) = json.loads(out.read_text())["runs"]
    tenth, third = (mining_quality.load_data("digits", 0, None, share)[0] for share in (0.1, 0.3))
    assert run["labeled_share"] == 0.3 and run["labeled"] == len(third.train)
    assert len(third.train) > 2.5 * len(tenth.train)
    assert np.array_equal(third.test, tenth.test)   # the same test clips: only the labeled / pool cut moves
    with pytest.raises(SystemExit):   # the demo has its own split; a share cannot apply to it
        mining_quality.main(["--datasets", "demo", "--labeled-share", "0.3", "--out", str(tmp_path / "d.json")])


@pytest.mark.parametrize("roster", sorted((BENCHMARKS / "rosters").glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_roster_is_one_the_benchmark_accepts(roster):
    from mer_ray.config import RunConfig, load_learners
    from mer_ray.mining.resolve import resolve_learners

    learners = load_learners(roster)
    assert [s.name for s in learners] == ["M1", "M2", "M3", "M4"]   # the default's vote (3 of 4) is reachable
    resolve_learners(RunConfig(learners=learners))


def test_the_two_lr_roster_is_the_default():
    # its records (mining_quality_two_lr*.json, _apart_two_lr.json) describe today's default
    from mer_ray.config import DEFAULT_LEARNERS, load_learners

    assert load_learners(BENCHMARKS / "rosters" / "two-lr.yaml") == DEFAULT_LEARNERS


def test_the_plain_loops_report_their_own_round_0_and_are_counted_below_it():
    # the strongest plain alternative is judged as the default is: does it end below where it began?
    data, truth = mining_quality.load_data("digits", 1, None)
    lr = mining_quality.run_sklearn("lr", data, truth, 1)
    cb = mining_quality.run_sklearn("lr-cb-self-train", data, truth, 1)
    self_train = mining_quality.run_sklearn("lr-self-train", data, truth, 1)

    assert cb["round0_waf"] == self_train["round0_waf"] == lr["test_waf"]   # both start from the plain LR
    assert [r["round"] for r in cb["rounds"]] == [0, 1, 2, 3, 4]
    assert cb["test_waf"] == cb["rounds"][-1]["test_waf"]                 # the loop keeps its last round
    for loop in (cb, self_train):   # the test clips it fixed and broke on the way, weighed as the default's are
        moved = loop["test_fixed"] + loop["test_broken"]
        assert moved > 0 and loop["test_noise"] > 0 or loop["test_waf"] == loop["round0_waf"]
    runs = [dict(dataset="digits", method="lr-cb-self-train", **cb),
            dict(dataset="digits", method="lr-cb-self-train", test_waf=0.80, round0_waf=0.85, rounds=[])]
    entry = mining_quality.summarise(runs)["digits"]["lr-cb-self-train"]
    assert entry["worse_than_round0"] == int(cb["test_waf"] < cb["round0_waf"]) + 1
