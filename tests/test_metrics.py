"""mer_ray.metrics agrees with scikit-learn, including classes absent from truth or prediction."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_squared_error,
    recall_score,
)

from mer_ray import metrics

# (y_true, y_pred): hand-made cases, several with classes missing on one side or both.
FIXED_CASES = {
    "perfect": ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]),
    "all_wrong": ([0, 0, 1, 1], [1, 1, 0, 0]),
    "class_never_predicted": ([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 1]),
    "class_predicted_not_in_truth": ([0, 0, 1, 1], [0, 5, 1, 3]),
    "classes_absent_from_both": ([0, 2, 2, 4], [0, 2, 4, 4]),
    "single_class_truth": ([3, 3, 3, 3], [3, 3, 1, 0]),
    "single_row": ([5], [2]),
    "imbalanced": ([0] * 8 + [1] * 2 + [4], [0] * 6 + [1] * 3 + [4] * 2),
}


def _present(y_true) -> list[int]:
    return sorted(set(int(v) for v in y_true))


def _random_cases(count: int = 25):
    rng = np.random.default_rng(2023)
    for _ in range(count):
        n = int(rng.integers(1, 200))
        classes = rng.choice(6, size=int(rng.integers(1, 7)), replace=False)
        y_true = rng.choice(classes, size=n)
        # Mostly right, sometimes any of the six classes.
        noise = rng.random(n) < rng.random()
        y_pred = np.where(noise, rng.integers(0, 6, size=n), y_true)
        yield y_true, y_pred


ALL_CASES = list(FIXED_CASES.values()) + list(_random_cases())
CASE_IDS = list(FIXED_CASES) + [f"random{i}" for i in range(len(ALL_CASES) - len(FIXED_CASES))]


@pytest.mark.parametrize("y_true,y_pred", ALL_CASES, ids=CASE_IDS)
def test_waf_matches_sklearn_weighted_f1(y_true, y_pred):
    expected = f1_score(y_true, y_pred, average="weighted", zero_division=0)
    assert metrics.waf(y_true, y_pred) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("y_true,y_pred", ALL_CASES, ids=CASE_IDS)
def test_accuracy_and_war_match_sklearn_accuracy(y_true, y_pred):
    expected = accuracy_score(y_true, y_pred)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert metrics.war(y_true, y_pred) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("y_true,y_pred", ALL_CASES, ids=CASE_IDS)
def test_uar_matches_sklearn_macro_recall_over_classes_in_truth(y_true, y_pred):
    expected = recall_score(
        y_true, y_pred, average="macro", labels=_present(y_true), zero_division=0
    )
    assert metrics.uar(y_true, y_pred) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("y_true,y_pred", ALL_CASES, ids=CASE_IDS)
def test_confusion_matches_sklearn_with_rows_true(y_true, y_pred):
    expected = confusion_matrix(y_true, y_pred, labels=list(range(6)))
    got = metrics.confusion(y_true, y_pred)
    assert got.shape == (6, 6)
    assert np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(got, expected)


def test_confusion_rows_are_true_labels():
    got = metrics.confusion([1], [4])
    assert got[1, 4] == 1 and got.sum() == 1


def test_waf_hand_computed_with_absent_classes():
    # class 0: tp=1 fp=0 fn=1 -> F1 = 2/3, n=2; class 1: tp=2 fp=1 fn=0 -> F1 = 0.8, n=2;
    # classes 2..5 absent from the truth -> weight 0.
    assert metrics.waf([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 * 2 / 3 + 2 * 0.8) / 4)


def test_mse_matches_sklearn():
    rng = np.random.default_rng(7)
    for _ in range(10):
        n = int(rng.integers(1, 100))
        v_true = rng.uniform(-5, 5, n)
        v_pred = rng.uniform(-5, 5, n)
        assert metrics.mse(v_true, v_pred) == pytest.approx(mean_squared_error(v_true, v_pred))


def test_combined_is_waf_minus_quarter_mse():
    assert metrics.combined(0.8, 0.4) == pytest.approx(0.7)


def test_classification_report_discrete_only():
    y_true, y_pred = FIXED_CASES["imbalanced"]
    report = metrics.classification_report(y_true, y_pred)
    assert set(report) == {"waf", "acc", "uar", "war"}
    assert report["waf"] == pytest.approx(metrics.waf(y_true, y_pred))


def test_classification_report_with_valence_adds_mse_and_combined():
    report = metrics.classification_report([0, 1, 2], [0, 1, 1], [1.0, -2.0, 0.5], [1.5, -2.0, 0.5])
    assert report["mse"] == pytest.approx(0.25 / 3)
    assert report["combined"] == pytest.approx(report["waf"] - 0.25 * report["mse"])


@pytest.mark.parametrize(
    "fn", [metrics.waf, metrics.accuracy, metrics.uar, metrics.war, metrics.confusion,
           metrics.classification_report],
)
def test_empty_input_raises_value_error(fn):
    with pytest.raises(ValueError, match="empty"):
        fn([], [])


def test_empty_valence_raises_value_error():
    with pytest.raises(ValueError, match="empty"):
        metrics.mse([], [])


@pytest.mark.parametrize(
    "y_true,y_pred,match",
    [
        ([0, 1], [0], "rows"),
        ([0, -1], [0, 1], "negative"),
        ([0.5, 1.0], [0, 1], "non-integer"),
        (["a", "b"], [0, 1], "integer"),
        ([[0, 1]], [[0, 1]], "1-D"),
    ],
)
def test_bad_labels_raise_value_error(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        metrics.waf(y_true, y_pred)


def test_confusion_rejects_class_index_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        metrics.confusion([0, 6], [0, 1])


def test_mse_rejects_nan_and_length_mismatch():
    with pytest.raises(ValueError, match="NaN"):
        metrics.mse([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="rows"):
        metrics.mse([1.0, 2.0], [1.0])


def test_report_needs_both_valence_arrays():
    with pytest.raises(ValueError, match="both"):
        metrics.classification_report([0], [0], v_true=[1.0])


def test_metrics_module_does_not_import_sklearn():
    code = "import sys, mer_ray.metrics; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_paired_change_counts_the_clips_behind_a_difference_and_its_noise():
    labels = np.array([0, 1, 1, 2, 3, 3] * 10)
    before = np.array([0, 1, 2, 2, 3, 0] * 10)     # wrong on the 3rd and 6th clip of each six
    after = np.array([0, 1, 1, 0, 3, 0] * 10)      # fixes the 3rd, breaks the 4th
    change = metrics.paired_change(before, after, labels)
    assert (change["fixed"], change["broken"]) == (10, 10)
    assert change["waf_change"] == round(metrics.waf(labels, after) - metrics.waf(labels, before), 4)
    assert change["noise"] > 0
    same = metrics.paired_change(before, before, labels)
    assert (same["fixed"], same["broken"], same["waf_change"], same["noise"]) == (0, 0, 0.0, 0.0)
