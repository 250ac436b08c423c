"""Masked-autoencoder models for encoder adaptation (seed 000's expMAE): build, mask, loss, export.

Two kinds, picked by spec string from `MAE_KINDS`:
- `image-mae`: transformers `ViTMAEForPreTraining` on single frames; each step takes one random
  frame of each clip's 16 (seed 000: "in each training epoch, we randomly chose one of them"),
  75% of the patches masked at random (the MAE paper's ratio);
- `video-mae`: `VideoMAEForPreTraining` on the clip's frames with tube masking at 90% (VideoMAE:
  the same spatial patches hidden in every frame, so a patch cannot be copied from its neighbour
  in time).
The models know nothing of Ray or of the data pipeline (`mer_ray.adapt.pretrain` drives them).

`export` writes the encoder alone as a Hugging Face folder that the extraction registry loads by
path like any other model — `hf-image:<folder>` for the image MAE, `videomae:<folder>` for the
video one — so an adapted encoder needs no special case anywhere.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mer_ray.encoders._torch import frames_to_pixels
from mer_ray.registry import Registry

from .config import PretrainConfig

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MAE_KINDS", "SIZES", "ImageMAE", "MAEKind", "VideoMAE", "unwrap",
           "create_mae_kind", "tube_mask"]

# ImageNet statistics: VideoMAEForPreTraining un-normalises its inputs with them to build its
# targets, and the published MAE checkpoints were trained with them.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Architecture presets. "base" is ViT-B/16 with the MAE paper's decoder (512 wide, 8 blocks);
# "tiny" trains in minutes on a CPU (the demo's 64 px frames, 8 px patches).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(image_size=64, patch_size=8, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=256, decoder_hidden_size=64, decoder_num_hidden_layers=2,
                 decoder_num_attention_heads=4, decoder_intermediate_size=128),
    "base": dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, decoder_hidden_size=512, decoder_num_hidden_layers=8,
                 decoder_num_attention_heads=16, decoder_intermediate_size=2048),
}

MAE_KINDS: Registry["MAEKind"] = Registry("MAE model")


def create_mae_kind(name: str) -> "MAEKind":
    return MAE_KINDS.create(name)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (Ray Train's prepare_model wraps it when world > 1)."""
    return getattr(model, "module", model)


def _normalise(images: torch.Tensor, count: int | None = None) -> torch.Tensor:
    """uint8 [..., T, H, W, 3] → float [..., count, 3, H, W], ImageNet-normalised (the encoders'
    own frame preparation, `frames_to_pixels`)."""
    return frames_to_pixels(images, count=count, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _init_path(cfg: PretrainConfig) -> Path:
    path = Path(cfg.init).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"--init {path}: not a saved Hugging Face MAE folder (no config.json); on a machine with "
            f"internet run `huggingface-cli download facebook/vit-mae-base --local-dir {path}` (or "
            f"MCG-NJU/videomae-base for video-mae), copy it here, or drop --init to start from random")
    return path


def tube_mask(batch: int, frames: int, spatial: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """VideoMAE tube masking: bool [batch, frames * spatial], True = hidden; the same
    `int(ratio * spatial)` patch positions are hidden in every temporal slot (sequence order is
    time-major, as VideoMAE's Conv3d patch embedding flattens it)."""
    hidden = int(ratio * spatial)
    order = torch.rand(batch, spatial, generator=generator).argsort(1)
    per_frame = torch.zeros(batch, spatial, dtype=torch.bool)
    per_frame.scatter_(1, order[:, :hidden], True)
    return per_frame.repeat(1, frames)


class MAEKind:
    """What differs between image and video MAE; subclasses fill in every method."""

    name: str
    encoder_family: str            # the registry family that loads `export`'s folder
    default_mask_ratio: float

    def mask_ratio(self, cfg: PretrainConfig) -> float:
        return self.default_mask_ratio if cfg.mask_ratio is None else cfg.mask_ratio

    def architecture(self, cfg: PretrainConfig) -> dict[str, Any]:
        if cfg.size not in SIZES:
            raise ValueError(f"unknown MAE size {cfg.size!r}; known: {sorted(SIZES)}")
        arch = dict(SIZES[cfg.size])
        if cfg.image_size is not None:
            arch["image_size"] = cfg.image_size
        return arch

    def build(self, cfg: PretrainConfig) -> nn.Module:
        """The pre-training model, from `cfg.init` or random-initialised from `cfg.size` with
        `cfg.seed` (so the "before adaptation" encoder can be rebuilt exactly)."""
        raise NotImplementedError

    def image_size(self, model: nn.Module) -> int:
        return int(unwrap(model).config.image_size)

    def loss(self, model: nn.Module, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Reconstruction loss of a batch of clips' frames, uint8 [B, T, S, S, 3] on the model's device."""
        raise NotImplementedError

    def images_per_clip(self, model: nn.Module) -> int:
        raise NotImplementedError

    def export(self, model: nn.Module, folder: str | Path, *, provenance: dict | None = None) -> Path:
        """Save the encoder alone (no decoder) so that `encoder_spec(folder)` loads it."""
        raise NotImplementedError

    def encoder_spec(self, folder: str | Path) -> str:
        return f"{self.encoder_family}:{Path(folder)}"

    def input_size(self, cfg: PretrainConfig) -> int:
        """The frame side the model takes (what the frame cache decodes to), without building it."""
        if cfg.init:
            return int(json.loads((_init_path(cfg) / "config.json").read_text())["image_size"])
        return int(self.architecture(cfg)["image_size"])

    @staticmethod
    def _from(cls_, cfg: PretrainConfig, config: Any, **overrides: Any) -> nn.Module:
        """`cls_(config)` with `cfg.seed`, or `cfg.init` loaded with `overrides` on its config."""
        # transformers initialises weights from torch's global RNG: seeded inside a fork, so the
        # model is the same for a seed and the caller's RNG is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.init:
                return cls_.from_pretrained(str(_init_path(cfg)), local_files_only=True, **overrides)
            return cls_(config)

    @staticmethod
    def _write_extras(folder: Path, side: int, provenance: dict | None) -> None:
        # the encoders read image_mean / image_std from here (mer_ray.encoders.visual._normalisation)
        (folder / "preprocessor_config.json").write_text(json.dumps({
            "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD),
            "size": {"height": side, "width": side}, "do_normalize": True, "do_rescale": True,
            "rescale_factor": 1 / 255}, indent=1))
        if provenance is not None:
            (folder / "adaptation.json").write_text(json.dumps(provenance, indent=1))


@MAE_KINDS.register("image-mae")
class ImageMAE(MAEKind):
    name = "image-mae"
    encoder_family = "hf-image"
    default_mask_ratio = 0.75      # MAE (He et al.), used as is by seed 000

    def build(self, cfg: PretrainConfig) -> nn.Module:
        from transformers import ViTMAEConfig, ViTMAEForPreTraining

        train = dict(mask_ratio=self.mask_ratio(cfg), norm_pix_loss=cfg.norm_pix_loss)
        config = ViTMAEConfig(**self.architecture(cfg), **train)
        # an exported (or published) encoder folder loads too: its decoder starts from random
        return self._from(ViTMAEForPreTraining, cfg, config, **train)

    def images_per_clip(self, model: nn.Module) -> int:
        return 1

    def loss(self, model, frames, generator):
        batch, count = frames.shape[:2]
        # seed 000: one of the clip's 16 frames per step, a different one every epoch
        pick = torch.randint(count, (batch,), generator=generator).to(frames.device)
        images = frames[torch.arange(batch, device=frames.device), pick]
        flip = torch.rand(batch, generator=generator).to(frames.device) < 0.5   # MAE's only other augmentation
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(2), images)
        side = self.image_size(model)
        patches = (side // unwrap(model).config.patch_size) ** 2
        # the masking noise comes from our generator, not the global RNG: seeded and per rank
        noise = torch.rand(batch, patches, generator=generator).to(frames.device)
        return model(pixel_values=_normalise(images), noise=noise).loss

    def export(self, model, folder, *, provenance=None):
        folder = Path(folder)
        encoder = unwrap(model).vit
        encoder.save_pretrained(str(folder))
        # ViTMAEModel masks at config.mask_ratio on every forward, also at inference: the saved
        # encoder must see every patch. (At 0 it still shuffles the token order, which the mean
        # over tokens that hf-image takes does not see.)
        config = copy.deepcopy(encoder.config)
        config.mask_ratio = 0.0
        config.save_pretrained(str(folder))
        self._write_extras(folder, int(config.image_size), provenance)
        return folder


@MAE_KINDS.register("video-mae")
class VideoMAE(MAEKind):
    name = "video-mae"
    encoder_family = "videomae"
    default_mask_ratio = 0.9       # VideoMAE (Tong et al.) tube masking, used by seed 000

    def build(self, cfg: PretrainConfig) -> nn.Module:
        from transformers import VideoMAEConfig, VideoMAEForPreTraining

        config = VideoMAEConfig(**self.architecture(cfg), num_frames=cfg.num_frames, tubelet_size=2,
                                norm_pix_loss=cfg.norm_pix_loss)
        model = self._from(VideoMAEForPreTraining, cfg, config, norm_pix_loss=cfg.norm_pix_loss)
        model.config.mask_ratio = self.mask_ratio(cfg)   # VideoMAE's config has no such field: ours
        return model

    def images_per_clip(self, model: nn.Module) -> int:
        return int(unwrap(model).config.num_frames)

    def loss(self, model, frames, generator):
        config = unwrap(model).config
        batch = frames.shape[0]
        spatial = (config.image_size // config.patch_size) ** 2
        mask = tube_mask(batch, config.num_frames // config.tubelet_size, spatial,
                         config.mask_ratio, generator).to(frames.device)
        # the cache may hold more or fewer frames than the model takes: sampled uniformly
        return model(pixel_values=_normalise(frames, config.num_frames), bool_masked_pos=mask).loss

    def export(self, model, folder, *, provenance=None):
        folder = Path(folder)
        encoder = unwrap(model).videomae      # VideoMAEModel: no masking without bool_masked_pos
        encoder.save_pretrained(str(folder))
        self._write_extras(folder, int(encoder.config.image_size), provenance)
        return folder
