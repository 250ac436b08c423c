"""What one real clip costs to extract, measured on this machine, and the cluster that follows.

    python benchmarks/scale_costs.py                     # ~2 minutes on 2 cores

Measured here, per clip:
  - decode: CPU-seconds of `decode_clip` (16 frames + 16 kHz audio, PyAV) on a generated clip of
    MER's shape (`--seconds` 5 s, 1280x720, 25 fps, H.264 with AAC audio; the demo corpus's 64 px
    clips would understate it), best of 3;
  - encode: the FLOPs of a HuBERT-large-sized audio model on that clip's audio and of a
    ViT-L/14-sized image tower on its 16 frames (counted by torch's FlopCounterMode on the real
    architectures, random weights), and the CPU-seconds of one forward of each on one thread
    (audio: the whole clip; video: one frame, times 16).
Estimated (not measured here: no GPU in this session; `benchmarks/gpu_check.py` measures it):
  - GPU seconds per clip = FLOPs / (`--gpu-tflops`, the fp16 rate an encoder sustains; default
    35, a guess of ~28 % of an A10G's 125 dense fp16 tensor TFLOPS).
Then the plan: how many GPUs and decode CPUs extract `--clips` clips in `--extract-minutes`,
given those costs. Writes benchmarks/results/scale_costs.json.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import RESULTS, load_average, write_record  # noqa: E402

FIELDS = ("clip", "decode_cpu_s_per_clip", "audio_gflop_per_clip", "video_gflop_per_clip",
          "audio_cpu_s_per_clip_one_thread", "video_cpu_s_per_clip_one_thread", "encode_cpu_core_s_per_clip",
          "assumed_gpu_tflops", "gpu_s_per_clip_estimated", "plan", "measured", "estimated")


def make_clip(path: Path, seconds: float, width: int, height: int, fps: int) -> str:
    """A clip of MER's shape: moving gradients (cheap to encode, real work to decode), a tone."""
    from mer_ray.corpus.media import write_clip

    n = int(seconds * fps)
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (x + 4 * t) % 256
        frames[t, ..., 1] = (y + 2 * t) % 256
        frames[t, ..., 2] = ((x + y) // 2 + t) % 256
    audio = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32)
    for codec in ("h264", "mpeg4"):   # h264 when this PyAV has an encoder for it
        try:
            write_clip(path, frames, audio, fps=fps, sample_rate=16000, video_codec=codec)
            return codec
        except Exception:
            continue
    raise RuntimeError("PyAV could write neither h264 nor mpeg4 here")


def cpu_seconds(fn, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="clip length (MER 2024 clips: a few seconds)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--gpu-tflops", type=float, default=35.0, help="assumed sustained fp16 TFLOPS per GPU")
    p.add_argument("--clips", type=int, default=115595, help="MER 2024's clips (labeled + unlabeled + test)")
    p.add_argument("--extract-minutes", type=float, default=20.0, help="the extraction's share of the 30 minutes")
    p.add_argument("--out", type=Path, default=RESULTS / "scale_costs.json")
    args = p.parse_args(argv)
    load_start = load_average()

    import torch
    import transformers
    from torch.utils.flop_counter import FlopCounterMode

    from mer_ray.corpus.media import decode_clip

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        clip_path = Path(tmp) / "clip.mp4"
        codec = make_clip(clip_path, args.seconds, args.width, args.height, args.fps)
        decode_s = cpu_seconds(lambda: decode_clip(clip_path, num_frames=16))
        clip = decode_clip(clip_path, num_frames=16)

    torch.manual_seed(0)
    size = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    audio_model = transformers.HubertModel(transformers.HubertConfig(
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, **size)).eval()
    image_model = transformers.ViTModel(transformers.ViTConfig(patch_size=14, image_size=224, **size),
                                        add_pooling_layer=False).eval()
    waveform = torch.from_numpy(np.ascontiguousarray(clip.audio))[None]
    frame = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        with FlopCounterMode(display=False) as audio_flops:
            audio_model(waveform)
        with FlopCounterMode(display=False) as image_flops:
            image_model(pixel_values=frame)
        audio_s = cpu_seconds(lambda: audio_model(waveform), repeats=2)
        frame_s = cpu_seconds(lambda: image_model(pixel_values=frame), repeats=2)
    audio_gflop = audio_flops.get_total_flops() / 1e9
    video_gflop = 16 * image_flops.get_total_flops() / 1e9
    gpu_s = (audio_gflop + video_gflop) / 1e3 / args.gpu_tflops

    extract_s = args.extract_minutes * 60
    gpus = math.ceil(args.clips * gpu_s / extract_s)
    decode_cpus = math.ceil(args.clips * decode_s / extract_s)
    plan = {"clips": args.clips, "extract_minutes": args.extract_minutes,
            "gpu_hours": round(args.clips * gpu_s / 3600, 2), "gpus": gpus,
            "decode_cpu_hours": round(args.clips * decode_s / 3600, 2), "decode_cpus": decode_cpus,
            "cpu_only_encode_core_hours": round(args.clips * (audio_s + 16 * frame_s) / 3600, 1)}
    result = {
        "clip": {"seconds": args.seconds, "width": args.width, "height": args.height, "fps": args.fps,
                 "codec": codec, "frames_sampled": 16},
        "decode_cpu_s_per_clip": round(decode_s, 4),
        "audio_gflop_per_clip": round(audio_gflop, 1), "video_gflop_per_clip": round(video_gflop, 1),
        "audio_cpu_s_per_clip_one_thread": round(audio_s, 2),
        "video_cpu_s_per_clip_one_thread": round(16 * frame_s, 2),
        "encode_cpu_core_s_per_clip": round(audio_s + 16 * frame_s, 2),
        "assumed_gpu_tflops": args.gpu_tflops, "gpu_s_per_clip_estimated": round(gpu_s, 4),
        "plan": plan,
        "measured": ["decode_cpu_s_per_clip", "audio_gflop_per_clip (counted)", "video_gflop_per_clip (counted)",
                     "audio_cpu_s_per_clip_one_thread", "video_cpu_s_per_clip_one_thread"],
        "estimated": ["gpu_s_per_clip_estimated (FLOPs / assumed_gpu_tflops)", "plan"],
    }
    print(f"per clip ({args.seconds} s, {args.width}x{args.height}, {codec}): decode {decode_s:.3f} CPU-s; "
          f"audio {audio_gflop:.0f} GFLOP ({audio_s:.1f} CPU-s on one thread), video 16 frames {video_gflop:.0f} "
          f"GFLOP ({16 * frame_s:.1f} CPU-s); GPU at {args.gpu_tflops} TFLOPS (assumed): {gpu_s * 1000:.0f} ms")
    print(f"{args.clips} clips in {args.extract_minutes} min: {plan['gpus']} GPUs ({plan['gpu_hours']} GPU-h), "
          f"{plan['decode_cpus']} decode CPUs ({plan['decode_cpu_hours']} CPU-h); CPU-only encoding would take "
          f"{plan['cpu_only_encode_core_hours']} core-hours")
    return write_record(args.out, result, script=__file__, fields=FIELDS, argv=argv, load_start=load_start)


if __name__ == "__main__":
    main()
