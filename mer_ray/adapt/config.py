"""`PretrainConfig`: continued masked-autoencoder pre-training on a corpus's unlabeled clips.

Frozen and typed like `mer_ray.config`; the defaults adapt a tiny image MAE on the demo corpus.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["PretrainConfig", "SPLITS"]

# "unlabeled": the pool only (seed 000 adapts on the unlabeled MER videos); "all": every clip of
# the manifest — the MAE never sees a label, so adding the labeled clips leaks nothing. Either
# leaves the held-out test clips out unless `transductive`.
SPLITS = ("unlabeled", "all")


@dataclass(frozen=True)
class PretrainConfig:
    corpus: str | None = None     # None: the generated demo corpus
    out: str = "runs/mae"         # encoder/, history.json, config.yaml, frames/ (cache), ray/ (resume)
    model: str = "image-mae"      # "image-mae" (ViTMAE on single frames) | "video-mae" (VideoMAE, 16-frame clips)
    size: str = "tiny"            # architecture preset in mer_ray.adapt.mae.SIZES ("tiny", "base")
    init: str | None = None       # a local HF MAE folder to continue from; None: random init of `size`
    image_size: int | None = None  # None: the preset's (or the init checkpoint's)
    mask_ratio: float | None = None  # None: the papers' 0.75 (image MAE) / 0.9 (VideoMAE tube masking)
    norm_pix_loss: bool = True    # MAE: reconstruct per-patch normalised pixels
    split: str = "unlabeled"      # which clips to adapt on, see SPLITS
    # held-out test clips (split "test", truth/test*.csv) are never pre-trained on unless
    # `transductive` (mer_ray.adapt.clips): such a run is reported apart
    transductive: bool = False
    truth: str | None = None      # the truth folder naming the test clips; None: <corpus>/truth
    num_frames: int = 16          # frames decoded per clip (seed 000: 16)
    crop: str = "center"          # "center" | "none", as in feature extraction
    face_boxes: str | None = None  # CSV name,left,top,width,height: face-cropped frames (seed 000)
    frame_cache: str | None = None  # decoded-frame Parquet cache; None: <out>/frames
    # keep the decoded frames in Ray's object store across epochs instead of re-reading the
    # Parquet cache each epoch; None: when they fill at most a third of the object store
    frames_in_memory: bool | None = None
    epochs: int = 5
    batch_size: int = 64          # clips per step per worker
    lr: float = 1e-3              # AdamW peak learning rate (cosine decay after a linear warm-up)
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    workers: int = 1              # Ray Train data-parallel workers (DDP)
    cpus_per_worker: float = 1.0
    use_gpu: bool = False         # one GPU per worker
    torch_threads: int | None = None  # per CPU worker; None: torch's default
    seed: int = 0
    log_every: int = 20           # steps between progress lines (rank 0)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"PretrainConfig.split must be one of {SPLITS}, got {self.split!r}")
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"PretrainConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        for name in ("epochs", "batch_size", "workers", "num_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainConfig.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def dumps(self) -> str:
        return yaml.safe_dump(json.loads(json.dumps(self.to_dict())), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PretrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown PretrainConfig field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)
