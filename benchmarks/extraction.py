"""Extraction throughput: the Ray Data pipeline against a sequential clip-by-clip loop.

    python benchmarks/extraction.py                    # 400 demo clips, tiny audio + visual transformers
    python benchmarks/extraction.py --clips 800 --hidden 256 --layers 4

Both sides do the same work on the same clips: decode (PyAV, 16 frames + 16 kHz audio) and encode
with two tiny random-initialised transformers (a WavLM-style audio model, a ViT image model per
frame). The sequential side is how the MER baselines extract: one clip at a time, batch 1,
one .npy per clip. The pipeline side is `mer_ray.features.extract_features` (CPU decode tasks →
encoder actors, batched, writing the Parquet store). Wall times include model loading on both
sides, and the loading of torch / transformers: the sequential loop runs in a fresh process
(as a MERTools script does) and the pipeline's actors import them when they start; starting Ray
itself is not counted (a cluster is already up when a job is submitted). Prints a table and
writes benchmarks/results/extraction.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _tree_rss_bytes(root: int) -> int:
    """Summed RSS of process `root` and all its descendants, from /proc (Linux; no psutil)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(rss.get(pid, 0) for pid in tree)


class PeakMemory:
    """Peak of the summed RSS of this process and its descendants (Ray's workers included)."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.peak = every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))


def make_models(folder: Path, hidden: int, layers: int, image_size: int) -> dict[str, str]:
    """Tiny random transformers saved like real checkpoints; returns stream → encoder spec."""
    import torch
    import transformers

    torch.manual_seed(0)
    heads = max(1, hidden // 32)
    audio = folder / "audio-wavlm"
    if not (audio / "config.json").exists():
        transformers.WavLMModel(transformers.WavLMConfig(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden,
            conv_dim=(64,) * 4, conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 4, 4), num_conv_pos_embeddings=32,
            num_conv_pos_embedding_groups=4, num_buckets=32, feat_extract_norm="layer",
        )).save_pretrained(str(audio))
    visual = folder / "visual-vit"
    if not (visual / "config.json").exists():
        transformers.ViTModel(transformers.ViTConfig(
            hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden,
            image_size=image_size, patch_size=16,
        ), add_pooling_layer=False).save_pretrained(str(visual))
    return {"audio": f"hf-audio:{audio}?pooling=last4-mean", "video": f"hf-image:{visual}?pooling=last4-mean"}


def sequential(manifest, streams: dict[str, str], out: Path, num_frames: int) -> dict:
    """MERTools-style: one clip at a time, decode then every encoder at batch 1, one .npy each."""
    from mer_ray.corpus.media import MediaError, decode_clip
    from mer_ray.encoders import create_encoder

    stage = {"load": 0.0, "decode": 0.0, **{s: 0.0 for s in streams}, "write": 0.0}
    start = time.perf_counter()
    encoders = {s: create_encoder(spec) for s, spec in streams.items()}
    stage["load"] = time.perf_counter() - start
    for rec in manifest.itertuples(index=False):
        t = time.perf_counter()
        try:
            clip = decode_clip(rec.video, rec.audio, num_frames=num_frames)
        except MediaError:
            continue
        stage["decode"] += time.perf_counter() - t
        for stream, encoder in encoders.items():
            t = time.perf_counter()
            vector = encoder.encode([clip.audio if encoder.modality == "audio" else clip.frames])[0]
            stage[stream] += time.perf_counter() - t
            t = time.perf_counter()
            (out / stream).mkdir(parents=True, exist_ok=True)
            np.save(out / stream / f"{rec.name}.npy", vector)
            stage["write"] += time.perf_counter() - t
    return {"seconds": time.perf_counter() - start, "stages": stage}


def batched_encode_cost(manifest, streams, num_frames: int, batch_size: int, clips: int = 64) -> dict:
    """Seconds per clip of each encoder at batch 1 and at `batch_size`, one thread (what an actor has)."""
    import torch

    from mer_ray.corpus.media import decode_clip
    from mer_ray.encoders import create_encoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    decoded = [decode_clip(r.video, r.audio, num_frames=num_frames) for r in manifest.head(clips).itertuples()]
    cost = {}
    for stream, spec in streams.items():
        encoder = create_encoder(spec)
        inputs = [c.audio if encoder.modality == "audio" else c.frames for c in decoded]
        encoder.encode(inputs[:2])  # warm-up
        t = time.perf_counter()
        for x in inputs:
            encoder.encode([x])
        single = (time.perf_counter() - t) / len(inputs)
        t = time.perf_counter()
        for i in range(0, len(inputs), batch_size):
            encoder.encode(inputs[i : i + batch_size])
        batched = (time.perf_counter() - t) / len(inputs)
        cost[stream] = {"batch1_ms": 1000 * single, f"batch{batch_size}_ms": 1000 * batched}
    torch.set_num_threads(threads)
    return cost


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--hidden", type=int, default=64, help="transformer width of both tiny encoders")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--image-size", type=int, default=64, help="the visual model's input side")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--encoder-actors", type=int, default=2)
    p.add_argument("--corpus", help="a corpus folder (default: the demo corpus, generated once)")
    p.add_argument("--out", type=Path, default=RESULTS / "extraction.json")
    p.add_argument("--sequential-threads", type=int,
                   help="torch threads of the sequential loop (default: torch's, i.e. all cores)")
    p.add_argument("--sequential-only", help=argparse.SUPPRESS)   # child process: manifest parquet
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.sequential_only:
        import pandas as pd

        job = json.loads(Path(args.sequential_only).read_text())
        if job.get("threads"):
            import torch

            torch.set_num_threads(job["threads"])
        result = sequential(pd.read_parquet(job["manifest"]), job["streams"], Path(job["out"]), job["num_frames"])
        Path(job["result"]).write_text(json.dumps(result))
        return result

    import ray

    from mer_ray.config import ExtractConfig
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus
    from mer_ray.corpus.manifest import read_corpus
    from mer_ray.features.extract import extract_features
    from mer_ray.features.store import FeatureStore

    corpus = Path(args.corpus) if args.corpus else ROOT / ".cache" / "demo-corpus-seed0"
    if not (corpus / "corpus.json").exists():
        # the demo corpus (any generator version will do for throughput), generated once
        make_demo_corpus(corpus, DemoCorpusConfig(seed=0))
    manifest = read_corpus(corpus)
    if len(manifest) < args.clips:
        raise SystemExit(f"{corpus} has {len(manifest)} clips, fewer than --clips {args.clips}")
    manifest = manifest.sample(n=args.clips, random_state=0).sort_values("name")
    streams = make_models(ROOT / ".cache" / "bench-models" / f"h{args.hidden}-l{args.layers}-s{args.image_size}",
                          args.hidden, args.layers, args.image_size)
    work = Path(tempfile.mkdtemp(prefix="mer-bench-"))
    cpus = os.cpu_count() or 1
    print(f"{args.clips} clips from {corpus}; encoders {list(streams.values())}; {cpus} CPU cores", flush=True)

    # the sequential loop in a fresh process, so it pays its torch / transformers imports too
    manifest.to_parquet(work / "manifest.parquet")
    job = dict(manifest=str(work / "manifest.parquet"), streams=streams, out=str(work / "sequential"),
               num_frames=args.num_frames, result=str(work / "sequential.json"), threads=args.sequential_threads)
    (work / "job.json").write_text(json.dumps(job))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with PeakMemory() as seq_memory:
        subprocess.run([sys.executable, __file__, "--sequential-only", str(work / "job.json")], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seq_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    seq = json.loads((work / "sequential.json").read_text())
    print(f"sequential: {seq['seconds']:.1f} s", flush=True)

    # the same Ray a user gets on this machine; its start-up is not part of either measurement
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cfg = ExtractConfig(streams=streams, num_frames=args.num_frames, batch_size=args.batch_size,
                        encoder_actors=args.encoder_actors)
    with PeakMemory() as pipe_memory:
        summary = extract_features(manifest, FeatureStore(work / "pipeline"), cfg, progress=False)
    print(summary.line(), flush=True)
    ray.shutdown()

    cost = batched_encode_cost(manifest, streams, args.num_frames, args.batch_size)
    seq_rate, pipe_rate = args.clips / seq["seconds"], summary.clips / summary.seconds
    # steady state: without model loading (sequential) and without the pool's start-up (pipeline:
    # the time the decode + encode operator itself ran, from Ray Data's stats)
    seq_steady = args.clips / (seq["seconds"] - seq["stages"]["load"])
    ran = re.search(r"MapBatches\(EncodeAndStore\)[^\n]* in ([\d.]+)s", summary.stats)
    pipe_steady = summary.clips / float(ran.group(1)) if ran else float("nan")
    result = {
        "clips": args.clips, "cpus": cpus, "encoders": streams,
        "sequential_torch_threads": args.sequential_threads or "default",
        "pipeline_clips_per_s": round(pipe_rate, 2),
        "sequential_clips_per_s": round(seq_rate, 2),
        "ratio": round(pipe_rate / seq_rate, 2),
        "steady_state_clips_per_s": {"pipeline": round(pipe_steady, 2), "sequential": round(seq_steady, 2)},
        "steady_state_ratio": round(pipe_steady / seq_steady, 2),
        # the "sequential" loop is not one core: torch's intra-op threads and FFmpeg's frame
        # threads already spread it; this is how many cores it kept busy on average
        "sequential_cores_used": round(seq_cpu / seq["seconds"], 2),
        "pipeline_seconds": round(summary.seconds, 2), "sequential_seconds": round(seq["seconds"], 2),
        "pipeline_peak_rss_mb": round(pipe_memory.peak / 2**20), "sequential_peak_rss_mb": round(seq_memory.peak / 2**20),
        "sequential_stage_seconds": {k: round(v, 2) for k, v in seq["stages"].items()},
        "encode_ms_per_clip_one_thread": {s: {k: round(v, 2) for k, v in c.items()} for s, c in cost.items()},
        "pipeline_operator_stats": summary.stats,
    }
    print()
    print(f"{'':12s} {'clips/s':>9s} {'seconds':>9s} {'peak RSS MB':>12s}")
    print(f"{'sequential':12s} {seq_rate:9.2f} {seq['seconds']:9.1f} {result['sequential_peak_rss_mb']:12d}")
    print(f"{'ray pipeline':12s} {pipe_rate:9.2f} {summary.seconds:9.1f} {result['pipeline_peak_rss_mb']:12d}")
    print(f"ratio {result['ratio']:.2f}x (target >= 1.7 on 2 cores); steady state (no loading / start-up): "
          f"pipeline {pipe_steady:.1f} vs sequential {seq_steady:.1f} clips/s, {result['steady_state_ratio']:.2f}x")
    print(f"the sequential loop kept {result['sequential_cores_used']:.2f} of {cpus} cores busy on average")
    print("sequential time by stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in seq["stages"].items()))
    print("encoder cost per clip, one thread (ms): " + "; ".join(
        f"{s}: " + ", ".join(f"{k} {v:.1f}" for k, v in c.items()) for s, c in cost.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
