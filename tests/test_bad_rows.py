"""Bad corpus rows do not stop a job: the rows `mer-ray validate` keeps are used, the rest are
listed in the run's problems.csv and summed up in one console line; --strict refuses instead."""
import subprocess
import sys

import pandas as pd
import pytest

from corpus_helpers import messy_copy
from mer_ray.corpus.manifest import load_corpus, validate_corpus


@pytest.fixture(scope="module")
def messy_corpus(tiny_corpus, tmp_path_factory):
    return messy_copy(tiny_corpus, tmp_path_factory.mktemp("messy") / "corpus")


def test_jobs_keep_what_validate_keeps_and_list_the_rest(messy_corpus, tmp_path, caplog):
    root, bad = messy_corpus
    manifest, problems = load_corpus(root, report_dir=tmp_path)
    names = set(manifest["name"])
    assert bad["bad-label"] not in names and bad["no-label"] not in names       # left out
    assert bad["bad-valence"] in names                                          # label kept, valence blanked
    assert pd.isna(manifest.set_index("name").loc[bad["bad-valence"], "valence"])
    assert manifest["name"].is_unique and bad["duplicate"] in names             # first row kept
    assert set(names) == set(validate_corpus(root, probe=False).usable)
    listed = pd.read_csv(tmp_path / "problems.csv")
    assert list(listed.columns) == ["name", "kind", "message"]
    assert {kind: name for name, kind in zip(listed["name"], listed["kind"])} == \
        {"bad-label": bad["bad-label"], "bad-valence": bad["bad-valence"], "duplicate": bad["duplicate"],
         "no-label": bad["no-label"]}
    assert "video-labeled/sample_orphan.mp4 has no row in label-disdim.csv" in " ".join(listed["message"])
    summary = [r for r in caplog.records if "problem(s)" in r.getMessage()]
    assert len(summary) == 1 and str(tmp_path / "problems.csv") in summary[0].getMessage()


def test_strict_refuses_the_corpus_naming_its_problems(messy_corpus):
    root, bad = messy_corpus
    with pytest.raises(ValueError, match=rf"--strict and 4 problem row\(s\).*clip {bad['bad-label']}"):
        load_corpus(root, strict=True)


def test_a_clean_run_folder_loses_an_earlier_problems_file(tiny_corpus, tmp_path):
    (tmp_path / "problems.csv").write_text("name,kind,message\nx,bad-label,old\n")
    _, problems = load_corpus(tiny_corpus, report_dir=tmp_path)
    assert [p for p in problems if p.kind != "no-transcript"] == []
    assert (tmp_path / "problems.csv").exists() == bool(problems)


def test_extract_job_goes_on_with_the_usable_clips(ray_session, messy_corpus, tmp_path, capsys):
    """One typo does not hold up the other clips: the job extracts every usable one."""
    from mer_ray.jobs.extract import main

    root, bad = messy_corpus
    store = tmp_path / "store"
    assert main(["--corpus", str(root), "--store", str(store), "--stream", "text=text-bow"]) == 0
    assert "stored: text 299" in capsys.readouterr().out
    assert set(pd.read_csv(store / "problems.csv")["kind"]) == {"bad-label", "bad-valence", "duplicate", "no-label"}


def test_a_fatal_error_is_one_message_and_a_nonzero_exit(tmp_path):
    """No traceback by default; --verbose shows it."""
    command = [sys.executable, "-m", "mer_ray.cli", "extract", "--corpus", str(tmp_path / "nowhere"),
               "--store", str(tmp_path / "store")]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1
    assert "Traceback" not in quiet.stderr
    errors = [line for line in quiet.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not a known corpus layout" in errors[0] and "pass a MER corpus folder" in errors[0]
    assert "--verbose" in quiet.stderr
    loud = subprocess.run([*command, "--verbose"], capture_output=True, text=True, timeout=120)
    assert loud.returncode == 1 and "Traceback (most recent call last)" in loud.stderr
