"""One face box per sampled frame of a clip: detect, keep one face, smooth over time, fall back.

Seed 003 crops the face in every frame before its image encoders; a detector alone gives a box
that jitters from frame to frame, misses some frames, and now and then fires on the background.
So, per clip:
  1. detect in every sampled frame at once (shrunk to `detect_side` first: the cost of a
     detector grows with the pixels, a face needs far fewer);
  2. keep one face per frame (`pick`: the largest, or the one nearest the frame's centre);
  3. smooth: each detected box becomes the median of the detected boxes within `smooth` frames
     of it (a window that shrinks at the clip's ends, so a steady motion is kept as it is and a
     single stray box is voted out);
  4. a frame with no face takes the clip's median box (fallback "median");
  5. a clip with a face in fewer than `min_face_share` of its frames (none at all, or a stray
     false detection) is centre-cropped like `crop: center` (fallback "centre").
The margin is added when cropping (`mer_ray.corpus.media.crop_square`), not to the boxes here,
so boxes written once by `mer-ray faces` can be cropped with another margin later.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from mer_ray.corpus.media import centre_box
from mer_ray.registry import Registry

from .detectors import FaceDetector

__all__ = ["FALLBACKS", "FaceSettings", "FaceTrack", "PICKS", "track_faces"]

FALLBACKS = ("none", "median", "centre")   # per frame: detected, the clip's median box, centre crop

PICKS: Registry = Registry("face pick rule")


@PICKS.register("largest")
def largest(faces: np.ndarray, height: int, width: int) -> int:
    """The largest face: in MER's talking-head clips the speaker is the nearest face."""
    return int(np.argmax(faces[:, 2] * faces[:, 3]))


@PICKS.register("central")
def central(faces: np.ndarray, height: int, width: int) -> int:
    """The face whose centre is nearest the frame's centre."""
    cx = faces[:, 0] + faces[:, 2] / 2 - width / 2
    cy = faces[:, 1] + faces[:, 3] / 2 - height / 2
    return int(np.argmin(cx * cx + cy * cy))


@dataclass(frozen=True)
class FaceSettings:
    """How `crop: face` finds and cuts the face (see the module doc for each step)."""

    detector: str = "haar"         # mer_ray.faces.detectors spec
    margin: float = 0.2            # added on each side of the square crop, as a share of the box side
    pick: str = "largest"          # PICKS
    smooth: int = 5                # median window over sampled frames (1: no smoothing)
    min_face_share: float = 0.25   # of the sampled frames; fewer with a face → centre crop
    detect_side: int = 480         # frames are shrunk to this longer side for detection only
    size: int = 224                # crop side when the extraction gives no frame_size

    def __post_init__(self) -> None:
        PICKS.get(self.pick)   # unknown rule → KeyError naming the registered ones
        if not 0.0 <= self.margin <= 2.0:
            raise ValueError(f"face margin must be in [0, 2] (a share of the box side), got {self.margin}")
        if self.smooth < 1 or self.detect_side < 32 or self.size < 1:
            raise ValueError(f"face smooth must be >= 1, detect_side >= 32 and size >= 1; got "
                             f"{self.smooth}, {self.detect_side}, {self.size}")
        if not 0.0 <= self.min_face_share <= 1.0:
            raise ValueError(f"min_face_share must be in [0, 1], got {self.min_face_share}")


@dataclass
class FaceTrack:
    """The boxes a clip's sampled frames are cropped around, before the margin."""

    indices: np.ndarray     # int64 [T]: video frame index of each sampled frame
    boxes: np.ndarray       # float64 [T, 4]: left, top, width, height in the video's pixels
    scores: np.ndarray      # float32 [T]: the detector's score for the kept face; NaN: none found
    fallback: list[str]     # [T], FALLBACKS
    frame_height: int
    frame_width: int

    @property
    def clip_fallback(self) -> str:
        return "centre" if self.fallback and all(f == "centre" for f in self.fallback) else "none"

    def counts(self) -> Counter:
        return Counter(self.fallback)


def _shrink(frames: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    height, width = frames.shape[1:3]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return frames, 1.0
    import cv2

    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]), scale


def _smooth(raw: np.ndarray, found: np.ndarray, window: int) -> np.ndarray:
    """Each found box → the median of the found boxes within a window centred on it, the window
    shrinking near the ends so that it stays centred (a steady motion passes unchanged)."""
    out = raw.copy()
    half, count = window // 2, len(raw)
    for t in np.flatnonzero(found):
        reach = min(half, t, count - 1 - t)
        near = found.copy()
        near[: t - reach] = False
        near[t + reach + 1 :] = False
        out[t] = np.median(raw[near], axis=0)
    return out


def track_faces(frames: np.ndarray, detector: FaceDetector, settings: FaceSettings,
                indices: np.ndarray | None = None) -> FaceTrack:
    """The box of every frame of `frames` (uint8 [T, H, W, 3], one clip's sampled frames)."""
    count, height, width = frames.shape[:3]
    indices = np.arange(count, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    small, scale = _shrink(frames, settings.detect_side)
    detections = detector.detect(small)
    if len(detections) != count:
        raise RuntimeError(f"face detector {detector.spec!r} gave {len(detections)} results for {count} frames")
    pick = PICKS.get(settings.pick)
    raw = np.full((count, 4), np.nan)
    scores = np.full(count, np.nan, np.float32)
    for t, faces in enumerate(detections):
        if len(faces):
            best = pick(faces, small.shape[1], small.shape[2])
            raw[t] = faces[best, :4] / scale
            scores[t] = faces[best, 4]
    found = ~np.isnan(raw[:, 0])
    if found.sum() < max(1, math.ceil(settings.min_face_share * count)):
        boxes = np.tile(np.asarray(centre_box(height, width), np.float64), (count, 1))
        return FaceTrack(indices, boxes, scores, ["centre"] * count, height, width)
    boxes = _smooth(raw, found, settings.smooth)
    boxes[~found] = np.median(raw[found], axis=0)
    fallback = ["none" if f else "median" for f in found]
    return FaceTrack(indices, boxes, scores, fallback, height, width)
