"""The contract every encoder keeps, whatever it wraps (numpy statistics or a Hugging Face model).

The feature pipeline only ever calls `encode` on a batch and `info` once for the store's
meta.json, so adding an encoder never touches the pipeline.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

__all__ = ["INPUT_MODALITY", "LAYER_POOLINGS", "MODALITIES", "MODALITY_INPUTS", "Encoder"]

# A fused modality's encoder takes one tuple per clip, its parts in the order named:
# "audio+video" → (frames, waveform) (MultiMAE-DER, seed 002), "audio+text" → (waveform, transcript).
MODALITIES = ("audio", "video", "text", "audio+video", "audio+text")
# The decoded inputs an encoder of each modality takes by default (a family may register others).
MODALITY_INPUTS = {"audio": ("audio",), "video": ("frames",), "text": ("transcript",),
                   "audio+video": ("frames", "audio"), "audio+text": ("audio", "transcript")}
INPUT_MODALITY = {"audio": "audio", "frames": "video", "transcript": "text"}   # which stream a clip lacks
# How a transformer's layers become one sequence of states: the last layer, or the mean (seed 004)
# or sum (MERTools) of the last four.
LAYER_POOLINGS = ("last", "last4-mean", "last4-sum")


class Encoder(ABC):
    """Maps a batch of one modality's inputs to float32 features `[B, dim]`.

    Inputs per modality:
      - audio: 1-D float32 waveforms at 16 kHz;
      - video: uint8 frame stacks `[T, H, W, 3]`;
      - text:  strings;
      - audio+video: (frames, waveform) pairs; audio+text: (waveform, transcript) pairs.
    A missing input (None, an empty waveform or frame stack) encodes to a zero vector and an
    empty or None transcript encodes as "": MER clips without sound or without a face are
    ordinary, and a fusion learner handles an all-zero stream better than a hole in the batch.
    """

    spec: str
    modality: str
    dim: int
    pooling: str = "mean"
    dtype: str = "float32"
    # Learners z-score each feature column; sparse bag-of-words columns would be blown up by
    # that (a rare hashed word becomes a huge value), so such encoders opt out.
    standardize: bool = True

    @abstractmethod
    def encode(self, inputs: Sequence[Any]) -> np.ndarray:
        """Features `[len(inputs), dim]`, float32, one row per input, in order."""

    def info(self) -> dict[str, Any]:
        """What the feature store writes to meta.json next to the features."""
        return {
            "spec": self.spec,
            "modality": self.modality,
            "dim": int(self.dim),
            "pooling": self.pooling,
            "dtype": self.dtype,
            "standardize": self.standardize,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, modality={self.modality!r}, dim={self.dim})"

    def _stack(self, rows: list[np.ndarray]) -> np.ndarray:
        """Stack per-input rows, checking the promised shape once here rather than in callers."""
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.stack(rows).astype(np.float32, copy=False)
        if out.shape[1] != self.dim:
            raise RuntimeError(f"encoder {self.spec!r} produced {out.shape[1]} dims, declared {self.dim}")
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
