"""The per-round table, printed once, row by row as the rounds finish, by the driver.

Rank 0 of the Ray Train run writes `<run>/metrics.json` (atomically) after every committed
round. A thread in the driver watches that file and prints each new round's row
(`format_round`), so the rows reach the console without Ray's worker-output forwarding (off by
default, `mer_ray.console`), without `(RayTrainWorker pid=...)` prefixes or log
de-duplication, and exactly once: a resumed run prints its earlier rounds first. Each row also
goes to the `on_round` callbacks (MLflow logging).

For a run kept in an object store whose rank 0 is on another node, the file is read from the
bucket (`<remote>/metrics.json`) instead of the local copy.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from mer_ray.mining.cycle import format_round
from mer_ray.mining.state import complete_rounds
from mer_ray.storage import join


class RoundPrinter:
    def __init__(self, run_dir: str | Path, *, remote: str | None = None,
                 on_round: list[Callable[[dict], None]] | None = None, every: float = 1.0):
        self.path = Path(run_dir) / "metrics.json"
        self.remote = join(remote, "metrics.json") if remote else None
        self.on_round = list(on_round or [])
        self.every = every
        self.printed: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mer-ray-rounds", daemon=True)

    def __enter__(self) -> "RoundPrinter":
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()   # the last round, written just before the run returned

    def _run(self) -> None:
        polls = 0
        while not self._stop.wait(self.every):
            polls += 1
            # the bucket costs a request: every 5th poll when the local copy shows nothing new
            self.poll(remote=bool(self.remote) and polls % 5 == 0)

    def _rounds(self, remote: bool) -> list[dict]:
        try:
            if remote and self.remote:
                import pyarrow.fs as pafs

                fs, path = pafs.FileSystem.from_uri(self.remote)
                with fs.open_input_stream(path) as src:
                    return json.loads(src.read()).get("rounds", [])
            if not self.path.exists():
                return []
            # only committed rounds: a killed run's metrics.json may name a round state.json does not
            complete = set(complete_rounds(self.path.parent))
            return [m for m in json.loads(self.path.read_text()).get("rounds", []) if m["round"] in complete]
        except (OSError, ValueError):   # not written yet, or being replaced
            return []

    def poll(self, remote: bool = False) -> None:
        with self._lock:
            rounds = self._rounds(False) or (self._rounds(True) if remote else [])
            for metrics in sorted(rounds, key=lambda m: m["round"]):
                if metrics["round"] in self.printed:
                    continue
                print(format_round(metrics, header=not self.printed), flush=True)
                self.printed.append(metrics["round"])
                for callback in self.on_round:
                    callback(metrics)
