"""The one place a mer-ray process starts or joins Ray (every job and library entry point).

Joins the cluster when there is one (RAY_ADDRESS, `ray job submit`), else starts a local Ray with
its dashboard on 127.0.0.1 only and Ray's default token auth left on; Ray's own logs go to the
session log unless the job runs with --verbose (`mer_ray.console`). An already connected Ray
(tests, a notebook) is used as it is.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Sequence

from mer_ray import console
from mer_ray.plugins import load_plugins


# Ray Train settings for a Ray this job starts on its own machine (no RAY_ADDRESS). The controller
# learns that the train function has returned by polling the workers, every 2 s by default, so
# each fit() returned up to 2 s after its last round (no-op TorchTrainer.fit() on 2 cores: 2.9 s
# from the function's end to fit() returning, 0.9 s at 0.5 s). The preemption watcher is an extra
# actor process (it imports Ray Train: ~1.5 CPU-s of the start-up) that watches for spot nodes
# being drained, which one machine does not have. A cluster's own settings are left alone.
# They reach the workers through the environment the local Ray inherits when it starts, not a
# job `runtime_env`: with one, Ray starts every worker through its runtime-env setup instead of
# using the workers it prestarted (extraction of 400 clips, 2 cores, side by side, 2 runs each:
# Ray's start-up 14.5 / 14.9 s with a runtime_env, 13.3 / 13.3 s without; the run 20.8 / 20.6 s
# against 19.4 / 19.6 s).
LOCAL_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def ray_init_kwargs() -> dict:
    """`ray.init` options for this job's console (and the dashboard on 127.0.0.1 only)."""
    kwargs = dict(dashboard_host="127.0.0.1", log_to_driver=console.verbose())
    if not console.verbose():
        # ray.init empties the `ray` logger's handlers before its start-up notices (the token-auth
        # warning, "Started a local Ray instance"), so those are kept off the console by level;
        # `init_ray` then sends the `ray` loggers to the session log for the rest of the run
        kwargs.update(logging_level=logging.ERROR)
    return kwargs


@contextlib.contextmanager
def local_ray_env() -> Iterator[None]:
    """While a job starts its own Ray (no RAY_ADDRESS), the environment that Ray's processes
    inherit holds LOCAL_TRAIN_ENV (a value the user set wins); this process's own is restored after."""
    if os.environ.get("RAY_ADDRESS"):
        yield
        return
    added = {k: v for k, v in LOCAL_TRAIN_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def init_ray(plugins: Sequence[str] = ()) -> None:
    """Start or join Ray (see the module doc); `plugins` are loaded here first, and every actor
    and worker of the job loads them again (`mer_ray.plugins`)."""
    import ray

    load_plugins(plugins)
    if not ray.is_initialized():
        console.quiet_ray_loggers()   # loggers of Ray libraries imported since configure()
        with local_ray_env():
            ray.init(**ray_init_kwargs())
    console.quiet_ray_loggers()
