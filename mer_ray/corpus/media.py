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

__all__ = ["BoxTrack", "CROPS", "DecodedClip", "MediaError", "centre_box", "crop_square", "decode_clip",
           "probe_media", "read_face_boxes"]

CROPS = ("center", "none")   # "face" is mer_ray.faces: it detects on these frames, then crops

Box = tuple[float, float, float, float]   # left, top, width, height in the video's pixels


@dataclass
class DecodedClip:
    """What a clip holds; a field is None when the file has no such stream."""

    frames: np.ndarray | None  # uint8 [num_frames, H, W, 3], sampled uniformly over the clip
    audio: np.ndarray | None  # float32 mono waveform at `sample_rate`
    indices: np.ndarray | None = None  # int64 [num_frames]: each sampled frame's index in the video


@dataclass(frozen=True)
class BoxTrack:
    """Face boxes recorded at some of a clip's frames (`mer-ray faces` writes them per sampled
    frame): a decoded frame takes the box of the nearest recorded frame, so boxes detected once
    serve an extraction that samples other frames too."""

    frames: np.ndarray   # int64 [K], video frame indices, ascending
    boxes: np.ndarray    # float [K, 4], (left, top, width, height)

    def box_at(self, index: int) -> Box:
        nearest = int(np.abs(self.frames - index).argmin())
        return tuple(float(v) for v in self.boxes[nearest])


def centre_box(height: int, width: int) -> Box:
    """The largest centred square: the crop of a clip where no face was found."""
    side = min(height, width)
    return float((width - side) // 2), float((height - side) // 2), float(side), float(side)


def crop_square(rgb: np.ndarray, box: Box, *, margin: float = 0.0, size: int | None = None) -> np.ndarray:
    """The square around `box`'s centre with its longer side plus `margin` of it on each side,
    shifted (then shrunk) to stay inside the frame, resized to `size` x `size` when given."""
    height, width = rgb.shape[:2]
    left, top, box_w, box_h = box
    side = max(1, min(int(round(max(box_w, box_h) * (1.0 + 2.0 * margin))), height, width))
    cx, cy = left + box_w / 2.0, top + box_h / 2.0
    x0 = int(round(min(max(cx - side / 2.0, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0), height - side)))
    rgb = rgb[y0 : y0 + side, x0 : x0 + side]
    if size is None or rgb.shape[:2] == (size, size):
        return np.ascontiguousarray(rgb)
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


class MediaError(Exception):
    """A clip that cannot be decoded; the message names the file and says what to do."""


def decode_clip(
    video: str | Path | None,
    audio: str | Path | None = None,
    *,
    num_frames: int = 16,
    frame_size: int | None = None,
    sample_rate: int = 16000,
    crop: str = "center",
    face_box: Box | BoxTrack | None = None,
    margin: float = 0.0,
    want: tuple[str, ...] = ("video", "audio"),
) -> DecodedClip:
    """Decode `num_frames` uniformly spaced frames of `video` and the audio of the clip.

    `audio=None` takes the audio track of `video`; a separate `audio` file (a MER corpus that
    ships .wav next to the .mp4) is decoded instead when given. A video without an audio
    stream gives `audio=None` and an audio-only file gives `frames=None`: both are normal in
    MER data. When nothing usable is left (missing, empty, corrupt or not a media file at all)
    this raises `MediaError` naming the path.

    Cropping, then resizing to `frame_size` x `frame_size` when it is given:
      - `face_box=(left, top, width, height)` in the video's pixels (one box per clip, e.g. from
        a face detector run once over the corpus; see `read_face_boxes`): every frame is cut to
        the square around the box's centre with the box's longer side (plus `margin` of it on
        each side), clipped to the frame; a `BoxTrack` (per-frame boxes from `mer-ray faces`)
        gives each frame the box recorded nearest to it;
      - else `crop="center"`: the largest centred square (faces in MER clips are near the middle);
      - `crop="none"`: the whole frame, squashed to a square only when `frame_size` is given.

    `want` skips the stream an extraction does not need; with only one stream wanted, a clip
    that lacks it gives None for it rather than an error (the caller records it as missing).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if video is None and audio is None:
        raise MediaError("decode_clip got neither a video nor an audio path; give at least one")

    frames = indices = None
    if video is not None and "video" in want:
        decoded = _decode_frames(Path(video), num_frames, _Framing(frame_size, crop, face_box, margin))
        if decoded is not None:
            indices, frames = decoded
    audio_source = Path(audio) if audio is not None else (Path(video) if video is not None else None)
    waveform = None
    if audio_source is not None and "audio" in want:
        waveform = _decode_audio(audio_source, sample_rate, required=audio is not None)

    if frames is None and waveform is None and {"video", "audio"} <= set(want):
        raise MediaError(
            f"{video}: has no decodable video or audio stream; check that it plays "
            f"(ffprobe '{video}') or drop the clip from the manifest"
        )
    return DecodedClip(frames=frames, audio=waveform, indices=indices)


@dataclass(frozen=True)
class _Framing:
    """How each decoded frame is cut and sized (see `decode_clip`)."""

    size: int | None
    crop: str
    box: Box | BoxTrack | None
    margin: float = 0.0

    def apply(self, rgb: np.ndarray, index: int) -> np.ndarray:
        height, width = rgb.shape[:2]
        if self.box is not None:
            box = self.box.box_at(index) if isinstance(self.box, BoxTrack) else self.box
            return crop_square(rgb, box, margin=self.margin, size=self.size)
        if self.crop == "center" and self.size is not None:
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            rgb = rgb[top : top + side, left : left + side]
        if self.size is None or rgb.shape[:2] == (self.size, self.size):
            return np.ascontiguousarray(rgb)
        return np.asarray(Image.fromarray(rgb).resize((self.size, self.size), Image.BILINEAR))


def read_face_boxes(path: str | Path) -> dict[str, tuple[float, float, float, float]]:
    """name → (left, top, width, height) from a `name,left,top,width,height` CSV (pixels of the
    source video; one box per clip, e.g. the median OpenFace box over the clip)."""
    import csv

    path = Path(path)
    boxes = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"name", "left", "top", "width", "height"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected name,left,top,width,height")
        for line, row in enumerate(reader, start=2):
            try:
                box = tuple(float(row[k]) for k in ("left", "top", "width", "height"))
            except ValueError:
                raise ValueError(f"{path} line {line}, clip {row['name']}: box values must be numbers") from None
            if box[2] <= 0 or box[3] <= 0:
                raise ValueError(f"{path} line {line}, clip {row['name']}: width and height must be > 0")
            boxes[row["name"]] = box
    return boxes


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


def _decode_frames(path: Path, num_frames: int, framing: _Framing) -> tuple[np.ndarray, np.ndarray] | None:
    """(video frame indices, frames) of `num_frames` uniformly sampled frames; None: no video."""
    try:
        expected = _count_video_packets(path)
        if expected == 0:
            return None
        indices = _uniform_indices(expected, num_frames)
        picked = _pick_frames(path, indices, framing)
        if picked is None:
            # The packet count was wrong (an undecodable packet, a codec with delayed frames):
            # decode once to count exactly, then pick again.
            actual = _decode_all_count(path)
            if actual == 0:
                return None
            indices = _uniform_indices(actual, num_frames)
            picked = _pick_frames(path, indices, framing)
        return None if picked is None else (indices, picked)
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise MediaError(
            f"{path}: video stream is corrupt ({err}); re-encode the file or drop the clip"
        ) from None


def _uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """`num_frames` indices spread evenly over [0, total); repeats when the clip is shorter."""
    return np.linspace(0, total - 1, num_frames).round().astype(np.int64)


def _pick_frames(path: Path, indices: np.ndarray, framing: _Framing) -> np.ndarray | None:
    """Decode the clip, keeping only the frames at `indices`; None when it has fewer frames."""
    wanted = set(int(i) for i in indices)
    kept: dict[int, np.ndarray] = {}
    last = int(indices.max())
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                kept[index] = framing.apply(frame.to_ndarray(format="rgb24"), index)
            if index >= last:
                break
    if len(kept) < len(wanted):
        return None
    return np.stack([kept[int(i)] for i in indices])


def _decode_all_count(path: Path) -> int:
    with _open(path) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


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


def probe_media(path: str | Path) -> str | None:
    """A cheap readability check for `mer-ray validate`: None when the file opens and its first
    video (or audio) frame decodes, else the problem. Opens the file once and decodes one frame,
    so a whole corpus is probed in seconds; full decoding problems still surface per clip at
    extraction, where they are quarantined."""
    path = Path(path)
    try:
        with _open(path) as container:
            streams = list(container.streams.video[:1]) or list(container.streams.audio[:1])
            if not streams:
                return f"{path}: has no video or audio stream"
            for _ in container.decode(streams[0]):
                return None
            return f"{path}: has a {streams[0].type} stream but no decodable frame (zero length or truncated)"
    except MediaError as err:
        return str(err)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        return f"{path}: unreadable ({err})"
