"""Face stage cost: faces per second per core for each detector, and extraction with and without `crop: face`.

    python benchmarks/faces.py                        # Haar; 24 clips of 40 frames at 640x360
    python benchmarks/faces.py --yunet /models/face_detection_yunet_2023mar.onnx --clips 48

Clips: scikit-image's astronaut photograph (a real face) moving and growing over another bundled
photograph, written as .mp4 with PyAV, like tests/test_faces.py.
  detectors:  `track_faces` (shrink to 480 px, detect, keep one face, smooth) over decoded frames,
              one OpenCV thread, at each `--frame-sizes`; faces/s per core = frames / process
              CPU-seconds (a frame holds one face; CPU time, because wall time on a shared machine
              also counts other jobs). YuNet only with `--yunet PATH` (its weights are a file you
              provide); otherwise recorded as not measured.
  cpu_per_clip: process CPU-seconds of one clip's decode (+ face stage) and `frame-stats`
              encoding in this process, `crop: center` against `crop: face`: the figures that
              do not move with the machine's load;
  extraction: `extract_features` on a local Ray with `--cpus` CPUs, the `frame-stats` encoder,
              16 frames at `--frame-size`, `crop: center` against `crop: face` (Haar, in the
              decode stage); after one warm-up run, in the order center, face, center, face, ...
              (`--repeats`), means kept.

Prints the figures and writes benchmarks/results/faces.json (or --out).
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import RESULTS, load_average, write_record  # noqa: E402

FIELDS = ("clips", "frames_per_clip", "detectors", "cpu_per_clip", "extraction", "setup")
FACE_IN_ASTRONAUT = (176, 72, 96, 100)
PORTRAIT_CUT = (96, 0, 352, 256)


def make_clips(folder: Path, clips: int, frames: int, width: int, height: int) -> list[Path]:
    import skimage.data
    from PIL import Image

    from mer_ray.corpus.media import write_clip

    background = np.asarray(Image.fromarray(skimage.data.coffee()).resize((width, height)))
    portrait = Image.fromarray(skimage.data.astronaut()).crop(PORTRAIT_CUT)
    paths = []
    for c in range(clips):
        path = folder / f"{width}x{height}-{c:03d}.mp4"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(c)
        start, end = rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.8)
        images = []
        for t in range(frames):
            side = int(height * (start + (end - start) * t / max(1, frames - 1)))
            x = int((width - side) * (0.2 + 0.6 * t / max(1, frames - 1)))
            y = int((height - side) * 0.3)
            image = background.copy()
            image[y : y + side, x : x + side] = np.asarray(portrait.resize((side, side)))
            images.append(image)
        write_clip(path, np.stack(images), None)
    return paths


def time_detector(spec: str, paths: list[Path], num_frames: int) -> dict:
    from mer_ray.corpus.media import decode_clip
    from mer_ray.faces import FaceSettings, create_detector, track_faces

    settings = FaceSettings(detector=spec)
    detector = create_detector(spec)   # threads=1: one OpenCV thread
    decoded = [decode_clip(p, num_frames=num_frames, crop="none", want=("video",)).frames for p in paths]
    track_faces(decoded[0], detector, settings)   # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    found = 0
    for frames in decoded:
        found += track_faces(frames, detector, settings).counts()["none"]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = sum(len(f) for f in decoded)
    return {"frames": total, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "faces_per_s_per_core": round(total / cpu, 1), "faces_per_s_wall": round(total / wall, 1),
            "found_share": round(found / total, 3)}


def cpu_per_clip(paths: list[Path], frame_size: int) -> dict:
    """Process CPU-seconds per clip of what an extraction's decode + encode does for it, in this
    process, one thread: `crop: center` against `crop: face`. Unlike the Ray wall times below,
    these do not move with the machine's load."""
    from mer_ray.corpus.media import decode_clip
    from mer_ray.encoders import create_encoder
    from mer_ray.faces import FaceSettings, decode_face_clip

    encoder, settings = create_encoder("frame-stats"), FaceSettings()
    decode_face_clip(paths[0], num_frames=16, frame_size=frame_size, settings=settings, want=("video",))  # warm-up
    sides = {
        "center": lambda p: decode_clip(p, num_frames=16, frame_size=frame_size, crop="center", want=("video",)).frames,
        "face": lambda p: decode_face_clip(p, num_frames=16, frame_size=frame_size, settings=settings,
                                           want=("video",))[0].frames,
    }
    out = {}
    for crop, decode in sides.items():
        decode_s = encode_s = 0.0
        for path in paths:
            start = time.process_time()
            frames = decode(path)
            middle = time.process_time()
            encoder.encode([frames])
            decode_s += middle - start
            encode_s += time.process_time() - middle
        out[crop] = {"decode_ms": round(1000 * decode_s / len(paths), 1), "encode_ms": round(1000 * encode_s / len(paths), 1),
                     "clips_per_s_per_core": round(len(paths) / (decode_s + encode_s), 2)}
    out["face_cpu_ratio"] = round(out["center"]["clips_per_s_per_core"] / out["face"]["clips_per_s_per_core"], 2)
    return out


def time_extraction(paths: list[Path], args, work: Path) -> dict:
    import pandas as pd
    import ray

    from mer_ray.config import ExtractConfig
    from mer_ray.features.extract import extract_features
    from mer_ray.features.store import FeatureStore

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    manifest = pd.DataFrame({"name": [p.stem for p in paths], "video": [str(p) for p in paths]}).assign(
        audio=None, transcript=None, split="unlabeled", label=None, valence=np.nan)
    base = ExtractConfig(streams={"video": "frame-stats"}, num_frames=16, frame_size=args.frame_size,
                         encoder_actors=args.cpus, batch_size=4)
    runs: dict[str, list[float]] = {"center": [], "face": []}
    lines = {}
    extract_features(manifest.head(4), FeatureStore(work / "warm-up"), base, progress=False)
    for repeat in range(args.repeats):
        for crop in ("center", "face"):
            store = work / f"store-{crop}-{repeat}"
            shutil.rmtree(store, ignore_errors=True)
            summary = extract_features(manifest, FeatureStore(store), dataclasses.replace(base, crop=crop),
                                       progress=False)
            runs[crop].append(summary.seconds)
            lines[crop] = summary.line()
            print(f"  {crop}: {summary.line()}", flush=True)
    ray.shutdown()
    means = {crop: float(np.mean(s)) for crop, s in runs.items()}
    return {"cpus": args.cpus, "runs_s": {c: [round(s, 2) for s in v] for c, v in runs.items()},
            "center_clips_per_s": round(len(paths) / means["center"], 2),
            "face_clips_per_s": round(len(paths) / means["face"], 2),
            "face_slowdown": round(means["face"] / means["center"], 2), "summary_lines": lines}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--frames", type=int, default=40, help="frames per clip (10 fps)")
    p.add_argument("--frame-sizes", default="640x360,1280x720", help="video sizes for the detector timing")
    p.add_argument("--yunet", help="a local face_detection_yunet_*.onnx: time YuNet too")
    p.add_argument("--cpus", type=int, default=2, help="Ray CPUs for the extraction timing")
    p.add_argument("--frame-size", type=int, default=112, help="crop side the extraction resizes to")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--work", help="folder for the clips and stores (default: a temporary one)")
    p.add_argument("--out", default=str(RESULTS / "faces.json"))
    args = p.parse_args(argv)
    load_start = load_average()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="faces-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.frame_sizes.split(",")]
    clips = {size: make_clips(work, args.clips, args.frames, *size) for size in sizes}
    specs = {"haar": "haar"}
    if args.yunet:
        specs["yunet"] = f"yunet:{args.yunet}"
    detectors = {}
    for name, spec in specs.items():
        detectors[name] = {f"{w}x{h}": time_detector(spec, clips[(w, h)], 16) for w, h in sizes}
        for size, figures in detectors[name].items():
            print(f"{name} {size}: {figures['faces_per_s_per_core']} faces/s per core "
                  f"({figures['frames']} frames, found in {figures['found_share']:.0%})", flush=True)
    if not args.yunet:
        detectors["yunet"] = "not measured: give --yunet /path/face_detection_yunet_2023mar.onnx"

    per_clip = {f"{w}x{h}": cpu_per_clip(clips[(w, h)], args.frame_size) for w, h in sizes}
    for size, figures in per_clip.items():
        print(f"CPU per clip at {size}: center {figures['center']}, face {figures['face']}", flush=True)
    extraction = time_extraction(clips[sizes[0]], args, work)
    extraction["video_size"] = f"{sizes[0][0]}x{sizes[0][1]}"
    print(f"extraction at {extraction['video_size']}: crop center {extraction['center_clips_per_s']} clips/s, "
          f"crop face {extraction['face_clips_per_s']} clips/s ({extraction['face_slowdown']}x the time)", flush=True)
    import cv2

    from mer_ray.faces import FaceSettings

    setup = {"opencv": cv2.__version__, "detect_side": FaceSettings().detect_side, "encoder": "frame-stats", "num_frames": 16,
             "frame_size": args.frame_size, "sizes": args.frame_sizes}
    write_record(args.out, {"clips": args.clips, "frames_per_clip": args.frames, "detectors": detectors,
                            "cpu_per_clip": per_clip,
                            "extraction": extraction, "setup": setup},
                 script=__file__, fields=FIELDS, argv=argv, load_start=load_start)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
