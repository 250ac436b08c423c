"""Two-input encoders: MultiMAE-DER (seed 002) and joint audio-text (seed 004), from tiny random
models saved to temp folders, alone and through Ray Data extraction."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import torch
import transformers

from mer_ray.config import ExtractConfig
from mer_ray.corpus.manifest import read_corpus
from mer_ray.corpus.media import write_clip
from mer_ray.encoders import create_encoder, encoder_modality
from mer_ray.encoders.fused import STRATEGIES, fuse, fusion_order, items_per_modality
from mer_ray.features.extract import extract_features
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import load_feature_table

SR = 16000
SIDE = 8   # layout tests: a 16-slot, 8x8 "model input"


def _tone(seconds: float, hz: float = 1000.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _frames(count: int = 16, size: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def videomae(tmp_path_factory):
    """A tiny random VideoMAE with the paper's 16 frames and tubelet 2 (2 blocks, 32 px)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("videomae") / "tiny-videomae"
    config = transformers.VideoMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, image_size=32, patch_size=8,
                                         num_frames=16, tubelet_size=2)
    transformers.VideoMAEModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def qwen_audio(tmp_path_factory):
    """A tiny random Qwen2-Audio with an offline word-level tokenizer holding its special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("qwen") / "tiny-qwen2-audio"
    special = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>",
               "<|audio_eos|>"]
    words = ("system user assistant you are a helpful audio 1 transcript listen to the speaker and read "
             "of what they say which emotion do express neutral angry happy sad worried or surprise "
             "i am so today not at all : . ,").split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(special + words))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Punctuation()])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
        additional_special_tokens=special[2:])
    processor = transformers.Qwen2AudioProcessor(
        feature_extractor=transformers.WhisperFeatureExtractor(feature_size=16), tokenizer=tokenizer)
    processor.save_pretrained(str(path))
    config = transformers.Qwen2AudioConfig(
        audio_config=dict(model_type="qwen2_audio_encoder", d_model=32, encoder_layers=2,
                          encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=16),
        text_config=dict(model_type="qwen2", hidden_size=32, num_hidden_layers=5, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, vocab_size=len(vocab),
                         max_position_embeddings=512),
        audio_token_index=vocab["<|AUDIO|>"])
    transformers.Qwen2AudioForConditionalGeneration(config).save_pretrained(str(path))
    return path


# ------------------------------------------------------------------------- MultiMAE-DER layout


def _labelled(count: int, sign: float, height: int = SIDE) -> "torch.Tensor":
    """Items whose every pixel holds sign * (index + 1): frames +1..+k, spectrograms -1..-k."""
    values = sign * torch.arange(1, count + 1, dtype=torch.float32)
    return values.view(count, 1, 1, 1).expand(count, 3, height, SIDE).clone()


# What seed 002's equations (3)-(5) put in the 16 slots: +i is frame V_i, -i spectrogram A_i.
TEMPORAL_LAYOUT = {
    "FFLS": [1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, -5, -6, -7, -8],
    "FSLF": [-1, -2, -3, -4, -5, -6, -7, -8, 1, 2, 3, 4, 5, 6, 7, 8],
    "OFOS": [1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 8, -8],
}


@pytest.mark.parametrize("strategy", sorted(TEMPORAL_LAYOUT))
def test_temporal_strategies_put_8_frames_and_8_spectrograms_in_the_papers_order(strategy):
    assert items_per_modality(strategy, 16) == 8
    fused = fuse(_labelled(8, 1.0), _labelled(8, -1.0), strategy)
    assert tuple(fused.shape) == (16, 3, SIDE, SIDE)
    slot_values = fused[:, 0, 0, 0].tolist()
    assert slot_values == TEMPORAL_LAYOUT[strategy]
    assert all(torch.all(fused[j] == v) for j, v in enumerate(slot_values))   # whole slot is one item


def test_cfas_puts_each_frame_on_the_top_half_and_its_spectrogram_below():
    assert items_per_modality("CFAS", 16) == 16
    fused = fuse(_labelled(16, 1.0, SIDE // 2), _labelled(16, -1.0, SIDE // 2), "CFAS")
    assert tuple(fused.shape) == (16, 3, SIDE, SIDE)
    for i in range(16):
        assert torch.all(fused[i, :, : SIDE // 2] == i + 1)      # V_i, top half
        assert torch.all(fused[i, :, SIDE // 2 :] == -(i + 1))   # A_i, bottom half


def test_sfas_adds_each_frame_and_its_spectrogram_pixel_by_pixel():
    frames, spectra = _labelled(16, 1.0), _labelled(16, 100.0)
    fused = fuse(frames, spectra, "SFAS")
    assert tuple(fused.shape) == (16, 3, SIDE, SIDE)
    assert fused[:, 0, 0, 0].tolist() == [101.0 * (i + 1) for i in range(16)]


def test_rfas_shuffles_all_16_items_once_each_with_a_seeded_order():
    order = fusion_order("RFAS", 8, seed=0)
    assert sorted(order) == sorted(fusion_order("FFLS", 8))   # every frame and spectrogram once
    assert order != fusion_order("FFLS", 8)
    assert fusion_order("RFAS", 8, seed=0) == order           # reproducible
    assert fusion_order("RFAS", 8, seed=1) != order
    fused = fuse(_labelled(8, 1.0), _labelled(8, -1.0), "RFAS", seed=0)
    expected = [(i + 1) * (1 if kind == "V" else -1) for kind, i in order]
    assert fused[:, 0, 0, 0].tolist() == expected


# ------------------------------------------------------------------------- MultiMAE-DER encoder


def test_encoder_renders_frames_and_the_audio_around_each_frame(videomae):
    """Grey frames and a clip silent in its first half, a loud tone in its second: FFLS's frame
    slots hold the grey value, its spectrogram slots are dark early and bright late."""
    encoder = create_encoder(f"multimae-der:{videomae}?strategy=FFLS&window_seconds=0.5", device="cpu")
    frames = np.full((16, 40, 40, 3), 128, np.uint8)
    audio = np.concatenate([np.zeros(2 * SR, np.float32), _tone(2.0)])
    pixels = encoder.clip_input(frames, audio)
    assert tuple(pixels.shape) == (16, 3, 32, 32)
    mean, std = torch.tensor(encoder.mean).view(3, 1, 1), torch.tensor(encoder.std).view(3, 1, 1)
    grey = (128 / 255 - mean) / std
    assert torch.allclose(pixels[:8], grey.expand(8, 3, 32, 32), atol=1e-5)
    images = (pixels[8:] * std + mean)[:, 0]                     # back to [0, 1] grey images
    assert torch.all(images[:3] < 1e-3)                          # frames at 0 .. 1.1 s: silence
    rows = images[-3:].mean(dim=2)                               # frames at 2.9 .. 4 s: the tone
    assert torch.all(rows.amax(dim=1) > 0.1)   # one bright bin of 257, averaged into 32 rows
    # 1 kHz is 1/8 of the 8 kHz band: the bright row sits 1/8 up from the bottom (row 28 of 32)
    assert torch.all((rows.argmax(dim=1) - 28).abs() <= 1)
    # CFAS: the same clip as 16 half-height frames over their spectrograms
    cfas = create_encoder(f"multimae-der:{videomae}?strategy=CFAS&window_seconds=0.5", device="cpu")
    pixels = cfas.clip_input(frames, audio)
    assert torch.allclose(pixels[:, :, :16], grey.expand(16, 3, 16, 32), atol=1e-5)
    assert (pixels[0, :, 16:] * std + mean).max() < 1e-3 < 0.1 < (pixels[-1, :, 16:] * std + mean).max()


def test_every_strategy_gives_finite_features_of_the_models_width(videomae, one_torch_thread):
    clips = [(_frames(seed=s), _tone(1.5, hz=300 + 200 * s)) for s in range(2)]
    features = {}
    for strategy in STRATEGIES:
        encoder = create_encoder(f"multimae-der:{videomae}?strategy={strategy}", device="cpu")
        assert encoder.modality == "audio+video" and encoder.dim == 32
        out = encoder.encode(clips + [(None, _tone(1.0)), (_frames(), None)])
        assert out.shape == (4, 32) and out.dtype == np.float32 and np.isfinite(out).all()
        assert np.abs(out[0] - out[1]).max() > 1e-4                    # different clips differ
        assert not out[2:].any()                                       # a missing part → zeros
        features[strategy] = out[0]
    # the order of the same items changes the tokens' positions, hence the features
    assert np.abs(features["FFLS"] - features["FSLF"]).max() > 1e-4
    mfcc = create_encoder(f"multimae-der:{videomae}?strategy=FSLF&spectrogram=mfcc", device="cpu")
    assert np.abs(mfcc.encode(clips[:1])[0] - features["FSLF"]).max() > 1e-4


def test_layer_pooling_options(videomae, one_torch_thread):
    clip = [(_frames(), _tone(1.0))]
    out = {p: create_encoder(f"multimae-der:{videomae}?pooling={p}", device="cpu").encode(clip)[0]
           for p in ("last", "last4-mean", "last4-sum")}
    # two blocks: "last4" takes both, so their sum is twice their mean; "last" is the last block only
    np.testing.assert_allclose(out["last4-sum"], 2 * out["last4-mean"], rtol=1e-4, atol=1e-5)
    assert np.abs(out["last"] - out["last4-mean"]).max() > 1e-4
    with pytest.raises(ValueError, match="pooling"):
        create_encoder(f"multimae-der:{videomae}?pooling=first")


def test_bad_options_and_missing_weights_say_what_to_do(videomae, tmp_path):
    with pytest.raises(ValueError, match="CFAS.*RFAS"):
        create_encoder(f"multimae-der:{videomae}?strategy=ZZZZ")
    with pytest.raises(ValueError, match="stft"):
        create_encoder(f"multimae-der:{videomae}?spectrogram=wavelet")
    with pytest.raises(ValueError, match="window_seconds"):
        create_encoder(f"multimae-der:{videomae}?window_seconds=0.01")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        create_encoder(f"multimae-der:{tmp_path / 'absent'}")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        create_encoder(f"audio-text:{tmp_path / 'absent'}")
    assert encoder_modality("multimae-der:/x?strategy=OFOS") == "audio+video"
    assert encoder_modality("audio-text:/x") == "audio+text"


# ------------------------------------------------------------------------- joint audio-text


def test_audio_text_encoder_mixes_audio_and_transcript(qwen_audio, videomae, one_torch_thread):
    encoder = create_encoder(f"audio-text:{qwen_audio}", device="cpu")
    assert encoder.modality == "audio+text" and encoder.dim == 32 and encoder.pooling == "last4-mean"
    assert "Transcript: i am so happy" in encoder.text("i am so happy")
    voice, other = _tone(2.0, 220.0), _tone(0.7, 500.0)
    out = encoder.encode([(voice, "i am so happy"), (voice, "i am so sad"), (other, "i am so happy"),
                          (None, "hello")])
    assert out.shape == (4, 32) and np.isfinite(out).all()
    assert np.abs(out[0] - out[1]).max() > 1e-4     # the transcript changes the joint feature
    assert np.abs(out[0] - out[2]).max() > 1e-4     # and so does the audio
    assert not out[3].any()                         # no audio → zeros
    # a clip's vector does not depend on the batch it lands in (right padding, causal LM)
    alone = encoder.encode([(other, "i am so happy")])
    np.testing.assert_allclose(alone[0], out[2], rtol=1e-4, atol=1e-5)
    last = create_encoder(f"audio-text:{qwen_audio}?pooling=last", device="cpu")
    assert np.abs(last.encode([(voice, "i am so happy")])[0] - out[0]).max() > 1e-4
    with pytest.raises(ValueError, match="Qwen2-Audio"):
        create_encoder(f"audio-text:{videomae}")


# ------------------------------------------------------------------------- through Ray Data


def test_fused_streams_extract_through_ray_data(ray_session, tiny_corpus, videomae, qwen_audio, tmp_path):
    manifest = read_corpus(tiny_corpus).sort_values("name").iloc[:10]
    extra = tmp_path / "extra"
    extra.mkdir()
    write_clip(extra / "samplenew3_novideo.mp4", None, _tone(1.0))
    rows = pd.DataFrame([dict(name="samplenew3_novideo", video=str(extra / "samplenew3_novideo.mp4"),
                              transcript="hello")]).assign(audio=None, split="unlabeled", label=None,
                                                           valence=np.nan)
    manifest = pd.concat([manifest, rows[manifest.columns]], ignore_index=True)
    store = FeatureStore(tmp_path / "store")
    streams = {"av": f"multimae-der:{videomae}?strategy=OFOS", "joint": f"audio-text:{qwen_audio}"}
    summary = extract_features(manifest, store, ExtractConfig(streams=streams, batch_size=4, frame_size=32,
                                                              encoder_actors=1), progress=False)
    names, av = store.load("av")
    assert set(names) == set(manifest["name"]) - {"samplenew3_novideo"} and av.shape[1] == 32
    assert np.isfinite(av).all() and np.unique(av.round(5), axis=0).shape[0] == len(names)
    assert store.meta("av")["modality"] == "audio+video" and store.meta("av")["strategy"] == "OFOS"
    (error,) = store.errors("av")
    assert error["name"] == "samplenew3_novideo" and error["stage"] == "missing"
    assert "no video stream" in error["message"] and "audio+video" in error["message"]
    joint_names, joint = store.load("joint")     # the audio-only clip keeps its joint feature
    assert set(joint_names) == set(manifest["name"]) and joint.shape[1] == 32
    assert summary.missing == {"av (no video stream)": 1}
    # a learner sees the fused stream as one more named stream, absent where a part is missing
    table, dropped = load_feature_table(manifest, store, ["av", "joint"])
    assert not dropped and table.dims == {"av": 32, "joint": 32}
    assert table.present["av"].sum() == len(manifest) - 1
