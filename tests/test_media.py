"""decode_clip: what a clip yields, and that every way a file can be bad is one clear MediaError."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mer_ray.corpus.media import DecodedClip, MediaError, decode_clip, write_clip


def _frames(count: int = 12, size: int = 48) -> np.ndarray:
    # A left-to-right ramp whose brightness grows with the frame index, so order is checkable.
    ramp = np.linspace(0, 1, size, dtype=np.float32)[None, None, :, None]
    level = np.linspace(0.2, 0.8, count, dtype=np.float32)[:, None, None, None]
    return np.broadcast_to((ramp * 0.2 + level) * 255, (count, size, size, 3)).astype(np.uint8)


def _tone(seconds: float = 1.0, hz: float = 220.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_clip_with_video_and_audio_gives_both(tmp_path: Path) -> None:
    path = tmp_path / "both.mp4"
    write_clip(path, _frames(), _tone(1.0))
    clip = decode_clip(path)
    assert isinstance(clip, DecodedClip)
    assert clip.frames.shape == (16, 48, 48, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert abs(len(clip.audio) - 16000) < 2048  # AAC pads to whole frames


def test_frames_are_sampled_uniformly_in_order_and_repeated_when_short(tmp_path: Path) -> None:
    path = tmp_path / "short.mp4"
    write_clip(path, _frames(count=5), None)
    clip = decode_clip(path, num_frames=9)
    brightness = clip.frames.reshape(9, -1).mean(1)
    assert clip.frames.shape[0] == 9
    assert np.all(np.diff(brightness) >= -1.0)  # non-decreasing: frames kept in time order
    assert abs(brightness[0] - brightness[1]) < 1.0  # 5 frames over 9 slots: repeats


def test_frame_size_centre_crops_and_resizes(tmp_path: Path) -> None:
    path = tmp_path / "wide.mp4"
    wide = np.zeros((6, 32, 64, 3), dtype=np.uint8)
    wide[:, :, 16:48] = 200  # the centre square is bright, the sides dark
    write_clip(path, wide, None)
    clip = decode_clip(path, num_frames=4, frame_size=24)
    assert clip.frames.shape == (4, 24, 24, 3)
    assert clip.frames.mean() > 150  # the crop kept the centre, not the dark sides


def test_video_without_audio_stream_gives_audio_none(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    write_clip(path, _frames(), None)
    clip = decode_clip(path)
    assert clip.audio is None and clip.frames is not None


def test_audio_only_file_gives_frames_none(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp4"
    write_clip(path, None, _tone(0.5))
    clip = decode_clip(path)
    assert clip.frames is None and clip.audio is not None


def test_separate_audio_file_is_used_instead_of_the_video_track(tmp_path: Path) -> None:
    video, audio = tmp_path / "v.mp4", tmp_path / "a.mp4"
    write_clip(video, _frames(), None)
    write_clip(audio, None, _tone(0.5, hz=440.0))
    clip = decode_clip(video, audio)
    assert clip.frames is not None and clip.audio is not None
    with pytest.raises(MediaError, match="no audio stream"):
        decode_clip(audio, video)  # an explicit audio file without audio is an error


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 20], ids=["zero-bytes", "text"])
def test_unreadable_file_raises_media_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "sample_00000042.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError, match="sample_00000042.mp4"):
        decode_clip(path)


def test_missing_file_raises_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        decode_clip(tmp_path / "nope.mp4")
