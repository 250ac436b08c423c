"""The job entry points, inside the package so that an installed `mer-ray` (a wheel on a cluster
node, `pip install .`) runs them; `jobs/*.py` are thin wrappers for `python jobs/...` and
`ray job submit -- python jobs/...`.

Each job is a module with `main(argv) -> int`, registered under its command name:

    @JOBS.register("mine", summary="cyclic pseudo-label mining, end to end", script="cyclic_mining.py")
    def main(argv=None) -> int: ...

Job modules import Ray, torch and the heavy stages inside `main`, so `mer-ray --help` and
`mer-ray validate` stay fast. Options every job shares: `add_common`.
"""
from __future__ import annotations

import argparse
import importlib

from mer_ray.registry import Registry

JOBS: Registry = Registry("job")
MODULES = ("demo_corpus", "denoise", "extract", "faces", "mine", "noisy_corpus", "predict", "pretrain_mae",
           "tune")


def load_all() -> Registry:
    """Import every job module (each registers itself)."""
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return JOBS


def add_common(p: argparse.ArgumentParser, *, corpus: bool = True) -> None:
    """--verbose and --plugin on every job; --strict on the ones that read a corpus."""
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's own logs (workers' output, Ray Data / Ray Train INFO lines) and tracebacks")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import this module (a name or a .py file) first, in the driver and in every actor "
                        "and worker: it registers your encoders, fusions or policies (repeat)")
    if corpus:
        p.add_argument("--strict", action="store_true",
                       help="refuse a corpus with bad rows (unknown label, valence out of range, duplicate "
                            "name, labeled video without a label row) instead of leaving them out")


def add_stream_options(p: argparse.ArgumentParser) -> None:
    """The feature sources of a job that extracts or mines (mer_ray.features.sources)."""
    p.add_argument("--stream", action="append", metavar="NAME=SPEC",
                   help="a stream and its encoder spec, or npy:FOLDER for a MERTools <model>-UTT folder "
                        "(repeat); replaces the config's streams")
    p.add_argument("--features", metavar="DIR",
                   help="a MERTools features/ folder: each <model>-UTT subfolder becomes stream <model>")
    p.add_argument("--modality", action="append", metavar="NAME=MODALITY",
                   help="audio | video | text of an npy stream whose folder name does not say it (repeat)")


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The job's arguments, with its `--plugin` modules loaded (before any config names their entries)."""
    args = p.parse_args(argv)
    if getattr(args, "plugin", None):
        from mer_ray.plugins import load_plugins

        load_plugins(args.plugin)
    return args


def formatter() -> dict:
    return dict(formatter_class=argparse.RawDescriptionHelpFormatter)
