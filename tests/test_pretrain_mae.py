"""Encoder adaptation (issue #9, seed 000's expMAE): MAE pre-training through Ray Data and Ray Train.

A tiny ViT-MAE (32 px, one block) is saved to a temp folder and continued on a dozen clips of the
tiny corpus by two DDP workers; the second run resumes the first. No downloads.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import torch
import transformers

from mer_ray.adapt import PretrainConfig, create_mae_kind, pretrain_mae
from mer_ray.adapt.mae import tube_mask
from mer_ray.corpus.manifest import read_corpus
from mer_ray.encoders import create_encoder

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2, decoder_intermediate_size=64)


@pytest.fixture(scope="module")
def tiny_mae(tmp_path_factory):
    """A random ViTMAEForPreTraining saved like a published MAE checkpoint (what --init takes)."""
    folder = tmp_path_factory.mktemp("init") / "vit-mae"
    torch.manual_seed(0)
    transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**TINY)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def few_clips(tiny_corpus, tmp_path_factory):
    """A CSV manifest: 12 unlabeled clips of the tiny corpus and one file that is not a video."""
    folder = tmp_path_factory.mktemp("few")
    manifest = read_corpus(tiny_corpus)
    rows = manifest[manifest["split"] == "unlabeled"].head(12)[["name", "video", "split"]]
    (folder / "broken.mp4").write_text("not a video")
    rows = pd.concat([rows, pd.DataFrame([dict(name="broken_clip", video=str(folder / "broken.mp4"),
                                               split="unlabeled")])])
    rows.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def runs(ray_session, tiny_mae, few_clips, tmp_path_factory):
    """One epoch, then the same command with epochs=2 (what a rerun after a stop does)."""
    torch.set_num_threads(1)
    cfg = PretrainConfig(corpus=str(few_clips), out=str(tmp_path_factory.mktemp("mae") / "run"),
                         init=str(tiny_mae), num_frames=4, epochs=1, batch_size=4, workers=2,
                         cpus_per_worker=0.5, torch_threads=1, lr=1e-3, warmup_epochs=0.5)
    first = pretrain_mae(cfg)
    first_history = json.loads(json.dumps(first.history))
    first_state = (first.encoder / "model.safetensors").read_bytes()
    second = pretrain_mae(PretrainConfig(**{**cfg.to_dict(), "epochs": 2}))
    return cfg, first, first_history, first_state, second


def test_mask_ratios_default_to_the_papers_image_075_and_video_tube_090(tiny_mae):
    cfg = PretrainConfig(init=str(tiny_mae))
    image = create_mae_kind("image-mae")
    assert (cfg.mask_ratio, image.mask_ratio(cfg), create_mae_kind("video-mae").mask_ratio(cfg)) == (None, 0.75, 0.9)
    model = image.build(cfg)
    out = model(pixel_values=torch.zeros(2, 3, 32, 32))
    assert out.mask.mean().item() == 0.75            # 12 of 16 patches hidden per image

    mask = tube_mask(3, frames=4, spatial=49, ratio=0.9, generator=torch.Generator().manual_seed(0))
    per_slot = mask.view(3, 4, 49)
    assert (per_slot.sum(-1) == int(0.9 * 49)).all()  # 44 of 49 patches hidden in every time slot
    assert (per_slot == per_slot[:, :1]).all()        # tubes: the same patches in every frame


def test_video_mae_reconstruction_loss_with_tube_masking_is_finite_and_trains(one_torch_thread):
    cfg = PretrainConfig(model="video-mae", image_size=32, num_frames=4, norm_pix_loss=False)
    kind = create_mae_kind("video-mae")
    with torch.random.fork_rng():   # a fixed start without seeding the process's RNG
        torch.manual_seed(0)
        model = kind.build(cfg)
    # four one-colour clips: a masked patch is predictable only from the clip's visible patches
    colours = torch.randint(0, 256, (4, 1, 1, 1, 3), generator=torch.Generator().manual_seed(1))
    frames = colours.expand(4, 8, 32, 32, 3).to(torch.uint8)   # 8 cached frames → the model's 4
    pixels = frames.float() / 255
    # what the best constant guess (the batch's mean colour) scores: the floor without the encoder
    mean_guess = (pixels - pixels.mean(dim=(0, 1, 2, 3))).pow(2).mean().item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):   # a new tube mask each step, as in pre-training
        loss = kind.loss(model, frames, torch.Generator().manual_seed(step))
        assert torch.isfinite(loss), step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # measured: 0.42 → 0.004 in 60 steps (the mean guess: 0.045)
    assert np.mean(losses[-5:]) < losses[0] / 10
    assert np.mean(losses[-5:]) < mean_guess / 4   # the visible patches are used, not only the mean


def test_one_epoch_through_ray_train_records_the_loss_and_writes_a_checkpoint(runs):
    cfg, first, history, _, _ = runs
    assert [h["epoch"] for h in history] == [1]
    assert np.isfinite(history[0]["loss"]) and history[0]["loss"] > 0
    assert history[0]["clips"] == 12                 # both DDP workers' shards, the broken clip left out
    assert history[0]["images_per_s_per_worker"] > 0
    checkpoints = sorted((first.encoder.parent / "ray" / "pretrain-mae").glob("checkpoint_*"))
    assert checkpoints and (checkpoints[0] / "state.pt").is_file()
    assert (checkpoints[0] / "encoder" / "config.json").is_file()
    assert first.frame_cache["skipped"] == 1
    errors = pd.read_parquet(first.encoder.parent / "frames" / "errors.parquet")
    assert errors["name"].tolist() == ["broken_clip"] and "broken.mp4" in errors["message"].iloc[0]


def test_rerun_with_the_same_out_resumes_at_the_next_epoch(runs):
    _, first, first_history, first_state, second = runs
    assert [h["epoch"] for h in second.history] == [1, 2]
    assert second.history[0] == first_history[0]      # epoch 1 is the first run's, not redone
    assert second.history[1]["resumed_from"] == 1
    assert second.frame_cache["decoded"] == 0          # the frame cache is reused, not re-decoded
    assert (second.encoder / "model.safetensors").read_bytes() != first_state


def test_rerunning_a_finished_run_returns_its_encoder_without_training(runs):
    cfg, _, _, _, second = runs
    again = pretrain_mae(PretrainConfig(**{**cfg.to_dict(), "epochs": 2}))
    assert again.history == second.history and again.frame_cache == {}   # no decode, no Ray Train run
    assert again.spec == second.spec


def test_adapted_encoder_loads_through_hf_image_with_every_patch_visible(runs, tiny_mae):
    _, _, _, _, second = runs
    assert second.spec == f"hf-image:{second.encoder}"
    encoder = create_encoder(second.spec, pooling="last")
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 48, 48, 3), dtype=np.uint8)
    features = encoder.encode(list(frames))
    assert features.shape == (2, TINY["hidden_size"]) and np.isfinite(features).all()
    # mask_ratio 0 at inference: the tower sees all 16 patches (+ CLS), not a random quarter
    tower = transformers.AutoModel.from_pretrained(str(second.encoder), local_files_only=True)
    assert tower.config.mask_ratio == 0.0
    assert tower(pixel_values=torch.zeros(1, 3, 32, 32)).last_hidden_state.shape[1] == 17
    # pre-training changed the encoder: its features are not the initial checkpoint's
    kind = create_mae_kind("image-mae")
    before = kind.export(kind.build(PretrainConfig(init=str(tiny_mae))), second.encoder.parent / "before")
    initial = create_encoder(kind.encoder_spec(before), pooling="last").encode(list(frames))
    assert np.abs(features - initial).max() > 1e-4


def test_a_frame_cache_made_with_other_decoding_settings_is_refused(tmp_path):
    from mer_ray.adapt.frames import FrameCache, FrameSettings

    FrameCache(tmp_path / "frames", FrameSettings(num_frames=16, side=64))
    with pytest.raises(ValueError, match="frame cache .*frames.* another --frame-cache folder"):
        FrameCache(tmp_path / "frames", FrameSettings(num_frames=16, side=224))


def test_an_init_folder_without_a_saved_model_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json.*huggingface-cli download facebook/vit-mae-base"):
        create_mae_kind("image-mae").build(PretrainConfig(init=str(tmp_path)))


def test_resuming_an_out_folder_with_another_model_is_refused_before_any_work(tmp_path):
    first = PretrainConfig(corpus="corpus/", out=str(tmp_path), model="image-mae")
    (tmp_path / "config.yaml").write_text(first.dumps())
    with pytest.raises(ValueError, match=r"other settings \(model: 'image-mae' → 'video-mae'\).*new --out"):
        pretrain_mae(PretrainConfig(**{**first.to_dict(), "model": "video-mae", "epochs": 9}))
