"""`mer-ray` from a non-editable install: a wheel built from this checkout, installed into a
fresh virtual environment (its dependencies are the test environment's, seen through a .pth
file, so nothing is downloaded), then the one-command case a new user runs: a MER 2024 corpus
with bad rows plus a MERTools features/ folder → predictions, with the console captured.

The console is what the issue asks of a healthy run: the short config, one line per stage, the
per-round table once (a row per round), the final summary; none of Ray's own lines.
"""
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from corpus_helpers import mertools_features, messy_copy

REPO = Path(__file__).resolve().parents[1]


def _env(tmp: Path) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV")}
    return {**env, "HF_HUB_OFFLINE": "1", "MER_RAY_CACHE": str(tmp / "cache")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder of a fresh venv holding the mer-ray wheel, the wheel)."""
    tmp = tmp_path_factory.mktemp("installed")
    source = tmp / "src"   # a clean copy: the build never writes into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "mer_ray", source / "mer_ray", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "wheels"), str(source)], check=True, timeout=300)
    wheel = next((tmp / "wheels").glob("mer_ray-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python*/site-packages"))
    # the dependencies: the test environment's site-packages as a plain path (its own .pth files,
    # among them the editable install of this checkout, are not read)
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    return venv / "bin", wheel


@pytest.fixture(scope="module")
def mertools_run(installed, tiny_corpus, tmp_path_factory):
    """`mer-ray mine --corpus C --features F ...` from the installed command, its console captured."""
    bin_dir, _ = installed
    tmp = tmp_path_factory.mktemp("mertools-run")
    corpus, bad = messy_copy(tiny_corpus, tmp / "MER2024")
    features = mertools_features(tiny_corpus, tmp / "features")
    # one Ray Train worker: its start-up is what the console must keep quiet, a second only costs
    (tmp / "run.yaml").write_text("train_workers: 1\nmining: {rounds: 1, folds: 0}\n")
    command = [str(bin_dir / "mer-ray"), "mine", "--corpus", str(corpus), "--features", str(features),
               "--stream", "text=text-bow", "--store", str(tmp / "store"), "--out", str(tmp / "run"),
               "--config", str(tmp / "run.yaml")]
    done = subprocess.run(command, cwd=tmp, env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)
    return dict(tmp=tmp, corpus=corpus, bad=bad, features=features, out=tmp / "run", console=done.stdout,
                returncode=done.returncode)


def test_the_wheel_holds_every_job_and_its_mer_ray_runs_them(installed, tmp_path):
    bin_dir, wheel = installed
    import zipfile

    files = set(zipfile.ZipFile(wheel).namelist())
    assert {"mer_ray/jobs/mine.py", "mer_ray/jobs/predict.py", "mer_ray/jobs/extract.py", "mer_ray/cli.py"} <= files
    where = subprocess.run([str(bin_dir / "python"), "-c", "import mer_ray; print(mer_ray.__file__)"],
                           cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(bin_dir.parent)), "mer_ray came from the checkout, not the wheel"
    for command in ("mine", "extract", "predict", "tune"):
        shown = subprocess.run([str(bin_dir / "mer-ray"), command, "--help"], cwd=tmp_path, env=_env(tmp_path),
                               capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert f"usage: mer-ray {command}" in shown.stdout and "--verbose" in shown.stdout
    mine_help = subprocess.run([str(bin_dir / "mer-ray"), "mine", "--help"], cwd=tmp_path, env=_env(tmp_path),
                               capture_output=True, text=True, timeout=120).stdout
    assert "--features DIR" in mine_help and "--mlflow" in mine_help and "--strict" in mine_help


def test_one_command_from_a_corpus_and_mertools_features_to_predictions(mertools_run):
    run = mertools_run
    assert run["returncode"] == 0, run["console"][-3000:]
    out = run["out"]
    pool = {p.stem for p in (run["corpus"] / "video-unlabeled-with-test2noise").glob("*.mp4")}
    assert set(pd.read_csv(out / "predictions.csv")["name"]) == pool
    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    streams = cfg["extract"]["streams"]
    assert streams["chinese-hubert-large"] == f"npy:{(run['features'] / 'chinese-hubert-large-UTT').resolve()}"
    assert streams["text"] == "text-bow"
    # the default learners, fitted to these streams by modality (hubert: audio, clip-vit: video,
    # Baichuan and text-bow: text); M2 is the audio + video learner
    learners = {spec["name"]: set(spec["streams"]) for spec in cfg["learners"]}
    assert learners["M2"] == {"chinese-hubert-large", "clip-vit-large-patch14", "Baichuan-13B-Base", "text"}
    assert learners["M1"] == set(streams)
    # the bad rows: left out, listed, the run went on
    problems = pd.read_csv(out / "problems.csv")
    assert set(problems["kind"]) == {"bad-label", "bad-valence", "duplicate", "no-label"}
    rounds = json.loads((out / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]


def test_the_console_shows_each_round_once_and_none_of_rays_own_lines(mertools_run):
    console = mertools_run["console"]
    lines = console.splitlines()
    assert mertools_run["returncode"] == 0, console[-3000:]
    for noise in ("TrainingReport(", "core_worker", "(RayTrainWorker", "(TrainController", "(raylet)",
                  "repeated", "Started a local Ray instance", "Token authentication", "Traceback"):
        assert noise not in console, f"{noise!r} reached the console:\n{console}"
    assert not [line for line in lines if re.match(r"^\[\d{4}-\d\d-\d\d .* [EF] \d+ \d+\]", line)
                or " ERROR " in line or line.startswith("error")], console
    header = [line for line in lines if line.split()[:2] == ["round", "train_size"]]
    assert len(header) == 1, console
    for r in (0, 1):
        rows = [line for line in lines if re.match(rf"^\s+{r}\s+\d+\s+\d+\s", line)]
        assert len(rows) == 1, f"round {r} printed {len(rows)} times:\n{console}"
    assert console.index(header[0]) < console.index("final:")
    assert len([line for line in lines if "problem(s)" in line]) == 1
    assert "extraction: " in console and "mer-ray cyclic mining" in console
    assert f"outputs in {mertools_run['out']}" in console and "full config:" in console


def test_predict_from_the_installed_cli_reproduces_the_run(installed, mertools_run):
    """A dev-split run applied to its own corpus gives its own predictions, discrete and valence
    (the features are all in the store, so no Ray starts)."""
    bin_dir, _ = installed
    run = mertools_run
    assert run["returncode"] == 0
    done = subprocess.run([str(bin_dir / "mer-ray"), "predict", "--run", str(run["out"]), "--corpus",
                           str(run["corpus"]), "--out", str(run["tmp"] / "predicted")], cwd=run["tmp"],
                          env=_env(run["tmp"]), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    import torch

    # a dev split: one model per learner, no fold ensemble (tests/test_predict.py has the k-fold run)
    assert not any(k.startswith("folds.") for k in torch.load(run["out"] / "round-1" / "M1.pt", weights_only=True))
    fresh = pd.read_csv(run["tmp"] / "predicted" / "predictions.csv").set_index("name")
    ours = pd.read_csv(run["out"] / "predictions.csv").set_index("name")
    assert fresh.loc[ours.index, "discrete"].equals(ours["discrete"])
    valence = pd.read_csv(run["tmp"] / "predicted" / "predictions-mer2023.csv").set_index("name")["valence"]
    ours23 = pd.read_csv(run["out"] / "predictions-mer2023.csv").set_index("name")["valence"]
    assert (valence.loc[ours23.index] - ours23).abs().max() < 1e-3
