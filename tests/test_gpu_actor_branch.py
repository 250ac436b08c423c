"""Extraction's GPU branch on CPUs: a local Ray cluster (ray.cluster_utils.Cluster) of a CPU head
and a node with one logical GPU.

With a GPU in the cluster the encoder actors ask for one each and PyAV decodes in separate CPU
tasks (mer_ray.raydata.decode_and_encode_resources). Read back through Ray's state API: the
encoder actors ran on the GPU node, the decode tasks on the CPU node, and nothing fused them; the
stored features equal those of the CPU-only branch (decode fused into the actors) on the
session's Ray.

The cluster lives in a process of its own (this file run as a script): `Cluster` starts its own
raylets and connects its driver with `ray.init(address=...)`, which the test process, connected
to the session's Ray, cannot do. Its temp dir and HOME are private, so no other Ray on this
machine is joined.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer_ray.config import ExtractConfig
from mer_ray.corpus.demo import DemoCorpusConfig, make_demo_corpus
from mer_ray.corpus.manifest import read_corpus
from mer_ray.features.extract import extract_features
from mer_ray.features.store import FeatureStore

STREAMS = {"audio": "logmel-stats", "video": "frame-stats"}   # light encoders: seconds to start
MARKER = "== placement"


def extract_on_a_gpu_cluster(corpus: str, store: str) -> dict:
    """Run in the child process: the cluster, one extraction, where its actors and tasks ran."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors, list_tasks

    import socket
    with socket.socket() as probe:   # a free port: the test session's own Ray holds 8265
        probe.bind(("127.0.0.1", 0))
        dashboard_port = probe.getsockname()[1]
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, num_gpus=0, include_dashboard=True, dashboard_host="127.0.0.1",   # state API
        dashboard_port=dashboard_port))
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.connect()
    try:
        cfg = ExtractConfig(streams=STREAMS, batch_size=4, encoder_actors=2)   # gpus_per_actor: None
        summary = extract_features(read_corpus(corpus), FeatureStore(store), cfg, progress=False)
        deadline = time.time() + 60
        while True:   # task events reach the state API a moment after the tasks end
            actors = [a for a in list_actors(detail=True, limit=1000) if "EncodeAndStore" in a.class_name]
            tasks = [t for t in list_tasks(detail=True, limit=10000, filters=[("type", "=", "NORMAL_TASK")])
                     if "decode_batch" in t.name]
            if (actors and tasks and all(t.node_id for t in tasks)) or time.time() > deadline:
                break
            time.sleep(1)
        return dict(
            stored=dict(summary.stored), gpu_node=gpu_node.node_id, head_node=cluster.head_node.node_id,
            actors=[dict(name=a.class_name, node=a.node_id, resources=a.required_resources) for a in actors],
            tasks=[dict(name=t.name, node=t.node_id, resources=t.required_resources) for t in tasks],
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_demo_corpus(tmp_path_factory.mktemp("corpus") / "gpu",
                            DemoCorpusConfig(n_labeled=6, n_unlabeled=4, n_test=2, seed=7))


@pytest.fixture(scope="module")
def gpu_run(corpus):
    root = Path(tempfile.mkdtemp(prefix="mr-gpu-", dir="/tmp"))   # short: unix socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(root), RAY_TMPDIR=str(root), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               RAY_DATA_DISABLE_PROGRESS_BARS="1")
    store = root / "store"
    process = subprocess.Popen([sys.executable, __file__, str(corpus), str(store)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=540)
        assert process.returncode == 0 and MARKER in output, output[-5000:]
        placement = json.loads(output.split(MARKER, 1)[1].strip().splitlines()[0])
        features = {s: stored(store, s) for s in STREAMS}
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)   # whatever of that cluster is still alive
        except ProcessLookupError:
            pass
        shutil.rmtree(root, ignore_errors=True)
    return placement, features


def stored(store, stream) -> dict:
    parts = FeatureStore(store).part_files(stream)
    table = pd.concat([pd.read_parquet(p) for p in parts]) if parts else pd.DataFrame(columns=["name", "feature"])
    return dict(zip(table["name"], table["feature"]))


def test_encoder_actors_ask_for_a_gpu_and_run_on_the_gpu_node(gpu_run):
    placement, _ = gpu_run
    actors = placement["actors"]
    assert actors, "no encoder actor was listed"
    assert {a["node"] for a in actors} == {placement["gpu_node"]}, actors
    assert all(a["resources"].get("GPU") == 1 for a in actors), actors


def test_decode_runs_in_cpu_tasks_on_the_cpu_node_not_fused_into_the_actors(gpu_run):
    placement, _ = gpu_run
    tasks = placement["tasks"]
    assert tasks, "no decode task ran: decoding was fused into the GPU actors"
    assert {t["node"] for t in tasks} == {placement["head_node"]}, tasks
    assert all("EncodeAndStore" not in t["name"] and not t["resources"].get("GPU") for t in tasks), tasks
    assert all("decode_batch" not in a["name"] for a in placement["actors"])


def test_every_clip_is_stored_as_the_cpu_only_branch_stores_it(gpu_run, corpus, ray_session, tmp_path):
    placement, features = gpu_run
    manifest = read_corpus(corpus)
    assert placement["stored"] == {s: len(manifest) for s in STREAMS}
    store = FeatureStore(tmp_path / "cpu")
    extract_features(manifest, store, ExtractConfig(streams=STREAMS, batch_size=4, gpus_per_actor=0),
                     progress=False)
    for stream in STREAMS:
        cpu = stored(store.root, stream)
        assert features[stream].keys() == cpu.keys() == set(manifest["name"])
        for name, vector in cpu.items():
            np.testing.assert_allclose(features[stream][name], vector, rtol=1e-5, atol=1e-6, err_msg=name)


if __name__ == "__main__":
    result = extract_on_a_gpu_cluster(*sys.argv[1:])
    print(MARKER)
    print(json.dumps(result))
