"""Feature extraction alone: corpus → Ray Data decode tasks → encoder actors → feature store.

    python jobs/extract_features.py --corpus MER2024/ --store features/
    python jobs/extract_features.py --corpus MER2024/ --store features/ \\
        --stream audio=hf-audio:/models/chinese-hubert-large?pooling=last4-mean \\
        --stream video=grid:timm:vit_base_patch16_224@/models/emotion-vit.pth --frame-size 224
    ray job submit --working-dir . -- python jobs/extract_features.py --config my.yaml

Rerunning the same command resumes: clips already stored are skipped. Streams and decoding
options come from the `extract:` section of a run config; --stream replaces its streams.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import ray

from mer_ray.config import load_config
from mer_ray.corpus.manifest import read_corpus
from mer_ray.features.extract import extract_features
from mer_ray.features.store import FeatureStore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="MER 2023 / 2024 / 2025 folder or a manifest CSV")
    p.add_argument("--store", help="feature store folder (default: <corpus>/features)")
    p.add_argument("--config", help="YAML run config; its extract: section is used")
    p.add_argument("--stream", action="append", metavar="NAME=SPEC",
                   help="a stream and its encoder spec (repeat); replaces the config's streams")
    p.add_argument("--batch-size", type=int, help="clips per encoder call and per part file")
    p.add_argument("--encoder-actors", type=int, help="encoder actors at most (one GPU each on GPU nodes)")
    p.add_argument("--num-frames", type=int)
    p.add_argument("--frame-size", type=int, help="crop and resize frames to this square size")
    p.add_argument("--crop", choices=("center", "none", "face"), help="face: detect and crop the face (docs/faces.md)")
    p.add_argument("--face-boxes", help="face_boxes.parquet from `mer-ray faces`, or a CSV name,left,top,width,height")
    p.add_argument("--face-detector", help="crop face: haar (default, bundled with OpenCV) | yunet:/path/model.onnx")
    p.add_argument("--limit", type=int, help="only the first N clips of the manifest (a smoke test)")
    args = p.parse_args(argv)

    streams = None
    if args.stream:
        pairs = [s.partition("=") for s in args.stream]
        bad = [s for s, (_, eq, spec) in zip(args.stream, pairs) if not eq or not spec]
        if bad:
            p.error(f"--stream takes NAME=SPEC, got {bad}")
        streams = {name: spec for name, _, spec in pairs}
    cfg = load_config(args.config, {
        "extract.streams": streams, "extract.batch_size": args.batch_size,
        "extract.encoder_actors": args.encoder_actors, "extract.num_frames": args.num_frames,
        "extract.frame_size": args.frame_size, "extract.crop": args.crop,
        "extract.face_boxes": args.face_boxes, "extract.face_detector": args.face_detector,
    }).extract
    print("extraction config:\n" + "\n".join(f"  {k}: {v}" for k, v in dataclasses.asdict(cfg).items()),
          flush=True)

    manifest = read_corpus(args.corpus)
    if args.limit:
        manifest = manifest.head(args.limit)
    store = FeatureStore(args.store or f"{args.corpus.rstrip('/')}/features")
    print(f"{len(manifest)} clips → {store.root}", flush=True)
    if not ray.is_initialized():
        ray.init(dashboard_host="127.0.0.1")   # joins RAY_ADDRESS when set (ray job submit)
    summary = extract_features(manifest, store, cfg)
    print(summary.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
