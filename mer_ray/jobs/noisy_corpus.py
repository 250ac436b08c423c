"""Write a MER-NOISE copy of a corpus (seed 003): speech noise at 5-10 dB SNR, blur r in {1, 2, 4}.

    mer-ray noisy-corpus --corpus /data/MER2024 --out /data/MER2024-noisy \\
        --noise-dir /data/musan/speech                      # seed 003's noise: MUSAN speech
    mer-ray noisy-corpus --corpus data/demo --out data/demo-noisy   # babble of the corpus's clips

Same layout, file and clip names as the source, so labels, transcripts and truth carry over;
every clip gets its own SNR, factor r and noise segment, fixed by --seed and its name.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mer_ray.jobs import JOBS, add_common, formatter, parse


@JOBS.register("noisy-corpus", summary="a MER-NOISE copy of a corpus", script="make_noisy_corpus.py")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mer-ray noisy-corpus", description=__doc__, **formatter())
    p.add_argument("--corpus", type=Path, required=True, help="MER 2023 / 2024 / 2025 corpus folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the noisy copy")
    p.add_argument("--noise-dir", type=Path, help="noise recordings (.wav, .flac, ...), e.g. MUSAN speech; "
                                                  "default: babble made from the corpus's own clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", nargs="+", choices=("train", "test", "unlabeled"),
                   help="corrupt only these manifest splits (default: every clip); the rest are copied")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    add_common(p, corpus=False)
    args = parse(p, argv)

    from mer_ray.corpus.noise import make_noisy_corpus

    make_noisy_corpus(args.corpus, args.out, seed=args.seed, noise_dir=args.noise_dir,
                      splits=tuple(args.splits) if args.splits else None, workers=args.workers,
                      overwrite=args.overwrite)
    return 0
