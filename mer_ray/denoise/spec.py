"""What the separator and ASR registries share: spec strings and the missing-weights message.

Specs have the encoders' shape, `family[:source][?key=value&...]` (mer_ray.encoders.parse_spec),
and weights load from local paths only: a job on a cluster must never stall on a download.
"""
from __future__ import annotations

from typing import Any

from mer_ray.encoders import parse_spec as _parse_spec
from mer_ray.encoders._torch import default_device

__all__ = ["default_device", "missing_weights_error", "parse_spec"]


def parse_spec(spec: str, *, what: str) -> tuple[str, str | None, dict[str, Any]]:
    try:
        return _parse_spec(spec)
    except ValueError as err:
        raise ValueError(str(err).replace("encoder spec", f"{what} spec")) from None


def missing_weights_error(problem: str, example: str, kind: type[Exception] = FileNotFoundError) -> Exception:
    return kind(
        f"{problem}; weights load from local paths only. On a machine with internet, save them "
        f"once (the module docstring of mer_ray.denoise.separators / mer_ray.denoise.asr shows "
        f"how), copy them to shared storage and point the spec at them, e.g. {example}")
