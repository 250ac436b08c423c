"""Faces (issue 17): boxes follow a real face, the fallback rules, the detector registry, and the
face stage inside extraction, the MAE frame cache and `mer-ray faces`.

The clips are real .mp4 files made from scikit-image's bundled `astronaut` photograph (a real face,
offline) pasted moving and growing over another bundled photograph with no face in it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from mer_ray.config import ExtractConfig
from mer_ray.corpus.media import decode_clip, write_clip
from mer_ray.faces import FaceDetector, FaceSettings, create_detector, decode_face_clip, track_faces
from mer_ray.faces.boxes import read_box_table, read_face_boxes

FACE_IN_ASTRONAUT = (176, 72, 96, 100)   # left, top, width, height of her face, marked by eye
PORTRAIT_CUT = (96, 0, 352, 256)         # head and shoulders, 256 x 256
WIDTH, HEIGHT, FRAMES = 320, 240, 24


def _background() -> np.ndarray:
    return np.asarray(Image.fromarray(skimage.data.coffee()).resize((WIDTH, HEIGHT)))


def _portrait_clip(gap: range = range(0)) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """The portrait moving right and down while growing from 0.55x to 0.8x; frames in `gap` show
    the background only. Returns the frames and the face's true box in every frame."""
    background, portrait = _background(), Image.fromarray(skimage.data.astronaut()).crop(PORTRAIT_CUT)
    frames, truth = [], []
    for t in range(FRAMES):
        scale = 0.55 + 0.25 * t / (FRAMES - 1)
        side = int(256 * scale)
        x, y = int(10 + 120 * t / (FRAMES - 1)), int(5 + 20 * t / (FRAMES - 1))
        image = background.copy()
        if t not in gap:
            image[y : y + side, x : x + side] = np.asarray(portrait.resize((side, side)))[: HEIGHT - y, : WIDTH - x]
        frames.append(image)
        left, top, width, height = FACE_IN_ASTRONAUT
        truth.append(((left - PORTRAIT_CUT[0]) * scale + x, (top - PORTRAIT_CUT[1]) * scale + y,
                      width * scale, height * scale))
    return np.stack(frames), truth


def _iou(a, b) -> float:
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    moving, truth = _portrait_clip()
    gap, _ = _portrait_clip(gap=range(9, 15))
    write_clip(root / "moving.mp4", moving, None)
    write_clip(root / "gap.mp4", gap, None)
    write_clip(root / "empty.mp4", np.repeat(_background()[None], FRAMES, axis=0), None)
    return dict(root=root, truth=truth, **{n: root / f"{n}.mp4" for n in ("moving", "gap", "empty")})


def test_haar_boxes_follow_a_moving_growing_face(clips):
    clip, track = decode_face_clip(clips["moving"], num_frames=16, frame_size=112, settings=FaceSettings(),
                                   want=("video",))
    assert clip.frames.shape == (16, 112, 112, 3)
    assert track.fallback == ["none"] * 16 and np.isfinite(track.scores).all()
    ious = [_iou(box, clips["truth"][index]) for box, index in zip(track.boxes, track.indices)]
    assert min(ious) > 0.6, ious
    assert track.boxes[-1, 2] > 1.3 * track.boxes[0, 2]        # the box grew with the face
    # the crop is the face: the centre of every crop is skin, not the dark coffee background
    assert clip.frames[:, 40:72, 40:72].mean() > 120


def test_a_frame_without_a_face_takes_the_clips_median_box(clips):
    _, track = decode_face_clip(clips["gap"], num_frames=16, frame_size=64, settings=FaceSettings(),
                                want=("video",))
    in_gap = [9 <= i < 15 for i in track.indices]
    assert [f for f, g in zip(track.fallback, in_gap) if g] == ["median"] * sum(in_gap)
    assert [f for f, g in zip(track.fallback, in_gap) if not g] == ["none"] * (16 - sum(in_gap))
    assert np.isnan(track.scores[in_gap]).all()
    gap_boxes = track.boxes[in_gap]
    assert (gap_boxes == gap_boxes[0]).all()
    # the median box lies among the clip's faces: the true face of a middle frame
    assert _iou(gap_boxes[0], clips["truth"][FRAMES // 2]) > 0.4


def test_a_clip_without_a_face_is_centre_cropped(clips):
    face, track = decode_face_clip(clips["empty"], num_frames=8, frame_size=64, settings=FaceSettings(),
                                   want=("video",))
    centre = decode_clip(clips["empty"], num_frames=8, frame_size=64, crop="center", want=("video",))
    assert track.fallback == ["centre"] * 8 and track.clip_fallback == "centre"
    assert np.array_equal(face.frames, centre.frames)


class Scripted(FaceDetector):
    """Faces given per frame (left, top, width, height, score): the tracking rules on exact numbers."""

    spec = "scripted"

    def __init__(self, per_frame):
        self.per_frame = per_frame

    def detect(self, frames):
        return [np.asarray(f, np.float32).reshape(-1, 5) for f in self.per_frame]


def test_tracking_keeps_one_face_votes_out_a_stray_box_and_needs_enough_faces():
    frames = np.zeros((9, 100, 200, 3), np.uint8)
    steady = [[[10 + 5 * t, 20, 40, 40, 3]] for t in range(9)]
    steady[4] = [[150, 50, 45, 45, 1]]                           # one stray detection far away
    track = track_faces(frames, Scripted(steady), FaceSettings(smooth=5))
    # the window's median (lefts 20, 25, 150, 35, 40): the stray box is gone, the face kept
    assert track.boxes[4].tolist() == [35, 20, 40, 40]
    assert track.boxes[3].tolist() == [25, 20, 40, 40]           # its neighbours stay where they were
    assert track.boxes[0].tolist() == [10, 20, 40, 40] and track.boxes[8].tolist() == [50, 20, 40, 40]
    # two faces per frame: `largest` keeps the big one in the corner, `central` the small middle one
    two = [[[0, 0, 60, 60, 1], [90, 40, 20, 20, 1]]] * 9
    assert track_faces(frames, Scripted(two), FaceSettings(pick="largest")).boxes[0].tolist() == [0, 0, 60, 60]
    assert track_faces(frames, Scripted(two), FaceSettings(pick="central")).boxes[0].tolist() == [90, 40, 20, 20]
    # a face in 2 of 9 frames is below min_face_share 0.25: treated as a false detection
    few = [[]] * 7 + [[[10, 20, 40, 40, 1]]] * 2
    assert track_faces(frames, Scripted(few), FaceSettings()).fallback == ["centre"] * 9
    assert track_faces(frames, Scripted(few), FaceSettings(min_face_share=0.2)).fallback == ["median"] * 7 + ["none"] * 2


def test_detector_registry_and_the_missing_weights_message(tmp_path):
    with pytest.raises(KeyError, match="registered: haar, yunet"):
        create_detector("retinaface:/m.pth")
    with pytest.raises(FileNotFoundError, match="does not exist; weights load from local paths only.*yunet:"):
        create_detector(f"yunet:{tmp_path}/face_detection_yunet_2023mar.onnx")
    with pytest.raises(ValueError, match="names no model file"):
        create_detector("yunet")
    (tmp_path / "not-a-model.onnx").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="cannot load .*not-a-model.onnx as a YuNet model"):
        create_detector(f"yunet:{tmp_path}/not-a-model.onnx")
    with pytest.raises(FileNotFoundError, match="haarcascade_frontalface_default.xml"):
        create_detector("haar?cascade=nope.xml")
    assert create_detector("haar?min_neighbors=3").min_neighbors == 3
    with pytest.raises(ValueError, match="face margin"):
        FaceSettings(margin=-1)


def test_face_boxes_file_round_trip_nearest_frame_and_the_csv(tmp_path):
    from mer_ray.faces.boxes import records_json, records_table, track_records, write_box_table
    from mer_ray.faces.track import FaceTrack

    track = FaceTrack(np.array([0, 10, 20]), np.array([[0, 0, 10, 10], [5, 5, 10, 10], [9, 9, 12, 12]], float),
                      np.array([2, np.nan, 3], np.float32), ["none", "median", "none"], 48, 64)
    # a numeric-looking clip name survives the trip from a Ray stage and the Parquet file
    table = records_table([records_json(track_records("00012", track)), ""])
    path = write_box_table(tmp_path / "face_boxes.parquet", table)
    write_box_table(path, records_table([records_json(track_records("other", track))]))   # adds a clip
    boxes = read_face_boxes(path)
    assert set(boxes) == {"00012", "other"}
    assert boxes["00012"].box_at(4) == (0, 0, 10, 10) and boxes["00012"].box_at(14) == (5, 5, 10, 10)
    assert np.isnan(read_box_table(path)["score"].iloc[1])
    (tmp_path / "boxes.csv").write_text("name,left,top,width,height\na,1,2,30,40\n")
    assert read_face_boxes(tmp_path / "boxes.csv")["a"].box_at(99) == (1, 2, 30, 40)


def _manifest(clips, *names, extra=()):
    rows = [dict(name=n, video=str(clips[n])) for n in names] + list(extra)
    return pd.DataFrame(rows).assign(audio=None, transcript=None, split="unlabeled", label=None, valence=np.nan)


def test_faces_job_then_extraction_and_frame_cache_reuse_the_boxes(ray_session, clips, tmp_path):
    from mer_ray.adapt.frames import FrameCache, FrameSettings, build_frame_cache
    from mer_ray.features.extract import extract_features
    from mer_ray.features.store import FeatureStore
    from mer_ray.faces.job import detect_corpus_faces

    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 20)
    manifest = _manifest(clips, "moving", "gap", "empty",
                         extra=[dict(name="broken", video=str(tmp_path / "broken.mp4"))])

    # detected while extracting: every clip stored, the counts in the summary line
    cfg = ExtractConfig(streams={"video": "frame-stats"}, crop="face", frame_size=64, encoder_actors=1)
    detected = FeatureStore(tmp_path / "detected")
    summary = extract_features(manifest, detected, cfg, progress=False)
    assert detected.stored_names("video") == {"moving", "gap", "empty"}
    line = summary.line()
    assert "faces: 2 clips with a face, 1 clips without a face (centre crop)" in line, line
    assert "frames on the clip's median box" in line
    in_store = read_box_table(detected.root / "face_boxes.parquet")
    assert in_store.groupby("name").size().to_dict() == {"empty": 16, "gap": 16, "moving": 16}

    # `mer-ray faces`: the same boxes in face_boxes.parquet; the broken clip listed, not fatal
    out = tmp_path / "face_boxes.parquet"
    job = detect_corpus_faces(manifest, out, FaceSettings(), num_frames=16)
    assert job.clips == 4 and job.skipped == 1
    errors = pd.read_parquet(tmp_path / "face_boxes.errors.parquet")
    assert errors["name"].tolist() == ["broken"] and "broken" in errors["message"].iloc[0]
    boxes = read_box_table(out)
    assert set(boxes.loc[boxes["name"] == "empty", "fallback"]) == {"centre"}
    moving = boxes[boxes["name"] == "moving"]
    assert min(_iou(r[["left", "top", "width", "height"]].tolist(), clips["truth"][r["frame"]])
               for _, r in moving.iterrows()) > 0.6
    pd.testing.assert_frame_equal(boxes[["name", "frame", "left", "top", "width", "height", "fallback"]],
                                  in_store[["name", "frame", "left", "top", "width", "height", "fallback"]])
    assert detect_corpus_faces(manifest, out, FaceSettings()).clips == 1   # a rerun retries only the broken clip
    assert set(read_face_boxes(out)) == {"moving", "gap", "empty"}

    # the face_boxes option reads that file: no detector runs, the same crops, the same features
    reused = FeatureStore(tmp_path / "reused")
    summary = extract_features(manifest, reused, dataclasses.replace(cfg, face_boxes=str(out)),
                               progress=False)
    assert "3 clips cropped to stored boxes" in summary.line()
    names_a, features_a = detected.load("video")
    names_b, features_b = reused.load("video")
    assert list(names_a) == list(names_b)
    np.testing.assert_allclose(features_a, features_b, rtol=1e-5, atol=1e-6)

    # the MAE frame cache of pretrain-mae, face-cropped while decoding
    cache = FrameCache(tmp_path / "frames", FrameSettings(num_frames=4, side=32, crop="face"))
    counts = build_frame_cache(manifest, cache)
    assert counts["cached"] == 3 and set(cache.skipped()) == {"broken"}
