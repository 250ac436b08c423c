"""Search each learner's hyper-parameters with Ray Tune (ASHA + Optuna, seed 003's space and
5-fold CV) on the labeled clips; write the best configurations for the mining job.

    mer-ray tune                                       # the demo corpus → runs/tune/
    mer-ray tune --corpus MER2024/ --out runs/tune-mer24 --samples 24
    mer-ray mine --learners runs/tune/learners.yaml

Rerunning with the same --out resumes the search (Tuner.restore).
"""
from __future__ import annotations

import argparse

from mer_ray.jobs import JOBS, add_common, add_stream_options, formatter, parse


@JOBS.register("tune", summary="Ray Tune search of the learners' hyper-parameters", script="tune_learners.py")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mer-ray tune", description=__doc__, **formatter())
    p.add_argument("--config", help="YAML run config (corpus, store, extract, learners ...)")
    p.add_argument("--corpus", help="MER 2024/2025 folder or manifest CSV (default: the demo corpus)")
    p.add_argument("--store", help="feature store folder (default: <corpus>/features)")
    add_stream_options(p)
    p.add_argument("--learners", help="YAML with a `learners:` list to start from (default: M1..M4)")
    p.add_argument("--out", default="runs/tune", help="output folder; reuse it to resume (default: runs/tune)")
    p.add_argument("--search", help="YAML with SearchConfig fields (samples, max_epochs, folds, space ...)")
    p.add_argument("--samples", type=int, help="trials per learner")
    p.add_argument("--max-epochs", type=int, help="most epochs per trial (ASHA max_t)")
    p.add_argument("--folds", type=int, help="CV folds (seed 003: 5)")
    p.add_argument("--seed", type=int)
    add_common(p, corpus=False)
    args = parse(p, argv)

    import dataclasses

    import yaml

    from mer_ray.config import load_config, load_learners
    from mer_ray.features.sources import streams_from_args
    from mer_ray.mining.resolve import resolve
    from mer_ray.tune import SearchConfig, tune_from_store

    cfg = resolve(load_config(args.config, {
        "corpus": args.corpus, "store": args.store, "out": args.out, "seed": args.seed,
        "extract.streams": streams_from_args(args.stream, args.features, args.modality),
        "learners": load_learners(args.learners) if args.learners else None,
    }))
    search = SearchConfig(**(yaml.safe_load(open(args.search)) or {})) if args.search else SearchConfig()
    changes = {"samples": args.samples, "max_epochs": args.max_epochs, "folds": args.folds, "seed": args.seed}
    search = dataclasses.replace(search, **{k: v for k, v in changes.items() if v is not None})
    if search.max_epochs < search.grace_epochs:   # else ASHA's bare "grace_period must be <= max_t!"
        p.error(f"--max-epochs {search.max_epochs} is below grace_epochs {search.grace_epochs} (ASHA never stops a "
                f"trial before it): raise --max-epochs, or lower grace_epochs in a --search YAML")
    print("mer-ray tune, search:\n" + yaml.safe_dump(dataclasses.asdict(search), sort_keys=False), flush=True)
    path = tune_from_store(cfg, cfg.out, search)
    print(f"best configurations in {path}; use: mer-ray mine --learners {path}")
    return 0
