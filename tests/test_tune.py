"""Ray Tune search (ASHA + Optuna, seed 003's space) writes a learners YAML the mining job reads."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from ray.tune import ExperimentAnalysis

from mer_ray.config import LearnerSpec, load_learners
from mer_ray.synthetic import synthetic_table
from mer_ray.train import cross_validate
from mer_ray.tune import DEFAULT_SPACE, SearchConfig, labeled_subset, search_space, tune_learners

# One learner: every Tune experiment pays ~10 s of trial-actor start-up on this 2-core machine
# (a process, then torch's import), and the file must stay under a minute.
LEARNERS = (LearnerSpec("M2", ("audio", "video"), fusion="concat-mlp"),)
SEARCH = SearchConfig(samples=3, max_epochs=3, grace_epochs=1, reduction_factor=2, folds=2, patience=3,
                      space={**DEFAULT_SPACE, "lr": [1e-2, 1e-3]})


@pytest.fixture(scope="module")
def labeled():
    table, _ = synthetic_table(90, 30, {"audio": 8, "text": 6, "video": 10}, seed=0, separation=3.0)
    return table, table.rows("train")


@pytest.fixture(scope="module")
def tuned(ray_session, labeled, tmp_path_factory):
    table, rows = labeled
    out = tmp_path_factory.mktemp("tune")
    return out, tune_learners(table, rows, LEARNERS, out, SEARCH, verbose=0)


def test_search_writes_a_learners_yaml_with_values_from_the_space(tuned):
    _, path = tuned
    learners = load_learners(path)
    assert [s.name for s in learners] == ["M2"]
    for spec, base in zip(learners, LEARNERS):
        assert spec.streams == base.streams and spec.fusion == base.fusion
        for name, choices in SEARCH.space.items():
            assert getattr(spec, name) in choices, name
        assert isinstance(spec.hidden, int) and isinstance(spec.lr, float)
    summary = yaml.safe_load(path.read_text())["tuning"]
    assert set(summary) == {"M2"}
    assert all(s["trials"] == SEARCH.samples and 0.0 <= s["cv_waf"] <= 1.0 for s in summary.values())


def _trials(out):
    """Every trial of the M2 experiment as Tune recorded it: (its config, the metrics it
    reported after each epoch), read back through Ray Tune's own ExperimentAnalysis."""
    analysis = ExperimentAnalysis(str(out / "ray" / "tune-M2"))
    return [(t.config, analysis.trial_dataframes[t.trial_id]) for t in analysis.trials]


def test_the_chosen_configuration_is_the_trial_with_the_best_reported_cv_waf(tuned):
    out, path = tuned
    trials = _trials(out)
    assert len(trials) == SEARCH.samples
    last = [float(history["cv_waf"].iloc[-1]) for _, history in trials]
    assert len(set(last)) > 1, f"every trial scored {last}: nothing to choose between, the test proves nothing"
    chosen = load_learners(path)[0]
    best = [config for config, score in zip((c for c, _ in trials), last) if score == max(last)]
    assert any(all(getattr(chosen, k) == config[k] for k in SEARCH.space) for config in best), (chosen, best)
    summary = yaml.safe_load(path.read_text())["tuning"]["M2"]
    assert summary["cv_waf"] == round(max(last), 4)
    # max_epochs 3 < patience 3 + 1: no trial can end on its own patience, so a trial that
    # reported fewer than 3 epochs was cut by ASHA
    assert summary["stopped_early"] == sum(len(history) < SEARCH.max_epochs for _, history in trials)


def test_each_trial_trained_the_learner_its_config_names(tuned, labeled):
    """Rerun each trial's configuration here, built from Tune's record of the trial (not
    through mer_ray.tune): the epoch-by-epoch CV WAF must be what the trial reported, and
    configurations that differ must train differently (the sampled values reach the learner)."""
    out, _ = tuned
    table, rows = labeled
    subset = labeled_subset(table, rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # as in a trial: the same arithmetic, the same numbers
    try:
        histories = []
        for config, history in _trials(out):
            spec = dataclasses.replace(LEARNERS[0], **{k: config[k] for k in SEARCH.space},
                                       max_epochs=len(history), patience=SEARCH.patience)
            again = []
            cross_validate(spec, subset, np.arange(len(subset)), subset.label, folds=SEARCH.folds,
                           seed=SEARCH.seed, on_epoch=lambda epoch, m: again.append(m["cv_waf"]))
            assert again == pytest.approx(list(history["cv_waf"]), abs=1e-9), config
            histories.append(tuple(history["epoch_waf"]))
    finally:
        torch.set_num_threads(threads)
    assert len(set(histories)) > 1, "every configuration trained the same model: the sampled values are ignored"


def test_rerun_with_the_same_out_resumes_the_experiments(tuned, labeled, capsys):
    out, path = tuned
    first = path.read_text()
    table, rows = labeled
    tune_learners(table, rows, LEARNERS, out, SEARCH, verbose=0)
    printed = capsys.readouterr().out
    assert printed.count("resuming") == len(LEARNERS)
    again = yaml.safe_load(path.read_text())
    assert again["learners"] == yaml.safe_load(first)["learners"]
    assert all(s["trials"] == SEARCH.samples for s in again["tuning"].values())  # no new trials


def test_search_space_rejects_unknown_fields_and_distributions():
    with pytest.raises(ValueError, match="cannot tune"):
        search_space({"momentum": [0.9]})
    with pytest.raises(ValueError, match="unknown distribution"):
        search_space({"lr": {"normal": [0, 1]}})
    assert set(search_space(DEFAULT_SPACE)) == set(DEFAULT_SPACE)
