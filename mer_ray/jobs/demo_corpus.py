"""Generate the synthetic demo corpus in the MER 2024 layout.

    mer-ray demo-corpus --root data/demo            # 300 labeled, 1,500 pool, 300 test
    mer-ray demo-corpus --root /tmp/tiny --n-labeled 12 --n-unlabeled 20 --n-test 8
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mer_ray.jobs import JOBS, add_common, formatter, parse


@JOBS.register("demo-corpus", summary="generate the synthetic demo corpus", script="make_demo_corpus.py")
def main(argv: list[str] | None = None) -> int:
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus

    defaults = DemoCorpusConfig()
    p = argparse.ArgumentParser(prog="mer-ray demo-corpus", description=__doc__, **formatter())
    p.add_argument("--root", type=Path, default=Path("data/demo"), help="output folder")
    p.add_argument("--n-labeled", type=int, default=defaults.n_labeled)
    p.add_argument("--n-unlabeled", type=int, default=defaults.n_unlabeled)
    p.add_argument("--n-test", type=int, default=defaults.n_test)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--label-noise", type=float, default=defaults.label_noise,
                   help="share of labeled clips whose label is flipped")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    add_common(p, corpus=False)
    args = parse(p, argv)
    cfg = DemoCorpusConfig(n_labeled=args.n_labeled, n_unlabeled=args.n_unlabeled, n_test=args.n_test,
                           seed=args.seed, label_noise=args.label_noise)
    make_demo_corpus(args.root, cfg, workers=args.workers, overwrite=args.overwrite)
    return 0
