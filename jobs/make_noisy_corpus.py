"""Write a MER-NOISE copy of a corpus (seed 003): `mer-ray noisy-corpus`.

    python jobs/make_noisy_corpus.py --help
    ray job submit --working-dir . -- python jobs/make_noisy_corpus.py ...

A thin wrapper: the job's code is mer_ray/jobs/noisy_corpus.py, so an installed `mer-ray noisy-corpus` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.noisy_corpus import main

if __name__ == "__main__":
    sys.exit(run_job(main))
