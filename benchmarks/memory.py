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
    run got, cpu_seconds / wall, can be far fewer than the machine has).

    The sampler's own CPU is bounded: it waits `interval`, or `MAX_DUTY`'s inverse times as long
    as its last sample took, whichever is longer. Reading every process's smaps costs ~5 ms a
    process, so at a fixed 0.5 s a Ray tree of ~30 processes cost the sampler a third of a core,
    taken from the side being measured, against a few per cent for a 3-process plain side
    (py-spy, benchmarks/extraction.py at 400 clips: 8.5 CPU-s in the sampler)."""

    MAX_DUTY = 0.05   # the share of one core the sampler may use

    def __init__(self, interval: float = 1.0, pid: int | None = None):
        self.interval, self.peak_bytes, self.pid = interval, 0, pid   # pid None: this process
        self._cpu: dict[tuple[int, float], float] = {}   # (pid, start time) → CPU seconds last seen
        self._label: dict[tuple[int, float], str] = {}
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
                key = (proc.pid, proc.create_time())
                self._cpu[key] = times.user + times.system
                if self._label.get(key, "default_worker.py") == "default_worker.py":
                    # a Ray worker retitles itself ray::<Actor> once it holds one: look again
                    self._label[key] = _label(proc, proc.pid == root.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds per kind of process (driver, raylet, gcs_server, dashboard, an actor class,
        a pool worker ...), largest first: where a run's CPU went."""
        out: dict[str, float] = {}
        for key, seconds in self._cpu.items():
            out[self._label[key]] = out.get(self._label[key], 0.0) + seconds
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(max(self.interval, (time.perf_counter() - started) / self.MAX_DUTY))

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


def _label(proc: psutil.Process, is_root: bool) -> str:
    """A short name for a process of the tree: Ray's ray::<what> title, a script's file name."""
    if is_root:
        return "driver"
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if not cmdline:
        return proc.name()
    if cmdline[0].startswith("ray::"):   # a Ray worker's title: ray::Actor.method or ray::IDLE
        return cmdline[0].split(".")[0].split(" ")[0]
    for arg in cmdline[1:4]:
        if arg.endswith(".py"):
            return arg.rsplit("/", 1)[-1]
        if arg == "-c":
            return f"{cmdline[0].rsplit('/', 1)[-1]} -c"
    return cmdline[0].rsplit("/", 1)[-1]

