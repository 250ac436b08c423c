"""Cyclic pseudo-label mining, end to end.

    python jobs/cyclic_mining.py                     # the demo: generated corpus, local Ray
    python jobs/cyclic_mining.py --corpus MER2024/ --out runs/semi --rounds 3
    ray job submit --working-dir . -- python jobs/cyclic_mining.py --config my.yaml

Rerunning with the same --out resumes after the last complete round.
"""
from __future__ import annotations

import argparse

from mer_ray.config import load_config, load_learners
from mer_ray.mining.run import run_cyclic_mining


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML run config (any subset of RunConfig's fields)")
    p.add_argument("--corpus", help="MER 2024/2025 folder or manifest CSV (default: the demo corpus)")
    p.add_argument("--truth", help="folder with test.csv / unlabeled.csv (default: <corpus>/truth)")
    p.add_argument("--out", help="output folder (default: runs/<timestamp>); reuse it to resume")
    p.add_argument("--store", help="feature store folder or s3:// URI (default: <corpus>/features)")
    p.add_argument("--storage", help="cluster runs: a folder every node mounts (NFS, EFS) or an s3:// "
                                     "or gs:// URI; the store goes to <storage>/features, a relative --out "
                                     "to <storage>/runs/<out>, with Ray Train's files")
    p.add_argument("--learners", help="YAML with a `learners:` list (e.g. from jobs/tune_learners.py)")
    p.add_argument("--rounds", type=int, help="mining rounds after round 0")
    p.add_argument("--train-workers", type=int, help="Ray Train workers (0: in the driver process)")
    p.add_argument("--seed", type=int)
    p.add_argument("--baselines", action="store_true", default=None,
                   help="also run labeled-only and single-model self-training for the report")
    args = p.parse_args(argv)

    cfg = load_config(args.config, {
        "corpus": args.corpus, "truth": args.truth, "out": args.out, "store": args.store, "storage": args.storage,
        "seed": args.seed, "train_workers": args.train_workers, "mining.rounds": args.rounds,
        "baselines": args.baselines,
        "learners": load_learners(args.learners) if args.learners else None,
    })
    run_cyclic_mining(cfg)


if __name__ == "__main__":
    main()
