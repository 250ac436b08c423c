"""Decode one clip with PyAV: uniformly sampled RGB frames and a 16 kHz mono waveform.

This is the CPU half of feature extraction (Ray Data decode tasks call it once per clip), so it
never raises anything but `MediaError` for a bad file: the caller quarantines the clip by name
and the rest of the work goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

__all__ = ["DecodedClip", "MediaError", "decode_clip"]


@dataclass
class DecodedClip:
    """What a clip holds; a field is None when the file has no such stream."""

    frames: np.ndarray | None  # uint8 [num_frames, H, W, 3], sampled uniformly over the clip
    audio: np.ndarray | None  # float32 mono waveform at `sample_rate`


class MediaError(Exception):
    """A clip that cannot be decoded; the message names the file and says what to do."""


def decode_clip(
    video: str | Path | None,
    audio: str | Path | None = None,
    *,
    num_frames: int = 16,
    frame_size: int | None = None,
    sample_rate: int = 16000,
) -> DecodedClip:
    """Decode `num_frames` uniformly spaced frames of `video` and the audio of the clip.

    `audio=None` takes the audio track of `video`; a separate `audio` file (a MER corpus that
    ships .wav next to the .mp4) is decoded instead when given. A video without an audio
    stream gives `audio=None` and an audio-only file gives `frames=None`: both are normal in
    MER data. When nothing usable is left (missing, empty, corrupt or not a media file at all)
    this raises `MediaError` naming the path.

    `frame_size` centre-crops every frame to a square and resizes it to that many pixels.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if video is None and audio is None:
        raise MediaError("decode_clip got neither a video nor an audio path; give at least one")

    frames = None
    if video is not None:
        frames = _decode_frames(Path(video), num_frames, frame_size)
    audio_source = Path(audio) if audio is not None else (Path(video) if video is not None else None)
    waveform = None
    if audio_source is not None:
        waveform = _decode_audio(audio_source, sample_rate, required=audio is not None)

    if frames is None and waveform is None:
        raise MediaError(
            f"{video}: has no decodable video or audio stream; check that it plays "
            f"(ffprobe '{video}') or drop the clip from the manifest"
        )
    return DecodedClip(frames=frames, audio=waveform)


def _open(path: Path) -> av.container.InputContainer:
    """Open a container, turning every way a file can be unusable into one clear MediaError."""
    if not path.exists():
        raise MediaError(f"{path}: file not found; fix the path in the manifest or drop the clip")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes); re-copy it or drop the clip")
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaError(
            f"{path}: not a readable media file ({err}); re-encode it (ffmpeg -i ... out.mp4) "
            f"or drop the clip"
        ) from None


def _count_video_packets(path: Path) -> int:
    """Frames in the video stream, counted by demuxing only (no decoding, cheap).

    `stream.frames` is 0 for many containers, and decoding everything to RGB to count it would
    hold a whole high-resolution clip in memory; one packet is one frame for MER's codecs.
    """
    with _open(path) as container:
        if not container.streams.video:
            return 0
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _decode_frames(path: Path, num_frames: int, frame_size: int | None) -> np.ndarray | None:
    try:
        expected = _count_video_packets(path)
        if expected == 0:
            return None
        picked = _pick_frames(path, _uniform_indices(expected, num_frames), frame_size)
        if picked is None:
            # The packet count was wrong (an undecodable packet, a codec with delayed frames):
            # decode once to count exactly, then pick again.
            actual = _decode_all_count(path)
            if actual == 0:
                return None
            picked = _pick_frames(path, _uniform_indices(actual, num_frames), frame_size)
        return picked
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaError(
            f"{path}: video stream is corrupt ({err}); re-encode the file or drop the clip"
        ) from None


def _uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """`num_frames` indices spread evenly over [0, total); repeats when the clip is shorter."""
    return np.linspace(0, total - 1, num_frames).round().astype(np.int64)


def _pick_frames(path: Path, indices: np.ndarray, frame_size: int | None) -> np.ndarray | None:
    """Decode the clip, keeping only the frames at `indices`; None when it has fewer frames."""
    wanted = set(int(i) for i in indices)
    kept: dict[int, np.ndarray] = {}
    last = int(indices.max())
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                kept[index] = _to_rgb(frame, frame_size)
            if index >= last:
                break
    if len(kept) < len(wanted):
        return None
    return np.stack([kept[int(i)] for i in indices])


def _decode_all_count(path: Path) -> int:
    with _open(path) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def _to_rgb(frame: av.VideoFrame, frame_size: int | None) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    if frame_size is None:
        return rgb
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(rgb[top : top + side, left : left + side])
    return np.asarray(square.resize((frame_size, frame_size), Image.BILINEAR))


def _decode_audio(path: Path, sample_rate: int, *, required: bool) -> np.ndarray | None:
    """Mono float32 waveform at `sample_rate`; None when the file has no audio stream.

    `required` is True for a separate audio file: having no audio there is an error, whereas a
    video without sound is ordinary.
    """
    try:
        with _open(path) as container:
            if not container.streams.audio:
                if required:
                    raise MediaError(
                        f"{path}: has no audio stream; point the manifest's audio column at "
                        f"the right file or leave it empty"
                    )
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaError(
            f"{path}: audio stream is corrupt ({err}); re-encode the file or drop the clip"
        ) from None
    if not chunks:
        return None
    waveform = np.concatenate(chunks).astype(np.float32, copy=False)
    return waveform if waveform.size else None


def write_clip(
    path: str | Path,
    frames: np.ndarray | None,
    audio: np.ndarray | None,
    *,
    fps: int = 10,
    sample_rate: int = 16000,
    video_codec: str = "mpeg4",
) -> None:
    """Write an .mp4 with an optional video stream (uint8 [T, H, W, 3]) and optional AAC audio.

    Used by the demo corpus and by tests that need clips without a video or an audio stream.
    One encoder thread each, so the same arrays always give the same bytes.
    """
    if frames is None and audio is None:
        raise ValueError(f"{path}: write_clip needs frames or audio")
    with av.open(str(path), mode="w", format="mp4") as container:
        video_stream = audio_stream = None
        if frames is not None:
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
            video_stream = container.add_stream(video_codec, rate=fps)
            video_stream.width, video_stream.height = frames.shape[2], frames.shape[1]
            video_stream.pix_fmt = "yuv420p"
            video_stream.bit_rate = 400_000
            video_stream.codec_context.thread_count = 1
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=sample_rate, layout="mono")
            audio_stream.bit_rate = 48_000
            audio_stream.codec_context.thread_count = 1
        if video_stream is not None:
            for index, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = index
                container.mux(video_stream.encode(frame))
            container.mux(video_stream.encode(None))
        if audio_stream is not None:
            samples = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).astype(np.float32)[None, :])
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = 0
            container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))
