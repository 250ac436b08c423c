"""Generate the synthetic demo corpus in the MER 2024 layout: `mer-ray demo-corpus`.

    python jobs/make_demo_corpus.py --help
    ray job submit --working-dir . -- python jobs/make_demo_corpus.py ...

A thin wrapper: the job's code is mer_ray/jobs/demo_corpus.py, so an installed `mer-ray demo-corpus` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.demo_corpus import main

if __name__ == "__main__":
    sys.exit(run_job(main))
