"""benchmarks/results/ holds only what the current benchmark scripts write.

Every JSON there names the script that made it, the command, the commit and the machine; its
fields are exactly the script's declared `FIELDS` (which `benchmarks/record.py` enforces when it
writes), so a file left by older code, or one edited by hand, fails here.
"""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))
from record import MACHINE, PROVENANCE  # noqa: E402

RECORDS = sorted(RESULTS.glob("*.json"))


def script_fields(name: str) -> tuple[str, ...]:
    """The FIELDS a benchmark script declares, read from the script itself (not run)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.FIELDS)


def test_there_are_records():
    assert RECORDS, f"{RESULTS} is empty"


@pytest.mark.parametrize("path", RECORDS, ids=[p.name for p in RECORDS])
def test_record_matches_its_script_and_says_where_it_came_from(path):
    record = json.loads(path.read_text())
    missing = [k for k in PROVENANCE if k not in record]
    assert not missing, f"{path.name}: no {missing}; rerun its benchmark (benchmarks/record.py writes them)"
    name = record["benchmark"]
    assert (BENCHMARKS / f"{name}.py").exists(), f"{path.name}: made by benchmarks/{name}.py, which is gone"
    assert path.stem == name or path.stem.startswith(name + "_"), f"{path.name}: named after another script"
    assert record["command"].startswith(f"python benchmarks/{name}.py"), record["command"]
    stored, declared = set(record) - set(PROVENANCE), set(script_fields(name))
    assert stored == declared, (
        f"{path.name}: made by other code than benchmarks/{name}.py's today (no "
        f"{sorted(declared - stored)}, not written any more: {sorted(stored - declared)}); rerun it")
    assert set(record["machine"]) == set(MACHINE)
    load = record["machine"]["load_average_1min_start"]
    assert record["machine"]["cpus"] >= 1 and (load is None or load >= 0)   # None: not recorded


@pytest.mark.parametrize("path", RECORDS, ids=[p.name for p in RECORDS])
def test_record_commit_is_in_this_repository(path):
    commit = json.loads(path.read_text())["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit), commit
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if known.returncode and (ROOT / ".git" / "shallow").exists():
        pytest.skip("a shallow clone may not hold the commit")
    assert known.returncode == 0, f"{path.name}: commit {commit} is not in this repository"


def _keys(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix + k
            yield from _keys(v, prefix + k + ".")


@pytest.mark.parametrize("path", RECORDS, ids=[p.name for p in RECORDS])
def test_units_are_named_right(path):
    """Memory is measured as PSS in binary units: no "rss", no decimal "_gb" / "_mb" names."""
    for key in _keys(json.loads(path.read_text())):
        leaf = key.rsplit(".", 1)[-1]
        assert "rss" not in leaf, f"{path.name}: {key}: the benchmarks measure PSS, not RSS"
        assert not leaf.endswith(("_gb", "_mb")), f"{path.name}: {key}: name binary units _gib / _mib"


def test_the_memory_sampler_takes_a_bounded_share_of_a_core():
    # benchmarks/memory.py reads every process's smaps: on a Ray tree of ~30 processes a fixed
    # 0.5 s interval cost a third of a core, taken from the side it measured
    import threading
    import time

    from memory import PeakMemory

    class Slow(PeakMemory):
        samples = 0

        def _sample(self) -> int:
            self.samples += 1
            time.sleep(0.05)   # a sample as slow as a big tree's
            return 1

    with Slow(interval=0.01) as sampler:
        time.sleep(2.0)
    busy = sampler.samples * 0.05 / 2.0
    assert busy <= 2 * Slow.MAX_DUTY, f"{sampler.samples} samples in 2 s: the sampler was busy {busy:.0%} of it"
    assert sampler.samples >= 2 and sampler.peak_bytes == 1
    assert not any(t is sampler._thread for t in threading.enumerate())
