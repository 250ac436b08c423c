"""Vote, even split, ranked-mode ensemble and round state: the rules of seed 004."""
import numpy as np
import pandas as pd
import pytest

from mer_ray.mining.ensemble import ensemble, ranked_mode
from mer_ray.config import MiningConfig
from mer_ray.mining.policies import POLICIES, PolicyContext, create_policy, split_evenly
from mer_ray.mining.state import MiningState


def select(probs, dev_probs=None, dev_labels=None, pool_size=None, **options):
    """Run the policy chain built from MiningConfig(**options) on `probs`."""
    n_learners = probs.shape[0]
    ctx = PolicyContext(dev_probs=np.zeros((n_learners, 0, 6)) if dev_probs is None else dev_probs,
                        dev_labels=np.zeros(0, int) if dev_labels is None else dev_labels,
                        pool_size=pool_size or probs.shape[1])
    return create_policy(MiningConfig(**options))(probs, ctx)


def one_hot_probs(labels, conf=0.9, n_classes=6):
    """probs [L, N, C] where learner l predicts labels[l][n] with probability `conf`."""
    labels = np.asarray(labels)
    probs = np.full(labels.shape + (n_classes,), (1 - conf) / (n_classes - 1))
    np.put_along_axis(probs, labels[..., None], conf, axis=-1)
    return probs


def test_vote_keeps_clips_where_at_least_three_of_four_agree():
    #             clip: 0  1  2  3  4
    labels = np.array([[1, 1, 2, 0, 5],
                       [1, 1, 3, 0, 5],
                       [1, 2, 4, 1, 5],
                       [1, 3, 5, 1, 4]])
    sel = select(one_hot_probs(labels), agree=3)
    assert sel.selected.tolist() == [True, False, False, False, True]
    assert sel.labels[[0, 4]].tolist() == [1, 5]
    assert sel.agree.tolist()[:2] == [4, 2]


def test_vote_min_confidence_drops_unsure_agreement():
    labels = np.array([[2, 2]] * 4)
    probs = one_hot_probs(labels)
    probs[:, 1] = one_hot_probs(labels[:, 1:], conf=0.3)[:, 0]
    sel = select(probs, agree=3, min_confidence=0.5)
    assert sel.selected.tolist() == [True, False]
    assert sel.confidence[0] == pytest.approx(0.9)


def test_vote_rejects_more_agreement_than_learners():
    with pytest.raises(ValueError, match="only 2"):
        select(one_hot_probs([[0], [0]]), agree=3)


def test_unknown_policy_names_the_registered_ones():
    assert "vote" in POLICIES.names()
    with pytest.raises(KeyError, match="vote"):
        select(one_hot_probs([[0]]), policy=("no-such-policy",))


def test_confidence_policy_keeps_softmax_at_least_0_8():
    probs = np.array([[[0.85, 0.15], [0.6, 0.4], [0.1, 0.9]]])        # one learner: self-training
    sel = select(np.pad(probs, ((0, 0), (0, 0), (0, 4))), policy=("confidence",))
    assert sel.selected.tolist() == [True, False, True] and sel.labels.tolist() == [0, 0, 1]


def test_minority_filter_mines_only_the_named_classes():
    labels = np.array([[0, 4, 5, 3, 2]] * 4)
    sel = select(one_hot_probs(labels), policy=("vote", "minority"))
    assert sel.selected.tolist() == [False, True, True, True, False]
    sel = select(one_hot_probs(labels), policy=("vote", "minority"), minority_classes=("surprise",))
    assert sel.selected.tolist() == [False, False, True, False, False]


def test_class_quantile_thresholds_come_from_correct_dev_predictions():
    # dev: class 0 predicted right at confidences 0.5..0.9, class 1 right at 0.95 only
    conf = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    dev_labels = np.array([0, 0, 0, 0, 0, 1, 1])
    dev_pred = np.array([0, 0, 0, 0, 0, 1, 0])                        # the last one is wrong
    dev_probs = np.zeros((1, 7, 6))
    dev_probs[0, np.arange(7), dev_pred] = conf
    dev_probs[0, np.arange(7), 5] = 1 - conf
    pool = np.zeros((1, 4, 6))
    pool[0, np.arange(4), [0, 0, 1, 1]] = [0.75, 0.65, 0.96, 0.9]
    pool[0, np.arange(4), 5] = 1 - pool[0, np.arange(4), [0, 0, 1, 1]]
    sel = select(pool, dev_probs, dev_labels, policy=("class-quantile",), quantile_eta=0.5)
    # class 0 threshold = median(0.5..0.9) = 0.7; class 1 threshold = 0.95
    assert sel.selected.tolist() == [True, False, True, False]


def test_caps_keep_the_most_confident_within_round_and_class_shares():
    labels = np.array([[1] * 6 + [2] * 4] * 4)
    probs = one_hot_probs(labels)
    probs[:, :, :] *= np.linspace(1.0, 0.9, 10)[None, :, None]       # earlier clips more confident
    sel = select(probs, max_share_per_class=0.2, pool_size=10)
    assert np.flatnonzero(sel.selected).tolist() == [0, 1, 6, 7]     # 2 per class
    sel = select(probs, max_share_per_round=0.3, pool_size=10)
    assert np.flatnonzero(sel.selected).tolist() == [0, 1, 2]


def test_split_evenly_is_disjoint_balanced_and_stratified():
    rng = np.random.default_rng(0)
    rows = rng.permutation(1000)[:103]
    labels = rng.integers(0, 6, size=103)
    shares = split_evenly(rows, labels, 4, seed=1)
    together = np.concatenate(shares)
    assert sorted(together.tolist()) == list(range(103))          # disjoint and complete
    assert max(map(len, shares)) - min(map(len, shares)) <= 1     # even
    for c in range(6):                                            # every learner gets each class
        per = [int((labels[s] == c).sum()) for s in shares]
        assert max(per) - min(per) <= 1
    again = split_evenly(rows, labels, 4, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(shares, again))


def test_ranked_mode_drops_lowest_ranked_learner_until_mode_is_unique():
    # four learners, dev ranking: L2 > L0 > L3 > L1
    dev = np.array([0.7, 0.5, 0.9, 0.6])
    labels = np.array([
        [1, 1, 0, 3],   # L0
        [1, 2, 0, 4],   # L1 (worst)
        [2, 2, 5, 5],   # L2 (best)
        [2, 1, 1, 2],   # L3
    ])
    out = ranked_mode(one_hot_probs(labels), dev)
    # clip 0: 1,1,2,2 tie -> drop L1 -> 1,2,2 -> 2
    # clip 1: 1,2,2,1 tie -> drop L1 -> 1,2,1 -> 1
    # clip 2: 0,0,5,1 -> 0 unique
    # clip 3: 3,4,5,2 all tie -> drop L1 -> drop L3 -> 3,5 tie -> drop L0 -> 5 (best learner)
    assert out.tolist() == [2, 1, 0, 5]


def test_mean_prob_ensemble_averages_probabilities():
    probs = np.array([[[0.6, 0.4]], [[0.1, 0.9]]])
    assert ensemble("mean-prob", probs, [1, 0]).tolist() == [1]
    assert ensemble("ranked-mode", probs, [1, 0]).tolist() == [0]


def test_state_gives_each_learner_labeled_rows_plus_its_own_share():
    state = MiningState()
    state.add(np.array([10, 11, 12]), np.array([4, 5, 4]), np.array([0, 1, 0]))
    labels = np.full(20, -1)
    labels[:3] = [0, 1, 2]
    rows, y = state.training_set(0, np.arange(3), labels)
    assert rows.tolist() == [0, 1, 2, 10, 12] and y.tolist() == [0, 1, 2, 4, 4]
    rows, y = state.training_set(1, np.arange(3), labels)
    assert rows.tolist() == [0, 1, 2, 11] and y.tolist() == [0, 1, 2, 5]
