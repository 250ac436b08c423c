"""Round state on disk: what makes a killed run resumable and every round auditable.

    <run>/round-<r>/probs.npz          names + every learner's probabilities (and valence) on every clip
    <run>/round-<r>/vote_table.parquet  the vote that fed round r (r >= 1)
    <run>/round-<r>/metrics.json        that round's metrics
    <run>/round-<r>/<learner>.pt        each learner's weights (torch.save of a state_dict)
    <run>/state.json                    {"complete": [0, 1, ...]}

A round is written into `round-<r>.partial/` and renamed when complete; state.json is updated
last, so it only ever names rounds whose files are all there.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


def round_dir(run_dir: Path, r: int, *, partial: bool = False) -> Path:
    return run_dir / (f"round-{r}.partial" if partial else f"round-{r}")


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def complete_rounds(run_dir: Path) -> list[int]:
    """The rounds state.json names as complete (none for a new run)."""
    path = run_dir / "state.json"
    return json.loads(path.read_text())["complete"] if path.exists() else []


def read_rounds(run_dir: Path) -> list[dict]:
    """metrics.json of every complete round, in order."""
    return [json.loads((round_dir(run_dir, r) / "metrics.json").read_text()) for r in complete_rounds(run_dir)]


@dataclass
class MiningState:
    """Mined clips so far (row, pseudo label, learner) and the last round's probabilities."""
    complete: list[int] = field(default_factory=list)
    mined_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mined_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mined_learner: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    probs: np.ndarray | None = None          # [L, N, C] from the last complete round

    @property
    def next_round(self) -> int:
        return self.complete[-1] + 1 if self.complete else 0

    def add(self, rows: np.ndarray, labels: np.ndarray, learner: np.ndarray) -> None:
        self.mined_rows = np.concatenate([self.mined_rows, rows])
        self.mined_labels = np.concatenate([self.mined_labels, labels])
        self.mined_learner = np.concatenate([self.mined_learner, learner])

    def training_set(self, learner: int, labeled_rows: np.ndarray, labels: np.ndarray):
        """D_l ∪ D_w,k: the labeled training rows plus this learner's share of the mined clips."""
        mine = self.mined_learner == learner
        rows = np.concatenate([labeled_rows, self.mined_rows[mine]])
        return rows, np.concatenate([labels[labeled_rows], self.mined_labels[mine]])

    @classmethod
    def load(cls, run_dir: Path, names: np.ndarray) -> "MiningState":
        state = cls()
        state.complete = complete_rounds(run_dir)
        position = {n: i for i, n in enumerate(names)}
        for r in state.complete:
            table_path = round_dir(run_dir, r) / "vote_table.parquet"
            if r == 0 or not table_path.exists():
                continue
            votes = pd.read_parquet(table_path)
            votes = votes[votes["selected"]]
            state.add(np.array([position[n] for n in votes["name"]], np.int64),
                      votes["agreed"].to_numpy(np.int64), votes["assigned"].to_numpy(np.int64))
        if state.complete:
            saved = np.load(round_dir(run_dir, state.complete[-1]) / "probs.npz", allow_pickle=False)
            if not np.array_equal(saved["names"], names.astype(str)):
                raise RuntimeError(f"{run_dir}: the features changed since this run started; "
                                   f"use a new --out folder or the original feature store")
            state.probs = saved["probs"]
        return state

    def commit_round(self, run_dir: Path, r: int) -> None:
        """Rename round-<r>.partial → round-<r>, then record it in state.json."""
        final = round_dir(run_dir, r)
        if final.exists():  # left by a run killed between the rename and state.json
            shutil.rmtree(final)
        os.replace(round_dir(run_dir, r, partial=True), final)
        self.complete.append(r)
        write_json(run_dir / "state.json", {"complete": self.complete})
