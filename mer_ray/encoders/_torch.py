"""What every model-backed encoder shares: local weights only, device, layer pooling, batching.

Weights are read from local folders or files only (`local_files_only=True`): a job on a cluster
must never stall on, or silently depend on, a download. A missing path is an error that says how
to put the weights there.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import LAYER_POOLINGS, Encoder

HOW_TO_GET_WEIGHTS = (
    "weights load from local paths only. On a machine with internet, fetch them once, e.g. "
    "`huggingface-cli download <repo-id> --local-dir {path}` (or `save_pretrained({path!r})` in "
    "Python; for timm, a weights file next to the architecture name: timm:<arch>@/path/weights.pth), "
    "copy the folder to shared storage, and point the spec at it"
)


def local_path(source: str | None, spec: str, *, need_config: bool = True) -> Path:
    """The model folder (or file) a spec points at; a clear error when it is not there."""
    if not source:
        raise ValueError(f"encoder spec {spec!r} names no model path; "
                         + HOW_TO_GET_WEIGHTS.format(path="/models/<name>"))
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"encoder {spec!r}: {path} does not exist; "
                                + HOW_TO_GET_WEIGHTS.format(path=str(path)))
    if need_config and path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"encoder {spec!r}: {path} has no config.json, so it is not a saved "
                                f"model folder; " + HOW_TO_GET_WEIGHTS.format(path=str(path)))
    return path


def frames_to_pixels(frames, *, count: int | None = None, size: tuple[int, int] | None = None,
                     mean=None, std=None, device=None):
    """uint8 frames `[..., T, H, W, 3]` (numpy or torch) → float `[..., count, 3, h, w]`: `count`
    frames sampled uniformly over the T (all when None), scaled to [0, 1], resized to `size`
    (bilinear, antialiased; as they are when None) and normalised by the channel `mean` / `std`
    (not when None). The one place the frame-based encoders and the MAE adaptation prepare pixels."""
    import torch

    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if device is not None:
        x = x.to(device)
    if count is not None and x.shape[-4] != count:
        index = np.linspace(0, x.shape[-4] - 1, count).round().astype(np.int64)
        x = x.index_select(x.ndim - 4, torch.from_numpy(index).to(x.device))
    x = x.movedim(-1, -3).float() / 255.0
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        lead = x.shape[:-3]
        x = torch.nn.functional.interpolate(x.reshape(-1, *x.shape[-3:]), size=tuple(size), mode="bilinear",
                                            antialias=True, align_corners=False).reshape(*lead, 3, *size)
    if mean is not None:
        shape = [1] * (x.ndim - 3) + [3, 1, 1]
        x = (x - torch.tensor(mean, device=x.device).view(shape)) / torch.tensor(std, device=x.device).view(shape)
    return x


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pool_layers(outputs: Any, pooling: str):
    """`[B, T, D]` states from a model output: the last layer, or the mean / sum of the last four.

    "last" is `last_hidden_state` (after the model's final norm where it has one); the last-four
    poolings use the blocks' outputs (the embedding output is never one of them). A model with
    fewer than four blocks uses all of its blocks.
    """
    import torch

    if pooling == "last":
        return outputs.last_hidden_state
    blocks = outputs.hidden_states[1:] if len(outputs.hidden_states) > 1 else outputs.hidden_states
    stacked = torch.stack(tuple(blocks[-4:]))
    return stacked.mean(0) if pooling == "last4-mean" else stacked.sum(0)


def masked_mean(states, mask):
    """Mean over time of `[B, T, D]` states where `mask` `[B, T]` is 1; zeros when nothing is."""
    mask = mask.to(states.dtype).unsqueeze(-1)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TorchEncoder(Encoder):
    """Base of the model families: options every one of them takes."""

    def __init__(self, source: str | None, *, spec: str, pooling: str = "last4-mean",
                 batch_size: int = 16, device: str | None = None, fp16: bool | None = None):
        import torch

        if pooling not in LAYER_POOLINGS:
            raise ValueError(f"encoder {spec!r}: pooling {pooling!r} must be one of {LAYER_POOLINGS}")
        if batch_size < 1:
            raise ValueError(f"encoder {spec!r}: batch_size must be >= 1, got {batch_size}")
        self.spec = spec
        self.source = source
        self.pooling = pooling
        self.batch_size = int(batch_size)
        self.device = device or default_device()
        # Half precision on GPU by default: encoders are inference-only and memory-bound there.
        self.fp16 = self.device.startswith("cuda") if fp16 is None else bool(fp16)
        self._torch = torch

    def _prepare(self, model):
        """Eval mode on the device; called once by each family after loading."""
        return model.to(self.device).eval()

    def _autocast(self):
        torch = self._torch
        if self.fp16 and self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.dim, np.float32)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "source": self.source}
