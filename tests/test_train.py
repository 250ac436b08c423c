"""The shared training loop: determinism, seed 003's k-fold CV, early stopping, learning."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mer_ray.config import LearnerSpec
from mer_ray.metrics import accuracy
from mer_ray.splits import stratified_folds
from mer_ray.synthetic import synthetic_table
from mer_ray.train import (
    CVResult, FoldEnsemble, cross_validate, fit_learner, predict_proba,
)

DIMS = {"audio": 24, "text": 16, "video": 32}
SPEC = LearnerSpec("M1", ("audio", "text", "video"), fusion="attention", hidden=32, lr=3e-3,
                   batch_size=32, max_epochs=6, patience=6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def problem():
    """480 labeled rows (360 train + 120 dev) and 60 unlabeled ones, classes well apart."""
    table, truth = synthetic_table(480, 60, DIMS, seed=4, separation=5.0)
    labeled = table.rows("train")
    return table, truth, labeled[:360], labeled[360:]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_identical_weights_and_predictions(problem):
    table, _, train, dev = problem
    first = fit_learner(SPEC, table, train, table.label[train], dev, seed=7)
    again = fit_learner(SPEC, table, train, table.label[train], dev, seed=7)
    other = fit_learner(SPEC, table, train, table.label[train], dev, seed=8)
    assert _same_weights(first.model, again.model)
    assert np.array_equal(predict_proba(first.model, table, SPEC), predict_proba(again.model, table, SPEC))
    assert (first.dev_waf, first.best_epoch) == (again.dev_waf, again.best_epoch)
    assert not _same_weights(first.model, other.model)


def test_same_seed_gives_identical_cross_validation(problem):
    table, _, train, _ = problem
    spec = dataclasses.replace(SPEC, max_epochs=3)
    a = cross_validate(spec, table, train, table.label[train], folds=3, seed=5)
    b = cross_validate(spec, table, train, table.label[train], folds=3, seed=5)
    assert _same_weights(a.model, b.model)
    assert np.array_equal(a.predict_proba(table), b.predict_proba(table))
    assert a.oof_waf == b.oof_waf and np.array_equal(a.oof_pred, b.oof_pred)


def test_training_neither_reads_nor_moves_the_process_rng(problem):
    # each model draws from its own saved RNG state: what the caller seeded is left as it was,
    # and a different process seed changes nothing in the result
    table, _, train, _ = problem
    spec = dataclasses.replace(SPEC, max_epochs=3)
    torch.manual_seed(1)
    a = cross_validate(spec, table, train, table.label[train], folds=3, seed=9)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after)
    torch.manual_seed(12345)
    b = cross_validate(spec, table, train, table.label[train], folds=3, seed=9)
    assert _same_weights(a.model, b.model)


def test_every_fold_stops_at_the_one_epoch_best_on_all_held_out_clips(problem):
    # one epoch is chosen on the pooled held-out clips of every fold, not one per fold on its own
    table, _, train, _ = problem
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(len(train)) < 0.5, table.label[train], rng.integers(0, 6, len(train)))
    spec = dataclasses.replace(SPEC, max_epochs=30, patience=4, lr=1e-2)
    reports = []
    cv = cross_validate(spec, table, train, labels, folds=3, seed=0,
                        on_epoch=lambda epoch, m: reports.append(m))
    assert cv.epochs - cv.best_epoch == spec.patience and cv.epochs < spec.max_epochs
    assert all(m["best_epoch"] <= e + 1 for e, m in enumerate(reports))
    assert reports[-1]["best_epoch"] == cv.best_epoch


def test_sample_weights_scale_each_rows_share_of_the_loss():
    from mer_ray.learners import LearnerOutput, multitask_loss
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    out = LearnerOutput(logits, None, [])
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    weighted = multitask_loss(out, labels, sample_weight=torch.tensor([1.0, 0.5, 0.0]))
    assert weighted.item() == pytest.approx(((per_row[0] + 0.5 * per_row[1]) / 1.5).item())
    assert multitask_loss(out, labels, sample_weight=torch.ones(3)).item() == pytest.approx(per_row.mean().item())


def test_linear_learner_matches_a_logistic_regression_on_separable_rows(problem):
    from sklearn.linear_model import LogisticRegression
    table, truth, train, dev = problem
    spec = dataclasses.replace(SPEC, fusion="linear", max_epochs=40, patience=10)
    fit = fit_learner(spec, table, train, table.label[train], dev, seed=0)
    pool = table.rows("unlabeled")
    x = lambda rows: np.concatenate([table.streams[s][rows] for s in sorted(DIMS)], axis=1)
    lr = LogisticRegression(max_iter=2000).fit(x(train), table.label[train])
    ours = accuracy(truth[pool], predict_proba(fit.model, table, spec, pool).argmax(1))
    assert ours > 0.9 and ours >= accuracy(truth[pool], lr.predict(x(pool))) - 0.05


def test_stratified_folds_partition_rows_with_the_same_class_mix():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    folds = stratified_folds(labels, 5, seed=0)
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(100))
    for fold in folds:
        assert np.bincount(labels[fold]).tolist() == [10, 6, 4]
    assert all(np.array_equal(f, g) for f, g in zip(folds, stratified_folds(labels, 5, seed=0)))
    assert not all(np.array_equal(f, g) for f, g in zip(folds, stratified_folds(labels, 5, seed=1)))
    with pytest.raises(ValueError, match="at least 2 folds"):
        stratified_folds(labels, 1, seed=0)


def test_cross_validation_averages_the_fold_models_probabilities(problem):
    table, _, train, _ = problem
    spec = dataclasses.replace(SPEC, max_epochs=3)
    cv = cross_validate(spec, table, train, table.label[train], folds=5, seed=1)
    assert isinstance(cv, CVResult) and isinstance(cv.model, FoldEnsemble) and len(cv.fold_models) == 5
    # every labeled row is held out by exactly one fold
    assert np.array_equal(np.sort(np.concatenate(cv.fold_rows)), np.sort(train))
    per_fold = np.stack([predict_proba(m, table, spec) for m in cv.fold_models])
    averaged = cv.predict_proba(table)
    np.testing.assert_allclose(averaged, per_fold.mean(0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(averaged.sum(1), 1.0, atol=1e-5)
    # the ensemble module gives the same average, so the mining loop can use it as a model
    np.testing.assert_allclose(predict_proba(cv.model, table, spec), averaged, atol=1e-6)
    # the score is the out-of-fold WAF: each row predicted by the fold model that never saw it
    from mer_ray.metrics import waf
    oof = np.zeros(len(train), np.int64)
    for model, held_out in zip(cv.fold_models, cv.fold_rows):
        oof[np.searchsorted(train, held_out)] = predict_proba(model, table, spec, held_out).argmax(1)
    assert cv.oof_waf == pytest.approx(waf(table.label[train], oof))
    assert cv.dev_waf == cv.oof_waf


def test_cross_validation_reports_every_epoch_and_never_holds_out_mined_rows(problem):
    table, truth, train, _ = problem
    pool = table.rows("unlabeled")
    reports = []
    cv = cross_validate(dataclasses.replace(SPEC, max_epochs=4), table, train, table.label[train],
                        folds=3, seed=2, mined_rows=pool, mined_labels=truth[pool],
                        on_epoch=lambda epoch, m: reports.append((epoch, m)))
    assert [e for e, _ in reports] == [1, 2, 3, 4]
    assert reports[-1][1]["cv_waf"] == pytest.approx(cv.oof_waf)
    held_out = np.concatenate(cv.fold_rows)
    assert not np.isin(pool, held_out).any() and len(held_out) == len(train)


def test_early_stopping_stops_when_dev_waf_stops_improving(problem):
    table, _, train, dev = problem
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 6, len(train))          # random labels: nothing to learn for dev
    spec = dataclasses.replace(SPEC, max_epochs=200, patience=3, lr=1e-3)
    fit = fit_learner(spec, table, train, noise, dev, seed=0)
    assert fit.epochs < spec.max_epochs
    assert fit.epochs - fit.best_epoch == spec.patience
    # the kept model is the best epoch's, not the last one's
    pred = predict_proba(fit.model, table, spec, dev).argmax(1)
    from mer_ray.metrics import waf
    assert waf(table.label[dev], pred) == pytest.approx(fit.dev_waf)


def test_learner_on_separable_rows_beats_chance_by_far(problem):
    table, truth, train, dev = problem
    fit = fit_learner(dataclasses.replace(SPEC, max_epochs=12), table, train, table.label[train], dev, seed=0)
    pool = table.rows("unlabeled")
    pool_acc = accuracy(truth[pool], predict_proba(fit.model, table, SPEC, pool).argmax(1))
    assert fit.dev_waf > 0.9 and pool_acc > 0.9              # chance is about 1/6


# ---- solver: lbfgs (a convex learner solved to its optimum, C chosen out of fold) -------------

LBFGS = LearnerSpec("M2", ("audio", "text", "video"), fusion="linear", dropout=0.0, solver="lbfgs",
                    cs=(0.01, 0.1, 1.0, 10.0))


def _no_valence(table):
    """The same rows without valence targets: the objective is then a plain logistic regression."""
    return dataclasses.replace(table, valence=np.full(len(table), np.nan, np.float32))


def test_lbfgs_solves_the_logistic_regression_scikit_learn_solves(problem):
    from sklearn.linear_model import LogisticRegression
    from mer_ray.train import Split, fit_splits

    table, _, train, dev = problem
    table = _no_valence(table)
    x = lambda rows: np.concatenate([table.streams[s][rows] for s in ("audio", "text", "video")], axis=1)
    for c in (0.01, 1.0):
        fit = fit_splits(dataclasses.replace(LBFGS, cs=(c,)), table, [Split(train, dev)], seed=0)
        ours = predict_proba(fit.models[0], table, LBFGS, dev)
        theirs = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(x(train), table.label[train])
        assert fit.c == c
        assert np.abs(ours - theirs.predict_proba(x(dev))).max() < 2e-3


def test_lbfgs_keeps_the_c_whose_pooled_held_out_loss_is_lowest(problem):
    from mer_ray.train import fit_splits, fold_splits

    table, _, train, _ = problem
    table = _no_valence(table)
    # few rows per class and labels half noise: the loss punishes the weak penalties
    rows = train[:60]
    labels = table.label.copy()
    flip = np.random.default_rng(0).random(len(rows)) < 0.5
    labels[rows[flip]] = (labels[rows[flip]] + 1) % 6
    splits = fold_splits(rows, labels[rows], 3, seed=0)
    fit = fit_splits(LBFGS, table, splits, seed=0, labels=labels)
    held = np.concatenate([labels[s.held_out] for s in splits])
    losses = {}
    for c in LBFGS.cs:   # each C alone, scored the same way
        one = fit_splits(dataclasses.replace(LBFGS, cs=(c,)), table, splits, seed=0, labels=labels)
        pooled = np.concatenate(one.held_out_probs)
        losses[c] = -np.log(np.clip(pooled[np.arange(len(held)), held], 1e-8, None)).mean()
    assert fit.c == min(losses, key=losses.get)
    assert fit.c < max(LBFGS.cs)   # not simply the weakest penalty
    # the models kept are the ones solved at that C, and no seed enters the optimum
    again = fit_splits(LBFGS, table, splits, seed=123, labels=labels)
    assert all(_same_weights(a, b) for a, b in zip(fit.models, again.models))


def test_lbfgs_refuses_a_learner_it_cannot_solve(problem):
    from mer_ray.train import Split, fit_splits

    table, _, train, dev = problem
    with pytest.raises(ValueError, match="fusion 'linear' and dropout 0"):
        fit_splits(dataclasses.replace(LBFGS, fusion="attention"), table, [Split(train, dev)], seed=0)
    with pytest.raises(ValueError, match="needs `cs`"):
        fit_splits(dataclasses.replace(LBFGS, cs=()), table, [Split(train, dev)], seed=0)
    with pytest.raises(ValueError, match="solver must be"):
        fit_splits(dataclasses.replace(SPEC, solver="sgd"), table, [Split(train, dev)], seed=0)
    # and a run configured so stops before any extraction, not at round 0
    from mer_ray.config import MiningConfig, RunConfig
    from mer_ray.mining.resolve import resolve_learners
    with pytest.raises(ValueError, match="learner M2: solver 'lbfgs' needs `cs`"):
        resolve_learners(RunConfig(learners=(dataclasses.replace(LBFGS, cs=()),)))
    # (one learner: its vote must be one it can reach; check_roster refuses the default 3 of 4)
    resolve_learners(RunConfig(learners=(LBFGS,), mining=MiningConfig(options={"vote": {"agree": 1}})))
