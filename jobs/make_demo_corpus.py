"""Generate the synthetic demo corpus in the MER 2024 layout.

    python jobs/make_demo_corpus.py --root data/demo            # 300 labeled, 1,500 pool, 300 test
    python jobs/make_demo_corpus.py --root /tmp/tiny --n-labeled 12 --n-unlabeled 20 --n-test 8
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus


def main(argv: list[str] | None = None) -> None:
    defaults = DemoCorpusConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/demo"), help="output folder")
    parser.add_argument("--n-labeled", type=int, default=defaults.n_labeled)
    parser.add_argument("--n-unlabeled", type=int, default=defaults.n_unlabeled)
    parser.add_argument("--n-test", type=int, default=defaults.n_test)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--label-noise", type=float, default=defaults.label_noise,
                        help="share of labeled clips whose label is flipped")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    cfg = DemoCorpusConfig(n_labeled=args.n_labeled, n_unlabeled=args.n_unlabeled, n_test=args.n_test,
                           seed=args.seed, label_noise=args.label_noise)
    make_demo_corpus(args.root, cfg, workers=args.workers, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
