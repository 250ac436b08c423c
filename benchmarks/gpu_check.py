"""GPU check: real-size encoders through the extraction pipeline, then the mining loop on the GPU.

    python benchmarks/gpu_check.py                  # on a machine with a CUDA GPU, < 8 minutes
    python benchmarks/gpu_check.py --clips 200      # a shorter look

Without a CUDA GPU it exits at once (exit status 2) and says so; nothing else runs.

On a GPU machine, in one run:
1. two random-initialised encoders the size of the real ones, built from configs (no download):
   a HuBERT-large-sized audio model (24 layers, width 1024, ~315 M parameters) and a
   ViT-L/14-sized image tower (CLIP vision config: 24 layers, width 1024, patch 14, 224 px, ~300 M)
   run on each clip's 16 frames, both in fp16 (autocast) — saved as folders and loaded by the
   normal `hf-audio:` / `hf-image:` encoders;
2. `extract_features` on a small generated demo corpus: PyAV decode in CPU tasks feeding one GPU
   encoder actor per GPU (the pipeline's GPU layout); clips/s;
3. `run_cyclic_mining` on those features with `use_gpu: true` (one Ray Train worker per GPU),
   four learners over the audio + video streams; seconds per round (every learner's fit and
   prediction) and the learners' dev WAF;
GPU utilisation and memory are sampled every 0.5 s with `nvidia-smi` during both phases.
Writes benchmarks/results/gpu_check.json (or --out).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import RESULTS, ROOT, load_average, write_record  # noqa: E402

NO_GPU = 2   # exit status without a CUDA GPU
FIELDS = ("gpus", "gpu_name", "encoders", "encoder_parameters_m", "fp16", "clips", "extraction_s",
          "extraction_clips_per_s", "extraction_gpu_util_pct", "mining_s", "mining_round_s",
          "mining_learners", "mining_train_workers", "mining_gpu_util_pct", "gpu_memory_peak_mib",
          "model_build_s", "corpus_s", "total_s", "time_limit_s")


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the check, or None. Cheap tests first: no torch import when
    there is no NVIDIA driver at all."""
    if shutil.which("nvidia-smi") is None and not glob.glob("/dev/nvidia[0-9]*"):
        return "no NVIDIA driver here (no nvidia-smi, no /dev/nvidia*)"
    import torch

    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} sees no CUDA GPU (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})")
    return None


class GpuSampler:
    """`nvidia-smi` every `every_s`: utilisation (%) and memory used (MiB) of every GPU, tagged
    with the phase running at the time."""

    def __init__(self, every_s: float = 0.5):
        self.every_s, self.phase, self.samples = every_s, "idle", []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            if shutil.which("nvidia-smi") is None:   # --smoke on a CPU machine
                return
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True)
            for line in out.stdout.strip().splitlines():
                util, memory = (float(x) for x in line.split(","))
                self.samples.append((self.phase, util, memory))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def util(self, phase: str) -> dict:
        values = [u for p, u, _ in self.samples if p == phase]
        if not values:
            return {"mean": None, "max": None, "samples": 0}
        return {"mean": round(sum(values) / len(values), 1), "max": max(values), "samples": len(values)}


def build_encoders(folder: Path, *, width: int = 1024, layers: int = 24) -> tuple[dict[str, str], dict[str, float]]:
    """Random-initialised real-size encoders saved as Hugging Face folders: (stream → spec,
    stream → millions of parameters). The defaults are the real sizes; `--smoke` shrinks them."""
    import torch
    import transformers

    torch.manual_seed(0)
    size = dict(hidden_size=width, num_hidden_layers=layers, num_attention_heads=max(1, width // 64),
                intermediate_size=4 * width)
    audio, image = folder / f"hubert-w{width}-l{layers}", folder / f"vit-p14-w{width}-l{layers}"
    build = {
        # HuBERT-large: 24 layers, width 1024, 16 heads, 4096 FFN, stable (pre-)layer norm
        audio: lambda: transformers.HubertModel(transformers.HubertConfig(
            feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, **size)),
        # ViT-L/14: the image tower of CLIP ViT-L/14 (patch 14, 224 px, 257 tokens per frame)
        image: lambda: transformers.ViTModel(transformers.ViTConfig(patch_size=14, image_size=224, **size),
                                             add_pooling_layer=False),
    }
    sizes = {}
    for (stream, path) in (("audio", audio), ("video", image)):
        count = path / "parameters.json"
        if not count.exists():
            model = build[path]()
            model.save_pretrained(str(path))
            count.write_text(json.dumps(sum(p.numel() for p in model.parameters())))
            del model
        sizes[stream] = round(json.loads(count.read_text()) / 1e6, 1)
    return ({"audio": f"hf-audio:{audio}?pooling=last4-mean&fp16=true",
             "video": f"hf-image:{image}?pooling=last4-mean&fp16=true"}, sizes)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=480, help="demo clips to extract (labeled + unlabeled)")
    p.add_argument("--rounds", type=int, default=2, help="mining rounds after round 0")
    p.add_argument("--epochs", type=int, default=30, help="max epochs per learner fit")
    p.add_argument("--batch-size", type=int, default=16, help="clips per encoder call")
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "gpu-check")
    p.add_argument("--time-limit", type=float, default=480.0, help="seconds; the run says when it is over")
    p.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)   # tiny encoders on CPU: tests the plumbing
    args = p.parse_args(argv)
    reason = None if args.smoke else no_gpu_reason()
    if reason:
        print(f"gpu_check: {reason}. This check needs a machine with a CUDA GPU; nothing was run "
              f"and {args.out} was not written.", file=sys.stderr)
        raise SystemExit(NO_GPU)

    load_start = load_average()
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    import torch

    from mer_ray.config import ExtractConfig, LearnerSpec, MiningConfig, RunConfig
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus
    from mer_ray.mining.run import run_cyclic_mining

    gpus = 0 if args.smoke else torch.cuda.device_count()
    t = time.perf_counter()
    streams, sizes = build_encoders(args.work / "models", **(dict(width=64, layers=2) if args.smoke else {}))
    build_s = time.perf_counter() - t
    n_labeled = max(60, args.clips // 4)
    t = time.perf_counter()
    corpus = args.work / f"corpus-{args.clips}"
    if not (corpus / "corpus.json").exists():
        make_demo_corpus(corpus, DemoCorpusConfig(n_labeled=n_labeled, n_unlabeled=args.clips - n_labeled,
                                                  n_test=max(30, args.clips // 8), seed=0))
    corpus_s = time.perf_counter() - t
    gpu_name = torch.cuda.get_device_name(0) if gpus else None
    print(f"{gpus} GPU(s) {gpu_name}; encoders {sizes} M parameters built in "
          f"{build_s:.0f} s; corpus {corpus} in {corpus_s:.0f} s", flush=True)

    store = args.work / "features"
    shutil.rmtree(store, ignore_errors=True)
    run_dir = args.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    learners = (LearnerSpec("M1", ("audio", "video"), fusion="attention", max_epochs=args.epochs),
                LearnerSpec("M2", ("audio", "video"), fusion="concat-mlp", max_epochs=args.epochs),
                LearnerSpec("M3", ("audio", "video"), fusion="fbp", max_epochs=args.epochs),
                LearnerSpec("M4", ("audio", "video"), fusion="cross-attention", max_epochs=args.epochs))
    extract = ExtractConfig(streams=streams, batch_size=args.batch_size, encoder_actors=max(gpus, 1))
    ray.init(address="local", num_gpus=gpus, dashboard_host="127.0.0.1", log_to_driver=True)
    with GpuSampler() as sampler:
        from mer_ray.features.extract import extract_features
        from mer_ray.corpus.manifest import read_corpus
        from mer_ray.features.store import FeatureStore

        sampler.phase = "extraction"
        manifest = read_corpus(corpus)
        summary = extract_features(manifest, FeatureStore(store), extract, progress=False)
        print(summary.line(), flush=True)
        sampler.phase = "mining"
        t = time.perf_counter()
        cfg = RunConfig(corpus=str(corpus), store=str(store), out=str(run_dir), train_workers=max(gpus, 1), use_gpu=bool(gpus),
                        learners=learners, extract=extract, mining=MiningConfig(rounds=args.rounds))
        run_cyclic_mining(cfg)
        mining_s = time.perf_counter() - t
        sampler.phase = "done"
    ray.shutdown()
    rounds = json.loads((run_dir / "metrics.json").read_text())["rounds"]
    total = time.perf_counter() - started
    result = {
        "gpus": gpus, "gpu_name": gpu_name, "encoders": streams,
        "encoder_parameters_m": sizes, "fp16": True, "clips": summary.clips,
        "extraction_s": round(summary.seconds, 2), "extraction_clips_per_s": round(summary.clips_per_s, 2),
        "extraction_gpu_util_pct": sampler.util("extraction"),
        "mining_s": round(mining_s, 2), "mining_round_s": [r["seconds"] for r in rounds],
        "mining_learners": [s.name + ":" + s.fusion for s in learners], "mining_train_workers": max(gpus, 1),
        "mining_gpu_util_pct": sampler.util("mining"),
        "gpu_memory_peak_mib": max((m for _, _, m in sampler.samples), default=None),
        "model_build_s": round(build_s, 1), "corpus_s": round(corpus_s, 1), "total_s": round(total, 1),
        "time_limit_s": args.time_limit,
    }
    print(f"extraction {result['extraction_clips_per_s']} clips/s (GPU util {result['extraction_gpu_util_pct']}); "
          f"mining rounds {result['mining_round_s']} s (GPU util {result['mining_gpu_util_pct']}); "
          f"total {total:.0f} s" + (f" — OVER the {args.time_limit:.0f} s limit" if total > args.time_limit else ""))
    return write_record(args.out, result, script=__file__, fields=FIELDS, argv=argv, load_start=load_start)


if __name__ == "__main__":
    main()
