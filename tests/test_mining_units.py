"""Vote, even split, ranked-mode ensemble and round state: the rules of seed 004."""
import numpy as np
import pandas as pd
import pytest

from mer_ray.mining.ensemble import ensemble, ranked_mode
from mer_ray.config import MiningConfig
from mer_ray.mining.policies import (
    POLICIES, PolicyContext, assign_learners, create_policy,
)
from mer_ray.splits import deal
from mer_ray.mining.state import Mined, MiningState


def select(probs, dev_probs=None, dev_labels=None, pool_size=None, round=1, prior=None, cumulative=False,
           **options):
    """Run the policy chain built from MiningConfig(**options) on `probs` (seed 004's plain vote
    unless `policy` is given)."""
    n_learners = probs.shape[0]
    options.setdefault("policy", ("vote",))
    ctx = PolicyContext(dev_probs=np.zeros((n_learners, 0, 6)) if dev_probs is None else dev_probs,
                        dev_labels=np.zeros(0, int) if dev_labels is None else dev_labels,
                        pool_size=pool_size or probs.shape[1], round=round,
                        labeled_prior=None if prior is None else np.asarray(prior, float), cumulative=cumulative)
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
    sel = select(one_hot_probs(labels), options={"vote": {"agree": 3}})
    assert sel.selected.tolist() == [True, False, False, False, True]
    assert sel.labels[[0, 4]].tolist() == [1, 5]
    assert sel.agree.tolist()[:2] == [4, 2]


def test_vote_min_confidence_drops_unsure_agreement():
    labels = np.array([[2, 2]] * 4)
    probs = one_hot_probs(labels)
    probs[:, 1] = one_hot_probs(labels[:, 1:], conf=0.3)[:, 0]
    sel = select(probs, options={"vote": {"agree": 3, "min_confidence": 0.5}})
    assert sel.selected.tolist() == [True, False]
    assert sel.confidence[0] == pytest.approx(0.9)


def test_vote_rejects_more_agreement_than_learners():
    with pytest.raises(ValueError, match="only 2"):
        select(one_hot_probs([[0], [0]]), options={"vote": {"agree": 3}})


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
    sel = select(one_hot_probs(labels), policy=("vote", "minority"),
                 options={"minority": {"classes": ["surprise"]}})
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
    sel = select(pool, dev_probs, dev_labels, policy=("class-quantile",),
                 options={"class-quantile": {"eta": 0.5}})
    # class 0 threshold = median(0.5..0.9) = 0.7; class 1 threshold = 0.95
    assert sel.selected.tolist() == [True, False, True, False]


def test_caps_keep_the_most_confident_within_round_and_class_shares():
    labels = np.array([[1] * 6 + [2] * 4] * 4)
    probs = one_hot_probs(labels)
    probs[:, :, :] *= np.linspace(1.0, 0.9, 10)[None, :, None]       # earlier clips more confident
    sel = select(probs, policy=("vote", "cap"), options={"cap": {"max_share_per_class": 0.2}}, pool_size=10)
    assert np.flatnonzero(sel.selected).tolist() == [0, 1, 6, 7]     # 2 per class
    sel = select(probs, policy=("vote", "cap"), options={"cap": {"max_share_per_round": 0.3}}, pool_size=10)
    assert np.flatnonzero(sel.selected).tolist() == [0, 1, 2]


def test_even_split_is_disjoint_balanced_stratified_and_independent_of_order():
    rng = np.random.default_rng(0)
    rows = rng.permutation(1000)[:103]
    labels = rng.integers(0, 6, size=103)
    shares = deal(labels, 4, seed=1, keys=rows)
    together = np.concatenate(shares)
    assert sorted(together.tolist()) == list(range(103))          # disjoint and complete
    assert max(map(len, shares)) - min(map(len, shares)) <= 1     # even
    for c in range(6):                                            # every learner gets each class
        per = [int((labels[s] == c).sum()) for s in shares]
        assert max(per) - min(per) <= 1
    again = deal(labels, 4, seed=1, keys=rows)
    assert all(np.array_equal(a, b) for a, b in zip(shares, again))
    # the same clips in another order: every clip trains the same learner
    order = rng.permutation(103)
    assigned = assign_learners(rows, labels, 4, "even", seed=1)
    assert np.array_equal(assign_learners(rows[order], labels[order], 4, "even", seed=1), assigned[order])


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


def _one_good_three_noisy(n=120, seed=0):
    """probs [4, n, 6]: learner 0 right on 90 % of the clips, the others on a random 40 %."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, n)
    probs = rng.dirichlet(np.ones(6), size=(4, n)) * 0.5
    for i, share in enumerate((0.9, 0.4, 0.4, 0.4)):
        right = rng.random(n) < share
        probs[i, np.flatnonzero(right), labels[right]] += 0.5
    return probs / probs.sum(-1, keepdims=True), labels


def test_ensemble_selection_weights_the_strong_learner_and_keeps_equal_ones_equal():
    from mer_ray.mining.ensemble import select_weights

    probs, labels = _one_good_three_noisy()
    weights = select_weights(probs, labels)
    assert weights.sum() == pytest.approx(1.0) and weights[0] >= 0.5 and weights.argmax() == 0
    weighted = ensemble("weighted", probs, [0, 0, 0, 0], weights)
    assert (weighted == labels).mean() > (ensemble("mean-prob", probs, [0, 0, 0, 0]) == labels).mean()
    same = np.stack([probs[0]] * 4)           # four identical learners: no reason to prefer one
    assert select_weights(same, labels).tolist() == [1.0, 0, 0, 0]   # ties go to the first, all alike
    with pytest.raises(ValueError, match="weights"):
        ensemble("weighted", probs, [0, 0, 0, 0])


def test_the_out_of_fold_score_of_a_weighted_ensemble_is_cross_fitted():
    from mer_ray.mining.ensemble import cross_fitted
    from mer_ray.splits import deal

    probs, labels = _one_good_three_noisy(seed=1)
    assert np.array_equal(cross_fitted("mean-prob", probs, labels, [0] * 4, seed=0),
                          ensemble("mean-prob", probs, [0] * 4))
    # learner 3 is right on exactly the first group's clips and wrong everywhere else: weights
    # chosen on that group would pick it (100 % there); cross-fitted, the group is ensembled with
    # weights chosen on the other groups, where learner 3 is useless
    first = deal(labels, 5, seed=0)[0]
    wrong = (labels + 1) % 6
    probs[3] = np.eye(6)[wrong] * 0.9 + 0.1 / 6
    probs[3, first] = np.eye(6)[labels[first]] * 0.9 + 0.1 / 6
    out = cross_fitted("weighted", probs, labels, [0] * 4, seed=0)
    assert (out[first] == labels[first]).mean() < 1.0
    assert (out[first] == labels[first]).mean() == pytest.approx((probs[0, first].argmax(-1) == labels[first]).mean(), abs=0.15)
    assert np.array_equal(out, cross_fitted("weighted", probs, labels, [0] * 4, seed=0))   # deterministic


def test_pruning_drops_only_a_learner_clearly_behind_the_best():
    from mer_ray.mining.ensemble import cross_fitted, prune_weights

    probs, labels = _one_good_three_noisy(n=300)
    assert prune_weights(probs, labels, seed=0).tolist() == [1.0, 0, 0, 0]   # 0.9 vs 0.4 right
    assert (ensemble("pruned", probs, [0] * 4, prune_weights(probs, labels, seed=0)) == probs[0].argmax(-1)).all()
    # four learners that differ only by luck: right on 80 % of the clips each, different clips
    rng = np.random.default_rng(3)
    alike = rng.dirichlet(np.ones(6), size=(4, 300)) * 0.5
    for i in range(4):
        right = rng.random(300) < 0.8
        alike[i, np.flatnonzero(right), labels[right]] += 0.5
    assert prune_weights(alike, labels, seed=0).tolist() == [0.25] * 4
    # with no allowance for luck (sds=0) every learner below the best is dropped
    assert prune_weights(alike, labels, seed=0, sds=0.0).tolist() != [0.25] * 4
    out = cross_fitted("pruned", probs, labels, [0] * 4, seed=0)
    assert np.array_equal(out, probs[0].argmax(-1)) and np.array_equal(out, cross_fitted("pruned", probs, labels, [0] * 4, seed=0))
    with pytest.raises(ValueError, match="weights"):
        ensemble("pruned", probs, [0] * 4)


def test_state_gives_each_learner_its_own_share_plus_the_clips_for_everyone():
    mined = Mined(np.array([10, 11, 12, 13]), np.array([4, 5, 4, 1]), np.array([0, 1, 0, -1]))
    rows, y = mined.of_learner(0)
    assert rows.tolist() == [10, 12, 13] and y.tolist() == [4, 4, 1]
    rows, y = mined.of_learner(1)
    assert rows.tolist() == [11, 13] and y.tolist() == [5, 1]


def test_revisited_mined_set_replaces_the_old_one_and_a_plain_one_grows():
    state = MiningState(n_splits=2)
    first = Mined(np.array([10, 11]), np.array([1, 2]), np.array([0, 1]))
    second = Mined(np.array([11, 12]), np.array([3, 3]), np.array([0, 0]))
    state.set_mined(0, first, replace=True)
    state.set_mined(0, second, replace=True)    # clip 10's vote no longer holds: it leaves
    assert state.mined[0].rows.tolist() == [11, 12] and state.mined[0].labels.tolist() == [3, 3]
    state.set_mined(1, first, replace=False)
    state.set_mined(1, second, replace=False)
    assert state.mined[1].rows.tolist() == [10, 11, 11, 12]


def _pool(labels, conf):
    """probs [4, N, 6]: all four learners predict labels[n] with confidence conf[n]."""
    labels, conf = np.asarray(labels), np.asarray(conf, float)
    probs = np.zeros((4, len(labels), 6))
    probs[:, np.arange(len(labels)), labels] = conf
    probs[:, np.arange(len(labels)), (labels + 1) % 6] += 1 - conf
    return probs


def test_class_quota_keeps_the_labeled_class_mix_however_confident_the_majority_is():
    # 60 confident neutral clips, 20 less confident sad ones, 20 surprise ones at 0.6
    labels = [0] * 60 + [3] * 20 + [5] * 20
    conf = [0.99] * 60 + [0.7] * 20 + [0.6] * 20
    prior = [0.5, 0, 0, 0.3, 0, 0.2]
    sel = select(_pool(labels, conf), policy=("vote", "class-quota"), prior=prior, pool_size=100,
                 options={"class-quota": {"share_per_round": 0.2}})
    kept = sel.labels[sel.selected]
    # budget 20 clips: 10 neutral, 6 sad, 4 surprise, not 20 neutral
    assert np.bincount(kept, minlength=6).tolist() == [10, 0, 0, 6, 0, 4]
    # within a class the most confident go first
    assert sel.confidence[sel.selected & (sel.labels == 0)].min() == pytest.approx(0.99)


def test_class_quota_budget_grows_with_the_round_when_the_set_is_revisited():
    labels, conf = [0] * 50 + [1] * 50, np.linspace(0.99, 0.6, 100)
    kwargs = dict(policy=("vote", "class-quota"), prior=[0.5, 0.5, 0, 0, 0, 0], pool_size=100,
                  options={"class-quota": {"share_per_round": 0.1}})
    assert select(_pool(labels, conf), round=3, cumulative=True, **kwargs).selected.sum() == 30
    assert select(_pool(labels, conf), round=3, cumulative=False, **kwargs).selected.sum() == 10
    # never more than a class's candidates, never another class's clips in its place
    few = select(_pool([0] * 95 + [1] * 5, np.full(100, 0.9)), round=10, cumulative=True, **kwargs)
    assert np.bincount(few.labels[few.selected], minlength=6)[:2].tolist() == [50, 5]


def test_class_quota_without_fill_only_keeps_what_the_vote_proposed():
    labels = np.array([[0, 0, 0], [0, 0, 1], [0, 2, 1], [0, 3, 1]])    # clip 1: only 2 of 4 agree
    sel = select(one_hot_probs(labels), policy=("vote", "class-quota"), prior=[1, 1, 0, 0, 0, 0],
                 options={"class-quota": {"share_per_round": 1.0, "fill": False}})
    assert sel.selected.tolist() == [True, False, True]


def test_class_quota_fill_tops_up_a_class_the_learners_seldom_agree_on():
    # 6 neutral clips all four agree on; 4 worried clips (class 4) only 2 of 4 call worried (the
    # other two split), clip 6 the most confident of them; 2 sad clips (class 3) 2 learners call sad
    votes = [[0, 0, 0, 0]] * 6 + [[4, 4, 1, 2], [4, 4, 2, 1], [4, 4, 1, 3], [4, 4, 3, 2]] + [[3, 3, 1, 2]] * 2
    probs = one_hot_probs(np.array(votes).T)
    probs[:2, 6, 4] = 0.95                                   # clip 6: the most confident worried clip
    kwargs = dict(policy=("vote", "class-quota"), prior=[0.5, 0, 0, 0, 0.5, 0], pool_size=12)
    plain = select(probs, options={"class-quota": {"share_per_round": 0.5, "fill": False}}, **kwargs)
    assert np.flatnonzero(plain.selected).tolist() == [0, 1, 2]          # worried: starved
    filled = select(probs, options={"class-quota": {"share_per_round": 0.5}}, **kwargs)   # fill: the default
    # quota 3 + 3: the three voted neutral clips, then the three most confident worried ones;
    # the sad clips (prior 0) and the fourth worried clip stay out
    assert np.flatnonzero(filled.selected).tolist() == [0, 1, 2, 6, 7, 8]
    assert filled.labels[filled.selected].tolist() == [0, 0, 0, 4, 4, 4]
    # a clip the vote proposed is never displaced by one it did not: neutral is full of voted clips
    assert filled.agree[filled.selected & (filled.labels == 0)].min() == 4


def test_class_adaptive_thresholds_are_lower_for_classes_the_learners_are_unsure_of():
    # class 0: predicted often and confidently; class 4: rarely, at 0.55
    labels = [0] * 8 + [4] * 2
    conf = [0.95] * 8 + [0.55] * 2
    sel = select(_pool(labels, conf), policy=("vote", "class-adaptive"))
    assert sel.selected[8:].all()        # a plain 0.8 threshold would starve class 4
    strict = select(_pool(labels, conf), policy=("vote", "class-adaptive"),
                    options={"class-adaptive": {"tau": 0.99}})
    # the most predicted class gets tau itself: 0.95 < 0.99 drops it; the rare class keeps a low bar
    assert not strict.selected[:8].any() and strict.selected[8:].all()


def test_policy_options_are_checked_against_the_policys_own_parameters():
    with pytest.raises(ValueError, match="share_per_roun.*known"):
        select(one_hot_probs([[0]] * 4), policy=("vote", "class-quota"),
               options={"class-quota": {"share_per_roun": 0.1}})
    with pytest.raises(ValueError, match="does not use"):
        select(one_hot_probs([[0]] * 4), policy=("vote",), options={"class-quota": {}})


def test_mined_clips_go_to_one_learner_each_or_to_every_learner():
    rows, labels = np.arange(8), np.array([0, 0, 1, 1, 2, 2, 3, 3])
    even = assign_learners(rows, labels, 4, "even", seed=0)
    assert sorted(np.bincount(even, minlength=4).tolist()) == [2, 2, 2, 2]
    assert (assign_learners(rows, labels, 4, "all", seed=0) == -1).all()
    with pytest.raises(ValueError, match="even"):
        assign_learners(rows, labels, 4, "some", seed=0)


def test_a_policy_parameter_lives_with_its_policy_and_an_old_config_is_told_where():
    from mer_ray.config import config_from_dict, load_config
    from mer_ray.mining.policies import Vote, policy_params

    assert policy_params(MiningConfig(), "vote") == Vote()              # not named: its defaults
    cfg = load_config(overrides={"mining.options.vote.agree": 2}).mining
    assert policy_params(cfg, "vote") == Vote(agree=2)
    with pytest.raises(ValueError, match=r"mining.agree is now mining.options.vote.agree"):
        config_from_dict({"mining": {"agree": 2}})
    with pytest.raises(ValueError, match=r"mining.quantile_eta is now mining.options.class-quantile.eta"):
        load_config(overrides={"mining.quantile_eta": 0.3})


def test_a_misspelt_policy_option_or_an_impossible_noisy_view_stops_the_run_before_any_work():
    import dataclasses
    from mer_ray.config import ExtractConfig, RunConfig
    from mer_ray.mining.resolve import check_mining

    check_mining(RunConfig())
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['agre'\] for selection policy 'vote'"):
        check_mining(RunConfig(mining=MiningConfig(options={"vote": {"agre": 2}})))
    noisy = RunConfig(extract=dataclasses.replace(ExtractConfig(), noisy_view=True))
    with pytest.raises(ValueError, match="noisy_view does not work with mining.folds >= 2"):
        check_mining(noisy)
    check_mining(dataclasses.replace(noisy, mining=MiningConfig(folds=0)))
    with pytest.raises(ValueError, match="mining.ensemble 'mean-probs' is not registered; registered: .*mean-prob"):
        check_mining(RunConfig(mining=MiningConfig(ensemble="mean-probs")))


def test_a_misspelt_mining_setting_stops_the_run_before_the_demo_corpus_is_generated(tmp_path, monkeypatch):
    from mer_ray.config import RunConfig
    from mer_ray.mining.resolve import resolve

    monkeypatch.chdir(tmp_path)   # the demo corpus would be generated under ./.cache (a minute)
    with pytest.raises(ValueError, match="mining.ensemble 'mean-probs' is not registered"):
        resolve(RunConfig(mining=MiningConfig(ensemble="mean-probs")))
    assert list(tmp_path.iterdir()) == []


def test_seed004_preset_is_the_paper_and_explicit_fields_win():
    from mer_ray.config import config_from_dict, load_config
    cfg = config_from_dict({"mining": {"preset": "seed004", "rounds": 5}}).mining
    assert (cfg.policy, cfg.options["vote"]["agree"], cfg.revisit, cfg.split, cfg.mined_weight, cfg.adopt,
            cfg.folds, cfg.rounds) == (("vote",), 3, False, "even", 1.0, "always", 0, 5)
    changed = load_config(overrides={"mining.preset": "seed004", "mining.options.vote.agree": 4}).mining
    assert changed.options["vote"] == {"agree": 4, "min_confidence": 0.0}
    default = MiningConfig()
    assert default.preset is None and default.folds >= 2 and "class-quota" in default.policy
    with pytest.raises(ValueError, match="seed004"):
        config_from_dict({"mining": {"preset": "seed005"}})


def test_the_run_header_says_which_learners_are_solved_like_logistic_regression_cv():
    from mer_ray.config import RunConfig
    from mer_ray.mining.resolve import config_summary

    line = next(l for l in config_summary(RunConfig()).splitlines() if l.startswith("  learners:"))
    assert line == ("  learners: M1 attention(audio+text+video); M2 linear(audio+text+video, L-BFGS over 11 C); "
                    "M3 fbp(text+video); M4 linear(audio+text, L-BFGS over 11 C)")
