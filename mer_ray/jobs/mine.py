"""Cyclic pseudo-label mining, end to end.

    mer-ray mine                                     # the demo: generated corpus, local Ray
    mer-ray mine --corpus MER2024/ --out runs/semi --rounds 3
    mer-ray mine --corpus MER2024/ --features MER2024/features --out runs/mertools   # MERTools features
    mer-ray mine --corpus MER2024/ --stream audio=npy:features/chinese-hubert-large-UTT --stream ...
    mer-ray mine --config my.yaml --mlflow           # + MLflow tracking in ./mlruns
    mer-ray mine --set mining.options.vote.agree=4 --set "mining.policy=[vote, cap]"   # any field
    ray job submit --working-dir . -- python jobs/cyclic_mining.py --config my.yaml

Rerunning with the same --out resumes after the last complete round. Bad corpus rows are left
out and listed in <out>/problems.csv (--strict refuses them).
"""
from __future__ import annotations

import argparse

import yaml

from mer_ray.jobs import JOBS, add_common, add_stream_options, formatter, parse


@JOBS.register("mine", summary="cyclic pseudo-label mining, end to end", script="cyclic_mining.py")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mer-ray mine", description=__doc__, **formatter())
    p.add_argument("--config", help="YAML run config (any subset of RunConfig's fields)")
    p.add_argument("--corpus", help="MER 2023 / 2024 / 2025 folder or manifest CSV (default: the demo corpus)")
    p.add_argument("--truth", help="folder with test.csv / unlabeled.csv (default: <corpus>/truth)")
    p.add_argument("--out", help="output folder (default: runs/<timestamp>); reuse it to resume")
    p.add_argument("--store", help="feature store folder or s3:// URI (default: <corpus>/features)")
    p.add_argument("--storage", help="cluster runs: a folder every node mounts (NFS, EFS) or an s3:// "
                                     "or gs:// URI; the store goes to <storage>/features, a relative --out "
                                     "to <storage>/runs/<out>, with Ray Train's files")
    add_stream_options(p)
    p.add_argument("--learners", help="YAML with a `learners:` list (e.g. from mer-ray tune); default: "
                                      "M1..M4 over the run's streams")
    p.add_argument("--rounds", type=int, help="mining rounds after round 0")
    p.add_argument("--train-workers", type=int, help="Ray Train workers (0: in the driver process)")
    p.add_argument("--seed", type=int)
    p.add_argument("--baselines", action="store_true", default=None,
                   help="also run labeled-only and single-model self-training for the report")
    p.add_argument("--mlflow", nargs="?", const="", metavar="PATH|URI",
                   help="log config, every round's metrics and the report to MLflow: a folder "
                        "(default ./mlruns) or a tracking URI (needs mer-ray[mlflow])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any RunConfig field by its dotted name, the value read as YAML, applied last "
                        "(mining.options.vote.agree=4, mining.policy=[vote,cap]; repeat)")
    add_common(p)
    args = parse(p, argv)
    sets = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--set {item!r}: expected KEY=VALUE, e.g. --set mining.options.vote.agree=4")
        value = yaml.safe_load(value)
        # a YAML list is a tuple field in the frozen config (what a --config file builds)
        sets[key.strip()] = tuple(value) if isinstance(value, list) else value

    from mer_ray.config import load_config, load_learners
    from mer_ray.features.sources import streams_from_args
    from mer_ray.mining.run import run_cyclic_mining

    cfg = load_config(args.config, {
        "corpus": args.corpus, "truth": args.truth, "out": args.out, "store": args.store, "storage": args.storage,
        "seed": args.seed, "train_workers": args.train_workers, "mining.rounds": args.rounds,
        "baselines": args.baselines,
        "extract.streams": streams_from_args(args.stream, args.features, args.modality),
        "learners": load_learners(args.learners) if args.learners else None,
        **sets,
    })
    run_cyclic_mining(cfg, strict=args.strict, mlflow=args.mlflow)
    return 0
