"""One format for every benchmark's JSON in benchmarks/results/: what made it, where, and when.

Each benchmark script declares the fields its result holds (`FIELDS`) and writes it through
`write_record`, which adds the provenance below and refuses a result whose fields differ from
the declaration; tests/test_benchmark_records.py checks every stored JSON against its script's
`FIELDS`, so a file made by older code (other fields) cannot sit in results/ unnoticed.

Units are in the field names: `_s` seconds, `_gib` GiB (2**30 bytes), `_mib` MiB (2**20 bytes), `_per_s` a rate.
"""
from __future__ import annotations

import json
import os
from importlib import metadata
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PROVENANCE = ("benchmark", "command", "commit", "commit_dirty", "machine")
MACHINE = ("platform", "processor", "cpus", "gpu", "load_average_1min_start", "load_average_1min_end",
           "python", "torch", "ray")


def commit() -> tuple[str, bool]:
    """(HEAD's hash, whether tracked files differ from it) of the checkout the script runs from."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    return head.stdout.strip() or "unknown", bool(dirty.stdout.strip())


START_COMMIT = commit()   # taken when a benchmark script imports this module, i.e. as it starts


def load_average() -> float:
    """The 1-minute load average: other jobs on a shared machine slow every timing."""
    return round(os.getloadavg()[0], 2)


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:   # a broken CUDA install reads as "no GPU" here; gpu_check.py says more
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine(load_start: float) -> dict:
    versions = {name: _version(name) for name in ("torch", "ray")}
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "gpu": gpu_name(), "load_average_1min_start": load_start,
            "load_average_1min_end": load_average(), "python": platform.python_version(), **versions}


def command(script: str, argv: Iterable[str] | None) -> str:
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *args])


def write_record(path: Path | str, result: dict, *, script: str, fields: Iterable[str],
                 argv: Iterable[str] | None, load_start: float) -> dict:
    """Check `result` holds exactly `fields`, add the provenance, write it as JSON; returns it."""
    fields = tuple(fields)
    missing, extra = sorted(set(fields) - set(result)), sorted(set(result) - set(fields))
    if missing or extra:
        raise ValueError(f"{Path(script).name}: result fields differ from its FIELDS "
                         f"(missing {missing}, not declared {extra}); update FIELDS with the result")
    head, dirty = START_COMMIT   # the code that ran, not what HEAD became during a long run
    record = {"benchmark": Path(script).stem, "command": command(script, argv), "commit": head,
              "commit_dirty": dirty, "machine": machine(load_start), **result}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return record
