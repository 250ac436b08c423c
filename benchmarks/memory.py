"""Peak memory of this process and every process it started (Ray's raylet, workers, ...), and
the CPU time that process tree used."""
from __future__ import annotations

import threading
import time

import psutil


class PeakMemory:
    """Samples the proportional set size (PSS) of the process tree; PSS splits shared pages
    (the Ray object store's mmap, copy-on-write) between the processes that map them, so the
    sum counts every byte once — RSS would count the shared feature matrix once per worker.

    Also keeps the last CPU time (user + system) seen of every process in the tree: `cpu_seconds`
    is what the tree used, up to one interval per process (on a shared machine the cores a
    run got, cpu_seconds / wall, can be far fewer than the machine has)."""

    def __init__(self, interval: float = 1.0, pid: int | None = None):
        self.interval, self.peak_bytes, self.pid = interval, 0, pid   # pid None: this process
        self._cpu: dict[tuple[int, float], float] = {}   # (pid, start time) → CPU seconds last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:   # the measured process has exited
            return 0
        total = 0
        for proc in tree:
            try:
                total += proc.memory_full_info().pss
                times = proc.cpu_times()
                self._cpu[(proc.pid, proc.create_time())] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30
