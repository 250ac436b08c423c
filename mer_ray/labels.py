"""The six MER emotion classes, in the MERTools index order, and the spellings readers accept."""
from __future__ import annotations

import math

EMOTIONS: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "worried", "surprise")
NUM_CLASSES = len(EMOTIONS)

# Spellings used by the MER papers (seed 003 writes anger / happiness / sadness / worry).
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "happiness": "happy",
    "sadness": "sad",
    "worry": "worried",
    "surprised": "surprise",
}

VALENCE_RANGE = (-5.0, 5.0)


def label_index(label: str | int, *, where: str = "") -> int:
    """Index of `label` in EMOTIONS; accepts the paper spellings (any case) and indices 0..5."""
    key = str(label).strip().lower()
    if key.removesuffix(".0").isdigit() and int(key.removesuffix(".0")) < NUM_CLASSES:
        return int(key.removesuffix(".0"))
    key = SYNONYMS.get(key, key)
    try:
        return EMOTIONS.index(key)
    except ValueError:
        at = f" ({where})" if where else ""
        raise ValueError(
            f"unknown emotion label {label!r}{at}: expected one of {', '.join(EMOTIONS)} "
            f"or {', '.join(SYNONYMS)}; fix or drop that row"
        ) from None


def check_valence(value: float | None, *, where: str = "") -> float | None:
    """Valence is optional; when given it must be a finite number in [-5, 5]."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    v = float(value)
    lo, hi = VALENCE_RANGE
    if not (lo <= v <= hi):
        at = f" ({where})" if where else ""
        raise ValueError(f"valence {v} outside [{lo}, {hi}]{at}; fix or drop that row")
    return v
