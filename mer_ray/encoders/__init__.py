"""Encoder registry: a spec string → an `Encoder` (timm's `create_model` pattern).

Adding an encoder is one decorated factory function here or in a family module imported
below; the feature pipeline only calls `create_encoder(spec)`.
"""
from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import MODALITIES, Encoder

__all__ = ["ENCODERS", "Encoder", "MODALITIES", "create_encoder", "list_encoders"]

ENCODERS: Registry[Encoder] = Registry("encoder")


def create_encoder(spec: str, **kwargs: Any) -> Encoder:
    """Build the encoder registered as `spec`; unknown specs raise KeyError naming the known ones."""
    return ENCODERS.create(spec, **kwargs)


def list_encoders() -> list[str]:
    return ENCODERS.names()


# Light CPU encoders (numpy; MiniLM imports torch only when built).
from . import light as _light  # noqa: E402


@ENCODERS.register("logmel-stats")
def logmel_stats(**kwargs: Any) -> Encoder:
    return _light.LogMelStats(**kwargs)


@ENCODERS.register("frame-stats")
def frame_stats(**kwargs: Any) -> Encoder:
    return _light.FrameStats(**kwargs)


@ENCODERS.register("text-bow")
def text_bow(**kwargs: Any) -> Encoder:
    return _light.TextBow(**kwargs)


@ENCODERS.register("minilm")
def minilm(**kwargs: Any) -> Encoder:
    return _light.MiniLM(**kwargs)
