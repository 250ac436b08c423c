"""Detect the face in every clip of a corpus once: Ray Data decode tasks → face_boxes.parquet.

    mer-ray faces --corpus MER2024/                      # → MER2024/face_boxes.parquet
    mer-ray faces --corpus MER2024/ --detector yunet:/models/face_detection_yunet_2023mar.onnx
    mer-ray extract --corpus MER2024/ --crop face --face-boxes MER2024/face_boxes.parquet ...

Rerunning resumes: clips already in --out are skipped. Detectors, the fallback rules and the
file's columns: docs/faces.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mer_ray.jobs import JOBS, add_common, formatter, parse


@JOBS.register("faces", summary="face boxes of every clip → face_boxes.parquet (docs/faces.md)",
               script="detect_faces.py")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mer-ray faces", description=__doc__, **formatter())
    p.add_argument("--corpus", required=True, help="MER 2023 / 2024 / 2025 folder or a manifest CSV")
    p.add_argument("--out", help="face boxes file (default: face_boxes.parquet in the corpus folder)")
    p.add_argument("--detector", default="haar", help="haar (bundled with OpenCV) | yunet:/path/model.onnx")
    p.add_argument("--pick", default="largest", help="which face of a frame: largest | central")
    p.add_argument("--smooth", type=int, default=5, help="median window over the sampled frames (1: none)")
    p.add_argument("--num-frames", type=int, default=16, help="frames sampled per clip (extraction's default)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per decode task")
    p.add_argument("--limit", type=int, help="only the first N clips of the manifest (a smoke test)")
    add_common(p, corpus=False)
    args = parse(p, argv)

    from mer_ray.corpus.manifest import read_corpus
    from mer_ray.faces import FaceSettings
    from mer_ray.faces.job import detect_corpus_faces
    from mer_ray.session import init_ray

    corpus = Path(args.corpus)
    out = Path(args.out) if args.out else (corpus if corpus.is_dir() else corpus.parent) / "face_boxes.parquet"
    settings = FaceSettings(detector=args.detector, pick=args.pick, smooth=args.smooth)
    print(f"faces: {settings}, {args.num_frames} frames per clip → {out}", flush=True)
    manifest = read_corpus(args.corpus)
    if args.limit:
        manifest = manifest.head(args.limit)
    init_ray()   # joins RAY_ADDRESS when set (ray job submit)
    summary = detect_corpus_faces(manifest, out, settings, num_frames=args.num_frames, batch_size=args.batch_size)
    print(summary.line(), flush=True)
    return 0
