"""benchmarks/gpu_check.py without a GPU: it stops at once, says why, and writes nothing."""
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_without_a_gpu_it_exits_at_once_with_a_clear_message(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}   # also hides a GPU the test machine may have
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "needs a machine with a CUDA GPU" in done.stderr and "nothing was run" in done.stderr
    assert not out.exists()
    assert time.perf_counter() - started < 60   # no model built, no Ray started
