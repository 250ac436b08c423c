"""Seed 004's audio denoise: separate each clip's speech, keep a separated track only where ASR says
it clearly wins (mer_ray.denoise.rule), write a new manifest that points at the chosen tracks.

    mer-ray denoise --corpus MER2024/ --out MER2024-denoised/ \\
        --separator convtasnet:/models/convtasnet-libri2mix.pt \\
        --asr "whisper:/models/whisper-large-v3?language=zh"
    mer-ray extract --corpus MER2024-denoised/manifest.csv --store MER2024-denoised/features

Rerunning the same command resumes: decided clips are skipped, quarantined ones retried.
`--plugin mymodule` imports a module that registers your own separator or recogniser
(MossFormer2, Paraformer: see mer_ray/denoise/separators.py). Bad corpus rows are left out and
listed in <out>/problems.csv (--strict refuses them).
"""
from __future__ import annotations

import argparse

from mer_ray.jobs import JOBS, add_common, formatter, parse


@JOBS.register("denoise", summary="seed 004's separation + ASR audio denoise", script="denoise_audio.py")
def main(argv: list[str] | None = None) -> int:
    from mer_ray.denoise.rule import THRESHOLD

    p = argparse.ArgumentParser(prog="mer-ray denoise", description=__doc__, **formatter())
    p.add_argument("--corpus", required=True, help="MER 2023 / 2024 / 2025 folder or a manifest CSV")
    p.add_argument("--out", required=True, help="output folder: chosen wavs, decisions, manifest.csv")
    p.add_argument("--separator", required=True, help="separator spec, e.g. convtasnet:/models/w.pt")
    p.add_argument("--asr", required=True, help="ASR spec, e.g. whisper:/models/whisper-large-v3?language=zh")
    p.add_argument("--threshold", type=float, default=THRESHOLD,
                   help="a separated track wins when its similarity leads by more than this (seed 004: 0.1)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per actor call")
    p.add_argument("--actors", type=int, default=1, help="separation + ASR actors (one GPU each on GPU nodes)")
    p.add_argument("--limit", type=int, help="only the first N clips of the manifest (a smoke test)")
    add_common(p)
    args = parse(p, argv)

    from mer_ray.session import init_ray

    from mer_ray.corpus.manifest import load_corpus
    from mer_ray.denoise.pipeline import DenoiseConfig, config_text, denoise_corpus

    cfg = DenoiseConfig(separator=args.separator, asr=args.asr, threshold=args.threshold,
                        batch_size=args.batch_size, actors=args.actors, plugins=tuple(args.plugin))
    print("denoise config:\n" + config_text(cfg), flush=True)
    manifest, _ = load_corpus(args.corpus, strict=args.strict, report_dir=args.out)
    if args.limit:
        manifest = manifest.head(args.limit)
    init_ray()
    summary = denoise_corpus(manifest, args.out, cfg)
    print(summary.line(), flush=True)
    print(f"manifest: {args.out.rstrip('/')}/manifest.csv; decisions: {args.out.rstrip('/')}/decisions.csv",
          flush=True)
    return 0
