"""Apply a finished mining run (dev-split or k-fold) to clips.

    mer-ray predict --run runs/demo --corpus /data/new-clips --out runs/demo/new
    mer-ray predict --run s3://bucket/mer-ray/runs/semi --corpus /data/MER2025 --out preds/

The run's own streams, normalisation, learners and final round are used; clips without
features in the store are extracted first (npy: streams imported from their folders).
"""
from __future__ import annotations

import argparse

from mer_ray.jobs import JOBS, add_common, formatter, parse


@JOBS.register("predict", summary="apply a finished run to clips", script="predict.py")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mer-ray predict", description=__doc__, **formatter())
    p.add_argument("--run", required=True, help="a finished run folder (with config.yaml, state.json)")
    p.add_argument("--corpus", required=True, help="clips to predict: a corpus folder or manifest CSV")
    p.add_argument("--out", required=True, help="folder for predictions.csv / predictions-mer2023.csv")
    p.add_argument("--store", help="feature store (default: the run's)")
    add_common(p)
    args = parse(p, argv)

    from mer_ray.mining.predict import predict_with_run

    predict_with_run(args.run, args.corpus, args.out, store=args.store, strict=args.strict)
    return 0
