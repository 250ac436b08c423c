"""Search the learners' hyper-parameters with Ray Tune: `mer-ray tune`.

    python jobs/tune_learners.py --help
    ray job submit --working-dir . -- python jobs/tune_learners.py ...

A thin wrapper: the job's code is mer_ray/jobs/tune.py, so an installed `mer-ray tune` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.tune import main

if __name__ == "__main__":
    sys.exit(run_job(main))
