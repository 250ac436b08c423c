"""Cyclic pseudo-label mining, end to end: `mer-ray mine`.

    python jobs/cyclic_mining.py --help
    ray job submit --working-dir . -- python jobs/cyclic_mining.py ...

A thin wrapper: the job's code is mer_ray/jobs/mine.py, so an installed `mer-ray mine` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.mine import main

if __name__ == "__main__":
    sys.exit(run_job(main))
