"""Seed 004's audio denoise (separation + ASR rule): `mer-ray denoise`.

    python jobs/denoise_audio.py --help
    ray job submit --working-dir . -- python jobs/denoise_audio.py ...

A thin wrapper: the job's code is mer_ray/jobs/denoise.py, so an installed `mer-ray denoise` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.denoise import main

if __name__ == "__main__":
    sys.exit(run_job(main))
