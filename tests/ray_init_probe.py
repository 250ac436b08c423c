"""Start each entry point's own local Ray for real and read back what it started.

    python tests/ray_init_probe.py CORPUS WORKDIR [ENTRY_POINT ...]   (tests/test_cluster.py runs it)

With entry point names (keys of `entry_points`), only those are started (each start costs a
Ray start-up and shutdown, ~15 s on 2 cores); without, every one.

Run in a process of its own: the test session already holds a Ray (the `ray_session` fixture),
and every entry point skips `ray.init` when one is connected. `ray.init` is wrapped, not
replaced: the wrapper calls Ray's own `ray.init` with the entry point's arguments, then asks the
Ray it started:
- its dashboard / job server over HTTP, with no token (expect 401), a wrong one (403), and
  through Ray's own `JobSubmissionClient`, which sends the token this Ray uses (expect success);
- which addresses the dashboard's port listens on (expect 127.0.0.1 only);
then stops the entry point (what it does after start-up is tested elsewhere) and shuts that Ray
down. One JSON line per entry point on stdout, after the marker line.
"""
from __future__ import annotations

import json
import os
import runpy
import sys
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import ray

REPO = Path(__file__).resolve().parents[1]
MARKER = "== probe results"


class Started(BaseException):
    """Raised by the wrapper once the Ray is read back (BaseException: no `except Exception` of
    the entry point swallows it)."""


def _status(url: str, token: str | None) -> int | str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def read_back(context, kwargs: dict) -> dict:
    from ray.job_submission import JobSubmissionClient

    dashboard = context.dashboard_url
    result = {"init_kwargs": {k: repr(v) for k, v in kwargs.items()}, "dashboard_url": dashboard}
    if not dashboard:
        return {**result, "error": "this Ray has no dashboard"}
    jobs = f"http://{dashboard}/api/jobs/"
    deadline = time.time() + 60
    while isinstance(_status(jobs, None), str) and time.time() < deadline:   # still starting
        time.sleep(0.5)
    result["no_token"] = _status(jobs, None)
    result["wrong_token"] = _status(jobs, "not-the-token")
    try:
        JobSubmissionClient(f"http://{dashboard}").list_jobs()
        result["rays_client"] = "ok"
    except Exception as exc:   # recorded, so the test names what failed
        result["rays_client"] = f"{type(exc).__name__}: {exc}"
    # what a worker of that Ray sees of the Ray Train settings a local start gives its jobs
    from mer_ray.session import LOCAL_TRAIN_ENV

    result["worker_env"] = ray.get(ray.remote(num_cpus=0)(
        lambda: {k: os.environ.get(k) for k in LOCAL_TRAIN_ENV}).remote(), timeout=120)
    port = int(dashboard.rsplit(":", 1)[1])
    result["listens_on"] = sorted({c.laddr.ip for c in psutil.net_connections("tcp")
                                   if c.status == psutil.CONN_LISTEN and c.laddr.port == port})
    return result


def job(script: str, *args: str):
    def start():
        sys.argv = [str(REPO / script), *args]
        runpy.run_path(str(REPO / script), run_name="__main__")
    return start


def tune_library(workdir: Path):
    def start():
        from mer_ray.config import LearnerSpec
        from mer_ray.synthetic import synthetic_table
        from mer_ray.tune import tune_learners

        table, _ = synthetic_table(20, 4, {"audio": 4, "video": 4}, seed=0)
        tune_learners(table, table.rows("train"), (LearnerSpec("M", ("audio", "video")),), workdir / "tune-lib")
    return start


def entry_points(corpus: str, workdir: Path) -> dict:
    """One entry point per `ray.init` call site (tests/test_cluster.py's RAY_INIT_SITES says which
    reaches which); every job's arguments up to its start-up are real."""
    w = str(workdir)
    return {
        "jobs/extract_features.py": job("jobs/extract_features.py", "--corpus", corpus, "--store", f"{w}/store"),
        "jobs/pretrain_mae.py": job("jobs/pretrain_mae.py", "--corpus", corpus, "--out", f"{w}/mae", "--epochs", "1"),
        "jobs/detect_faces.py": job("jobs/detect_faces.py", "--corpus", corpus, "--out", f"{w}/faces.parquet"),
        "mer_ray.tune.tune_learners": tune_library(workdir),
    }


def main(corpus: str, workdir: str, *names: str) -> None:
    real_init = ray.init
    results = {}

    def init(*args, **kwargs):
        started = time.perf_counter()
        context = real_init(*args, **kwargs)
        seconds = round(time.perf_counter() - started, 1)
        raise Started({"ray_init_s": seconds, **read_back(context, kwargs)})

    ray.init = init
    known = entry_points(corpus, Path(workdir))
    unknown = set(names) - set(known)
    if unknown:
        raise SystemExit(f"unknown entry point(s) {sorted(unknown)}; known: {sorted(known)}")
    for name, start in known.items():
        if names and name not in names:
            continue
        began = time.perf_counter()
        try:
            start()
            results[name] = {"error": "returned without calling ray.init"}
        except Started as started:
            results[name] = started.args[0]
        except BaseException:
            results[name] = {"error": traceback.format_exc()[-3000:]}
        finally:
            ray.shutdown()
            results[name]["total_s"] = round(time.perf_counter() - began, 1)
    print(MARKER)
    for name, result in results.items():
        print(json.dumps({"entry_point": name, **result}))


if __name__ == "__main__":
    main(*sys.argv[1:])
