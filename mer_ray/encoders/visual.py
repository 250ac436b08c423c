"""Visual encoders over a clip's sampled frames (uint8 `[T, H, W, 3]`, 16 by default).

- `timm:` / `hf-image:` run an image model on every frame and average the frame vectors;
- `grid:` (seed 004, Figure 2b: EmotionViT's "multi" input) stitches `grid x grid` consecutive
  sampled frames into one image and averages over those images (16 frames, 2x2 → 4 images);
- `videomae:` runs VideoMAE once over the clip's frames resampled to its `num_frames` (seed 000).
Resizing and normalisation run in torch on the encoder's device, so the decode stage only ships
the frames it sampled (crop / face box included, see `mer_ray.corpus.media`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._torch import TorchEncoder, frames_to_pixels, local_path, pool_layers, read_json

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


def _side(size: Any) -> int:
    """An image size from a config (int, [H, W] or {"height": ..}) as one square side."""
    if isinstance(size, dict):
        size = size.get("shortest_edge") or size.get("height")
    if isinstance(size, (list, tuple)):
        size = size[-1]
    return int(size)


class FrameEncoder(TorchEncoder):
    """Per-frame image model, averaged over frames; `grid > 1` feeds stitched frame grids instead.

    Subclasses set `side`, `mean`, `std`, `dim` and implement `_embed(images [N, 3, S, S]) → [N, dim]`.
    """

    modality = "video"

    def __init__(self, source: str | None, *, spec: str, grid: int = 1, batch_size: int = 64,
                 **options: Any):
        super().__init__(source, spec=spec, batch_size=batch_size, **options)
        if grid < 1:
            raise ValueError(f"encoder {spec!r}: grid must be >= 1, got {grid}")
        self.grid = int(grid)

    def encode(self, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        torch = self._torch
        images, owner = [], []
        for index, frames in enumerate(inputs):
            if frames is None or len(frames) == 0:
                continue
            clip_images = self._images(frames)
            images.append(clip_images)
            owner += [index] * len(clip_images)
        rows = np.zeros((len(inputs), self.dim), np.float64)
        if images:
            stacked = torch.cat(images)
            owner_ids = np.asarray(owner)
            vectors = []
            with torch.inference_mode(), self._autocast():
                for start in range(0, len(stacked), self.batch_size):
                    vectors.append(self._embed(stacked[start : start + self.batch_size]).float().cpu().numpy())
            vectors = np.concatenate(vectors)
            for index in np.unique(owner_ids):
                rows[index] = vectors[owner_ids == index].mean(0)
        return self._stack(list(rows.astype(np.float32)))

    def _images(self, frames: np.ndarray):
        """Frames → normalised model inputs `[N, 3, S, S]` on the device (N frames or grids)."""
        torch = self._torch
        if self.grid == 1:
            return frames_to_pixels(frames, size=(self.side, self.side), mean=self.mean, std=self.std,
                                    device=self.device)
        else:
            stack = frames_to_pixels(frames, device=self.device)          # [T, 3, H, W]
            g = self.grid
            per = g * g
            count = max(1, len(stack) // per)
            picks = np.linspace(0, len(stack) - 1, count * per).round().astype(np.int64)
            tile = max(1, self.side // g)
            tiles = self._resize(stack[torch.from_numpy(picks).to(self.device)], tile)  # [count*per, 3, t, t]
            tiles = tiles.reshape(count, g, g, 3, tile, tile).permute(0, 3, 1, 4, 2, 5)
            images = tiles.reshape(count, 3, g * tile, g * tile)
            if g * tile != self.side:
                images = self._resize(images, self.side)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (images - mean) / std   # grids: normalised once stitched

    def _resize(self, images, side: int):
        if images.shape[-2:] == (side, side):
            return images
        return self._torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear",
                                                     antialias=True, align_corners=False)

    def _embed(self, images):  # pragma: no cover - abstract
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {**super().info(), "grid": self.grid, "input_size": self.side}


class TimmImage(FrameEncoder):
    """`timm:/folder` (timm's saved config.json + weights) or `timm:<arch>@/path/weights.{pth,safetensors}`.

    "last" is the model's own pooled embedding (class token or average, its pre-logits); the
    last-four poolings average the tokens of each of the last four blocks.
    """

    def __init__(self, source: str | None = None, *, spec: str = "timm", **options: Any):
        super().__init__(source, spec=spec, **options)
        import timm

        arch, at, weights = (source or "").partition("@")
        if at:
            weights_path = local_path(weights, spec, need_config=False)
            if weights_path.is_dir():
                raise ValueError(f"encoder {spec!r}: after '@' give a weights file, not a folder "
                                 f"(use timm:{weights_path} for a saved timm folder)")
            model = timm.create_model(arch, pretrained=True, num_classes=0,
                                      pretrained_cfg_overlay=dict(file=str(weights_path)))
        else:
            folder = local_path(source, spec)
            if not folder.is_dir():
                raise ValueError(f"encoder {spec!r}: {folder} is a file; name the architecture too: "
                                 f"timm:<arch>@{folder}")
            model = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0)
        if self.pooling != "last" and not hasattr(model, "blocks"):
            raise ValueError(f"encoder {spec!r}: pooling {self.pooling} needs a transformer whose blocks "
                             f"share one width (ViT, DeiT, EVA ...); use ?pooling=last for {arch or 'this model'}")
        config = model.pretrained_cfg
        self.side = _side(config.get("input_size", (3, 224, 224)))
        self.mean = tuple(config.get("mean", IMAGENET_MEAN))
        self.std = tuple(config.get("std", IMAGENET_STD))
        self.dim = model.num_features
        self.model = self._prepare(model)

    def _embed(self, images):
        if self.pooling == "last":
            return self.model(images)
        # feature_info lists the blocks (ViT) or stages (CNNs) forward_intermediates can return
        last = min(4, len(getattr(self.model, "feature_info", None) or [None] * 4))
        layers = self.model.forward_intermediates(images, indices=last, intermediates_only=True)
        pooled = [layer.mean((2, 3)) if layer.ndim == 4 else layer.mean(1) for layer in layers]
        stacked = self._torch.stack(pooled)
        return stacked.mean(0) if self.pooling == "last4-mean" else stacked.sum(0)


class HFImage(FrameEncoder):
    """`hf-image:/folder` — a Hugging Face image tower (ViT, CLIP vision, DINOv2, MAE encoder ...):
    the mean of its token states. A full CLIP checkpoint uses its vision tower."""

    def __init__(self, source: str | None = None, *, spec: str = "hf-image", **options: Any):
        super().__init__(source, spec=spec, **options)
        from transformers import AutoModel

        path = local_path(source, spec)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        config = model.config
        if hasattr(model, "vision_model"):   # CLIP / SigLIP: only the image tower
            model, config = model.vision_model, config.vision_config
        self.side = _side(config.image_size)
        self.mean, self.std = _normalisation(path, config.model_type)
        self.dim = config.hidden_size
        # An MAE encoder (ViTMAEModel) masks and shuffles patches on every forward: features need
        # all of them (mask ratio 0, whatever the checkpoint says) in a fixed order (the identity
        # "noise"), or the same clip gives other features on every call.
        self.is_mae = config.model_type == "vit_mae"
        if self.is_mae:
            model.config.mask_ratio = 0.0
        self.model = self._prepare(model)

    def _embed(self, images):
        extra = {}
        if self.is_mae:
            patches = (self.side // _side(self.model.config.patch_size)) ** 2
            extra["noise"] = self._torch.arange(patches, device=images.device, dtype=images.dtype).expand(len(images), -1)
        outputs = self.model(pixel_values=images, output_hidden_states=self.pooling != "last", **extra)
        return pool_layers(outputs, self.pooling).mean(1)


class VideoMAE(TorchEncoder):
    """`videomae:/folder` — VideoMAE over the clip's frames resampled to the model's `num_frames`
    (16), mean of the token states. options: pooling, batch_size (clips per forward), device, fp16."""

    modality = "video"

    def __init__(self, source: str | None = None, *, spec: str = "videomae", batch_size: int = 4,
                 **options: Any):
        super().__init__(source, spec=spec, batch_size=batch_size, **options)
        from transformers import VideoMAEModel

        path = local_path(source, spec)
        model = VideoMAEModel.from_pretrained(str(path), local_files_only=True)
        self.num_frames = model.config.num_frames
        self.side = _side(model.config.image_size)
        self.mean, self.std = _normalisation(path, "videomae")
        self.dim = model.config.hidden_size
        self.model = self._prepare(model)

    def encode(self, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        torch = self._torch
        rows = np.zeros((len(inputs), self.dim), np.float32)
        present = [i for i, frames in enumerate(inputs) if frames is not None and len(frames)]
        for start in range(0, len(present), self.batch_size):
            picked = present[start : start + self.batch_size]
            pixels = torch.stack([frames_to_pixels(inputs[i], count=self.num_frames, size=(self.side, self.side),
                                                   mean=self.mean, std=self.std, device=self.device)
                                  for i in picked])                        # [B, T, 3, S, S]
            with torch.inference_mode(), self._autocast():
                outputs = self.model(pixel_values=pixels, output_hidden_states=self.pooling != "last")
                rows[picked] = pool_layers(outputs, self.pooling).float().mean(1).cpu().numpy()
        return self._stack(list(rows))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "num_frames": self.num_frames, "input_size": self.side}


def _normalisation(path: Path, model_type: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean / std from the folder's preprocessor_config.json, else the family's usual values."""
    processor = read_json(path / "preprocessor_config.json")
    if "image_mean" in processor and "image_std" in processor:
        return tuple(processor["image_mean"]), tuple(processor["image_std"])
    if model_type.startswith("clip"):
        return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    if model_type == "videomae":
        return IMAGENET_MEAN, IMAGENET_STD
    return HALF, HALF
