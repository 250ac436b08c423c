"""Model-backed encoders: every family from a tiny random model saved to a temp folder (no downloads)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import torch
import transformers

from mer_ray.encoders import create_encoder, parse_spec

SR = 16000
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "am", "so", "happy", "sad", "today",
         "angry", "not", "at", "all", "<s>", "</s>"]


def _voice(seconds: float, f0: float = 150.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def _frames(count: int = 16, size: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _tokenizer(folder):
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random-initialised models of every family, saved like real checkpoints."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    conv = dict(conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2)
    made = {
        "hubert": transformers.HubertModel(transformers.HubertConfig(**small, **conv)),
        "wav2vec2": transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**small, **conv, feat_extract_norm="layer")),
        "wavlm": transformers.WavLMModel(transformers.WavLMConfig(**small, **conv, num_buckets=8)),
        "whisper": transformers.WhisperModel(transformers.WhisperConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=100,
            max_target_positions=32, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1, suppress_tokens=[], begin_suppress_tokens=[])),
        "bert": transformers.BertModel(transformers.BertConfig(**small, vocab_size=len(WORDS))),
        "llama": transformers.LlamaModel(transformers.LlamaConfig(
            **small, vocab_size=len(WORDS), num_key_value_heads=2, max_position_embeddings=64)),
        "vit": transformers.ViTModel(transformers.ViTConfig(**small, image_size=32, patch_size=8)),
        # an MAE checkpoint as published: it masks 75 % of the patches unless told otherwise
        "vit-mae": transformers.ViTMAEModel(transformers.ViTMAEConfig(**small, image_size=32, patch_size=8,
                                                                      mask_ratio=0.75)),
        "clip": transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**small, image_size=32, patch_size=8)),
        "videomae": transformers.VideoMAEModel(transformers.VideoMAEConfig(
            **small, image_size=32, patch_size=8, num_frames=4, tubelet_size=2)),
    }
    for name, model in made.items():
        model.save_pretrained(str(root / name))
    for name in ("bert", "llama"):
        _tokenizer(root / name)
    import safetensors.torch
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=6, img_size=32,
                            patch_size=8, depth=2)
    timm.models.save_for_hf(vit, str(root / "timm-folder"), model_args=dict(img_size=32, patch_size=8, depth=2))
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=6)
    safetensors.torch.save_file(resnet.state_dict(), str(root / "resnet18.safetensors"))
    return root


def test_spec_strings_parse_family_source_and_options():
    assert parse_spec("logmel-stats") == ("logmel-stats", None, {})
    assert parse_spec("hf-audio:/m/hubert?pooling=last4-sum&chunk_seconds=2.5") == (
        "hf-audio", "/m/hubert", {"pooling": "last4-sum", "chunk_seconds": 2.5})
    assert parse_spec("grid:timm:vit_base_patch16_224@/w/v.pth?grid=3") == (
        "grid", "timm:vit_base_patch16_224@/w/v.pth", {"grid": 3})


@pytest.mark.parametrize("name", ["hubert", "wav2vec2", "wavlm", "whisper"])
def test_audio_encoders_give_one_row_per_clip_and_zeros_for_silence_missing(models, name):
    encoder = create_encoder(f"hf-audio:{models / name}?chunk_seconds=1&pooling=last4-mean")
    # 2.5 s → three 1 s chunks (the last half a second long); None → zeros
    features = encoder.encode([_voice(2.5), None, _voice(0.6, 300.0)])
    assert features.shape == (3, 32) and features.dtype == np.float32
    assert np.isfinite(features).all() and features[0].any()
    assert not features[1].any()
    # batched = one at a time (padding never enters the mean)
    alone = encoder.encode([_voice(0.6, 300.0)])
    np.testing.assert_allclose(alone[0], features[2], atol=1e-4)


def test_text_encoders_bert_and_decoder_lm(models):
    for name in ("bert", "llama"):
        for pooling in ("last", "last4-mean", "last4-sum"):
            encoder = create_encoder(f"hf-text:{models / name}?pooling={pooling}")
            features = encoder.encode(["i am so happy today", None, "", "not sad at all"])
            assert features.shape == (4, 32)
            assert features[0].any() and features[3].any() and not features[1].any() and not features[2].any()
            alone = encoder.encode(["not sad at all"])
            np.testing.assert_allclose(alone[0], features[3], atol=1e-4)


def test_layer_pooling_sum_is_twice_the_mean_of_two_blocks(models):
    mean = create_encoder(f"hf-text:{models / 'bert'}?pooling=last4-mean").encode(["i am happy"])
    total = create_encoder(f"hf-text:{models / 'bert'}?pooling=last4-sum").encode(["i am happy"])
    np.testing.assert_allclose(total, 2 * mean, rtol=1e-4, atol=1e-5)   # a 2-block model: both blocks


@pytest.mark.parametrize("spec", [
    "hf-image:{root}/vit", "hf-image:{root}/clip?pooling=last", "timm:{root}/timm-folder",
    "timm:resnet18@{root}/resnet18.safetensors?pooling=last", "timm:{root}/timm-folder?pooling=last4-sum",
    "grid:timm:{root}/timm-folder?grid=2", "grid:hf-image:{root}/vit?grid=3", "videomae:{root}/videomae",
])
def test_visual_encoders_average_frames_and_map_missing_to_zeros(models, spec):
    encoder = create_encoder(spec.format(root=models))
    assert encoder.modality == "video"
    features = encoder.encode([_frames(seed=1), None, _frames(count=5, size=24, seed=2)])
    assert features.shape == (3, encoder.dim) and np.isfinite(features).all()
    assert features[0].any() and not features[1].any()
    assert json.dumps(encoder.info())  # meta.json-ready


def test_an_mae_encoder_sees_every_patch_in_a_fixed_order(models):
    encoder = create_encoder(f"hf-image:{models}/vit-mae?pooling=last")
    frames = _frames(seed=3)
    first, again = encoder.encode([frames]), encoder.encode([frames])
    np.testing.assert_array_equal(first, again)             # no random masking or shuffling per call
    outputs = encoder.model(pixel_values=encoder._images(frames)[:1],
                            noise=encoder._torch.arange(16, dtype=encoder._torch.float32)[None])
    assert outputs.last_hidden_state.shape[1] == 1 + 16     # the [CLS] token and all 4 x 4 patches


def test_grid_stitches_frames_into_fewer_images(models):
    encoder = create_encoder(f"grid:timm:{models / 'timm-folder'}?grid=2")
    assert encoder.grid == 2 and encoder._images(_frames(16)).shape == (4, 3, 32, 32)
    assert encoder._images(_frames(3)).shape == (1, 3, 32, 32)


def test_missing_weights_say_how_to_provide_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="local paths only.*huggingface-cli download"):
        create_encoder(f"hf-audio:{tmp_path / 'no-such-model'}")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        create_encoder(f"hf-text:{tmp_path}")
    with pytest.raises(ValueError, match="names no model path"):
        create_encoder("videomae")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_encoder(f"timm:vit_tiny_patch16_224@{tmp_path / 'missing.pth'}")
    with pytest.raises(ValueError, match="pooling"):
        create_encoder(f"hf-text:{tmp_path}?pooling=first")
