"""MER 2024 reader, label spellings and validation errors that name the row."""
import pandas as pd
import pytest

from mer_ray.config import RunConfig, load_config, override
from mer_ray.corpus.manifest import COLUMNS, find_problems, read_corpus
from mer_ray.corpus.truth import read_truth
from mer_ray.labels import EMOTIONS, label_index


def write_mer2024(root, labeled, pool, transcripts=None):
    (root / "video-labeled").mkdir(parents=True)
    (root / "video-unlabeled-with-test2noise").mkdir()
    for name in labeled:
        (root / "video-labeled" / f"{name}.mp4").write_bytes(b"x")
    for name in pool:
        (root / "video-unlabeled-with-test2noise" / f"{name}.mp4").write_bytes(b"x")
    pd.DataFrame([(n, lab, val) for n, (lab, val) in labeled.items()],
                 columns=["name", "discrete", "valence"]).to_csv(root / "label-disdim.csv", index=False)
    rows = transcripts or {n: ("你好", "hello") for n in [*labeled, *pool]}
    pd.DataFrame([(n, c, e) for n, (c, e) in rows.items()],
                 columns=["name", "chinese", "english"]).to_csv(root / "label-transcription.csv", index=False)


def test_label_spellings_from_the_papers():
    assert [label_index(x) for x in ("anger", "Happiness", "sadness", "worry", "surprise", "neutral")] == [1, 2, 3, 4, 5, 0]
    assert label_index(3) == 3
    with pytest.raises(ValueError, match="line 7"):
        label_index("disgust", where="line 7")


def test_mer2024_reader_builds_the_manifest(tmp_path):
    write_mer2024(tmp_path, {"sample_00000001": ("happy", 2.5), "sample_00000002": ("worry", -1.0)},
                  ["sample_00000003"], {"sample_00000001": ("开心", "so happy"),
                                         "sample_00000002": ("担心", ""),
                                         "sample_00000003": ("", "")})
    m = read_corpus(tmp_path)
    assert tuple(m.columns) == COLUMNS
    m = m.set_index("name")
    assert m.loc["sample_00000001", "split"] == "train" and m.loc["sample_00000001", "label"] == EMOTIONS.index("happy")
    assert m.loc["sample_00000002", "label"] == EMOTIONS.index("worried")
    assert m.loc["sample_00000002", "transcript"] == "担心"        # Chinese when English is empty
    assert m.loc["sample_00000003", "split"] == "unlabeled" and pd.isna(m.loc["sample_00000003", "label"])
    assert pd.isna(m.loc["sample_00000003", "transcript"])
    problems = find_problems(m.reset_index())
    assert any("sample_00000003" in p and "transcript" in p for p in problems)


def test_bad_label_and_valence_name_the_row(tmp_path):
    write_mer2024(tmp_path, {"a": ("happy", 0.0), "b": ("bored", 0.0)}, [])
    with pytest.raises(ValueError, match=r"line 3, clip b"):
        read_corpus(tmp_path)
    (tmp_path / "label-disdim.csv").write_text("name,discrete,valence\na,happy,7.5\n")
    with pytest.raises(ValueError, match=r"valence 7.5 outside .*clip a"):
        read_corpus(tmp_path)


def test_unknown_layout_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="label-disdim.csv"):
        read_corpus(tmp_path)


def test_truth_is_read_apart_from_the_corpus(tmp_path):
    (tmp_path / "test.csv").write_text("name,discrete,valence\nt1,sad,-2\n")
    truth = read_truth(tmp_path)
    assert truth.test == {"t1": 3} and truth.pool == {}
    assert read_truth(tmp_path / "missing").test == {}


def test_config_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("mining:\n  rounds: 5\nlearners:\n  - {name: A, streams: [audio, text], fusion: fbp}\n")
    cfg = load_config(path, {"mining.options.vote.agree": 2, "seed": None})
    assert cfg.mining.rounds == 5 and cfg.mining.options["vote"]["agree"] == 2 and cfg.seed == 0
    assert cfg.learners[0].streams == ("audio", "text")
    assert override(RunConfig(), {"extract.batch_size": 8}).extract.batch_size == 8
    with pytest.raises(ValueError, match="unknown"):
        load_config(None, {"mining.nope": 1})
