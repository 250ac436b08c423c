"""What the separator and ASR registries share: spec strings and the missing-weights message.

Specs have the encoders' shape, `family[:source][?key=value&...]` (mer_ray.encoders.parse_spec),
and weights load from local paths only: a job on a cluster must never stall on a download.
"""
from __future__ import annotations

from typing import Any

from mer_ray.encoders import parse_spec as _parse_spec
from mer_ray.encoders._torch import default_device

__all__ = ["check_spec", "create_from_spec", "default_device", "missing_weights_error", "parse_spec"]


def parse_spec(spec: str, *, what: str) -> tuple[str, str | None, dict[str, Any]]:
    try:
        return _parse_spec(spec)
    except ValueError as err:
        raise ValueError(str(err).replace("encoder spec", f"{what} spec")) from None


def check_spec(registry, source_checks: dict, spec: str, *, what: str) -> None:
    """Fail now, in the driver, on an unknown family or missing weights (nothing is loaded)."""
    family, source, _ = parse_spec(spec, what=what)
    registry.get(family)
    if family in source_checks:
        source_checks[family](source, spec)


def create_from_spec(registry, spec: str, overrides: dict[str, Any], *, what: str):
    """The model a spec names; unknown names raise KeyError listing the registered ones."""
    family, source, options = parse_spec(spec, what=what)
    options.update(overrides)
    options.setdefault("spec", spec)
    factory = registry.get(family)
    return factory(source, **options) if source is not None else factory(**options)


def missing_weights_error(problem: str, example: str, kind: type[Exception] = FileNotFoundError) -> Exception:
    return kind(
        f"{problem}; weights load from local paths only. On a machine with internet, save them "
        f"once (the module docstring of mer_ray.denoise.separators / mer_ray.denoise.asr shows "
        f"how), copy them to shared storage and point the spec at them, e.g. {example}")
