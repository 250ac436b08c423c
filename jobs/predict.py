"""Apply a finished mining run (dev-split or k-fold) to clips: `mer-ray predict`.

    python jobs/predict.py --help
    ray job submit --working-dir . -- python jobs/predict.py ...

A thin wrapper: the job's code is mer_ray/jobs/predict.py, so an installed `mer-ray predict` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.predict import main

if __name__ == "__main__":
    sys.exit(run_job(main))
