"""Feature extraction alone: corpus → Ray Data → feature store: `mer-ray extract`.

    python jobs/extract_features.py --help
    ray job submit --working-dir . -- python jobs/extract_features.py ...

A thin wrapper: the job's code is mer_ray/jobs/extract.py, so an installed `mer-ray extract` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.extract import main

if __name__ == "__main__":
    sys.exit(run_job(main))
