"""`--plugin MODULE`: an encoder, a fusion and a selection policy defined outside mer-ray, in a
file of their own, reach the Ray Data encoder actors, the Ray Train worker and the Ray Tune
trials that run them."""
import json
import os
import textwrap

import pytest

from mer_ray.config import ExtractConfig, LearnerSpec, MiningConfig, RunConfig

PLUGIN = '''
import json, os, time
from dataclasses import replace

import numpy as np

from mer_ray.encoders import ENCODERS, Encoder
from mer_ray.learners import FUSIONS
from mer_ray.learners.fusions import LinearFusion
from mer_ray.mining.policies import POLICIES

MARKS = {marks!r}


def mark(what):
    with open(os.path.join(MARKS, f"{{what}}-{{os.getpid()}}-{{time.time_ns()}}"), "w") as f:
        f.write(what)


class ToyAudio(Encoder):
    modality, dim = "audio", 4

    def __init__(self, spec="toy-audio"):
        self.spec = spec

    def encode(self, inputs):
        mark("encoder")
        return np.array([[w.mean(), w.std(), np.abs(w).max(), len(w) / 16000] for w in inputs], np.float32)


@ENCODERS.register("toy-audio", modality="audio")
def toy_audio(**kwargs):
    return ToyAudio(**kwargs)


@FUSIONS.register("toy-linear", options={{"scale": 1.0}})
def toy_linear(stream_dims, scale=1.0, **kwargs):
    """A linear fusion whose factory leaves a mark where it is built."""
    mark("fusion")
    return LinearFusion(stream_dims, **kwargs)


@POLICIES.register("toy-half")
def toy_half(cfg, params=None):
    """The more confident half of the pool."""
    def select(probs, ctx, sel):
        mark("policy")
        return replace(sel, selected=sel.confidence >= np.median(sel.confidence))
    return select
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    from mer_ray.plugins import load_plugins

    root = tmp_path_factory.mktemp("plugin")
    marks = root / "marks"
    marks.mkdir()
    path = root / "toy_mer_plugin.py"
    path.write_text(textwrap.dedent(PLUGIN.format(marks=str(marks))))
    load_plugins([str(path)])   # what a job's --plugin does in the driver
    return marks


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus

    return make_demo_corpus(tmp_path_factory.mktemp("corpus") / "small",
                            DemoCorpusConfig(n_labeled=30, n_unlabeled=24, n_test=6, seed=11), workers=1)


def test_a_plugin_encoder_and_policy_run_in_the_actors_and_the_train_worker(ray_session, plugin, small_corpus,
                                                                            tmp_path):
    from mer_ray.encoders import encoder_modality
    from mer_ray.mining.run import run_cyclic_mining

    assert encoder_modality("toy-audio") == "audio"   # its registered metadata, no side table
    learners = (LearnerSpec("A", ("audio", "text"), fusion="linear", max_epochs=5),
                LearnerSpec("B", ("audio", "text"), fusion="toy-linear", max_epochs=5, options={"scale": 2.0}))
    cfg = RunConfig(corpus=str(small_corpus), out=str(tmp_path / "run"), store=str(tmp_path / "store"),
                    train_workers=1, learners=learners,
                    extract=ExtractConfig(streams={"audio": "toy-audio", "text": "text-bow"}, encoder_actors=1),
                    mining=MiningConfig(rounds=1, policy=("toy-half",), folds=0, adopt="always"))
    out = run_cyclic_mining(cfg)

    meta = json.loads((tmp_path / "store" / "audio" / "meta.json").read_text())
    assert meta["spec"] == "toy-audio" and meta["dim"] == 4 and meta["count"] > 0
    rounds = json.loads((out / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["mined"] > 0
    # both ran in processes Ray started (an encoder actor, the Ray Train worker), not only here
    marks = {p.name.split("-")[0] for p in plugin.iterdir() if p.name.split("-")[1] != str(os.getpid())}
    assert marks == {"encoder", "fusion", "policy"}


def test_a_plugin_fusion_is_built_in_the_tune_trials(ray_session, plugin, tmp_path):
    from mer_ray.synthetic import synthetic_table
    from mer_ray.tune import SearchConfig, tune_learners

    table, _ = synthetic_table(40, 0, {"audio": 6, "text": 4}, seed=0, separation=3.0)
    before = set(plugin.iterdir())
    path = tune_learners(table, table.rows("train"), (LearnerSpec("T", ("audio", "text"), fusion="toy-linear"),),
                         tmp_path / "tune", SearchConfig(samples=1, max_epochs=1, grace_epochs=1, folds=2, patience=1),
                         verbose=0)
    assert path.exists()
    built = {p.name.split("-")[0] for p in set(plugin.iterdir()) - before if p.name.split("-")[1] != str(os.getpid())}
    assert built == {"fusion"}


def test_an_encoder_registered_without_a_modality_says_how_to_register_it():
    from mer_ray.encoders import ENCODERS, encoder_modality

    if "no-modality-toy" not in ENCODERS:
        ENCODERS.register("no-modality-toy")(lambda **kwargs: None)
    with pytest.raises(ValueError, match=r"register it as @ENCODERS.register\('no-modality-toy', modality=...\)"):
        encoder_modality("no-modality-toy")


def test_a_plugin_that_does_not_import_names_itself(tmp_path):
    from mer_ray.plugins import load_plugins

    with pytest.raises(ImportError, match="plugin module .*missing_plugin.py.*does not import"):
        load_plugins([str(tmp_path / "missing_plugin.py")])
