"""The training loop every learner shares: fit on a set of rows, early-stop on dev WAF, predict.

Plain PyTorch on in-memory feature arrays (the rows are a few thousand feature vectors, so a
learner fits in seconds on one CPU thread). Ray Train decides *where* this runs (see
mer_ray.mining.cycle); nothing here knows about Ray.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from mer_ray.config import LearnerSpec
from mer_ray.features.table import FeatureTable
from mer_ray.learners import create_learner, multitask_loss
from mer_ray.metrics import waf


@dataclass
class FitResult:
    model: torch.nn.Module
    dev_waf: float
    best_epoch: int
    epochs: int


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def _batch(table: FeatureTable, spec: LearnerSpec, rows: np.ndarray, device) -> dict[str, torch.Tensor]:
    return {s: torch.from_numpy(table.streams[s][rows]).to(device) for s in spec.streams}


def build_model(spec: LearnerSpec, table: FeatureTable) -> torch.nn.Module:
    dims = {s: table.dims[s] for s in spec.streams}
    return create_learner(spec.fusion, dims, hidden=spec.hidden, dropout=spec.dropout)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, table: FeatureTable, spec: LearnerSpec,
                  rows: np.ndarray | None = None, *, device="cpu", batch_size: int = 8192) -> np.ndarray:
    """Softmax probabilities [len(rows), C] (all rows when `rows` is None)."""
    rows = np.arange(len(table)) if rows is None else rows
    model.eval()
    out = [torch.softmax(model(_batch(table, spec, rows[i:i + batch_size], device)).logits, -1).cpu()
           for i in range(0, len(rows), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 6), np.float32)


def fit_learner(spec: LearnerSpec, table: FeatureTable, train_rows: np.ndarray, train_labels: np.ndarray,
                dev_rows: np.ndarray, *, seed: int, device="cpu") -> FitResult:
    """Train one learner from scratch on `train_rows` (labels given: true or pseudo).

    Valence is learned only where it is known (labeled clips); pseudo-labeled clips add to the
    classification loss alone. The best epoch by dev WAF is kept (seed 003 early stopping).
    """
    generator = seed_everything(seed)
    model = build_model(spec, table).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    labels = torch.from_numpy(train_labels.astype(np.int64))
    valence = torch.from_numpy(table.valence[train_rows])
    dev_labels = table.label[dev_rows]

    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    epoch = 0
    for epoch in range(1, spec.max_epochs + 1):
        model.train()
        for batch in torch.randperm(len(train_rows), generator=generator).split(spec.batch_size):
            rows = train_rows[batch.numpy()]
            out = model(_batch(table, spec, rows, device))
            v = valence[batch].to(device)
            loss = multitask_loss(out, labels[batch].to(device), v, ~torch.isnan(v))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = waf(dev_labels, predict_proba(model, table, spec, dev_rows, device=device).argmax(1))
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= spec.patience:
            break
    model.load_state_dict(best[2])
    return FitResult(model=model, dev_waf=float(best[0]), best_epoch=best[1], epochs=epoch)
