"""Feature extraction alone: corpus → Ray Data decode tasks → encoder actors → feature store.

    mer-ray extract --corpus MER2024/ --store features/
    mer-ray extract --corpus MER2024/ --store features/ \\
        --stream audio=hf-audio:/models/chinese-hubert-large?pooling=last4-mean \\
        --stream video=grid:timm:vit_base_patch16_224@/models/emotion-vit.pth --frame-size 224
    mer-ray extract --corpus MER2024/ --store features/ --features MER2024/features   # import MERTools folders
    ray job submit --working-dir . -- python jobs/extract_features.py --config my.yaml

Rerunning the same command resumes: clips already stored are skipped. Streams and decoding
options come from the `extract:` section of a run config; --stream / --features replace its
streams. Bad corpus rows are left out and listed in <store>/problems.csv (--strict refuses them).
"""
from __future__ import annotations

import argparse

from mer_ray.jobs import JOBS, add_common, add_stream_options, formatter, parse


@JOBS.register("extract", summary="feature extraction into a feature store", script="extract_features.py")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mer-ray extract", description=__doc__, **formatter())
    p.add_argument("--corpus", required=True, help="MER 2023 / 2024 / 2025 folder or a manifest CSV")
    p.add_argument("--store", help="feature store folder (default: <corpus>/features)")
    p.add_argument("--config", help="YAML run config; its extract: section is used")
    add_stream_options(p)
    p.add_argument("--batch-size", type=int, help="clips per encoder call and per part file")
    p.add_argument("--encoder-actors", type=int, help="encoder actors at most (one GPU each on GPU nodes)")
    p.add_argument("--num-frames", type=int)
    p.add_argument("--frame-size", type=int, help="crop and resize frames to this square size")
    p.add_argument("--crop", choices=("center", "none", "face"), help="face: detect and crop the face (docs/faces.md)")
    p.add_argument("--face-boxes", help="face_boxes.parquet from `mer-ray faces`, or a CSV name,left,top,width,height")
    p.add_argument("--face-detector", help="crop face: haar (default, bundled with OpenCV) | yunet:/path/model.onnx")
    p.add_argument("--limit", type=int, help="only the first N clips of the manifest (a smoke test)")
    add_common(p)
    args = parse(p, argv)

    from mer_ray.session import init_ray

    import dataclasses
    from pathlib import Path

    from mer_ray.config import load_config
    from mer_ray.corpus.manifest import load_corpus
    from mer_ray.features.sources import canonical, streams_from_args
    from mer_ray.features.store import FeatureStore
    from mer_ray.features.stage import extract_with_progress

    cfg = load_config(args.config, {
        "extract.streams": streams_from_args(args.stream, args.features, args.modality),
        "extract.batch_size": args.batch_size,
        "extract.encoder_actors": args.encoder_actors, "extract.num_frames": args.num_frames,
        "extract.frame_size": args.frame_size, "extract.crop": args.crop,
        "extract.face_boxes": args.face_boxes, "extract.face_detector": args.face_detector,
    }).extract
    cfg = dataclasses.replace(cfg, streams={n: canonical(s) for n, s in cfg.streams.items()})
    print("extraction: " + ", ".join(f"{n}={s}" for n, s in cfg.streams.items())
          + f"; {cfg.num_frames} frames per clip, batches of {cfg.batch_size}", flush=True)
    store = FeatureStore(args.store or f"{args.corpus.rstrip('/')}/features")
    report_dir = None if store.mirror else store.root
    manifest, _ = load_corpus(args.corpus, strict=args.strict, report_dir=report_dir)
    if args.limit:
        manifest = manifest.head(args.limit)
    print(f"{len(manifest)} clips → {store.location}", flush=True)
    init_ray()
    summary = extract_with_progress(manifest, store, cfg)
    print(summary.line(), flush=True)
    if report_dir and (Path(report_dir) / "problems.csv").exists():
        print(f"corpus problems: {Path(report_dir) / 'problems.csv'}", flush=True)
    return 0
