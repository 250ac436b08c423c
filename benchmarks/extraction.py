"""Extraction throughput: the Ray Data pipeline against the best plain alternative and the 2-core bound.

    python benchmarks/extraction.py                    # 400 demo clips, tiny audio + visual transformers
    python benchmarks/extraction.py --clips 2100

Same clips, same decoding (PyAV, 16 frames + 16 kHz audio), same two tiny random-initialised
transformers (a WavLM-style audio model, a ViT image model per frame), same Parquet feature
store written on every side. Each side runs in a fresh process of its own, one after the other
in one run (`--repeats 2`: again in reverse order, means kept), and its clock starts when the
process starts, so it pays its imports (torch, transformers, Ray) and model loading alike:
  ray:        `mer_ray.features.extract_features` as the mining job calls it, after
              `mer_ray.session.init_ray` (counted: on one machine a user pays it; the figures
              without it are reported too);
  dataloader: plain PyTorch, the best hand-written loop: a `torch.utils.data.DataLoader` with 2
              decode worker processes feeding the encoders batched (`--batch-size`) in the main
              process (`--loader-threads` torch threads), writing the same store;
  bound:      the CPU-seconds the work itself needs, measured per stage on the dataloader side
              (process CPU time of every decode in its workers, of every encoder call in the
              main process, one torch thread), divided by the cores: no side can beat it.
`fraction_of_bound` = bound seconds / the pipeline's seconds. "Steady state" leaves out every
side's start-up the same way: from its first part file written to its last (file times).
Memory: peak PSS of each side's process tree (PSS counts shared object-store pages once). On a
shared machine a side gets fewer than all cores: `cores_used` (its tree's CPU-s / wall) says how
many, and `work_share_of_cpu` (decode + encode CPU-s / its CPU-s) how much of it was the work.

Prints a table and writes benchmarks/results/extraction.json (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = time.time()   # a side's clock: before its imports

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import PeakMemory  # noqa: E402
from record import RESULTS, ROOT, load_average, write_record  # noqa: E402

SIDES = ("ray", "dataloader")
FIELDS = ("clips", "encoders", "ray_clips_per_s", "dataloader_clips_per_s", "ratio_vs_dataloader",
          "target_ratio_vs_dataloader", "bound_clips_per_s", "fraction_of_bound", "target_fraction_of_bound",
          "ray_s", "dataloader_s", "bound_s", "ray_init_s", "ratio_vs_dataloader_without_ray_init",
          "startup_s", "steady_clips_per_s", "steady_fraction_of_bound", "stage_cpu_s", "stage_cpu_ms_per_clip",
          "cpu_s", "cpu_s_by_process", "cores_used", "work_share_of_cpu",
          "peak_pss_mib", "runs_s", "features_max_abs_diff", "setup")


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


# ---- the sides, each in its own process (`--side job.json`) --------------------------------------

def side_ray(job: dict) -> dict:
    import pandas as pd

    from mer_ray.config import ExtractConfig
    from mer_ray.features.extract import extract_features
    from mer_ray.features.store import FeatureStore
    from mer_ray.session import init_ray

    manifest = pd.read_parquet(job["manifest"])
    t = time.time()
    init_ray()
    init_s = time.time() - t
    cfg = ExtractConfig(streams=job["streams"], num_frames=job["num_frames"], batch_size=job["batch_size"],
                        encoder_actors=job["workers"])
    summary = extract_features(manifest, FeatureStore(job["store"]), cfg, progress=False)
    end = time.time()
    print(summary.line(), flush=True)
    return dict(seconds=end - START, init_s=init_s, end=end)


class _Clips:
    """A map-style dataset: item i is clip i decoded, with the CPU-seconds its decode took."""

    def __init__(self, rows: list[dict], num_frames: int):
        self.rows, self.num_frames = rows, num_frames

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        from mer_ray.corpus.media import MediaError, decode_clip

        rec = self.rows[i]
        cpu = time.process_time()
        try:
            clip = decode_clip(rec["video"], rec["audio"], num_frames=self.num_frames)
            frames, audio = clip.frames, clip.audio
        except MediaError:
            frames = audio = None
        return rec["name"], frames, audio, time.process_time() - cpu


def _as_list(batch):
    return batch


def side_dataloader(job: dict) -> dict:
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader

    from mer_ray.encoders import create_encoder
    from mer_ray.features.store import FeatureStore

    torch.set_num_threads(job["loader_threads"])
    rows = pd.read_parquet(job["manifest"])[["name", "video", "audio"]].to_dict("records")
    store = FeatureStore(job["store"])
    encoders = {s: create_encoder(spec) for s, spec in job["streams"].items()}
    loader = DataLoader(_Clips(rows, job["num_frames"]), batch_size=job["batch_size"], num_workers=job["workers"],
                        collate_fn=_as_list, prefetch_factor=2, persistent_workers=False)
    decode_cpu, encode_cpu = 0.0, {s: 0.0 for s in encoders}
    for batch in loader:
        decode_cpu += sum(item[3] for item in batch)
        for stream, encoder in encoders.items():
            k = 2 if encoder.modality == "audio" else 1
            good = [item for item in batch if item[k] is not None]
            cpu = time.process_time()
            features = encoder.encode([item[k] for item in good])
            encode_cpu[stream] += time.process_time() - cpu
            store.write_part(stream, [item[0] for item in good], features)
    end = time.time()
    return dict(seconds=end - START, end=end, decode_cpu_s=decode_cpu, encode_cpu_s=encode_cpu)


def run_side(job_path: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    job = json.loads(Path(job_path).read_text())
    out = side_ray(job) if job["side"] == "ray" else side_dataloader(job)
    out["start"] = START
    Path(job["result"]).write_text(json.dumps(out))


# ---- the driver --------------------------------------------------------------------------------

def part_times(store: Path, stream: str) -> tuple[float, float, int]:
    """(first part's mtime, last part's mtime, clips in the first part) of one stream."""
    import pyarrow.parquet as pq

    parts = sorted((store / stream).glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
    return parts[0].stat().st_mtime, parts[-1].stat().st_mtime, pq.read_metadata(parts[0]).num_rows


def compare(a: Path, b: Path, streams) -> float:
    from mer_ray.features.store import FeatureStore

    worst = 0.0
    for stream in streams:
        (na, fa), (nb, fb) = FeatureStore(a).load(stream), FeatureStore(b).load(stream)
        if list(na) != list(nb):
            return float("inf")
        worst = max(worst, float(np.abs(fa - fb).max()))
    return worst


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--hidden", type=int, default=64, help="transformer width of both tiny encoders")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--image-size", type=int, default=64, help="the visual model's input side")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="encoder actors (ray) and decode workers (dataloader)")
    p.add_argument("--loader-threads", type=int, default=1, help="torch threads of the dataloader's encoders")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--corpus", help="a corpus folder (default: the demo corpus, generated once)")
    p.add_argument("--out", type=Path, default=RESULTS / "extraction.json")
    p.add_argument("--side", help=argparse.SUPPRESS)   # child process: a job file
    args = p.parse_args(argv)
    if args.side:
        run_side(args.side)
        return {}
    load_start = load_average()
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus
    from mer_ray.corpus.manifest import read_corpus

    corpus = Path(args.corpus) if args.corpus else ROOT / ".cache" / "demo-corpus-seed0"
    if not (corpus / "corpus.json").exists():
        make_demo_corpus(corpus, DemoCorpusConfig(seed=0))   # generated once
    manifest = read_corpus(corpus)
    if len(manifest) < args.clips:
        raise SystemExit(f"{corpus} has {len(manifest)} clips, fewer than --clips {args.clips}")
    manifest = manifest.sample(n=args.clips, random_state=0).sort_values("name")
    streams = make_models(ROOT / ".cache" / "bench-models" / f"h{args.hidden}-l{args.layers}-s{args.image_size}",
                          args.hidden, args.layers, args.image_size)
    cpus = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="mer-bench-extract-"))
    manifest.to_parquet(work / "manifest.parquet")
    print(f"{args.clips} clips from {corpus}; encoders {list(streams.values())}; {cpus} CPU cores", flush=True)

    order = [s for k in range(args.repeats) for s in (SIDES if k % 2 == 0 else SIDES[::-1])]
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    peak = {s: 0 for s in SIDES}
    diff = None
    for k, side in enumerate(order):
        store = work / f"store-{k}"
        job = dict(side=side, manifest=str(work / "manifest.parquet"), streams=streams, store=str(store),
                   num_frames=args.num_frames, batch_size=args.batch_size, workers=args.workers,
                   loader_threads=args.loader_threads, result=str(work / f"{k}.json"))
        (work / f"{k}-job.json").write_text(json.dumps(job))
        env = {key: v for key, v in os.environ.items() if key != "RAY_ADDRESS"}   # a fresh local Ray
        child = subprocess.Popen([sys.executable, __file__, "--side", str(work / f"{k}-job.json")], env=env)
        with PeakMemory(interval=0.5, pid=child.pid) as memory:
            if child.wait() != 0:
                raise SystemExit(f"the {side} side failed (exit {child.returncode}); its output is above")
        out = json.loads((work / f"{k}.json").read_text())
        first, last, first_clips = min(part_times(store, s) for s in streams)
        out["startup_s"] = first - out["start"]
        out["steady_clips_per_s"] = (args.clips - first_clips) / max(out["end"] - first, 1e-9)
        out["load_average_1min"] = load_average()
        out["cpu_s"] = memory.cpu_seconds
        out["cpu_by_process"] = memory.cpu_by_process()
        runs[side].append(out)
        peak[side] = max(peak[side], memory.peak_bytes)
        print(f"{side}: {out['seconds']:.1f} s, start-up {out['startup_s']:.1f} s "
              f"(load average {out['load_average_1min']})", flush=True)
        if k == 1:
            diff = compare(work / "store-0", work / "store-1", streams)
    shutil.rmtree(work, ignore_errors=True)

    def mean(side, key):
        return float(np.mean([r[key] for r in runs[side]]))

    loader = runs["dataloader"]
    decode_cpu = float(np.mean([r["decode_cpu_s"] for r in loader]))
    encode_cpu = {s: float(np.mean([r["encode_cpu_s"][s] for r in loader])) for s in streams}
    work_cpu = decode_cpu + sum(encode_cpu.values())
    bound_s = work_cpu / cpus
    ray_s, loader_s = mean("ray", "seconds"), mean("dataloader", "seconds")
    rate = {s: args.clips / mean(s, "seconds") for s in SIDES}
    steady = {s: mean(s, "steady_clips_per_s") for s in SIDES}
    bound_rate = args.clips / bound_s
    result = {
        "clips": args.clips, "encoders": streams,
        "ray_clips_per_s": round(rate["ray"], 2), "dataloader_clips_per_s": round(rate["dataloader"], 2),
        "ratio_vs_dataloader": round(rate["ray"] / rate["dataloader"], 3), "target_ratio_vs_dataloader": 1.0,
        "bound_clips_per_s": round(bound_rate, 2), "fraction_of_bound": round(rate["ray"] / bound_rate, 3),
        "target_fraction_of_bound": 0.85,
        "ray_s": round(ray_s, 2), "dataloader_s": round(loader_s, 2), "bound_s": round(bound_s, 2),
        "ray_init_s": round(mean("ray", "init_s"), 2),
        "ratio_vs_dataloader_without_ray_init": round(loader_s / (ray_s - mean("ray", "init_s")), 3),
        "startup_s": {s: round(mean(s, "startup_s"), 2) for s in SIDES},
        "steady_clips_per_s": {s: round(steady[s], 2) for s in SIDES},
        "steady_fraction_of_bound": {s: round(steady[s] / bound_rate, 3) for s in SIDES},
        "stage_cpu_s": {"decode": round(decode_cpu, 2), **{f"encode_{s}": round(v, 2) for s, v in encode_cpu.items()}},
        "stage_cpu_ms_per_clip": {"decode": round(1000 * decode_cpu / args.clips, 2),
                                  **{f"encode_{s}": round(1000 * v / args.clips, 2) for s, v in encode_cpu.items()}},
        # the CPU each side's process tree used: on a shared machine it gets fewer cores than it
        # has, and the share of its CPU-seconds that was the work itself is its overhead's mirror
        "cpu_s": {s: round(mean(s, "cpu_s"), 1) for s in SIDES},
        "cpu_s_by_process": {s: runs[s][0]["cpu_by_process"] for s in SIDES},   # the first run of each side
        "cores_used": {s: round(mean(s, "cpu_s") / mean(s, "seconds"), 2) for s in SIDES},
        "work_share_of_cpu": {s: round(work_cpu / mean(s, "cpu_s"), 3) for s in SIDES},
        "peak_pss_mib": {s: round(peak[s] / 2**20) for s in SIDES},
        "runs_s": {s: [round(r["seconds"], 2) for r in runs[s]] for s in SIDES},
        "features_max_abs_diff": diff,
        "setup": {"num_frames": args.num_frames, "batch_size": args.batch_size, "workers": args.workers,
                  "loader_torch_threads": args.loader_threads, "ray_actor_torch_threads": 1, "cpus": cpus,
                  "hidden": args.hidden, "layers": args.layers, "image_size": args.image_size,
                  "repeats": args.repeats, "order": order, "corpus": str(corpus),
                  "load_average_1min_per_run": {s: [r["load_average_1min"] for r in runs[s]] for s in SIDES}},
    }
    print()
    print(f"{'':34s} {'clips/s':>8s} {'seconds':>8s} {'start-up s':>10s} {'steady clips/s':>15s} {'peak PSS MiB':>13s}")
    for side, label in (("dataloader", f"DataLoader, {args.workers} decode workers"),
                        ("ray", f"Ray Data, {args.workers} encoder actors")):
        print(f"{label:34s} {rate[side]:8.2f} {mean(side, 'seconds'):8.1f} {mean(side, 'startup_s'):10.1f} "
              f"{steady[side]:15.2f} {result['peak_pss_mib'][side]:13d}")
    print(f"{f'2-core bound (decode + encode CPU-s / {cpus})':34s} {bound_rate:8.2f} {bound_s:8.1f}")
    print(f"ratio vs DataLoader {result['ratio_vs_dataloader']:.2f}x (target >= 1.0; without ray.init "
          f"{result['ratio_vs_dataloader_without_ray_init']:.2f}x); fraction of the bound "
          f"{result['fraction_of_bound']:.2f} (target >= 0.85), steady state {result['steady_fraction_of_bound']}")
    print(f"CPU-s used {result['cpu_s']}, cores used {result['cores_used']}, share of it that was the "
          f"work (decode + encode) {result['work_share_of_cpu']}")
    print("CPU ms per clip by stage: " + ", ".join(f"{k} {v}" for k, v in result["stage_cpu_ms_per_clip"].items())
          + f"; features equal across sides up to {diff}")
    return write_record(args.out, result, script=__file__, fields=FIELDS, argv=argv, load_start=load_start)


if __name__ == "__main__":
    main()
