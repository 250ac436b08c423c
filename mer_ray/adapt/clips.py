"""Which clips MAE pre-training sees: never the held-out test clips, unless asked in so many words.

The MAE sees no label, but an encoder adapted on the very clips it is then scored on is scored
on data it has fitted (transductive): the demo keeps its test clips in the "unlabeled" pool, and
a benchmark that pre-trained on that pool measured its gain on clips the encoder had seen. So
held-out clips are left out by default: a manifest row with split "test" and every clip the
truth folder scores (`truth/test.csv`, `truth/test-noisy.csv`). `transductive=True` keeps them,
for a run that is reported as transductive, apart from the held-out results.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mer_ray.corpus.truth import read_truth

__all__ = ["held_out_names", "pretrain_clips", "truth_folder"]


def truth_folder(corpus: str | Path, truth: str | Path | None = None) -> Path | None:
    """`truth` when given, else <corpus>/truth (next to a manifest file) when it exists."""
    if truth:
        return Path(truth)
    root = Path(corpus)
    folder = (root.parent if root.is_file() else root) / "truth"
    return folder if folder.is_dir() else None


def held_out_names(manifest: pd.DataFrame, truth: str | Path | None) -> set[str]:
    """Clips scored as held-out test data: split "test" rows and the truth folder's test clips."""
    names = set(manifest.loc[manifest["split"] == "test", "name"])
    return names | read_truth(truth).held_out


def pretrain_clips(manifest: pd.DataFrame, split: str, *, truth: str | Path | None = None,
                   transductive: bool = False) -> tuple[pd.DataFrame, int]:
    """(the manifest rows to pre-train on, how many held-out clips were left out).

    `split` "unlabeled": the pool; "all": every clip (the MAE never sees a label). Held-out test
    clips are removed from either unless `transductive`."""
    clips = manifest if split == "all" else manifest[manifest["split"] == "unlabeled"]
    left_out = 0
    if not transductive:
        held = clips["name"].isin(held_out_names(manifest, truth))
        left_out = int(held.sum())
        clips = clips[~held]
    if clips.empty:
        raise ValueError(f"no {split} clips to pre-train on ({left_out} held-out test clips left out); pass "
                         f"--split all to use every clip, or --transductive to adapt on the test clips too "
                         f"(report such a run apart: its encoder has seen the clips it is scored on)")
    return clips, left_out
