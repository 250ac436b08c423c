"""`mer-ray` console script: the job entry points under one command.

    mer-ray validate CORPUS                     counts per split and class, every problem
    mer-ray extract --corpus CORPUS ...         jobs/extract_features.py
    mer-ray features import-npy FOLDER STORE --stream NAME
    mer-ray features export-npy STORE --stream NAME FOLDER
    mer-ray mine ...                            jobs/cyclic_mining.py
    mer-ray demo-corpus ...                     jobs/make_demo_corpus.py
    mer-ray pretrain-mae ...                    jobs/pretrain_mae.py (MAE adaptation, seed 000)
    mer-ray denoise --corpus C --out D ...      jobs/denoise_audio.py (seed 004's separation + ASR rule)
    mer-ray noisy-corpus --corpus C --out D     jobs/make_noisy_corpus.py (MER-NOISE copy)
    mer-ray faces --corpus C                    jobs/detect_faces.py (face_boxes.parquet, docs/faces.md)
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

JOBS = Path(__file__).resolve().parent.parent / "jobs"
JOB_COMMANDS = {
    "demo-corpus": "make_demo_corpus.py",
    "denoise": "denoise_audio.py",
    "extract": "extract_features.py",
    "faces": "detect_faces.py",
    "mine": "cyclic_mining.py",
    "pretrain-mae": "pretrain_mae.py",
    "noisy-corpus": "make_noisy_corpus.py",
    "tune": "tune_learners.py",
}


def validate(argv: list[str]) -> int:
    from mer_ray.corpus.manifest import validate_corpus

    p = argparse.ArgumentParser(prog="mer-ray validate",
                                description="Check a corpus before any work: counts and every problem. "
                                            "Exit code 1 only when no clip is usable.")
    p.add_argument("corpus", help="MER 2023 / 2024 / 2025 folder or a manifest CSV")
    p.add_argument("--layout", help="mer2023 | mer2024 | csv (default: detected)")
    p.add_argument("--no-probe", action="store_true", help="skip opening every media file")
    p.add_argument("--workers", type=int, default=8, help="threads probing media files")
    args = p.parse_args(argv)
    report = validate_corpus(args.corpus, args.layout, probe=not args.no_probe, workers=args.workers)
    print(report.text())
    if not report.usable:
        print("nothing usable remains: fix the problems above", file=sys.stderr)
        return 1
    return 0


def features(argv: list[str]) -> int:
    from mer_ray.features.npy import export_npy, import_npy
    from mer_ray.features.store import FeatureStore

    p = argparse.ArgumentParser(prog="mer-ray features", description="MERTools features/<model>-UTT/*.npy folders")
    sub = p.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import-npy", help="a MERTools folder → a store stream")
    imp.add_argument("folder", help="features/<model>-UTT folder of <clip name>.npy files")
    imp.add_argument("store", help="feature store folder")
    imp.add_argument("--stream", help="stream name (default: the folder name)")
    imp.add_argument("--frame-mean", action="store_true", help="average [T, dim] frame features")
    exp = sub.add_parser("export-npy", help="a store stream → a MERTools folder")
    exp.add_argument("store", help="feature store folder")
    exp.add_argument("folder", help="output folder, e.g. features/<model>-UTT")
    exp.add_argument("--stream", required=True)
    args = p.parse_args(argv)
    store = FeatureStore(args.store)
    if args.action == "import-npy":
        stream = args.stream or Path(args.folder).name
        count = import_npy(args.folder, store, stream, frame_mean=args.frame_mean)
        print(f"imported {count} clips from {args.folder} into {store.folder(stream)}")
    else:
        count = export_npy(store, args.stream, args.folder)
        print(f"exported {count} clips of {args.stream} to {args.folder}")
    return 0


COMMANDS = {"validate": validate, "features": features}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    known = sorted([*COMMANDS, *JOB_COMMANDS])
    if not argv or argv[0] not in known:
        parser = argparse.ArgumentParser(prog="mer-ray", description="mer-ray commands")
        parser.add_argument("command", choices=known)
        parser.parse_args(argv[:1])
    command, rest = argv[0], argv[1:]
    if command in COMMANDS:
        sys.exit(COMMANDS[command](rest))
    sys.argv = [f"mer-ray {command}", *rest]
    runpy.run_path(str(JOBS / JOB_COMMANDS[command]), run_name="__main__")
