"""Peak memory of this process and every process it started (Ray's raylet, workers, ...)."""
from __future__ import annotations

import threading
import time

import psutil


class PeakMemory:
    """Samples the proportional set size (PSS) of the process tree; PSS splits shared pages
    (the Ray object store's mmap, copy-on-write) between the processes that map them, so the
    sum counts every byte once — RSS would count the shared feature matrix once per worker."""

    def __init__(self, interval: float = 1.0, pid: int | None = None):
        self.interval, self.peak_bytes, self.pid = interval, 0, pid   # pid None: this process
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
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

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
    def peak_gb(self) -> float:
        return self.peak_bytes / 2**30
