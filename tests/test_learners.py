"""Fusion learners: shapes, gradients, determinism, capacity to fit, and errors at the edge."""
from __future__ import annotations

import pytest
import torch

from mer_ray.learners import FUSIONS, LearnerOutput, create_learner, multitask_loss

FUSION_NAMES = ["attention", "cross-attention", "fbp", "concat-mlp", "linear"]
STREAM_DIMS = {"audio": 8, "text": 12, "visual": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(rows: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(rows, dim, generator=gen) for name, dim in STREAM_DIMS.items()}


def _separable_problem(rows: int = 60, classes: int = 6):
    """Each class has its own centre in every stream; rows are centre + small noise."""
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(rows) % classes
    streams = {}
    for name, dim in STREAM_DIMS.items():
        centres = torch.randn(classes, dim, generator=gen) * 2
        streams[name] = centres[labels] + 0.3 * torch.randn(rows, dim, generator=gen)
    valence = torch.linspace(-4, 4, classes)[labels]
    return streams, labels, valence


def test_registry_lists_the_five_fusions():
    assert sorted(FUSION_NAMES) == FUSIONS.names()


def test_unknown_fusion_raises_key_error_listing_the_known_ones():
    with pytest.raises(KeyError, match="concat-mlp"):
        create_learner("transformer-xl", STREAM_DIMS)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_output_shapes(fusion):
    learner = create_learner(fusion, STREAM_DIMS, hidden=16)
    out = learner(_batch(rows=5))
    assert isinstance(out, LearnerOutput)
    assert out.logits.shape == (5, 6)
    assert out.valence is not None and out.valence.shape == (5,)
    expected_branches = len(STREAM_DIMS) if fusion == "cross-attention" else 0
    assert len(out.branch_logits) == expected_branches
    assert all(b.shape == (5, 6) for b in out.branch_logits)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_without_valence_head_valence_is_none(fusion):
    learner = create_learner(fusion, STREAM_DIMS, hidden=16, valence_head=False, num_classes=4)
    out = learner(_batch())
    assert out.valence is None and out.logits.shape == (5, 4)
    with pytest.raises(ValueError, match="no valence head"):
        multitask_loss(out, torch.zeros(5, dtype=torch.long), torch.zeros(5))


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_gradients_reach_every_stream_and_every_parameter(fusion):
    torch.manual_seed(0)
    learner = create_learner(fusion, STREAM_DIMS, hidden=16)
    streams = {k: v.requires_grad_() for k, v in _batch(rows=8).items()}
    labels = torch.arange(8) % 6
    loss = multitask_loss(learner(streams), labels, torch.linspace(-1, 1, 8))
    loss.backward()
    for name, x in streams.items():
        assert x.grad is not None and x.grad.abs().sum() > 0, f"no gradient reaches {name}"
    for pname, param in learner.named_parameters():
        assert param.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"
    if hasattr(learner, "projections"):
        for name, proj in zip(learner.stream_names, learner.projections):
            assert any(p.grad.abs().sum() > 0 for p in proj.parameters()), name


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_same_seed_gives_same_weights_and_outputs(fusion):
    outputs = []
    for _ in range(2):
        torch.manual_seed(42)
        learner = create_learner(fusion, STREAM_DIMS, hidden=16)
        learner.train()  # dropout on: the seed must fix its masks too
        outputs.append(learner(_batch()))
    torch.testing.assert_close(outputs[0].logits, outputs[1].logits, rtol=0, atol=0)
    torch.testing.assert_close(outputs[0].valence, outputs[1].valence, rtol=0, atol=0)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_stream_order_of_the_input_dict_does_not_matter(fusion):
    torch.manual_seed(0)
    learner = create_learner(fusion, STREAM_DIMS, hidden=16).eval()
    batch = _batch()
    shuffled = {name: batch[name] for name in reversed(list(batch))}
    extra = {**batch, "unused-stream": torch.randn(5, 3)}
    torch.testing.assert_close(learner(batch).logits, learner(shuffled).logits)
    torch.testing.assert_close(learner(batch).logits, learner(extra).logits)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_overfits_a_tiny_separable_problem(fusion):
    torch.manual_seed(0)
    streams, labels, valence = _separable_problem()
    learner = create_learner(fusion, STREAM_DIMS, hidden=32, dropout=0.1)
    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-2)
    learner.train()
    for _ in range(80):  # all four fusions pass in under 20 steps
        optimiser.zero_grad()
        multitask_loss(learner(streams), labels, valence).backward()
        optimiser.step()
    learner.eval()
    with torch.no_grad():
        out = learner(streams)
    accuracy = (out.logits.argmax(dim=1) == labels).float().mean().item()
    assert accuracy > 0.95, f"{fusion} reached only {accuracy:.2f} train accuracy"
    assert torch.mean((out.valence - valence) ** 2).item() < 1.0


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_missing_stream_raises_naming_stream_and_dim(fusion):
    learner = create_learner(fusion, STREAM_DIMS, hidden=16)
    batch = _batch()
    del batch["text"]
    with pytest.raises(ValueError, match=r"'text' \(dim 12\) is missing"):
        learner(batch)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_wrong_dim_raises_naming_stream_and_dim(fusion):
    learner = create_learner(fusion, STREAM_DIMS, hidden=16)
    batch = _batch()
    batch["visual"] = torch.randn(5, 15)
    with pytest.raises(ValueError, match=r"'visual' must have shape \[batch, 16\]"):
        learner(batch)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_nan_input_raises(fusion):
    learner = create_learner(fusion, STREAM_DIMS, hidden=16)
    batch = _batch()
    batch["audio"][2, 3] = float("nan")
    with pytest.raises(ValueError, match="'audio' holds NaN"):
        learner(batch)


def test_mismatched_batch_sizes_raise():
    learner = create_learner("attention", STREAM_DIMS, hidden=16)
    batch = _batch()
    batch["visual"] = torch.randn(4, 16)
    with pytest.raises(ValueError, match="rows"):
        learner(batch)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"stream_dims": {}}, "at least one"),
        ({"stream_dims": {"audio": 0}}, "positive integer"),
        ({"stream_dims": STREAM_DIMS, "dropout": 1.0}, "dropout"),
        ({"stream_dims": STREAM_DIMS, "hidden": 0}, "hidden"),
    ],
)
def test_bad_config_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_learner("concat-mlp", **kwargs)


def test_cross_attention_rejects_hidden_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        create_learner("cross-attention", STREAM_DIMS, hidden=18, num_heads=4)


def test_a_fusion_option_reaches_the_model_and_its_default_is_recorded():
    learner = create_learner("fbp", STREAM_DIMS, hidden=16, rank=2)
    assert learner.rank == 2 and learner.config["rank"] == 2
    assert create_learner("fbp", STREAM_DIMS, hidden=16).config["rank"] == FUSIONS.meta("fbp")["options"]["rank"]
    heads = create_learner("cross-attention", STREAM_DIMS, hidden=16, num_heads=2)
    assert heads.attention.num_heads == 2


def test_an_option_the_fusion_does_not_take_is_refused_with_the_ones_it_does():
    with pytest.raises(ValueError, match=r"'fbp' takes no option 'num_heads' \(its options: rank\)"):
        create_learner("fbp", STREAM_DIMS, hidden=16, num_heads=2)
    with pytest.raises(ValueError, match=r"its options: none"):
        create_learner("attention", STREAM_DIMS, hidden=16, rank=4)


def test_a_misspelt_fusion_option_in_a_config_stops_the_run_before_any_work():
    import dataclasses
    from mer_ray.config import LearnerSpec, MiningConfig, RunConfig
    from mer_ray.mining.resolve import resolve_learners

    bad = LearnerSpec("M3", ("text", "video"), fusion="fbp", options={"rnak": 2})
    # one learner: a vote it can reach (the default 3 of 4 is refused: test_round_loop.py)
    cfg = RunConfig(learners=(bad,), mining=MiningConfig(options={"vote": {"agree": 1}}))
    with pytest.raises(ValueError, match="learner M3: fusion 'fbp' takes no option 'rnak'"):
        resolve_learners(cfg)
    good = dataclasses.replace(bad, options={"rank": 2})
    assert resolve_learners(dataclasses.replace(cfg, learners=(good,))).learners[0].options == {"rank": 2}


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_single_stream_learner_works(fusion):
    learner = create_learner(fusion, {"audio": 8}, hidden=16)
    assert learner({"audio": torch.randn(3, 8)}).logits.shape == (3, 6)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_config_rebuilds_the_same_learner(fusion):
    learner = create_learner(fusion, STREAM_DIMS, hidden=16)
    rebuilt = create_learner(**learner.config)
    rebuilt.load_state_dict(learner.state_dict())
    learner.eval()
    rebuilt.eval()
    torch.testing.assert_close(learner(_batch()).logits, rebuilt(_batch()).logits)


def _fixed_output(branches: int = 0) -> LearnerOutput:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, generator=gen)
    return LearnerOutput(
        logits,
        torch.tensor([0.5, -1.0, 2.0, 0.0]),
        [torch.randn(4, 6, generator=gen) for _ in range(branches)],
    )


def test_loss_is_ce_plus_mse_on_known_valence_rows():
    out = _fixed_output()
    labels = torch.tensor([0, 1, 2, 3])
    valence = torch.tensor([1.5, float("nan"), 2.0, 1.0])
    ce = torch.nn.functional.cross_entropy(out.logits, labels)
    mse = ((0.5 - 1.5) ** 2 + 0.0 + (0.0 - 1.0) ** 2) / 3
    torch.testing.assert_close(multitask_loss(out, labels, valence), ce + mse)


def test_valence_mask_selects_rows_and_empty_mask_adds_nothing():
    out = _fixed_output()
    labels = torch.tensor([0, 1, 2, 3])
    valence = torch.tensor([1.5, 0.0, 2.0, 1.0])
    ce = torch.nn.functional.cross_entropy(out.logits, labels)
    mask = torch.tensor([True, False, False, False])
    torch.testing.assert_close(multitask_loss(out, labels, valence, mask), ce + 1.0)
    none_known = torch.zeros(4, dtype=torch.bool)
    torch.testing.assert_close(multitask_loss(out, labels, valence, none_known), ce)
    torch.testing.assert_close(multitask_loss(out, labels), ce)


def test_branch_logits_add_weighted_mean_ce():
    out = _fixed_output(branches=2)
    labels = torch.tensor([0, 1, 2, 3])
    ce = torch.nn.functional.cross_entropy
    expected = ce(out.logits, labels) + 0.5 * (
        ce(out.branch_logits[0], labels) + ce(out.branch_logits[1], labels)
    ) / 2
    torch.testing.assert_close(multitask_loss(out, labels), expected)
    without_branches = multitask_loss(out, labels, branch_weight=0.0)
    torch.testing.assert_close(without_branches, ce(out.logits, labels))


def test_class_weights_are_applied():
    out = _fixed_output()
    labels = torch.tensor([0, 1, 2, 3])
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 1.0, 1.0])
    expected = torch.nn.functional.cross_entropy(out.logits, labels, weight=weights)
    torch.testing.assert_close(multitask_loss(out, labels, class_weights=weights), expected)


def _imbalanced_table(seed: int = 0):
    """120 clips, 80 % of them class 0, with a weak signal for classes 1 and 2."""
    import numpy as np
    from mer_ray.features.table import FeatureTable

    rng = np.random.default_rng(seed)
    label = np.array([0] * 96 + [1] * 12 + [2] * 12)
    features = rng.standard_normal((len(label), 8)).astype(np.float32)
    features[:, 0] += 0.7 * (label == 1)
    features[:, 1] += 0.7 * (label == 2)
    return FeatureTable(names=np.array([f"clip_{i:03d}" for i in range(len(label))], dtype=object),
                        streams={"audio": features}, label=label,
                        valence=np.full(len(label), np.nan, np.float32),
                        split=np.array(["train"] * len(label), dtype=object))


def test_balanced_class_weight_of_a_learner_spec_reaches_the_training_loss():
    """`LearnerSpec.class_weight: balanced` (the path the mining and tune use: fit_splits):
    on a set that is 80 % one class, the unweighted learner predicts the minority classes
    rarely, the class-weighted one much more often."""
    import numpy as np
    from mer_ray.config import LearnerSpec
    from mer_ray.train import Split, class_weights, fit_splits, predict_proba

    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 6).numpy(), [4 / 6, 2, 0, 0, 0, 0])
    table = _imbalanced_table()
    held = np.arange(0, len(table), 4)
    split = Split(np.setdiff1d(np.arange(len(table)), held), held)
    minority = {}
    for weighting in (None, "balanced"):
        spec = LearnerSpec("L", ("audio",), fusion="linear", lr=1e-2, dropout=0.0, max_epochs=30,
                           patience=30, class_weight=weighting)
        model = fit_splits(spec, table, [split], seed=0).models[0]
        minority[weighting] = float(np.isin(predict_proba(model, table, spec).argmax(1), [1, 2]).mean())
    assert minority["balanced"] > 2 * minority[None] + 0.05, minority


def test_an_unknown_class_weight_is_refused_not_ignored():
    import numpy as np
    from mer_ray.config import LearnerSpec
    from mer_ray.train import Split, fit_splits

    table = _imbalanced_table()
    spec = LearnerSpec("L", ("audio",), fusion="linear", class_weight="balance")
    with pytest.raises(ValueError, match="learner L: class_weight must be 'balanced'"):
        fit_splits(spec, table, [Split(np.arange(100), np.arange(100, 120))], seed=0)
