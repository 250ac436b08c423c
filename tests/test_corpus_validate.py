"""MER 2023 layout, `mer-ray validate` collecting every problem, and crop / face-box decoding."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_ray.cli import validate
from mer_ray.corpus.manifest import detect_layout, read_corpus, validate_corpus
from mer_ray.corpus.media import decode_clip, probe_media, read_face_boxes, write_clip
from mer_ray.labels import EMOTIONS


def _clip(path, *, video=True, audio=True, size=48):
    frames = np.zeros((6, size, size + 16, 3), np.uint8)
    frames[:, 8:24, 40:56] = 255   # a bright square right of centre: the "face"
    tone = (0.3 * np.sin(np.arange(8000) / 8)).astype(np.float32)
    write_clip(path, frames if video else None, tone if audio else None)


def write_mer2023(root, *, bad_rows=True):
    for folder in ("train", "test1", "test2", "test3"):
        (root / folder).mkdir(parents=True)
    for name in ("a", "b", "c", "d"):
        _clip(root / "train" / f"{name}.mp4")
    _clip(root / "test1" / "t1.mp4")
    _clip(root / "test3" / "t3.mp4", video=False)
    (root / "train" / "e.mp4").write_bytes(b"not a video at all")
    labels = [("a", "happiness", 2.0), ("b", "worry", -1.0), ("c", "neutral", 0.0), ("e", "sad", -2.0)]
    if bad_rows:
        labels += [("d", "disgust", 0.0), ("x", "angry", 9.0), ("a", "anger", 1.0)]
    pd.DataFrame(labels, columns=["name", "discrete", "valence"]).to_csv(root / "train-label.csv", index=False)
    pd.DataFrame([("a", "so happy"), ("b", ""), ("c", "fine"), ("t1", "hello")],
                 columns=["name", "sentence"]).to_csv(root / "transcription.csv", index=False)


def test_mer2023_layout_is_detected_and_read(tmp_path):
    write_mer2023(tmp_path, bad_rows=False)
    assert detect_layout(tmp_path) == "mer2023"
    manifest = read_corpus(tmp_path).set_index("name")
    assert manifest.loc["a", "label"] == EMOTIONS.index("happy") and manifest.loc["b", "label"] == EMOTIONS.index("worried")
    assert manifest.loc["a", "transcript"] == "so happy" and pd.isna(manifest.loc["b", "transcript"])
    assert set(manifest.index[manifest["split"] == "test"]) == {"t1", "t3"}
    assert manifest.loc["t3", "video"].endswith("test3/t3.mp4")


def test_read_corpus_still_raises_on_the_first_bad_label(tmp_path):
    write_mer2023(tmp_path)
    with pytest.raises(ValueError, match="clip d"):
        read_corpus(tmp_path)


def test_validate_reports_every_problem_and_counts(tmp_path, capsys):
    write_mer2023(tmp_path)
    report = validate_corpus(tmp_path, workers=2)
    kinds = {(p.kind, p.name) for p in report.problems}
    assert ("bad-label", "d") in kinds                   # unknown label: reported, row left out
    assert ("bad-valence", "x") in kinds                 # valence 9: reported, not raised
    assert ("duplicate", "a") in kinds
    assert ("missing-file", "x") in kinds or ("no-media", "x") in kinds
    assert ("no-transcript", "b") in kinds and ("no-transcript", "t3") in kinds
    assert ("unreadable", "e") in kinds                  # probed: garbage bytes
    # train/d.mp4 lost its only (bad) label row: reported once, as that bad label, not twice
    assert ("no-label", "d") not in kinds
    counts = report.counts()
    assert counts.loc["happy", "train"] == 1 and counts.loc["-", "test"] == 2 and counts.loc["total", "total"] == 7
    assert {"a", "b", "c", "t1", "t3"} <= set(report.usable) and "e" not in report.usable
    assert validate([str(tmp_path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "clip d" in out and "valence 9.0" in out and "e.mp4" in out and "usable" in out


def test_validate_fails_only_when_nothing_is_usable(tmp_path, capsys):
    (tmp_path / "video-labeled").mkdir()
    (tmp_path / "video-labeled" / "z.mp4").write_bytes(b"")
    (tmp_path / "label-disdim.csv").write_text("name,discrete,valence\nz,happy,1\ny,bored,0\n")
    assert validate([str(tmp_path)]) == 1
    assert "nothing usable" in capsys.readouterr().err


def test_probe_media_names_the_problem(tmp_path):
    _clip(tmp_path / "ok.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    assert probe_media(tmp_path / "ok.mp4") is None
    assert "bad.mp4" in probe_media(tmp_path / "bad.mp4")
    assert "not found" in probe_media(tmp_path / "missing.mp4")


def test_centre_crop_face_box_and_no_crop(tmp_path):
    path = tmp_path / "clip.mp4"
    _clip(path)                                           # 64 wide, 48 high
    centre = decode_clip(path, num_frames=2, frame_size=16)
    squashed = decode_clip(path, num_frames=2, frame_size=16, crop="none")
    face = decode_clip(path, num_frames=2, frame_size=16, face_box=(40, 8, 16, 16))
    assert centre.frames.shape == squashed.frames.shape == face.frames.shape == (2, 16, 16, 3)
    assert face.frames.mean() > 180                      # the box holds the bright square only
    assert centre.frames.mean() < face.frames.mean() and squashed.frames.mean() < face.frames.mean()
    native = decode_clip(path, num_frames=2, face_box=(40, 8, 16, 16))
    assert native.frames.shape == (2, 16, 16, 3)           # no resize: the box's own size
    with pytest.raises(ValueError, match="crop"):
        decode_clip(path, crop="left")


def test_face_box_sidecar_file(tmp_path):
    (tmp_path / "boxes.csv").write_text("name,left,top,width,height\na,1,2,30,40\n")
    assert read_face_boxes(tmp_path / "boxes.csv") == {"a": (1.0, 2.0, 30.0, 40.0)}
    (tmp_path / "bad.csv").write_text("name,left,top,width,height\nb,1,2,0,40\n")
    with pytest.raises(ValueError, match="line 2, clip b"):
        read_face_boxes(tmp_path / "bad.csv")
