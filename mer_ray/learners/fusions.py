"""Fusion learners: `nn.Module`s that map named feature streams to emotion logits and valence.

Each fusion is one factory registered in `FUSIONS`; `create_learner("fbp", {...})` builds any
of them. The models know nothing of training (no optimiser, no loop); `multitask_loss` is the
objective that `mer_ray.train` minimises for every learner.

Streams are always used in sorted-name order (`learner.stream_names`), whatever the order of
the dict given at construction or at call time. Extra streams in the input are ignored, so a
learner can be fed the full feature dict of a batch and pick its own combination (seed 004's
M1..M4 each use a different feature group).
"""
from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mer_ray.labels import NUM_CLASSES
from mer_ray.registry import Registry

__all__ = [
    "FUSIONS",
    "fusion_options",
    "FusionLearner",
    "LearnerOutput",
    "create_learner",
    "multitask_loss",
]

FUSIONS: Registry[nn.Module] = Registry("fusion")


class LearnerOutput(NamedTuple):
    logits: Tensor  # [B, C], the fused prediction (pre-softmax)
    valence: Tensor | None  # [B], or None when the learner has no valence head
    branch_logits: list[Tensor]  # [B, C] per fusion branch; empty when the fusion has none


class FusionLearner(nn.Module):
    """Shared edge of every fusion: stream bookkeeping, input validation, output heads."""

    def __init__(
        self,
        stream_dims: dict[str, int],
        *,
        hidden: int,
        dropout: float,
        num_classes: int,
        valence_head: bool,
    ):
        super().__init__()
        _check_config(stream_dims, hidden, dropout, num_classes)
        self.stream_names: tuple[str, ...] = tuple(sorted(stream_dims))
        self.stream_dims: dict[str, int] = {n: int(stream_dims[n]) for n in self.stream_names}
        self.num_classes = num_classes
        # Multitask heads over the fused representation (seed 003, eq. 2-3).
        self.emotion_head = nn.Linear(hidden, num_classes)
        self.valence_head = nn.Linear(hidden, 1) if valence_head else None

    def ordered_inputs(self, streams: dict[str, Tensor]) -> list[Tensor]:
        """The learner's streams in `stream_names` order, validated: present, [B, d], finite."""
        inputs: list[Tensor] = []
        batch: int | None = None
        for name in self.stream_names:
            dim = self.stream_dims[name]
            if name not in streams:
                given = ", ".join(sorted(streams)) or "none"
                raise ValueError(
                    f"stream {name!r} (dim {dim}) is missing from the input; given: {given}"
                )
            x = streams[name]
            if x.ndim != 2 or x.shape[1] != dim:
                raise ValueError(
                    f"stream {name!r} must have shape [batch, {dim}], got {tuple(x.shape)}"
                )
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                raise ValueError(
                    f"stream {name!r} has {x.shape[0]} rows "
                    f"but {self.stream_names[0]!r} has {batch}"
                )
            # One host sync per stream on GPU; worth it to name the stream instead of NaN losses.
            if not torch.isfinite(x).all():
                raise ValueError(
                    f"stream {name!r} holds NaN or infinite values; drop or repair those clips"
                )
            inputs.append(x)
        return inputs

    def heads(self, fused: Tensor, branch_logits: list[Tensor] | None = None) -> LearnerOutput:
        valence = self.valence_head(fused).squeeze(-1) if self.valence_head is not None else None
        return LearnerOutput(self.emotion_head(fused), valence, branch_logits or [])


def _check_config(
    stream_dims: dict[str, int], hidden: int, dropout: float, num_classes: int
) -> None:
    if not stream_dims:
        raise ValueError("stream_dims is empty: a learner needs at least one feature stream")
    for name, dim in stream_dims.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"stream names must be non-empty strings, got {name!r}")
        if int(dim) != dim or dim < 1:
            raise ValueError(f"stream {name!r} has dim {dim!r}; expected a positive integer")
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")


def _projection(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    # h^m = ReLU(f^m W + b) (seed 003, eq. 1), with the baseline's dropout 0.3 (seed 003, 3.6).
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))


class AttentionFusion(FusionLearner):
    """Seed 003 baseline: per-stream hidden vectors weighted by softmax attention scores.

    alpha = softmax(h^T W_alpha + b_alpha) over streams, z = sum_m alpha_m h^m (seed 003, eq. 4-5).
    """

    def __init__(self, stream_dims: dict[str, int], *, hidden: int, dropout: float,
                 num_classes: int, valence_head: bool):
        super().__init__(stream_dims, hidden=hidden, dropout=dropout,
                         num_classes=num_classes, valence_head=valence_head)
        self.projections = nn.ModuleList(
            _projection(self.stream_dims[n], hidden, dropout) for n in self.stream_names
        )
        # W_alpha in R^{h x 1} shared by the streams, b_alpha one bias per stream (seed 003, eq. 5).
        self.score = nn.Linear(hidden, 1, bias=False)
        self.score_bias = nn.Parameter(torch.zeros(len(self.stream_names)))

    def forward(self, streams: dict[str, Tensor]) -> LearnerOutput:
        inputs = self.ordered_inputs(streams)
        hidden = torch.stack([proj(x) for proj, x in zip(self.projections, inputs)], dim=1)
        alpha = torch.softmax(self.score(hidden).squeeze(-1) + self.score_bias, dim=1)  # [B, M]
        fused = torch.einsum("bm,bmh->bh", alpha, hidden)
        return self.heads(fused)


class CrossAttentionFusion(FusionLearner):
    """Seed 004: cross-modal multi-head attention over stream tokens, one head per branch.

    Each stream is projected to a token (seed 004, eq. 4); every token attends over all stream
    tokens, so each branch is its stream re-weighted by what the others carry. Each branch makes
    its own prediction (seed 004, eq. 5-6: "each fusion branch yields its independent
    prediction"), returned in `branch_logits` for auxiliary loss terms; the fused prediction
    comes from the mean of the attended tokens.
    """

    def __init__(self, stream_dims: dict[str, int], *, hidden: int, dropout: float,
                 num_classes: int, valence_head: bool, num_heads: int = 4):
        super().__init__(stream_dims, hidden=hidden, dropout=dropout,
                         num_classes=num_classes, valence_head=valence_head)
        if num_heads < 1 or hidden % num_heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by num_heads ({num_heads})")
        self.projections = nn.ModuleList(
            _projection(self.stream_dims[n], hidden, dropout) for n in self.stream_names
        )
        self.attention = nn.MultiheadAttention(hidden, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.branch_heads = nn.ModuleList(nn.Linear(hidden, num_classes) for _ in self.stream_names)

    def forward(self, streams: dict[str, Tensor]) -> LearnerOutput:
        inputs = self.ordered_inputs(streams)
        tokens = torch.stack([proj(x) for proj, x in zip(self.projections, inputs)], dim=1)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        # Residual + norm keeps each branch anchored to its own stream.
        branches = self.norm(tokens + self.dropout(attended))  # [B, M, h]
        branch_logits = [head(branches[:, m]) for m, head in enumerate(self.branch_heads)]
        return self.heads(branches.mean(dim=1), branch_logits)


class FactorizedBilinearFusion(FusionLearner):
    """Seed 000: factorized bilinear pooling (FBP / MFB) of stream pairs, then attention.

    For each pair (x, y) of projected streams: z = SumPool_k(U^T x * V^T y), then power
    normalisation sign(z) sqrt|z| and l2 normalisation (MFB, Yu et al. 2017, which seed 000
    cites as [19]). The pair outputs are fused with the seed 003 attention module, as seed 000
    does ("we then follow the official approach of training with the attention module").
    A single stream is paired with itself, so the learner still works with one stream.
    """

    def __init__(self, stream_dims: dict[str, int], *, hidden: int, dropout: float,
                 num_classes: int, valence_head: bool, rank: int = 4):
        super().__init__(stream_dims, hidden=hidden, dropout=dropout,
                         num_classes=num_classes, valence_head=valence_head)
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.rank = rank
        self.hidden = hidden
        self.projections = nn.ModuleList(
            _projection(self.stream_dims[n], hidden, dropout) for n in self.stream_names
        )
        count = len(self.stream_names)
        self.pairs: list[tuple[int, int]] = (
            list(itertools.combinations(range(count), 2)) if count > 1 else [(0, 0)]
        )
        self.factor_u = nn.ModuleList(nn.Linear(hidden, hidden * rank) for _ in self.pairs)
        self.factor_v = nn.ModuleList(nn.Linear(hidden, hidden * rank) for _ in self.pairs)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(hidden, 1, bias=False)
        self.score_bias = nn.Parameter(torch.zeros(len(self.pairs)))

    def _pool(self, x: Tensor, y: Tensor, u: nn.Linear, v: nn.Linear) -> Tensor:
        joint = self.dropout(u(x) * v(y))  # [B, h * k]
        z = joint.view(-1, self.hidden, self.rank).sum(dim=2)  # sum pooling over the k factors
        # sign(z) sqrt|z|; the epsilon keeps the gradient finite at z = 0 (sign(0) = 0 there).
        z = torch.sign(z) * torch.sqrt(z.abs() + 1e-8)
        return F.normalize(z, dim=1)

    def forward(self, streams: dict[str, Tensor]) -> LearnerOutput:
        inputs = self.ordered_inputs(streams)
        hidden = [proj(x) for proj, x in zip(self.projections, inputs)]
        pooled = torch.stack(
            [
                self._pool(hidden[i], hidden[j], u, v)
                for (i, j), u, v in zip(self.pairs, self.factor_u, self.factor_v)
            ],
            dim=1,
        )  # [B, P, h]
        alpha = torch.softmax(self.score(pooled).squeeze(-1) + self.score_bias, dim=1)
        return self.heads(torch.einsum("bp,bph->bh", alpha, pooled))


class ConcatMLP(FusionLearner):
    """Early fusion: concatenate every stream, then a two-layer MLP."""

    def __init__(self, stream_dims: dict[str, int], *, hidden: int, dropout: float,
                 num_classes: int, valence_head: bool):
        super().__init__(stream_dims, hidden=hidden, dropout=dropout,
                         num_classes=num_classes, valence_head=valence_head)
        total = sum(self.stream_dims.values())
        self.mlp = nn.Sequential(
            nn.Linear(total, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
        )

    def forward(self, streams: dict[str, Tensor]) -> LearnerOutput:
        return self.heads(self.mlp(torch.cat(self.ordered_inputs(streams), dim=1)))


class LinearFusion(FusionLearner):
    """A (multinomial) logistic regression over the concatenated streams, with input dropout:
    on a few dozen labeled clips per class the strongest plain learner there is, and the
    yardstick the other fusions must beat (a standardised logistic regression on the
    concatenated streams is what a competent user tries first)."""

    def __init__(self, stream_dims: dict[str, int], *, hidden: int, dropout: float,
                 num_classes: int, valence_head: bool):
        super().__init__(stream_dims, hidden=hidden, dropout=dropout,
                         num_classes=num_classes, valence_head=valence_head)
        total = sum(self.stream_dims.values())
        self.dropout = nn.Dropout(dropout)
        # the heads read the concatenated input itself: no hidden layer (`hidden` is unused)
        self.emotion_head = nn.Linear(total, num_classes)
        self.valence_head = nn.Linear(total, 1) if valence_head else None

    def forward(self, streams: dict[str, Tensor]) -> LearnerOutput:
        return self.heads(self.dropout(torch.cat(self.ordered_inputs(streams), dim=1)))


@FUSIONS.register("linear", options={})
def linear(stream_dims: dict[str, int], **kwargs: Any) -> FusionLearner:
    """Logistic regression over the concatenated streams (multitask: + a linear valence head)."""
    return LinearFusion(stream_dims, **kwargs)


@FUSIONS.register("attention", options={})
def attention(stream_dims: dict[str, int], **kwargs: Any) -> FusionLearner:
    """Seed 003 attention fusion."""
    return AttentionFusion(stream_dims, **kwargs)


@FUSIONS.register("cross-attention", options={"num_heads": 4})
def cross_attention(stream_dims: dict[str, int], **kwargs: Any) -> FusionLearner:
    """Seed 004 cross-modal attention with per-branch predictions; option `num_heads`."""
    return CrossAttentionFusion(stream_dims, **kwargs)


@FUSIONS.register("fbp", options={"rank": 4})
def fbp(stream_dims: dict[str, int], **kwargs: Any) -> FusionLearner:
    """Seed 000 factorized bilinear pooling with attention; option `rank` (k factors)."""
    return FactorizedBilinearFusion(stream_dims, **kwargs)


@FUSIONS.register("concat-mlp", options={})
def concat_mlp(stream_dims: dict[str, int], **kwargs: Any) -> FusionLearner:
    """Concatenate the streams, then an MLP."""
    return ConcatMLP(stream_dims, **kwargs)


def fusion_options(fusion: str, given: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The options of fusion `fusion`: its registered defaults (`@FUSIONS.register(name,
    options={...})`) updated with `given`; an option the fusion does not take is refused with
    the ones it does, before any model is built."""
    defaults = FUSIONS.meta(fusion).get("options", {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ValueError(f"{where}fusion {fusion!r} takes no option {', '.join(map(repr, unknown))} "
                         f"(its options: {known})")
    return {**defaults, **given}


def create_learner(
    fusion: str,
    stream_dims: dict[str, int],
    *,
    hidden: int = 128,
    dropout: float = 0.3,
    num_classes: int = NUM_CLASSES,
    valence_head: bool = True,
    **options: Any,
) -> FusionLearner:
    """Build the fusion learner registered as `fusion` over `stream_dims` ({name: dim}).

    `options` go to that fusion only: the ones it registered (`num_heads` for cross-attention,
    `rank` for fbp), defaults filled in; any other is refused.
    `learner.config` holds the arguments, so `create_learner(**learner.config)` rebuilds it
    (e.g. before loading a checkpoint's state dict).
    """
    options = fusion_options(fusion, options)
    learner = FUSIONS.create(
        fusion, stream_dims=dict(stream_dims), hidden=hidden, dropout=dropout,
        num_classes=num_classes, valence_head=valence_head, **options,
    )
    learner.config = {
        "fusion": fusion, "stream_dims": dict(learner.stream_dims), "hidden": hidden,
        "dropout": dropout, "num_classes": num_classes, "valence_head": valence_head, **options,
    }
    return learner


def multitask_loss(
    out: LearnerOutput,
    labels: Tensor,
    valence: Tensor | None = None,
    valence_mask: Tensor | None = None,
    *,
    class_weights: Tensor | None = None,
    sample_weight: Tensor | None = None,
    branch_weight: float = 0.5,
) -> Tensor:
    """L = L_e + L_v (seed 003, eq. 6-8), plus branch_weight * mean branch CE (seed 004).

    L_e is cross-entropy of the fused logits; each fusion branch's own prediction adds an
    auxiliary CE term (mean over branches) so every branch learns to predict on its own.
    L_v is MSE over the rows whose valence is known: finite in `valence` and, when given,
    True in `valence_mask` (bool [B]). Rows without valence (pseudo-labelled clips, MER 2024)
    contribute nothing; a batch with none gives L_v = 0.
    `sample_weight` [B] weighs each row's classification terms (pseudo-labeled clips may count
    less than labeled ones); `class_weights` [C] weighs each class (a class-weighted loss).
    """
    def ce(logits: Tensor) -> Tensor:
        if sample_weight is None:
            return F.cross_entropy(logits, labels, weight=class_weights)
        per_row = F.cross_entropy(logits, labels, weight=class_weights, reduction="none")
        norm = sample_weight if class_weights is None else sample_weight * class_weights[labels]
        return (per_row * sample_weight).sum() / norm.sum().clamp_min(1e-12)

    loss = ce(out.logits)
    if out.branch_logits and branch_weight:
        branch = torch.stack([ce(b) for b in out.branch_logits])
        loss = loss + branch_weight * branch.mean()
    if valence is None:
        return loss
    if out.valence is None:
        raise ValueError("valence targets given but the learner has no valence head")
    valence = valence.to(out.valence.dtype)
    known = torch.isfinite(valence)
    if valence_mask is not None:
        known = known & valence_mask.bool()
    # Masked mean without boolean indexing, so there is no host sync on GPU.
    target = torch.where(known, valence, torch.zeros_like(valence))
    squared = (out.valence - target) ** 2 * known
    return loss + squared.sum() / known.sum().clamp(min=1)
