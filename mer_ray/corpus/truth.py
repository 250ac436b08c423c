"""Ground truth kept apart from the corpus: read only to evaluate and to audit pseudo-labels.

A `truth/` folder holds `test.csv` (held-out test clips), optionally `unlabeled.csv` (the true
labels of the unlabeled pool, known for the demo corpus) and `test-noisy.csv` (MER-NOISE: the
corrupted test clips, scored apart from the clean ones, seed 003). Nothing here ever reaches training: the
mining driver uses test names only to hold those clips out of the pool.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mer_ray.corpus.manifest import read_label_file


@dataclass(frozen=True)
class Truth:
    test: dict[str, int] = field(default_factory=dict)        # name → label of held-out test clips
    test_valence: dict[str, float] = field(default_factory=dict)
    pool: dict[str, int] = field(default_factory=dict)        # name → true label of pool clips
    noisy_test: dict[str, int] = field(default_factory=dict)  # name → label of corrupted test clips

    @property
    def held_out(self) -> set[str]:
        """Every clip that is scored and so must never be mined: clean and noisy test."""
        return set(self.test) | set(self.noisy_test)

    def labels(self, names, source: dict[str, int]) -> np.ndarray:
        return np.array([source.get(n, -1) for n in names], dtype=np.int64)


def read_truth(folder: str | Path | None) -> Truth:
    if folder is None or not Path(folder).is_dir():
        return Truth()
    folder = Path(folder)

    def load(csv: Path) -> pd.DataFrame:
        return read_label_file(csv) if csv.exists() else pd.DataFrame(columns=["name", "label", "valence"])

    test, pool, noisy = load(folder / "test.csv"), load(folder / "unlabeled.csv"), load(folder / "test-noisy.csv")
    return Truth(
        test=dict(zip(test["name"], test["label"].astype(int))),
        test_valence={n: float(v) for n, v in zip(test["name"], test["valence"]) if not pd.isna(v)},
        pool=dict(zip(pool["name"], pool["label"].astype(int))),
        noisy_test=dict(zip(noisy["name"], noisy["label"].astype(int))),
    )
