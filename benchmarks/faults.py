"""Fault injection (issue 7): kill an encoder actor, a Ray Train worker and the driver mid-run.

    .venv/bin/python benchmarks/faults.py                 # all three, ~6 min on 2 busy cores
    .venv/bin/python benchmarks/faults.py --only encoder  # encoder | train | driver

Each fault runs next to an undisturbed reference on the same small generated corpus and prints
whether the run finished and whether its output equals the reference — the stored features,
and for the mining both the predicted labels (predictions.csv) and every learner's
probabilities of the last round (probs.npz, `probs_equal_to_reference`, `max_abs_prob_diff`);
results go to benchmarks/results/faults.json (faults not run are null).

- encoder: SIGKILL one Ray Data encoder actor while parts are being written. Ray Data restarts
  it (its actor pools default to max_restarts=-1, max_task_retries=-1) and retries the batch;
  a retried batch rewrites the same content-named part file, so the store ends complete and equal.
- train: SIGKILL one Ray Train worker during round 1. FailureConfig(max_failures=2) restarts the
  worker group, and `mining_loop` resumes after the last complete round in state.json.
- driver: SIGKILL the driver of a `ray job submit` run during round 1, then submit the same
  command again: it resumes after the last complete round (earlier rounds are not redone).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))   # tests/cluster_head.py: a real head for the driver fault
sys.path.insert(0, str(REPO / "benchmarks"))
from record import RESULTS as RESULTS_DIR, load_average, write_record  # noqa: E402

RESULTS = RESULTS_DIR / "faults.json"
FIELDS = ("encoder", "train", "driver")


def actors(class_part: str, alive_only: bool = True) -> list[dict]:
    import ray
    return [a for a in ray._private.state.actors().values() if class_part in a["ActorClassName"]
            and (a["State"] == "ALIVE" or not alive_only)]


def stored(store: Path, stream: str) -> dict:
    from mer_ray.features.store import FeatureStore
    table = pd.concat([pd.read_parquet(p) for p in FeatureStore(store).part_files(stream)])
    return dict(zip(table["name"], np.stack(table["feature"].to_numpy())))


def stores_equal(a: Path, b: Path, streams) -> bool:
    for stream in streams:
        x, y = stored(a, stream), stored(b, stream)
        if x.keys() != y.keys() or not all(np.allclose(x[n], y[n], rtol=1e-5, atol=1e-6) for n in x):
            return False
    return True


def last_probs(run: Path) -> dict[str, np.ndarray]:
    """Every array of the last complete round's probs.npz (names aside)."""
    last = json.loads((run / "state.json").read_text())["complete"][-1]
    with np.load(run / f"round-{last}" / "probs.npz", allow_pickle=False) as saved:
        return {k: saved[k] for k in saved.files if k != "names"}


def probs_diff(run: Path, reference: Path) -> float | None:
    """Largest |difference| between two runs' last-round probabilities (None: not comparable)."""
    try:
        a, b = last_probs(run), last_probs(reference)
    except (OSError, KeyError, IndexError, ValueError):
        return None
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return None
    return max((float(np.nanmax(np.abs(a[k] - b[k]))) if a[k].size else 0.0) for k in a)


def run_in_thread(fn, *args, **kwargs):
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:   # reported, not raised: the fault may make the run fail
            outcome["error"] = f"{type(exc).__name__}: {exc}"
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition, timeout: float, step: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return None


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)   # a process this script's Ray started, by its id


def encoder_fault(corpus: Path, work: Path) -> dict:
    from mer_ray.config import ExtractConfig
    from mer_ray.corpus.manifest import read_corpus
    from mer_ray.features.extract import extract_features
    from mer_ray.features.store import FeatureStore

    cfg = ExtractConfig(batch_size=4)   # many small batches: a wide window for the kill
    manifest = read_corpus(str(corpus))
    started = time.perf_counter()
    extract_features(manifest, FeatureStore(work / "store-reference"), cfg, progress=False)
    reference_s = time.perf_counter() - started

    store = work / "store-killed"
    started = time.perf_counter()
    thread, outcome = run_in_thread(extract_features, manifest, FeatureStore(store), cfg, progress=False)
    target = wait_until(lambda: len(list(store.glob("*/part-*.parquet"))) >= 3 and actors("EncodeAndStore"), 300)
    killed = None
    if target and thread.is_alive():
        killed = target[0]
        kill(killed["Pid"])
    thread.join()
    summary = outcome.get("value")
    record = actors("EncodeAndStore", alive_only=False)
    restarts = sum(a.get("NumRestarts", 0) for a in record if killed and a["ActorID"] == killed["ActorID"])
    return dict(fault="SIGKILL one encoder actor mid-extraction", injected=killed is not None,
                error=outcome.get("error"), finished=summary is not None,
                equal_to_reference=summary is not None and stores_equal(store, work / "store-reference", cfg.streams),
                actor_restarts=int(restarts), seconds=round(time.perf_counter() - started, 1),
                reference_seconds=round(reference_s, 1))


def train_fault(corpus: Path, work: Path) -> dict:
    from mer_ray.config import MiningConfig, RunConfig
    from mer_ray.mining.run import run_cyclic_mining

    def cfg(out):
        return RunConfig(corpus=str(corpus), out=str(work / out), store=str(work / "store-reference"),
                         train_workers=2, mining=MiningConfig(rounds=2))

    started = time.perf_counter()
    reference = run_cyclic_mining(cfg("run-reference"))
    reference_s = time.perf_counter() - started
    before = {a["ActorID"] for a in actors("RayTrainWorker", alive_only=False)}

    started = time.perf_counter()
    thread, outcome = run_in_thread(run_cyclic_mining, cfg("run-killed"))
    out = work / "run-killed"
    target = wait_until(lambda: (out / "round-1.partial").exists()
                        and [a for a in actors("RayTrainWorker") if a["ActorID"] not in before], 600)
    killed = None
    if target and thread.is_alive():
        killed = target[-1]
        kill(killed["Pid"])
    thread.join()
    groups = len([a for a in actors("RayTrainWorker", alive_only=False) if a["ActorID"] not in before]) // 2
    finished = "value" in outcome
    return dict(fault="SIGKILL one Ray Train worker in round 1", injected=killed is not None,
                error=outcome.get("error"), finished=finished,
                complete_rounds=json.loads((out / "state.json").read_text())["complete"] if finished else None,
                worker_groups_started=groups,
                equal_to_reference=finished and pd.read_csv(out / "predictions.csv").equals(
                    pd.read_csv(reference / "predictions.csv")),
                **_probs_fields(finished, out, reference),
                seconds=round(time.perf_counter() - started, 1), reference_seconds=round(reference_s, 1))


def _probs_fields(finished: bool, run: Path, reference: Path) -> dict:
    diff = probs_diff(run, reference) if finished else None
    return dict(probs_equal_to_reference=diff == 0.0, max_abs_prob_diff=diff)


def driver_fault(corpus: Path, work: Path) -> dict:
    from cluster_head import EXCLUDES, start_head, wait_for_job

    out = work / "run-driver-killed"
    entry = (f"python jobs/cyclic_mining.py --corpus {corpus} --store {work / 'store-reference'} "
             f"--out {out} --rounds 2 --train-workers 1")
    runtime_env = {"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": {"HF_HUB_OFFLINE": "1"}}
    head = start_head(num_cpus=2)
    started = time.perf_counter()
    try:
        client = head.client()
        first = client.submit_job(entrypoint=entry, runtime_env=runtime_env)
        reached = wait_until(lambda: (out / "round-1.partial").exists(), 600, step=0.2)
        info = client.get_job_info(first)
        pid = info.driver_info.pid if info.driver_info else None
        if reached and pid:
            kill(int(pid))
        first_status = wait_for_job(client, first, 120)
        complete_at_kill = json.loads((out / "state.json").read_text())["complete"] if (out / "state.json").exists() else []
        mtimes = {r: (out / f"round-{r}" / "metrics.json").stat().st_mtime_ns for r in complete_at_kill}
        second = client.submit_job(entrypoint=entry, runtime_env=runtime_env)
        second_status = wait_for_job(client, second, 600)
        logs = client.get_job_logs(second)
    finally:
        head.stop()
    finished = str(second_status) == "SUCCEEDED"
    reference = work / "run-reference" / "predictions.csv"
    return dict(fault="SIGKILL the job's driver in round 1, resubmit", injected=bool(reached and pid),
                killed_job_status=str(first_status), rounds_complete_at_kill=complete_at_kill,
                rerun_status=str(second_status), finished=finished,
                earlier_rounds_not_redone=finished and all(
                    (out / f"round-{r}" / "metrics.json").stat().st_mtime_ns == t for r, t in mtimes.items()),
                complete_rounds=json.loads((out / "state.json").read_text())["complete"] if finished else None,
                equal_to_reference=finished and reference.exists() and pd.read_csv(out / "predictions.csv").equals(
                    pd.read_csv(reference)),
                **_probs_fields(finished, out, work / "run-reference"),
                seconds=round(time.perf_counter() - started, 1), rerun_log_tail=None if finished else logs[-2000:])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma list of encoder, train, driver (default: all)")
    p.add_argument("--work", help="working folder (default: a new temp folder)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    load_start = load_average()
    only = set((args.only or "encoder,train,driver").split(","))

    # A private Ray temp dir: no other `ray.init()` on this machine joins this script's Ray.
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="mr-faults-", dir="/tmp")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray
    from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus

    work = Path(args.work or tempfile.mkdtemp(prefix="mer-faults-"))
    corpus = make_demo_corpus(work / "corpus", DemoCorpusConfig(n_labeled=48, n_unlabeled=72, n_test=16, seed=5))
    results = {name: None for name in FIELDS}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        if "encoder" in only or not (work / "store-reference").exists():
            results["encoder"] = encoder_fault(corpus, work)
        if "train" in only or ("driver" in only and not (work / "run-reference").exists()):
            results["train"] = train_fault(corpus, work)
    finally:
        ray.shutdown()
    if "driver" in only:
        results["driver"] = driver_fault(corpus, work)

    print(f"\n{'fault':<48} {'injected':>8} {'finished':>8} {'equal':>6} {'seconds':>8}")
    for r in filter(None, results.values()):
        print(f"{r['fault']:<48} {str(r['injected']):>8} {str(r['finished']):>8} "
              f"{str(r['equal_to_reference']):>6} {r['seconds']:>8}  probabilities equal: "
              f"{r.get('probs_equal_to_reference', '-')}")
    write_record(args.out, json.loads(json.dumps(results, default=str)), script=__file__, fields=FIELDS,
                 argv=argv, load_start=load_start)


if __name__ == "__main__":
    main()
