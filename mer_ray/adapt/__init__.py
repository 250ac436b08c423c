"""Self-supervised encoder adaptation on the unlabeled pool (seed 000's expMAE).

    from mer_ray.adapt import PretrainConfig, pretrain_mae
    result = pretrain_mae(PretrainConfig(corpus="/data/MER2024", out="runs/expmae", epochs=50))
    result.spec   # "hf-image:/abs/runs/expmae/encoder": extract features with it like any encoder
"""
from .config import PretrainConfig
from .mae import MAE_KINDS, create_mae_kind
from .pretrain import PretrainResult, pretrain_mae

__all__ = ["MAE_KINDS", "PretrainConfig", "PretrainResult", "create_mae_kind", "pretrain_mae"]
