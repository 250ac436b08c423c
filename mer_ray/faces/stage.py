"""`crop: face` where decoding runs (a Ray Data CPU task): decode, find the face, crop, resize.

The sampled frames are decoded at the video's size, the face track is found on them
(mer_ray.faces.track), and each frame is cut to the square around its box plus the margin and
resized to the encoder's input. Extraction's decode stage, the MAE frame cache and `mer-ray faces`
all call `decode_face_clip`, so the three see the same boxes for the same clip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_ray.corpus.media import DecodedClip, crop_square, decode_clip

from .detectors import cached_detector
from .track import FaceSettings, FaceTrack, track_faces

__all__ = ["crop_track", "decode_face_clip"]


def crop_track(frames: np.ndarray, track: FaceTrack, settings: FaceSettings, size: int | None) -> np.ndarray:
    """Every frame cut to its box (plus the margin), `size` x `size` (default `settings.size`)."""
    side = size or settings.size
    return np.stack([crop_square(frame, tuple(box), margin=settings.margin, size=side)
                     for frame, box in zip(frames, track.boxes)])


def decode_face_clip(video: str | Path | None, audio: str | Path | None = None, *, num_frames: int,
                     frame_size: int | None, settings: FaceSettings, want: tuple[str, ...] = ("video", "audio"),
                     sample_rate: int = 16000) -> tuple[DecodedClip, FaceTrack | None]:
    """`decode_clip` with the frames face-cropped; the track is None when no frames were decoded
    (no video stream, or only audio wanted). Raises `MediaError` like `decode_clip`."""
    clip = decode_clip(video, audio, num_frames=num_frames, frame_size=None, crop="none",
                       sample_rate=sample_rate, want=want)
    if clip.frames is None:
        return clip, None
    track = track_faces(clip.frames, cached_detector(settings.detector), settings, clip.indices)
    frames = crop_track(clip.frames, track, settings, frame_size)
    return DecodedClip(frames=frames, audio=clip.audio, indices=clip.indices), track
