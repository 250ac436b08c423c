"""MultiMAE-DER (seed 002): one VideoMAE over a fused sequence of face frames and spectrograms.

Each clip gives video frames V_i and, for each frame, a spectrogram A_i of the audio around the
frame's time (T - 1 s to T + 1 s, seed 002 section IV-B1) rendered as an image. The model's
`num_frames` slots (16) are filled by one of the six strategies of seed 002, section III-B:

    CFAS  16 slots, X_i = Concat(V_i, A_i): frame on the top half, spectrogram on the bottom
          half (both squashed to half height, 16x112x224 each for a 224 model)         eq. (1)
    SFAS  16 slots, X_i = Add(Norm(V_i), Norm(A_i))                                      eq. (2)
    FFLS   8 frames then their 8 spectrograms: V_1..V_8, A_1..A_8                        eq. (3)
    FSLF   8 spectrograms then their 8 frames: A_1..A_8, V_1..V_8                        eq. (4)
    OFOS   one frame, its spectrogram, the next frame ...: V_1, A_1, ..., V_8, A_8       eq. (5)
    RFAS   the 16 items of FFLS in a random order                                        eq. (6)

The clip vector is the mean of the encoder's token states (`pooling` picks the layers), the
usual utterance-level reduction of this project; seed 002 puts a linear head on the same tokens.
Weights: MAE-DFER (the paper's encoder) or any VideoMAE folder, local only.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._torch import TorchEncoder, frames_to_pixels, local_path, pool_layers
from .light import _mel_filterbank
from .visual import _normalisation, _side

STRATEGIES = ("CFAS", "SFAS", "FFLS", "FSLF", "OFOS", "RFAS")
SPECTROGRAMS = ("stft", "mfcc")
SAMPLE_RATE = 16000
N_FFT, HOP = 512, 160          # 32 ms windows every 10 ms
N_MELS, N_MFCC = 64, 40
FLOOR_DB = -80.0               # STFT images show [-80, 0] dB of full scale


def items_per_modality(strategy: str, num_frames: int) -> int:
    """How many frames (and as many spectrograms) a strategy puts into `num_frames` slots:
    all of them for the spatial strategies (CFAS, SFAS), half for the temporal ones."""
    return num_frames if strategy in ("CFAS", "SFAS") else num_frames // 2


def fusion_order(strategy: str, count: int, seed: int = 0) -> list[tuple[str, int]]:
    """The temporal strategies' slot order as ("V" | "A", index) pairs, `count` of each.

    RFAS draws one permutation from `seed` and uses it for every clip: a token position then
    means the same item in every clip (a per-clip order would make the features a function of
    the draw), and a rerun gives the same features.
    """
    frames = [("V", i) for i in range(count)]
    spectra = [("A", i) for i in range(count)]
    if strategy == "FFLS":
        return frames + spectra
    if strategy == "FSLF":
        return spectra + frames
    if strategy == "OFOS":
        return [item for pair in zip(frames, spectra) for item in pair]
    if strategy == "RFAS":
        items = frames + spectra
        return [items[j] for j in np.random.default_rng(seed).permutation(len(items))]
    raise ValueError(f"{strategy!r} is not a temporal strategy (FFLS, FSLF, OFOS, RFAS)")


def fuse(frames, spectra, strategy: str, seed: int = 0):
    """One clip's model input `[num_frames, C, H, W]` from normalised frames and spectrograms.

    `frames` and `spectra` are `[k, C, h, W]` tensors with k = `items_per_modality`; h is half
    the model's height for CFAS and the full height otherwise.
    """
    import torch

    if frames.shape != spectra.shape:
        raise ValueError(f"frames {tuple(frames.shape)} and spectrograms {tuple(spectra.shape)} differ")
    if strategy == "CFAS":
        return torch.cat([frames, spectra], dim=2)      # along height: V on top, A below
    if strategy == "SFAS":
        return frames + spectra
    pick = {"V": frames, "A": spectra}
    return torch.stack([pick[kind][i] for kind, i in fusion_order(strategy, len(frames), seed)])


def frame_times(num_decoded: int, picked: np.ndarray, duration: float) -> np.ndarray:
    """Seconds into the clip of the picked decoded frames: the decode stage samples frames evenly
    over the whole clip (first to last), so frame j of n sits at j / (n - 1) of its length."""
    if num_decoded < 2:
        return np.full(len(picked), duration / 2.0)
    return duration * picked / (num_decoded - 1)


class Spectrogram:
    """A window of waveform → a grey image `[F, T]` in [0, 1], low frequencies at the bottom.

    STFT: log power relative to a full-scale sine, [-80, 0] dB → [0, 1], a fixed scale so loud
    and quiet speech stay apart (loudness is an emotion cue). MFCC: 40 coefficients of a 64-band
    log-mel, min-max scaled per image (cepstral coefficients have no fixed range).
    """

    def __init__(self, kind: str, device: str):
        import torch

        self.kind = kind
        self.device = device
        self.window = torch.hann_window(N_FFT, device=device)
        if kind == "mfcc":
            mel = _mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2)
            self.mel = torch.from_numpy(mel).to(device)
            n = np.arange(N_MELS)
            dct = np.cos(np.pi / N_MELS * (n[None, :] + 0.5) * np.arange(N_MFCC)[:, None])
            dct[0] *= 1 / np.sqrt(2)                      # orthonormal DCT-II, as librosa / scipy
            self.dct = torch.from_numpy((dct * np.sqrt(2 / N_MELS)).astype(np.float32)).to(device)

    def __call__(self, pieces: np.ndarray):
        """`[k, samples]` → `[k, F, T]`."""
        import torch

        signal = torch.from_numpy(np.ascontiguousarray(pieces)).to(self.device)
        spec = torch.stft(signal, N_FFT, HOP, window=self.window, center=True, return_complex=True)
        power = spec.abs().pow(2) / (self.window.sum() / 2) ** 2   # full-scale sine → 1 (0 dB)
        if self.kind == "stft":
            db = 10.0 * torch.log10(power.clamp(min=1e-10))
            image = ((db - FLOOR_DB) / -FLOOR_DB).clamp(0.0, 1.0)
        else:
            logmel = torch.log(torch.einsum("mf,kft->kmt", self.mel, power).clamp(min=1e-10))
            mfcc = torch.einsum("cm,kmt->kct", self.dct, logmel)
            low = mfcc.amin(dim=(1, 2), keepdim=True)
            span = (mfcc.amax(dim=(1, 2), keepdim=True) - low).clamp(min=1e-6)
            image = (mfcc - low) / span
        return image.flip(1)


class MultiMAEDER(TorchEncoder):
    """`multimae-der:/folder?strategy=FSLF` — a VideoMAE folder (e.g. MAE-DFER's encoder) over
    frames + per-frame spectrograms fused by `strategy`.

    options: strategy (CFAS, SFAS, FFLS, FSLF (default, the paper's best), OFOS, RFAS),
    spectrogram (stft | mfcc), window_seconds (audio around each frame, 2.0 = T - 1 s .. T + 1 s),
    seed (RFAS's order), pooling, batch_size (clips per forward), device, fp16.
    Input per clip: a (frames `[T, H, W, 3]` uint8, 16 kHz waveform) pair; a clip missing either
    encodes to zeros (the pipeline records it as missing before it gets here).
    """

    modality = "audio+video"

    def __init__(self, source: str | None = None, *, spec: str = "multimae-der", strategy: str = "FSLF",
                 spectrogram: str = "stft", window_seconds: float = 2.0, seed: int = 0,
                 batch_size: int = 4, **options: Any):
        super().__init__(source, spec=spec, batch_size=batch_size, **options)
        strategy = str(strategy).upper()
        if strategy not in STRATEGIES:
            raise ValueError(f"encoder {spec!r}: strategy {strategy!r} must be one of {STRATEGIES}")
        if spectrogram not in SPECTROGRAMS:
            raise ValueError(f"encoder {spec!r}: spectrogram {spectrogram!r} must be one of {SPECTROGRAMS}")
        if not window_seconds >= N_FFT / SAMPLE_RATE:
            raise ValueError(f"encoder {spec!r}: window_seconds must be at least one STFT window "
                             f"({N_FFT / SAMPLE_RATE} s), got {window_seconds}")
        from transformers import VideoMAEModel

        path = local_path(source, spec)
        model = VideoMAEModel.from_pretrained(str(path), local_files_only=True)
        self.num_frames = model.config.num_frames
        if self.num_frames % 2:
            raise ValueError(f"encoder {spec!r}: the model takes {self.num_frames} frames; the temporal "
                             f"strategies split them evenly between frames and spectrograms, so it "
                             f"must be even")
        self.side = _side(model.config.image_size)
        self.mean, self.std = _normalisation(path, "videomae")
        self.dim = model.config.hidden_size
        self.strategy, self.spectrogram, self.seed = strategy, spectrogram, int(seed)
        self.window_samples = int(round(window_seconds * SAMPLE_RATE))
        self.model = self._prepare(model)
        self._spectrogram = Spectrogram(spectrogram, self.device)

    def encode(self, inputs: Sequence[tuple[np.ndarray | None, np.ndarray | None] | None]) -> np.ndarray:
        torch = self._torch
        rows = np.zeros((len(inputs), self.dim), np.float32)
        present = [i for i, pair in enumerate(inputs) if pair is not None and all(
            part is not None and len(part) for part in pair)]
        for start in range(0, len(present), self.batch_size):
            picked = present[start : start + self.batch_size]
            pixels = torch.stack([self.clip_input(*inputs[i]) for i in picked])   # [B, n, 3, S, S]
            with torch.inference_mode(), self._autocast():
                outputs = self.model(pixel_values=pixels, output_hidden_states=self.pooling != "last")
                rows[picked] = pool_layers(outputs, self.pooling).float().mean(1).cpu().numpy()
        return self._stack(list(rows))

    def clip_input(self, frames: np.ndarray, audio: np.ndarray):
        """One clip's fused VideoMAE input `[num_frames, 3, S, S]`, normalised."""
        torch = self._torch
        count = items_per_modality(self.strategy, self.num_frames)
        height = self.side // 2 if self.strategy == "CFAS" else self.side
        index = np.linspace(0, len(frames) - 1, count).round().astype(np.int64)   # also the spectrograms' times
        video = frames_to_pixels(frames[index], size=(height, self.side), mean=self.mean, std=self.std,
                                 device=self.device)
        audio = np.asarray(audio, np.float32).reshape(-1)
        times = frame_times(len(frames), index, len(audio) / SAMPLE_RATE)
        grey = self._spectrogram(self._windows(audio, times))                     # [k, F, T]
        spectra = self._resize(grey.unsqueeze(1), height).expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return fuse(video, (spectra - mean) / std, self.strategy, self.seed)

    def _windows(self, audio: np.ndarray, times: np.ndarray) -> np.ndarray:
        """`window_seconds` of audio centred on each time, zero-padded past the clip's ends."""
        half = self.window_samples // 2
        padded = np.pad(audio, (half, self.window_samples - half))
        starts = np.clip((times * SAMPLE_RATE).round().astype(np.int64), 0, len(audio))
        return np.stack([padded[s : s + self.window_samples] for s in starts])

    def _resize(self, images, height: int):
        if images.shape[-2:] == (height, self.side):
            return images
        return self._torch.nn.functional.interpolate(images, size=(height, self.side), mode="bilinear",
                                                     antialias=True, align_corners=False)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "strategy": self.strategy, "spectrogram": self.spectrogram,
                "window_seconds": self.window_samples / SAMPLE_RATE, "seed": self.seed,
                "num_frames": self.num_frames, "input_size": self.side}
