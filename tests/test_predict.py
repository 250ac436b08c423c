"""`mer-ray predict` from any run: a k-fold run (mining.folds >= 2, whose checkpoints hold a
FoldEnsemble) applied to clips gives the run's own predictions (a dev-split run: the installed
CLI's test, tests/test_cli_installed.py). Also: the default learners follow a run's streams,
and a learner asking for a stream the run lacks is refused before any work, naming the streams
there are."""
import dataclasses
import json

import pandas as pd
import pytest
import torch

from corpus_helpers import mertools_features
from mer_ray.config import DEFAULT_LEARNERS, ExtractConfig, LearnerSpec, MiningConfig, RunConfig
from mer_ray.features.sources import mertools_streams
from mer_ray.mining.learner_streams import default_learners
from mer_ray.mining.predict import predict_with_run
from mer_ray.mining.run import resolve, run_cyclic_mining


@pytest.fixture(scope="module")
def npy_setup(tiny_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    return tiny_corpus, mertools_streams(mertools_features(tiny_corpus, tmp / "features")), tmp


def mine(setup, name, **mining):
    corpus, streams, tmp = setup
    cfg = RunConfig(corpus=str(corpus), out=str(tmp / name), store=str(tmp / "store"), train_workers=0,
                    extract=ExtractConfig(streams=streams), mining=MiningConfig(rounds=1, **mining))
    return run_cyclic_mining(cfg)


def same_predictions(run, corpus, out):
    fresh = pd.read_csv(predict_with_run(run, corpus, out)).set_index("name")
    ours = pd.read_csv(run / "predictions.csv").set_index("name")
    assert set(ours.index) <= set(fresh.index)
    assert fresh.loc[ours.index, "discrete"].equals(ours["discrete"])
    valence = pd.read_csv(out / "predictions-mer2023.csv").set_index("name").loc[ours.index, "valence"]
    ours23 = pd.read_csv(run / "predictions-mer2023.csv").set_index("name")["valence"]
    assert (valence - ours23).abs().max() < 1e-3


def test_predict_reproduces_a_k_fold_run(ray_session, npy_setup, tmp_path):
    run = mine(npy_setup, "folds", folds=2)
    assert [r["round"] for r in json.loads((run / "metrics.json").read_text())["rounds"]] == [0, 1]
    # each learner's checkpoint holds its fold models (seed 003's CV, probabilities averaged)
    for r, learner in ((0, "M1"), (1, "M1"), (1, "M4")):
        weights = torch.load(run / f"round-{r}" / f"{learner}.pt", weights_only=True)
        assert {k.split(".")[1] for k in weights if k.startswith("folds.")} == {"0", "1"}, (r, learner)
    same_predictions(run, npy_setup[0], tmp_path / "predicted")


def test_default_learners_follow_the_streams_modalities():
    assert default_learners({"audio": "audio", "text": "text", "video": "video"}) == DEFAULT_LEARNERS
    learners = {s.name: s for s in default_learners({"hubert": "audio", "clip": "video", "baichuan": "text",
                                                     "wavlm": "audio"})}
    assert [s.fusion for s in learners.values()] == [s.fusion for s in DEFAULT_LEARNERS]
    assert learners["M2"].streams == ("baichuan", "clip", "hubert", "wavlm")   # audio + text + video
    assert learners["M3"].streams == ("baichuan", "clip")                # text + video
    only_audio = default_learners({"hubert": "audio"})
    assert all(s.streams == ("hubert",) for s in only_audio)             # still four voters


def test_a_learner_asking_for_a_missing_stream_is_refused_naming_the_streams(npy_setup):
    corpus, streams, tmp = npy_setup
    cfg = RunConfig(corpus=str(corpus), out=str(tmp / "refused"), store=str(tmp / "store"),
                    extract=ExtractConfig(streams=streams),
                    learners=(LearnerSpec("M1", ("chinese-hubert-large",)), LearnerSpec("M9", ("audio", "video"))))
    with pytest.raises(ValueError, match=r"learner M9 uses stream\(s\) 'audio', 'video'.*its streams are: "
                                         r"Baichuan-13B-Base, chinese-hubert-large, clip-vit-large-patch14"):
        resolve(cfg)
    # the default learners are fitted instead of failing
    fitted = resolve(dataclasses.replace(cfg, learners=DEFAULT_LEARNERS))
    assert all(set(s.streams) <= set(streams) for s in fitted.learners)
