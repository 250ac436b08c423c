"""The run's rows: which labeled clips the learners fit on, which are held out (dev split,
canaries), which form the pool to mine and which are only ever scored (test, noisy test).

Pure bookkeeping over row indices of the feature table: no features are read here."""
from __future__ import annotations

import numpy as np

from mer_ray.config import RunConfig
from mer_ray.corpus.truth import Truth
from mer_ray.features.table import FeatureTable
from mer_ray.mining.cycle import MiningData
from mer_ray.splits import holdout


def mining_data(cfg: RunConfig, table: FeatureTable, truth: Truth, *,
                noisy_rows: np.ndarray, noisy_source: np.ndarray) -> MiningData:
    """The splits of `table`; `noisy_rows` are MER-NOISE copies of the labeled clips
    `noisy_source` (row of each copy's clean clip)."""
    labeled = np.setdiff1d(table.rows("train"), noisy_rows)
    # with folds every labeled clip is fitted and held out once (seed 003): no dev split
    dev_fraction = 0.0 if cfg.mining.folds >= 2 else cfg.mining.dev_fraction
    train, dev = holdout(table.label, labeled, dev_fraction, cfg.seed)
    # canaries: labeled clips hidden from training and put in the pool, so pseudo-label
    # precision is measured on real labels too, not only on the demo's truth
    train, canaries = holdout(table.label, train, cfg.mining.canary_fraction, cfg.seed + 1)
    # a noisy view trains only beside its own clean clip: the split is by source clip, so the
    # dev split (and the canaries) never see a copy of a clip the learners fit on
    train = np.union1d(train, noisy_rows[np.isin(noisy_source, train)])
    is_test = np.array([n in truth.held_out for n in table.names])   # clean and noisy test: never mined
    unlabeled = table.split != "train"
    test = np.flatnonzero(unlabeled & np.array([n in truth.test for n in table.names]))
    noisy_test = np.flatnonzero(unlabeled & np.array([n in truth.noisy_test for n in table.names]))
    pool_truth = truth.labels(table.names, truth.pool)
    pool_truth[canaries] = table.label[canaries]
    return MiningData(
        table=table, train=train, dev=dev,
        pool=np.union1d(np.flatnonzero(unlabeled & ~is_test), canaries),  # test clips are never mined
        test=test,
        test_labels=truth.labels(table.names[test], truth.test),
        pool_truth=pool_truth,
        canaries=canaries,
        noisy_test=noisy_test,
        noisy_test_labels=truth.labels(table.names[noisy_test], truth.noisy_test),
    )


def data_line(data: MiningData, noisy_rows: np.ndarray, left_out: int) -> str:
    """The console's one line about the splits."""
    views = len(np.intersect1d(data.train, noisy_rows))
    return (f"learners fit on {len(data.train)} labeled clips"
            f"{f' ({len(data.train) - views} + their noisy views)' if views else ''} "
            f"(+{len(data.dev)} dev), pool {len(data.pool)} ({len(data.canaries)} canaries), "
            f"held-out test {len(data.test)}"
            f"{f' + {len(data.noisy_test)} noisy' if len(data.noisy_test) else ''}, left out {left_out}")
