"""`mer-ray` console script: every job under one command, from any install (the job code is in
`mer_ray.jobs`; `jobs/*.py` are thin wrappers for `python jobs/...` and `ray job submit`).

    mer-ray validate CORPUS                     counts per split and class, every problem
    mer-ray extract --corpus CORPUS ...         feature extraction (--stream NAME=SPEC, --features DIR)
    mer-ray features import-npy FOLDER STORE --stream NAME
    mer-ray features export-npy STORE --stream NAME FOLDER
    mer-ray mine ...                            cyclic pseudo-label mining, end to end
    mer-ray predict --run RUN --corpus C --out D  a finished run applied to clips
    mer-ray tune ...                            Ray Tune search of the learners' hyper-parameters
    mer-ray demo-corpus ...                     the synthetic demo corpus
    mer-ray pretrain-mae ...                    MAE adaptation (seed 000)
    mer-ray denoise --corpus C --out D ...      seed 004's separation + ASR rule
    mer-ray noisy-corpus --corpus C --out D     MER-NOISE copy
    mer-ray faces --corpus C                    face_boxes.parquet (docs/faces.md)

Every job takes --verbose (Ray's own logs on the console, tracebacks); an error ends it with
one message and exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def _usage(jobs) -> str:
    lines = ["usage: mer-ray COMMAND [options]   (mer-ray COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {'validate':<14} check a corpus: counts per split and class, every problem",
              f"  {'features':<14} MERTools <model>-UTT folders in and out of a feature store"]
    lines += [f"  {name:<14} {jobs.meta(name).get('summary', '')}" for name in jobs.names()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from mer_ray.console import run_job
    from mer_ray.jobs import load_all

    argv = sys.argv[1:] if argv is None else argv
    jobs = load_all()
    known = {*COMMANDS, *jobs.names()}
    if not argv or argv[0] not in known:
        print(_usage(jobs), file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nmer-ray: unknown command {argv[0]!r}", file=sys.stderr)
        sys.exit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    command, rest = argv[0], argv[1:]
    if command in COMMANDS:
        sys.exit(run_job(COMMANDS[command], rest, console=False))
    sys.exit(run_job(jobs.get(command), rest))


if __name__ == "__main__":
    main()
