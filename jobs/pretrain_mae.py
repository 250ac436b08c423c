"""Adapt an image MAE or a VideoMAE to the corpus's clips (seed 000): `mer-ray pretrain-mae`.

    python jobs/pretrain_mae.py --help
    ray job submit --working-dir . -- python jobs/pretrain_mae.py ...

A thin wrapper: the job's code is mer_ray/jobs/pretrain_mae.py, so an installed `mer-ray pretrain-mae` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.pretrain_mae import main

if __name__ == "__main__":
    sys.exit(run_job(main))
