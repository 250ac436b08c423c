"""Faces: per-frame face detection and crop on Linux, offline, where decoding runs (seed 003).

    detectors.py   the detector registry (`haar`: bundled with OpenCV; `yunet:/path.onnx`)
    track.py       one box per sampled frame: pick, smooth, fall back (median box, centre crop)
    stage.py       decode + detect + crop for one clip (extraction's decode stage, the MAE cache)
    boxes.py       face_boxes.parquet: written by `mer-ray faces` and `crop: face`, read by `face_boxes`
    job.py         `mer-ray faces`: the corpus detected once, as a Ray Data job

docs/faces.md shows how to run it, what each detector needs and the fallback rules.
"""
from .boxes import read_face_boxes, summarise, write_box_table
from .detectors import DETECTORS, FaceDetector, create_detector
from .stage import decode_face_clip
from .track import FALLBACKS, PICKS, FaceSettings, FaceTrack, track_faces

__all__ = ["DETECTORS", "FALLBACKS", "FaceDetector", "FaceSettings", "FaceTrack", "PICKS", "create_detector",
           "decode_face_clip", "read_face_boxes", "summarise", "track_faces", "write_box_table"]
