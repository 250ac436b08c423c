"""Apply a finished mining run to new clips.

    python jobs/predict.py --run runs/demo --corpus /data/new-clips --out runs/demo/new
"""
from __future__ import annotations

import argparse

from mer_ray.mining.predict import predict_with_run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished run folder (with config.yaml, state.json)")
    p.add_argument("--corpus", required=True, help="clips to predict: a corpus folder or manifest CSV")
    p.add_argument("--out", required=True, help="folder for predictions.csv / predictions-mer2023.csv")
    p.add_argument("--store", help="feature store (default: the run's)")
    args = p.parse_args(argv)
    predict_with_run(args.run, args.corpus, args.out, store=args.store)


if __name__ == "__main__":
    main()
