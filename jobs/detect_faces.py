"""Detect the face in every clip of a corpus once → face_boxes.parquet: `mer-ray faces`.

    python jobs/detect_faces.py --help
    ray job submit --working-dir . -- python jobs/detect_faces.py --corpus /mnt/mer/MER2024

A thin wrapper: the job's code is mer_ray/jobs/faces.py, so an installed `mer-ray faces` runs
the same thing.
"""
import sys

from mer_ray.console import run_job
from mer_ray.jobs.faces import main

if __name__ == "__main__":
    sys.exit(run_job(main))
