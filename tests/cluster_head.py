"""A real `ray start --head` on 127.0.0.1 for tests: its own temp dir, its own ports, token auth on.

Shared by tests/test_cluster.py and the slow fault scripts. It never touches /tmp/ray (the default
temp dir), so no other Ray on this machine joins it and `ray.init()` elsewhere never finds it, and
it is stopped by killing only the process group it started (never `ray stop`, which would stop
every Ray on the machine).
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
# what `ray job submit --working-dir .` must not upload (.gitignore is honoured too)
EXCLUDES = [".venv", ".venv/**", ".cache", ".cache/**", "runs", "runs/**", ".git", ".pytest_cache",
            "*.egg-info", "__pycache__", "benchmarks/results"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Head:
    process: subprocess.Popen
    temp_dir: Path
    gcs_address: str          # 127.0.0.1:<port>, for RAY_ADDRESS / ray.init(address=...)
    dashboard_url: str        # http://127.0.0.1:<port>, for JobSubmissionClient
    token: str
    env: dict                 # the environment a client of this head needs (token, no RAY_ADDRESS)

    def client(self):
        from ray.job_submission import JobSubmissionClient
        # the token travels as a bearer header; without it the job server answers 401
        return JobSubmissionClient(self.dashboard_url, headers={"Authorization": f"Bearer {self.token}"})

    def stop(self) -> None:
        """SIGTERM to `ray start --block` (it stops the processes it started), then the group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)   # leftovers of this head only
        except ProcessLookupError:
            pass
        self.process.wait(10)


def start_head(num_cpus: int = 2, extra_env: dict | None = None, timeout: float = 120) -> Head:
    temp_dir = Path(tempfile.mkdtemp(prefix="mr-head-", dir="/tmp"))   # short: unix socket paths
    token = secrets.token_hex(32)
    token_file = temp_dir / "auth_token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0: on SIGTERM Ray 2.60 first drains the node for up
    # to 30 s (for Serve's proxies), which outlasts stop()'s 15 s wait: a test head has nothing
    # to drain, so it stops at once
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file), HF_HUB_OFFLINE="1",
               RAY_DATA_DISABLE_PROGRESS_BARS="1", RAY_USAGE_STATS_ENABLED="0",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **(extra_env or {}))
    port, dashboard = free_port(), free_port()
    # every process of this head (job drivers, Ray Train's controller) finds it by RAY_ADDRESS;
    # without it Ray's address discovery sees several clusters on this machine and gives up
    env["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    cmd = [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
           f"--num-cpus={num_cpus}", "--num-gpus=0", f"--temp-dir={temp_dir}",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
           f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
           f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
           f"--ray-client-server-port={free_port()}", "--object-store-memory=300000000",
           "--disable-usage-stats"]
    log = open(temp_dir / "ray-start.log", "wb")
    process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(process, temp_dir, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", token, env)
    deadline = time.time() + timeout
    import urllib.request
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited: {(temp_dir / 'ray-start.log').read_text()[-3000:]}")
        try:
            request = urllib.request.Request(f"{head.dashboard_url}/api/version",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(1)
    else:
        head.stop()
        raise TimeoutError(f"the head's job server did not answer in {timeout} s")
    return head


def wait_for_job(client, job_id: str, timeout: float) -> str:
    from ray.job_submission import JobStatus
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return status
        time.sleep(2)
    client.stop_job(job_id)
    return "TIMEOUT"
