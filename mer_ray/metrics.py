"""Evaluation metrics of the MER challenges, in plain numpy.

Discrete emotions are int class indices 0..5 (`mer_ray.labels.EMOTIONS` order); valence is a
float. Every function validates its inputs once and raises ValueError with what is wrong.
No scikit-learn here: this module is imported by every worker and must stay cheap; the tests
check each function against scikit-learn instead.

- `waf`: weighted average F1 (seed 003, eq. 9-10), the MER-SEMI metric.
- `accuracy` / `war`: the fraction correct (WAR, weighted average recall, equals accuracy).
- `uar`: unweighted average recall (seed 002 reports UAR / WAR).
- `mse`: valence mean squared error (seed 003, eq. 11).
- `combined`: WAF - 0.25 * MSE (seed 003, eq. 12), the MER-MULTI / MER-NOISE metric.
- `paired_noise`: how much two predictions' WAF on the same clips differ by luck alone.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mer_ray.labels import NUM_CLASSES

__all__ = [
    "accuracy",
    "classification_report",
    "combined",
    "confusion",
    "mse",
    "paired_noise",
    "uar",
    "waf",
    "war",
]


def _labels(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: metrics need at least one example")
    if arr.dtype.kind == "f":
        # Float arrays of whole numbers (e.g. read back from Parquet with nulls) are fine.
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} holds non-integer values; expected class indices")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < 0:
        raise ValueError(f"{name} holds a negative class index {int(arr.min())}")
    return arr


def _label_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} rows but y_pred has {p.size}")
    return t, p


def _counts(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, support (count in y_true) and predicted counts."""
    size = int(max(t.max(), p.max())) + 1
    support = np.bincount(t, minlength=size)
    predicted = np.bincount(p, minlength=size)
    tp = np.bincount(t[t == p], minlength=size)
    return tp, support, predicted


def waf(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Weighted average F1 (seed 003, eq. 9-10): sum_j n_j * F1_j / sum_j n_j.

    n_j is the number of class-j rows in `y_true`, so a class absent from the truth has weight 0
    (whatever was predicted for it), and a class present in the truth but never predicted has
    F1 = 0. Same as scikit-learn's `f1_score(average="weighted")`.
    """
    t, p = _label_pair(y_true, y_pred)
    tp, support, predicted = _counts(t, p)
    # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (predicted + support); the denominator is > 0
    # for every class with support > 0, and the other classes carry weight 0.
    present = support > 0
    f1 = 2.0 * tp[present] / (predicted[present] + support[present])
    return float(np.sum(support[present] * f1) / t.size)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of rows predicted correctly."""
    t, p = _label_pair(y_true, y_pred)
    return float(np.mean(t == p))


def war(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Weighted average recall: recall per class weighted by support, which equals accuracy."""
    return accuracy(y_true, y_pred)


def uar(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted average recall: the mean of per-class recall over the classes in `y_true`.

    Classes absent from `y_true` are left out of the mean (their recall is undefined), also
    when they were predicted; this matches scikit-learn's
    `recall_score(average="macro", labels=<classes present in y_true>)`.
    """
    t, p = _label_pair(y_true, y_pred)
    tp, support, _ = _counts(t, p)
    present = support > 0
    return float(np.mean(tp[present] / support[present]))


def score_block(y_true: ArrayLike, y_pred: ArrayLike, prefix: str) -> dict[str, float]:
    """`<prefix>_waf`, `<prefix>_acc`, `<prefix>_uar` to 4 places: the block a round's metrics
    hold for its test clips ("test") and their MER-NOISE copies ("noisy_test")."""
    return {f"{prefix}_waf": round(waf(y_true, y_pred), 4), f"{prefix}_acc": round(accuracy(y_true, y_pred), 4),
            f"{prefix}_uar": round(uar(y_true, y_pred), 4)}


def _valence(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of valence values, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: metrics need at least one example")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(
            f"{name} holds a NaN or infinite value (first at row {bad}); "
            "drop the rows without valence before computing MSE"
        )
    return arr


def mse(v_true: ArrayLike, v_pred: ArrayLike) -> float:
    """Mean squared error of valence (seed 003, eq. 11)."""
    t = _valence(v_true, "v_true")
    p = _valence(v_pred, "v_pred")
    if t.shape != p.shape:
        raise ValueError(f"v_true has {t.size} rows but v_pred has {p.size}")
    return float(np.mean((t - p) ** 2))


def combined(waf: float, mse: float) -> float:
    """The MER 2023 MULTI / NOISE metric: WAF - 0.25 * MSE (seed 003, eq. 12)."""
    return float(waf - 0.25 * mse)


def confusion(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Confusion matrix [num_classes, num_classes] of counts; rows are true, columns predicted."""
    t, p = _label_pair(y_true, y_pred)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    top = int(max(t.max(), p.max()))
    if top >= num_classes:
        raise ValueError(f"class index {top} out of range for num_classes={num_classes}")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def classification_report(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    v_true: ArrayLike | None = None,
    v_pred: ArrayLike | None = None,
) -> dict[str, Any]:
    """All discrete metrics (waf, acc, uar, war) and, when valence is given, mse and combined."""
    report: dict[str, Any] = {
        "waf": waf(y_true, y_pred),
        "acc": accuracy(y_true, y_pred),
        "uar": uar(y_true, y_pred),
        "war": war(y_true, y_pred),
    }
    if (v_true is None) != (v_pred is None):
        raise ValueError("give both v_true and v_pred, or neither")
    if v_true is not None and v_pred is not None:
        report["mse"] = mse(v_true, v_pred)
        n_valence, n_labels = np.asarray(v_true).shape[0], np.asarray(y_true).shape[0]
        if n_valence != n_labels:
            raise ValueError(f"v_true has {n_valence} rows but y_true has {n_labels}")
        report["combined"] = combined(report["waf"], report["mse"])
    return report


def paired_noise(pred: ArrayLike, other: ArrayLike, labels: ArrayLike, *, seed: int,
                 resamples: int = 200) -> float:
    """The standard deviation of WAF(pred) - WAF(other) over a bootstrap of the clips (the same
    clips, scored by both): what two predictions' scores differ by from the luck of which clips
    were labeled. Used to tell a better round, or a worse learner, from chance."""
    pred, other, labels = np.asarray(pred), np.asarray(other), np.asarray(labels)
    resample = np.random.default_rng(seed).integers(0, len(labels), size=(resamples, len(labels)))
    return float(np.std([waf(labels[b], pred[b]) - waf(labels[b], other[b]) for b in resample]))


def paired_change(before: ArrayLike, after: ArrayLike, labels: ArrayLike, *, seed: int = 0,
                  resamples: int = 1000) -> dict[str, Any]:
    """What `after` changed against `before` on the same labeled clips: the clips it fixed and
    broke, its WAF difference, and that difference's paired-bootstrap sd. A mined round one or
    two test clips below round 0 may be the luck of which clips are in the test set; the sd
    says how large that luck is."""
    before, after, labels = np.asarray(before), np.asarray(after), np.asarray(labels)
    right_before, right_after = before == labels, after == labels
    return dict(fixed=int((right_after & ~right_before).sum()), broken=int((right_before & ~right_after).sum()),
                waf_change=round(waf(labels, after) - waf(labels, before), 4),
                noise=round(paired_noise(after, before, labels, seed=seed, resamples=resamples), 4))


def describe_change(change: dict[str, Any]) -> str:
    """`paired_change` in words, for the console and the report."""
    return (f"WAF {change['waf_change']:+.4f} ({change['fixed']} fixed, {change['broken']} broken; "
            f"paired-bootstrap sd {change['noise']:.4f})")
