"""The demo pipeline end to end on a tiny generated corpus, with real Ray Data and Ray Train."""
import dataclasses
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from mer_ray.config import MiningConfig, RunConfig, apply_preset
from mer_ray.corpus.truth import read_truth
from mer_ray.labels import EMOTIONS
from mer_ray.mining.run import run_cyclic_mining


def run(corpus, out, *, workers, rounds=2, store=None):
    """The plumbing runs seed 004's preset (a dev split, mined clips added for good, every round
    adopted), whose round structure the assertions below spell out; the default's class-aware,
    out-of-fold mining has tests of its own."""
    cfg = RunConfig(corpus=str(corpus), out=str(out), store=str(store or corpus / "features"),
                    train_workers=workers, mining=apply_preset(MiningConfig(), "seed004", {"rounds": rounds}))
    return run_cyclic_mining(cfg)


@pytest.fixture(scope="module")
def ray_train_run(ray_session, tiny_corpus, tmp_path_factory):
    """The full path: Ray Data extraction, then mining inside two Ray Train workers."""
    return run(tiny_corpus, tmp_path_factory.mktemp("runs") / "two-workers", workers=2)


def test_metrics_json_has_every_round_and_the_final_scores(ray_train_run, tiny_corpus):
    metrics = json.loads((ray_train_run / "metrics.json").read_text())
    rounds = metrics["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["pseudo_label_precision"] is None and rounds[0]["mined"] == 0
    labeled_train = rounds[0]["train_size"]
    assert labeled_train + rounds[0]["dev_size"] == 60             # the 60 labeled clips, split
    assert 9 <= rounds[0]["dev_size"] <= 15                          # ~20 % per class held out for dev
    mined_so_far = 0
    for r in rounds:
        assert set(r["learners"]) == {"M1", "M2", "M3", "M4"}
        assert all(0.0 <= v["dev_waf"] <= 1.0 for v in r["learners"].values())
        assert 0.0 <= r["test_waf"] <= 1.0
        mined_so_far += r["mined"]
        assert r["train_size"] == labeled_train + mined_so_far
        # the mined set is split evenly: learner training sets differ by at most one clip per class
        sizes = [v["train_size"] - labeled_train for v in r["learners"].values()]
        assert max(sizes) - min(sizes) <= len(EMOTIONS)
        if r["round"] > 0 and r["mined"]:
            assert 0.0 <= r["pseudo_label_precision"] <= 1.0
    assert mined_so_far > 0
    assert set(metrics["final"]) >= {"test_waf", "test_acc", "test_uar"}
    assert metrics["final"]["test_waf"] == rounds[-1]["test_waf"]
    # the final round against round 0 on the test clips: the clips behind the change, and its noise
    change, n_test = metrics["final"]["vs_round0_test"], len(read_truth(tiny_corpus / "truth").test)
    assert change["fixed"] - change["broken"] == round((rounds[-1]["test_acc"] - rounds[0]["test_acc"]) * n_test)
    assert change["waf_change"] == pytest.approx(rounds[-1]["test_waf"] - rounds[0]["test_waf"], abs=2e-4)
    assert change["noise"] > 0 or change["fixed"] == change["broken"] == 0


def test_predictions_cover_every_unlabeled_and_test_clip(ray_train_run, tiny_corpus):
    predictions = pd.read_csv(ray_train_run / "predictions.csv")
    assert list(predictions.columns) == ["name", "discrete"]
    pool = {p.stem for p in (tiny_corpus / "video-unlabeled-with-test2noise").glob("*.mp4")}
    assert set(predictions["name"]) == pool
    assert set(predictions["discrete"]) <= set(EMOTIONS)
    mer2023 = pd.read_csv(ray_train_run / "predictions-mer2023.csv")
    assert list(mer2023.columns) == ["name", "discrete", "valence"]
    assert mer2023[["name", "discrete"]].equals(predictions)
    assert mer2023["valence"].between(-5, 5).all() and mer2023["valence"].std() > 0


def test_vote_tables_record_the_mining(ray_train_run, tiny_corpus):
    truth = read_truth(tiny_corpus / "truth")
    metrics = json.loads((ray_train_run / "metrics.json").read_text())
    seen = set()
    for r in (1, 2):
        votes = pd.read_parquet(ray_train_run / f"round-{r}" / "vote_table.parquet")
        picked = votes[votes["selected"]]
        assert len(picked) == metrics["rounds"][r]["mined"]
        assert (picked["agree"] >= 3).all()
        assert set(picked["assigned"]) <= {0, 1, 2, 3} and (votes.loc[~votes["selected"], "assigned"] == -1).all()
        assert not set(votes["name"]) & set(truth.test), "held-out test clips must never be mined"
        assert not set(votes["name"]) & seen, "a mined clip is voted on again"
        seen |= set(picked["name"])
        precision = np.mean([truth.pool[n] == a for n, a in zip(picked["name"], picked["agreed"])])
        assert metrics["rounds"][r]["pseudo_label_precision"] == pytest.approx(precision, abs=1e-4)


def test_in_process_run_gives_the_same_predictions_and_resumes(ray_train_run, tiny_corpus, tmp_path):
    # Same seeds, one process instead of two Ray Train workers: the same result.
    single = run(tiny_corpus, tmp_path / "single", workers=0)
    assert pd.read_csv(single / "predictions.csv").equals(pd.read_csv(ray_train_run / "predictions.csv"))
    # A run killed in the middle of round 2: state.json names rounds 0-1, round 2 is half written.
    killed = tmp_path / "killed"
    shutil.copytree(single, killed)
    (killed / "round-2").rename(killed / "round-2.partial")
    (killed / "round-2.partial" / "probs.npz").write_bytes(b"half a file")
    (killed / "state.json").write_text(json.dumps({"complete": [0, 1]}))
    (killed / "predictions.csv").unlink()
    round1 = (killed / "round-1" / "M1.pt").stat().st_mtime_ns
    run(tiny_corpus, killed, workers=0)
    assert json.loads((killed / "state.json").read_text())["complete"] == [0, 1, 2]
    assert (killed / "round-1" / "M1.pt").stat().st_mtime_ns == round1     # round 1 not redone
    assert pd.read_csv(killed / "predictions.csv").equals(pd.read_csv(single / "predictions.csv"))


def test_baselines_canaries_and_report(ray_session, tiny_corpus, tmp_path):
    cfg = RunConfig(corpus=str(tiny_corpus), out=str(tmp_path / "audited"), store=str(tiny_corpus / "features"),
                    train_workers=0, baselines=True,
                    mining=apply_preset(MiningConfig(), "seed004", dict(
                        rounds=2, canary_fraction=0.2, policy=("vote", "cap"),
                        options={"cap": {"max_share_per_round": 0.25}})))
    out = run_cyclic_mining(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    # canaries: hidden labeled clips sit in the pool, so real-label precision can be measured
    assert metrics["rounds"][0]["train_size"] + metrics["rounds"][0]["dev_size"] < 60
    assert sum(r.get("canaries_mined", 0) for r in metrics["rounds"]) > 0
    assert any(r.get("canary_precision") is not None for r in metrics["rounds"][1:])
    # the cap: at most a quarter of the pool (200 clips + canaries) per round
    assert all(r["mined"] <= 0.25 * (200 + 12) for r in metrics["rounds"])
    # baselines beside the mining
    assert set(metrics["baselines"]) == {"labeled-only", "self-training"}
    assert metrics["baselines"]["labeled-only"]["final"]["test_waf"] == metrics["rounds"][0]["test_waf"]
    self_training = metrics["baselines"]["self-training"]
    assert list(self_training["rounds"][0]["learners"]) == ["M1"]
    assert (out / "baselines" / "self-training" / "predictions.csv").exists()
    # the report: an HTML page whose images all exist
    page = (out / "report.html").read_text()
    images = re.findall(r'src="(plots/[^"]+)"', page)
    assert {"plots/scores.png", "plots/mined_per_class.png", "plots/precision.png", "plots/confusion.png"} <= set(images)
    assert all((out / i).stat().st_size > 5000 for i in images)
    assert "self-training" in page and "labeled-only" in page
    change = metrics["final"]["vs_round0_test"]    # seed004 keeps its last round: what it changed, in words
    assert f"({change['fixed']} fixed, {change['broken']} broken; paired-bootstrap sd {change['noise']:.4f})" in page


def test_predict_job_reproduces_the_runs_predictions(ray_train_run, tiny_corpus, tmp_path):
    """jobs/predict.py: the finished run applied to clips (here, the same corpus, features already
    stored) gives the run's own predictions: same weights, same scaling, same ensemble."""
    from mer_ray.mining.predict import predict_with_run

    path = predict_with_run(ray_train_run, tiny_corpus, tmp_path / "predicted")
    fresh = pd.read_csv(path).set_index("name")
    ours = pd.read_csv(ray_train_run / "predictions.csv").set_index("name")
    assert set(ours.index) <= set(fresh.index)
    assert fresh.loc[ours.index, "discrete"].equals(ours["discrete"])
    fresh23 = pd.read_csv(tmp_path / "predicted" / "predictions-mer2023.csv").set_index("name")
    ours23 = pd.read_csv(ray_train_run / "predictions-mer2023.csv").set_index("name")
    assert np.allclose(fresh23.loc[ours23.index, "valence"], ours23["valence"], atol=1e-3)


def test_the_console_weighs_the_final_rounds_test_change_against_its_noise():
    from mer_ray.mining.outputs import final_lines

    final = dict(round=3, test_waf=0.93, test_acc=0.94, test_uar=0.9, mined_total=400,
                 vs_round0_test=dict(fixed=5, broken=2, waf_change=0.0123, noise=0.011))
    assert final_lines(final).splitlines()[1] == (
        "against round 0 on the test clips: WAF +0.0123 (5 fixed, 2 broken; paired-bootstrap sd 0.0110)")
    kept_round0 = dict(final, round=0, vs_round0_test=dict(fixed=0, broken=0, waf_change=0.0, noise=0.0))
    assert len(final_lines(kept_round0).splitlines()) == 1      # nothing changed: nothing to weigh
