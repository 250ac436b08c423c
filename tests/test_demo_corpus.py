"""The demo corpus: MER 2024 layout, decodable clips, valid tables, and determinism from the seed."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus
from mer_ray.corpus.media import decode_clip
from mer_ray.labels import EMOTIONS

TINY = DemoCorpusConfig(n_labeled=12, n_unlabeled=20, n_test=8, seed=5)
TABLES = ("label-disdim.csv", "label-transcription.csv", "truth/test.csv", "truth/unlabeled.csv")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", TINY, workers=1)


def test_corpus_has_the_mer2024_layout(corpus: Path) -> None:
    labeled = sorted(p.stem for p in (corpus / "video-labeled").glob("*.mp4"))
    pool = sorted(p.stem for p in (corpus / "video-unlabeled-with-test2noise").glob("*.mp4"))
    assert len(labeled) == 12 and len(pool) == 20 + 8
    for table in TABLES:
        assert (corpus / table).is_file()
    meta = json.loads((corpus / "corpus.json").read_text())
    assert meta["counts"] == {"train": 12, "unlabeled": 20, "test": 8}
    assert meta["config"]["seed"] == 5
    assert not list(corpus.parent.glob(".*partial"))  # the staging folder was renamed away


def test_tables_have_the_expected_columns_and_valid_labels(corpus: Path) -> None:
    disdim = _rows(corpus / "label-disdim.csv")
    assert list(disdim[0]) == ["name", "discrete", "valence"]
    assert {r["name"] for r in disdim} == {p.stem for p in (corpus / "video-labeled").glob("*.mp4")}
    transcripts = _rows(corpus / "label-transcription.csv")
    assert list(transcripts[0]) == ["name", "chinese", "english"] and len(transcripts) == 40
    assert all(r["english"] and r["chinese"] for r in transcripts)
    for table in ("label-disdim.csv", "truth/test.csv", "truth/unlabeled.csv"):
        for row in _rows(corpus / table):
            assert row["discrete"] in EMOTIONS
            assert -5.0 <= float(row["valence"]) <= 5.0


def test_test_and_pool_truth_are_disjoint_from_labeled_and_live_in_the_pool_folder(corpus: Path) -> None:
    labeled = {r["name"] for r in _rows(corpus / "label-disdim.csv")}
    test = {r["name"] for r in _rows(corpus / "truth/test.csv")}
    pool = {r["name"] for r in _rows(corpus / "truth/unlabeled.csv")}
    assert len(test) == 8 and len(pool) == 20
    assert not (test & labeled) and not (pool & labeled) and not (test & pool)
    pool_folder = {p.stem for p in (corpus / "video-unlabeled-with-test2noise").glob("*.mp4")}
    assert test | pool == pool_folder


def test_every_clip_decodes_to_frames_and_audio(corpus: Path) -> None:
    for path in sorted(corpus.glob("video-*/*.mp4")):
        clip = decode_clip(path, num_frames=16)
        assert clip.frames.shape == (16, TINY.frame_size, TINY.frame_size, 3), path
        seconds = len(clip.audio) / 16000
        assert TINY.min_seconds - 0.05 <= seconds <= TINY.max_seconds + 0.2, path


def test_same_seed_gives_the_same_corpus_and_another_seed_does_not(corpus: Path, tmp_path: Path) -> None:
    again = make_demo_corpus(tmp_path / "again", TINY, workers=1)
    for table in TABLES:
        assert (again / table).read_bytes() == (corpus / table).read_bytes(), table
    name = _rows(corpus / "label-disdim.csv")[0]["name"]
    first = decode_clip(corpus / "video-labeled" / f"{name}.mp4")
    second = decode_clip(again / "video-labeled" / f"{name}.mp4")
    assert np.array_equal(first.frames, second.frames) and np.array_equal(first.audio, second.audio)

    other = make_demo_corpus(tmp_path / "other", DemoCorpusConfig(n_labeled=12, n_unlabeled=20, n_test=8, seed=6),
                             workers=1)
    assert (other / "label-transcription.csv").read_bytes() != (corpus / "label-transcription.csv").read_bytes()


def test_rerun_on_a_finished_corpus_is_free_and_a_foreign_folder_is_refused(corpus: Path, tmp_path: Path) -> None:
    stamp = (corpus / "corpus.json").stat().st_mtime_ns
    assert make_demo_corpus(corpus, TINY, workers=1) == corpus
    assert (corpus / "corpus.json").stat().st_mtime_ns == stamp
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        make_demo_corpus(foreign, TINY, workers=1)


def test_interrupted_run_leftovers_are_cleaned_up(tmp_path: Path) -> None:
    staging = tmp_path / ".corpus.partial"
    (staging / "video-labeled").mkdir(parents=True)
    (staging / "video-labeled" / "half.mp4").write_bytes(b"\0" * 10)
    root = make_demo_corpus(tmp_path / "corpus", TINY, workers=1)
    assert not staging.exists() and not (root / "video-labeled" / "half.mp4").exists()


def test_label_noise_flips_labeled_clips_only() -> None:
    from mer_ray.corpus.demo import plan_demo_corpus

    clips = plan_demo_corpus(DemoCorpusConfig(n_labeled=400, n_unlabeled=100, n_test=100, label_noise=0.1))
    flipped = [c for c in clips if c.label != c.given_label]
    assert all(c.split == "train" for c in flipped)
    assert 20 <= len(flipped) <= 60
