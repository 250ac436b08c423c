"""Cluster runs (issue 7): a real `ray job submit` to a head started here, --storage, cluster.yaml
checked offline against Ray's schema, and the security defaults.

The job test starts its own head (`ray start --head` on 127.0.0.1, its own temp dir and ports,
token auth on) beside the session's in-process Ray; it talks to it over HTTP only, so the test
process's `ray.init` connection is never touched. The security defaults of a local Ray are read
back from the Ray each entry point starts itself, in a process of its own (tests/ray_init_probe.py).
Multi-node runs and faults are slower: they are in tests/slow/ and benchmarks/faults.py.
"""
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from cluster_head import EXCLUDES, REPO, start_head, wait_for_job
from mer_ray.config import RunConfig
from mer_ray.mining.run import resolve

CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture(scope="module")
def head():
    head = start_head(num_cpus=2)
    yield head
    head.stop()


def test_job_submitted_to_a_running_head_succeeds_with_outputs_on_the_storage(head, tiny_corpus, tmp_path):
    storage = tmp_path / "shared"
    client = head.client()
    job_id = client.submit_job(
        # the features go to the session's tiny corpus store, so later tests reuse them; a dev
        # split (folds 0) trains a fifth of the models of the default's 5 folds: what is checked
        # here is the job on the head and its storage, the folds have tests of their own
        entrypoint=f"python jobs/cyclic_mining.py --corpus {tiny_corpus} --store {tiny_corpus / 'features'} "
                   f"--storage {storage} --out job --rounds 1 --train-workers 1 --set mining.folds=0",
        runtime_env={"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": {"HF_HUB_OFFLINE": "1"}},
    )
    status = wait_for_job(client, job_id, timeout=480)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-5000:]
    out = storage / "runs" / "job"                      # a relative --out lands under --storage
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [0, 1]
    assert json.loads((out / "state.json").read_text())["complete"] == [0, 1]
    predictions = pd.read_csv(out / "predictions.csv")
    pool = {p.stem for p in (tiny_corpus / "video-unlabeled-with-test2noise").glob("*.mp4")}
    assert list(predictions.columns) == ["name", "discrete"] and set(predictions["name"]) == pool
    assert (out / "ray" / "mining").is_dir()            # Ray Train's storage_path is on the storage too
    # the job joined the head, no second Ray: the logs it names are the head's session's
    assert f"Ray's logs: {head.temp_dir}" in logs or "Connecting to existing Ray cluster" in logs, logs[-2000:]


def test_the_heads_job_server_refuses_requests_without_the_token(head):
    for headers, code in (({}, 401), ({"Authorization": "Bearer not-the-token"}, 403)):
        request = urllib.request.Request(f"{head.dashboard_url}/api/jobs/", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == code


def test_the_heads_dashboard_listens_on_localhost_only(head):
    port = int(head.dashboard_url.rsplit(":", 1)[1])
    listening = [c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and set(listening) == {"127.0.0.1"}


def test_storage_holds_the_store_and_the_runs(tmp_path):
    storage = tmp_path / "shared"
    cfg = resolve(RunConfig(corpus=str(tmp_path / "corpus"), storage=str(storage), out="semi"))
    assert cfg.store == str(storage / "features") and cfg.out == str(storage / "runs" / "semi")
    cfg = resolve(RunConfig(corpus=str(tmp_path / "corpus"), storage=str(storage)))
    assert Path(cfg.out).parent == storage / "runs"                 # a timestamped run on the storage
    cfg = resolve(RunConfig(corpus=str(tmp_path / "corpus"), storage=str(storage),
                            out=str(tmp_path / "elsewhere"), store=str(tmp_path / "store")))
    assert cfg.out == str(tmp_path / "elsewhere") and cfg.store == str(tmp_path / "store")
    cfg = resolve(RunConfig(corpus=str(tmp_path / "corpus"), out="semi"))  # no storage: as before
    assert cfg.out == "semi" and cfg.store == str(tmp_path / "corpus" / "features")


# -- cluster.yaml ----------------------------------------------------------------------------------

def _prepared_cluster_config() -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load(CLUSTER_YAML.read_text()))
    validate_config(config)   # Ray's JSON schema; raises on an unknown or mistyped field
    return config


def test_cluster_yaml_validates_against_rays_schema():
    config = _prepared_cluster_config()
    assert config["provider"]["type"] == "aws"
    assert config["idle_timeout_minutes"] > 0
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if t["resources"].get("GPU", 0) > 0]
    cpu = [t for name, t in types.items() if name != config["head_node_type"] and not t["resources"].get("GPU")]
    assert len(gpu) == 1 and gpu[0]["min_workers"] == 0 and gpu[0]["max_workers"] >= 1   # autoscaling GPUs
    assert cpu and cpu[0]["resources"]["CPU"] >= 4                                        # decode workers
    # the code goes to every node and the package is installed there
    assert "." in config["file_mounts"].values()
    code_dir = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    assert any("pip install" in c and code_dir.replace("/home/ubuntu", "~") in c
               for c in config["setup_commands"])


def _as_resources(ray_data_kwargs: dict) -> dict:
    """Ray Data's num_cpus / num_gpus keywords as a node's resource names."""
    names = {"num_cpus": "CPU", "num_gpus": "GPU"}
    return {names[k]: v for k, v in ray_data_kwargs.items() if v}


def test_cluster_yaml_node_types_fit_every_resource_request_of_the_jobs():
    from mer_ray.adapt import PretrainConfig
    from mer_ray.adapt.pretrain import worker_scaling
    from mer_ray.mining.trainer import learner_scaling
    from mer_ray.raydata import decode_and_encode_resources

    types = _prepared_cluster_config()["available_node_types"]
    # read from the code that makes the requests, never copied here
    gpu_decode, gpu_encode = decode_and_encode_resources(gpus=1)
    cpu_decode, cpu_encode = decode_and_encode_resources(gpus=0)
    requests = {
        "decode task, GPU cluster": _as_resources(gpu_decode),
        "encoder actor, GPU cluster": _as_resources(gpu_encode),
        "decode task, CPU only": _as_resources(cpu_decode),
        "encoder actor, CPU only": _as_resources(cpu_encode),
        **{f"learner worker, use_gpu={gpu}":
           learner_scaling(RunConfig(train_workers=1, use_gpu=gpu))._resources_per_worker_not_none
           for gpu in (True, False)},
        **{f"MAE pre-training worker, use_gpu={gpu}":
           worker_scaling(PretrainConfig(use_gpu=gpu))._resources_per_worker_not_none
           for gpu in (True, False)},
    }
    assert requests["encoder actor, GPU cluster"].get("GPU", 0) > 0        # the GPU branch asks for one
    assert requests["learner worker, use_gpu=True"].get("GPU", 0) > 0
    for what, request in requests.items():
        assert request, f"{what} asks for nothing"
        fits = [name for name, t in types.items() if t["max_workers"] > 0
                and all(t["resources"].get(k, 0) >= v for k, v in request.items())]
        assert fits, f"no worker node type of cluster.yaml can run a {what} ({request})"


def test_cluster_yaml_keeps_token_auth_on_and_the_dashboard_on_localhost():
    config = _prepared_cluster_config()
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])
    assert any(remote.endswith(".ray/auth_token") for remote in config["file_mounts"])


# -- security defaults ---------------------------------------------------------------------------

# Each `ray.init` call site of the code → the entry point the probe starts it through
# (tests/ray_init_probe.py). A call site's arguments are its own, so one entry point per site
# covers every entry point that reaches it.
RAY_INIT_SITES = {
    # mer_ray.session.init_ray: every job (mine, extract, denoise, tune, predict, pretrain-mae,
    # detect_faces) and library entry point (tune_learners, pretrain_mae) starts Ray through it
    "mer_ray/session.py": "jobs/extract_features.py",
}


@pytest.fixture(scope="module")
def started_rays(tiny_corpus):
    """Every entry point's own local Ray, started for real in a process of its own (this one
    holds the session's Ray) and read back over its dashboard's HTTP port."""
    from ray_init_probe import MARKER

    # a short private dir for Ray's temp files (unix socket paths) and for HOME, where Ray keeps
    # the token it makes: no other Ray on this machine is joined, no user token is read
    root = Path(tempfile.mkdtemp(prefix="mr-probe-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(root), RAY_TMPDIR=str(root), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               RAY_DATA_DISABLE_PROGRESS_BARS="1")
    # only the entry points RAY_INIT_SITES names: each one probed is a Ray started and stopped
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "ray_init_probe.py"), str(tiny_corpus),
                                str(root / "work"), *sorted(set(RAY_INIT_SITES.values()))], env=env, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)   # anything of those Rays still alive
        except ProcessLookupError:
            pass
        shutil.rmtree(root, ignore_errors=True)
    assert MARKER in output, output[-5000:]
    results = [json.loads(line) for line in output.split(MARKER, 1)[1].splitlines() if line.startswith("{")]
    return {r.pop("entry_point"): r for r in results}


def test_every_ray_init_call_site_has_an_entry_point_probed():
    sites = {str(path.relative_to(REPO)) for d in ("mer_ray", "jobs") for path in (REPO / d).rglob("*.py")
             if any(True for _ in _calls(path, "ray.init"))}
    assert sites == set(RAY_INIT_SITES), "add the new call site's entry point to tests/ray_init_probe.py"


@pytest.mark.parametrize("entry_point", sorted(set(RAY_INIT_SITES.values())))
def test_a_local_ray_started_by_each_entry_point_keeps_token_auth_and_a_localhost_dashboard(
        started_rays, entry_point):
    ray = started_rays[entry_point]
    assert "error" not in ray, ray.get("error")
    assert ray["no_token"] == 401, ray             # the job server refuses a request without the token
    assert ray["wrong_token"] == 403, ray
    assert ray["rays_client"] == "ok", ray          # and serves Ray's own client, which sends it
    assert ray["listens_on"] == ["127.0.0.1"], ray  # never on a public interface


@pytest.mark.parametrize("entry_point", sorted(set(RAY_INIT_SITES.values())))
def test_a_local_ray_gives_its_workers_the_one_machine_ray_train_settings(started_rays, entry_point):
    # Ray Train's controller polls every 0.5 s, not 2 s (each fit() returns up to 2 s sooner),
    # and starts no preemption watcher actor on a machine that is not a spot cluster
    from mer_ray.session import LOCAL_TRAIN_ENV

    assert started_rays[entry_point]["worker_env"] == LOCAL_TRAIN_ENV


def _calls(path: Path, name: str):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(name):
            yield node, {k.arg: ast.unparse(k.value) for k in node.keywords}


def test_nothing_is_unpickled_checkpoints_load_with_weights_only():
    sources = [p for d in ("mer_ray", "jobs", "benchmarks") for p in (REPO / d).rglob("*.py")]
    for path in sources:
        for call, keywords in _calls(path, "torch.load"):
            assert keywords.get("weights_only") == "True", f"{path}:{call.lineno} torch.load without weights_only=True"
        for call, keywords in _calls(path, "np.load"):
            assert keywords.get("allow_pickle", "False") == "False", f"{path}:{call.lineno} np.load(allow_pickle=True)"
        text = path.read_text()
        assert "pickle.load" not in text and "pickle.loads" not in text, f"{path} unpickles data"


def test_the_one_machine_settings_ride_on_the_environment_and_a_cluster_s_are_left_alone(monkeypatch):
    from mer_ray.session import LOCAL_TRAIN_ENV, local_ray_env, ray_init_kwargs

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name in LOCAL_TRAIN_ENV:
        monkeypatch.delenv(name, raising=False)
    # no job runtime_env: with one, Ray would start every worker through runtime-env setup
    # instead of using the workers it prestarted
    assert "runtime_env" not in ray_init_kwargs()
    with local_ray_env():   # what the Ray started inside inherits
        assert {k: os.environ.get(k) for k in LOCAL_TRAIN_ENV} == LOCAL_TRAIN_ENV
    assert not set(LOCAL_TRAIN_ENV) & set(os.environ)   # this process's own environment is restored
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")   # the user's own choice wins
    with local_ray_env():
        assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"
    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")   # `ray job submit`, or a cluster named: its own settings
    with local_ray_env():
        assert not set(LOCAL_TRAIN_ENV) & set(os.environ)
