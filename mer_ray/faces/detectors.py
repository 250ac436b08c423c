"""Face detector registry: a spec string → a detector over a clip's frames (the encoders' pattern).

    haar                                          OpenCV's frontal-face Haar cascade. Its XML ships
                                                  inside opencv-python-headless: offline, CPU, no file
    haar?cascade=haarcascade_frontalface_alt2.xml&min_neighbors=4
    yunet:/models/face_detection_yunet_2023mar.onnx   OpenCV's YuNet CNN (the detector seed 003 names);
                                                  the .onnx is a file you provide (see HOW_TO_GET_WEIGHTS)
    yunet:/models/face_detection_yunet_2023mar.onnx?score_threshold=0.8

Specs have the encoders' shape, `family[:source][?key=value&...]` (mer_ray.encoders.parse_spec).
A detector takes a clip's sampled frames in one call (uint8 RGB [T, H, W, 3]) and returns, per
frame, a float32 array [n, 5] of the faces it found: left, top, width, height (frame pixels) and
a score (Haar: how many raw detections were merged into the face; YuNet: its confidence).
Both run on the CPU, one OpenCV thread by default because each Ray decode task holds one CPU.
Adding a detector is one decorated factory function (`@DETECTORS.register("name")`).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from mer_ray.encoders import parse_spec as _parse_spec
from mer_ray.registry import Registry

__all__ = ["DETECTORS", "FaceDetector", "HOW_TO_GET_WEIGHTS", "cached_detector", "create_detector"]

DETECTORS: Registry["FaceDetector"] = Registry("face detector")

HOW_TO_GET_WEIGHTS = (
    "weights load from local paths only. On a machine with internet, fetch the model file once "
    "(YuNet: face_detection_yunet_2023mar.onnx from the opencv_zoo repository, folder "
    "models/face_detection_yunet), copy it to shared storage, and point the spec at it: yunet:{path} "
    "(or use the `haar` detector, whose model ships inside opencv-python-headless)"
)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ImportError("face detection needs OpenCV: pip install opencv-python-headless "
                          "(pinned in pyproject.toml)") from None
    return cv2


class FaceDetector:
    """Finds faces in a clip's frames; see the module doc for what `detect` returns."""

    spec: str = ""

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"detector": self.spec}


def _no_faces() -> np.ndarray:
    return np.zeros((0, 5), np.float32)


class HaarCascade(FaceDetector):
    """OpenCV's Viola-Jones cascade on the equalised grey frame.

    Options: `cascade` (a file name among the bundled `cv2.data.haarcascades`, or a path),
    `scale_factor` 1.2 (the step between scanned face sizes: 1.1 finds a few more faces at twice the
    cost), `min_neighbors` 5 (raw detections a face needs: higher, fewer false
    faces), `min_size` 24 (pixels, at detection scale), `threads` 1 (OpenCV's, per process).
    """

    def __init__(self, *, spec: str = "haar", cascade: str = "haarcascade_frontalface_default.xml",
                 scale_factor: float = 1.2, min_neighbors: int = 5, min_size: int = 24, threads: int = 1):
        cv2 = _cv2()
        self.spec = spec
        bundled = Path(cv2.data.haarcascades)
        path = Path(cascade).expanduser()
        if not path.is_file():
            path = bundled / cascade
        if not path.is_file():
            names = ", ".join(sorted(p.name for p in bundled.glob("haarcascade_*.xml"))) or "none"
            raise FileNotFoundError(f"face detector {spec!r}: no cascade file {cascade!r}; give a path or "
                                    f"one bundled with OpenCV in {bundled}: {names}")
        self.classifier = cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise ValueError(f"face detector {spec!r}: {path} is not a readable OpenCV cascade XML")
        if scale_factor <= 1.0 or min_neighbors < 0 or min_size < 1:
            raise ValueError(f"face detector {spec!r}: scale_factor must be > 1, min_neighbors >= 0 and "
                             f"min_size >= 1; got {scale_factor}, {min_neighbors}, {min_size}")
        self.scale_factor, self.min_neighbors, self.min_size = float(scale_factor), int(min_neighbors), int(min_size)
        cv2.setNumThreads(int(threads))

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        cv2 = _cv2()
        found = []
        for rgb in frames:
            grey = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))
            rects, merged = self.classifier.detectMultiScale2(
                grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size))
            if len(rects) == 0:
                found.append(_no_faces())
            else:
                found.append(np.column_stack([np.asarray(rects, np.float32),
                                              np.asarray(merged, np.float32).reshape(-1)]))
        return found


class YuNet(FaceDetector):
    """OpenCV's YuNet (`cv2.FaceDetectorYN`) from a local .onnx file.

    Options: `score_threshold` 0.7, `nms_threshold` 0.3, `top_k` 50, `threads` 1.
    """

    def __init__(self, source: str | None = None, *, spec: str = "yunet", score_threshold: float = 0.7,
                 nms_threshold: float = 0.3, top_k: int = 50, threads: int = 1):
        cv2 = _cv2()
        self.spec = spec
        if not source:
            raise ValueError(f"face detector spec {spec!r} names no model file; "
                             + HOW_TO_GET_WEIGHTS.format(path="/models/face_detection_yunet_2023mar.onnx"))
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"face detector {spec!r}: {path} does not exist; "
                                    + HOW_TO_GET_WEIGHTS.format(path=str(path)))
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), float(score_threshold),
                                                 float(nms_threshold), int(top_k))
        except cv2.error as err:
            raise ValueError(f"face detector {spec!r}: OpenCV cannot load {path} as a YuNet model "
                             f"({str(err).strip().splitlines()[-1]}); " + HOW_TO_GET_WEIGHTS.format(path=str(path))) from None
        cv2.setNumThreads(int(threads))

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        cv2 = _cv2()
        if len(frames) == 0:
            return []
        height, width = frames.shape[1:3]
        self.net.setInputSize((int(width), int(height)))
        found = []
        for rgb in frames:
            _, faces = self.net.detect(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
            # a row: x, y, w, h, five landmarks (x, y), score
            found.append(_no_faces() if faces is None else np.asarray(faces[:, [0, 1, 2, 3, 14]], np.float32))
        return found


@DETECTORS.register("haar")
def haar(source: str | None = None, **kwargs: Any) -> FaceDetector:
    """`haar` (the bundled frontal-face cascade) or `haar:/path/cascade.xml`."""
    if source:
        kwargs["cascade"] = source
    return HaarCascade(**kwargs)


@DETECTORS.register("yunet")
def yunet(source: str | None = None, **kwargs: Any) -> FaceDetector:
    return YuNet(source, **kwargs)


def create_detector(spec: str) -> FaceDetector:
    """The detector a spec names; an unknown family raises KeyError naming the registered ones,
    a missing weights file the message that says how to get it."""
    try:
        family, source, options = _parse_spec(spec)
    except ValueError as err:
        raise ValueError(str(err).replace("encoder spec", "face detector spec")) from None
    factory = DETECTORS.get(family)
    options.setdefault("spec", spec)
    return factory(source, **options) if source is not None else factory(**options)


@functools.lru_cache(maxsize=4)
def cached_detector(spec: str) -> FaceDetector:
    """One detector per process and spec: a decode task handles many batches, and loading a
    cascade or a network for each would cost more than detecting in a short clip."""
    return create_detector(spec)
