"""Round state on disk: what makes a killed run resumable and every round auditable.

    <run>/round-<r>/probs.npz          names, every learner's fold-averaged probabilities (and
                                       valence) on every clip, each split's own probabilities
                                       (`split_probs`) and the ensemble's held-out labels (`oof_pred`)
    <run>/round-<r>/vote_table.parquet  the vote that fed round r (r >= 1), one row per (split, clip)
    <run>/round-<r>/metrics.json        that round's metrics (incl. whether it was adopted)
    <run>/round-<r>/<learner>.pt        each learner's weights (torch.save of a state_dict)
    <run>/state.json                    {"complete": [0, 1, ...], "stopped": false}

A round is written into `round-<r>.partial/` and renamed when complete; state.json is updated
last, so it only ever names rounds whose files are all there.

Each *split* of the labeled clips (one per CV fold, or the one dev split) keeps its own mined
set: split k's pseudo-labels come from split k's models alone, which never saw split k's
held-out clips, so the out-of-fold score of a later round is as honest as round 0's.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mer_ray.features.table import rows_of


def round_dir(run_dir: Path, r: int, *, partial: bool = False) -> Path:
    return run_dir / (f"round-{r}.partial" if partial else f"round-{r}")


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"complete": [], "stopped": False}


def complete_rounds(run_dir: Path) -> list[int]:
    """The rounds state.json names as complete (none for a new run)."""
    return _state(run_dir)["complete"]


def read_rounds(run_dir: Path) -> list[dict]:
    """metrics.json of every complete round, in order."""
    return [json.loads((round_dir(run_dir, r) / "metrics.json").read_text()) for r in complete_rounds(run_dir)]


@dataclass
class Mined:
    """One split's pseudo-labeled clips: row, label, the learner it trains (-1: every learner)."""
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    learner: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def extend(self, other: "Mined") -> "Mined":
        return Mined(np.concatenate([self.rows, other.rows]), np.concatenate([self.labels, other.labels]),
                     np.concatenate([self.learner, other.learner]))

    def of_learner(self, learner: int) -> tuple[np.ndarray, np.ndarray]:
        """D_w,k: the clips learner `learner` trains on (its share, plus clips for everyone)."""
        mine = (self.learner == learner) | (self.learner < 0)
        return self.rows[mine], self.labels[mine]


@dataclass
class MiningState:
    """Mined clips per split so far and the last round's probabilities."""
    n_splits: int = 1
    complete: list[int] = field(default_factory=list)
    stopped: bool = False                    # a round was not adopted: no more rounds
    mined: list[Mined] = field(default_factory=list)
    split_probs: np.ndarray | None = None    # [L, K, N, C] from the last complete round

    def __post_init__(self):
        if not self.mined:
            self.mined = [Mined() for _ in range(self.n_splits)]

    @property
    def next_round(self) -> int:
        return self.complete[-1] + 1 if self.complete else 0

    @property
    def probs(self) -> np.ndarray | None:
        """[L, N, C]: each learner's probabilities, averaged over its split models."""
        return None if self.split_probs is None else self.split_probs.mean(1)

    def set_mined(self, split: int, mined: Mined, *, replace: bool) -> None:
        self.mined[split] = mined if replace else self.mined[split].extend(mined)

    @classmethod
    def load(cls, run_dir: Path, names: np.ndarray, *, n_splits: int, revisit: bool) -> "MiningState":
        saved_state = _state(run_dir)
        state = cls(n_splits=n_splits, complete=list(saved_state["complete"]),
                    stopped=bool(saved_state.get("stopped", False)))
        for r in state.complete:
            table_path = round_dir(run_dir, r) / "vote_table.parquet"
            if r == 0 or not table_path.exists():
                continue
            votes = pd.read_parquet(table_path)
            votes = votes[votes["selected"]]
            for k in range(n_splits):
                part = votes[votes["split"] == k]
                mined = Mined(rows_of(names, part["name"], where=f"the run's features ({table_path})"),
                              part["agreed"].to_numpy(np.int64), part["assigned"].to_numpy(np.int64))
                state.set_mined(k, mined, replace=revisit)
        if state.complete:
            saved = np.load(round_dir(run_dir, state.complete[-1]) / "probs.npz", allow_pickle=False)
            if not np.array_equal(saved["names"], names.astype(str)):
                raise RuntimeError(f"{run_dir}: the features changed since this run started; "
                                   f"use a new --out folder or the original feature store")
            if "split_probs" not in saved.files or saved["split_probs"].shape[1] != n_splits:
                raise RuntimeError(f"{run_dir} was made by another version of mer-ray or with another "
                                   f"mining.folds; use a new --out folder")
            state.split_probs = saved["split_probs"]
        return state

    def commit_round(self, run_dir: Path, r: int) -> None:
        """Rename round-<r>.partial → round-<r>, then record it in state.json."""
        final = round_dir(run_dir, r)
        if final.exists():  # left by a run killed between the rename and state.json
            shutil.rmtree(final)
        os.replace(round_dir(run_dir, r, partial=True), final)
        self.complete.append(r)
        write_json(run_dir / "state.json", {"complete": self.complete, "stopped": self.stopped})
