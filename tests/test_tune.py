"""Ray Tune search (ASHA + Optuna, seed 003's space) writes a learners YAML the mining job reads."""
from __future__ import annotations


import pytest
import yaml

from mer_ray.config import LearnerSpec, load_learners
from mer_ray.synthetic import synthetic_table
from mer_ray.tune import DEFAULT_SPACE, SearchConfig, search_space, tune_learners

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
