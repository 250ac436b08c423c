"""Speech recognisers by spec string: 16 kHz waveforms → transcripts (for seed 004's denoise rule).

    whisper:/models/whisper-large-v3?language=zh       a Whisper folder (WhisperForConditionalGeneration
                                                       + WhisperProcessor files), greedy decoding

Options: language (e.g. zh; default: the model's own detection, or none for an English-only
model), num_beams (1), max_new_tokens (half the decoder's context), batch_size (16 windows per
generate call), device, fp16 (on GPU by default). Audio longer than the model's window (30 s for
real Whisper) is cut into windows whose transcripts are joined. The folder, once, on a machine
with internet:

    huggingface-cli download openai/whisper-large-v3 --local-dir /models/whisper-large-v3

Seed 004 used its own noise-robust Paraformer; any recogniser plugs in as one decorated factory
(see mer_ray.denoise.separators for the pattern):

    @ASR_MODELS.register("paraformer")
    def paraformer(source=None, **options):
        return MyParaformer(source, **options)   # an ASR: .transcribe(list of 16 kHz arrays) -> list[str]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mer_ray.registry import Registry

from .spec import check_spec, create_from_spec, default_device, missing_weights_error

__all__ = ["ASR", "ASR_MODELS", "SOURCE_CHECKS", "WhisperASR", "check_asr", "create_asr"]

SAMPLE_RATE = 16000

ASR_MODELS: Registry["ASR"] = Registry("ASR model")
SOURCE_CHECKS: dict[str, Callable[[str | None, str], Any]] = {}   # as in separators.py


class ASR:
    """A recogniser: `transcribe(waveforms at 16 kHz) → one transcript per waveform`."""

    spec: str = ""

    def transcribe(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"spec": self.spec}


def check_asr(spec: str) -> None:
    """Fail now, in the driver, on an unknown family or a missing model (nothing is loaded)."""
    check_spec(ASR_MODELS, SOURCE_CHECKS, spec, what="ASR")


def create_asr(spec: str, **overrides: Any) -> ASR:
    """The ASR a spec names; unknown names raise KeyError listing the registered ones."""
    return create_from_spec(ASR_MODELS, spec, overrides, what="ASR")


class WhisperASR(ASR):
    """`whisper:/path/to/folder` — see the module docstring for the options."""

    def __init__(self, source: str | None = None, *, spec: str = "whisper", language: str | None = None,
                 num_beams: int = 1, max_new_tokens: int | None = None, batch_size: int = 16,
                 device: str | None = None, fp16: bool | None = None):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        path = _model_folder(source, spec)
        if batch_size < 1 or num_beams < 1:
            raise ValueError(f"ASR {spec!r}: batch_size and num_beams must be >= 1")
        self.spec, self.language, self.num_beams, self.batch_size = spec, language, int(num_beams), int(batch_size)
        self.device = device or default_device()
        self.fp16 = self.device.startswith("cuda") if fp16 is None else bool(fp16)
        self.processor = WhisperProcessor.from_pretrained(str(path), local_files_only=True)
        model = WhisperForConditionalGeneration.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float16 if self.fp16 else torch.float32)
        self.model = model.to(self.device).eval()
        config = model.config
        # Whisper only takes a fixed mel window (3000 frames = 30 s for real models; tiny test
        # models are shorter): longer audio is transcribed window by window.
        self.mel_frames = 2 * config.max_source_positions
        self.window = self.mel_frames * self.processor.feature_extractor.hop_length
        # the prompt (start, language, task, no-timestamps) takes a few of the decoder's positions
        limit = config.max_target_positions - 4
        self.max_new_tokens = min(int(max_new_tokens or config.max_target_positions // 2), limit)
        self._torch = torch

    def transcribe(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        windows: list[np.ndarray] = []
        owner: list[int] = []
        for index, waveform in enumerate(waveforms):
            signal = np.asarray(waveform, dtype=np.float32).reshape(-1)
            for start in range(0, max(len(signal), 1), self.window):
                windows.append(signal[start : start + self.window])
                owner.append(index)
        texts: list[list[str]] = [[] for _ in waveforms]
        for first in range(0, len(windows), self.batch_size):
            batch = windows[first : first + self.batch_size]
            for index, text in zip(owner[first : first + self.batch_size], self._generate(batch)):
                texts[index].append(text)
        return [" ".join(t for t in parts if t) for parts in texts]

    def _generate(self, windows: list[np.ndarray]) -> list[str]:
        torch = self._torch
        features = self.processor.feature_extractor(
            windows, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding="max_length",
            truncation=True, max_length=self.window)["input_features"][..., : self.mel_frames]
        dtype = torch.float16 if self.fp16 else torch.float32
        options: dict[str, Any] = dict(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
        if self.language:
            options.update(language=self.language, task="transcribe")
        # Whisper attends to its whole window, the silence padded after short audio included (as
        # in training); saying so explicitly also stops transformers guessing a mask per call
        mask = torch.ones(features.shape[0], features.shape[-1], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            ids = self.model.generate(features.to(self.device, dtype), attention_mask=mask, **options)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "language": self.language, "num_beams": self.num_beams,
                "max_new_tokens": self.max_new_tokens}


def _model_folder(source: str | None, spec: str) -> Path:
    if not source:
        raise missing_weights_error(f"ASR spec {spec!r} names no model folder", "whisper:/models/whisper-large-v3",
                                    ValueError)
    path = Path(source).expanduser()
    if not (path / "config.json").is_file():
        problem = "does not exist" if not path.exists() else "has no config.json, so it is not a saved model folder"
        raise missing_weights_error(f"ASR {spec!r}: {path} {problem}", f"whisper:{path}")
    return path


SOURCE_CHECKS["whisper"] = _model_folder


@ASR_MODELS.register("whisper")
def whisper(source: str | None = None, **options: Any) -> ASR:
    return WhisperASR(source, **options)
