"""What a job shows a person: its own lines on the console; Ray's own logs in the session log.

`run_job(main)` runs a job as a command: `configure(verbose)` first (process-wide, so never from
a job's `main`, which tests call in their own process), then `main`; its `ray.init` comes from
`mer_ray.session.init_ray()`:

- the `ray*` Python loggers of this process (Ray's start-up lines, Ray Data's execution plan and
  progress records, the token-auth notice) lose their console handlers and write to
  `<Ray session>/logs/mer-ray-driver.log` (Ray Data also keeps its own `ray-data.log` there);
- `log_to_driver=False`: what Ray workers print (Ray Train's `Reporting training result ...
  TrainingReport(...)` INFO lines, model-loading progress bars, the TrainController's messages)
  stays in the session's `worker-*.out` files instead of being echoed here;
- Ray's C++ core worker inside this very process writes its log lines straight to file
  descriptor 2 (e.g. `core_worker.cc:... has constructor arguments in the object store and
  max_restarts > 0`, which Ray Data's actor pool triggers on every run and which is harmless);
  a pipe on fd 2 moves lines in that glog format to the driver log and passes everything else
  (Python warnings, our messages, tracebacks) through unchanged.

`--verbose` (`configure(True)`) changes none of this: everything goes to the console, as Ray
does by default. `fatal(err)` is how a job reports an error that stops it: one clear message,
the traceback only with --verbose.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

log = logging.getLogger("mer_ray")

# `[2026-12-01 09:11:51,114 E 6179 6179] core_worker.cc:2465: ...`: Ray's C++ log format
_CPP_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWEF] \d+ \d+\] ")
DRIVER_LOG = "mer-ray-driver.log"

_state = {"verbose": False, "configured": False}


def verbose() -> bool:
    return _state["verbose"]


def session_log_dir() -> Path | None:
    """The Ray session's log folder on this node (None before ray.init or when not the head)."""
    try:
        import ray

        if ray.is_initialized():
            node = ray._private.worker.global_worker.node
            path = Path(node.get_logs_dir_path()) if node is not None else None
            if path and path.is_dir():
                return path
    except Exception:   # a driver connected through Ray Client has no local session folder
        pass
    return None


class _SessionLog:
    """One append-only file: the session's log folder once Ray is up; until then records are
    kept in memory and written there at the first chance (or to a temp file at exit)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._file = None
        self.path: Path | None = None

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file is None:
                folder = session_log_dir()
                if folder is None:
                    self._pending.append(data)
                    return
                self._open(folder)
            self._file.write(data)
            self._file.flush()

    def _open(self, folder: Path) -> None:
        self.path = folder / DRIVER_LOG
        self._file = open(self.path, "ab")
        for chunk in self._pending:
            self._file.write(chunk)
        self._pending.clear()

    def close(self) -> None:
        with self._lock:
            if self._file is None and self._pending:
                self._open(Path(tempfile.gettempdir()))
            if self._file is not None:
                self._file.flush()


SESSION_LOG = _SessionLog()


class _SessionLogHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)   # Ray Data's DEBUG records are in its own ray-data.log
        self.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(name)s %(filename)s:%(lineno)s -- %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            SESSION_LOG.write((self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:
            self.handleError(record)


def _is_console_handler(handler: logging.Handler) -> bool:
    # Ray's PlainRayHandler and logging's own stream handlers; file handlers stay
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


_HANDLER = _SessionLogHandler()


def quiet_ray_loggers() -> None:
    """Move every `ray*` logger's console output to the session log (call again after imports
    that configure their own loggers, e.g. ray.data, ray.train)."""
    if _state["verbose"]:
        return
    names = ["ray"] + [n for n in logging.Logger.manager.loggerDict if n.startswith("ray.")]
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if _is_console_handler(handler):
                logger.removeHandler(handler)
        if (name == "ray" or not logger.propagate) and _HANDLER not in logger.handlers:
            logger.addHandler(_HANDLER)
    logging.getLogger("ray").setLevel(logging.INFO)


class _StderrFilter:
    """fd 2 → a pipe; a thread forwards everything to the real stderr except Ray's C++ log
    lines, which go to the session log. Partial lines (progress bars, prompts) pass at once."""

    def __init__(self):
        self.real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        self._busy = threading.Lock()
        self._thread = threading.Thread(target=self._pump, name="mer-ray-stderr", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except OSError:
                return
            with self._busy:
                if not chunk:
                    if buffer:
                        os.write(self.real, buffer)
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if _CPP_LINE.match(line):
                        SESSION_LOG.write(line + b"\n")
                    else:
                        os.write(self.real, line + b"\n")
                if buffer and not buffer.startswith(b"["):   # not a C++ log line: no need to wait for its end
                    os.write(self.real, buffer)
                    buffer = b""

    def drain(self) -> None:
        """Put the real stderr back on fd 2 once everything written so far has gone through (Ray's
        child processes may keep the pipe open, so its end of file cannot be waited for)."""
        import fcntl
        import termios

        sys.stderr.flush()
        os.dup2(self.real, 2)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            pending = bytearray(4)
            fcntl.ioctl(self._read, termios.FIONREAD, pending)
            if int.from_bytes(pending, sys.byteorder) == 0:
                break
            time.sleep(0.02)
        with self._busy:   # the last chunk read is written out
            pass


_filter: list[_StderrFilter] = []


def configure(verbose: bool = False) -> None:
    """Set up this process's console for a job (idempotent; see the module docstring)."""
    _state["verbose"] = bool(verbose)
    if _state["configured"]:
        return
    _state["configured"] = True
    mer = logging.getLogger("mer_ray")
    if not mer.handlers:   # our warnings (left-out clips, missing features) are for the user
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "warning: %(message)s"))
        handler.setLevel(logging.INFO if verbose else logging.WARNING)
        mer.addHandler(handler)
        mer.setLevel(logging.INFO if verbose else logging.WARNING)
        mer.propagate = False
    if verbose:
        return
    import ray  # noqa: F401  (configures Ray's loggers; we then take their console output away)

    quiet_ray_loggers()
    try:
        import ray.data  # noqa: F401  (Ray Data sets up its own console handler at import)

        ray.data.DataContext.get_current().enable_progress_bars = False   # our own progress line instead
    except Exception:
        pass
    quiet_ray_loggers()
    _errors_to_session_log()
    if not _filter and _has_fd2():
        sys.stderr.flush()
        _filter.append(_StderrFilter())


def _errors_to_session_log() -> None:
    """Ray pushes the errors of tasks and actors to the driver, which prints them (with their
    remote tracebacks, `(raylet) Task ... will be retried`) through `print_to_stdstream`; with
    log_to_driver off that function prints nothing else. A job that fails because of such an
    error reports it itself (`fatal_message`); the pushed copies go to the session log."""
    try:
        import ray._private.worker as ray_worker
    except ImportError:
        return

    def to_session_log(data, ignore_prefix=False):
        prefix = f"({data.get('pid', '?')}) "
        SESSION_LOG.write("".join(prefix + line + "\n" for line in data.get("lines", [])).encode("utf-8", "replace"))

    ray_worker.print_to_stdstream = to_session_log


def _has_fd2() -> bool:
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


def restore_stderr() -> None:
    """Undo the fd 2 filter (at the end of a job), after it has passed on what it holds."""
    while _filter:
        _filter.pop().drain()


def log_location() -> str:
    folder = session_log_dir()
    return str(folder) if folder else "the Ray session's logs folder"


_OURS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError)


def _is_ours(err: BaseException) -> bool:
    """An error whose message says what is wrong (a bare `KeyError: 'x'` is a bug, not a message)."""
    text = str(err).strip()
    return isinstance(err, _OURS) and bool(text) and (not isinstance(err, KeyError) or " " in text)


def root_cause(err: BaseException) -> BaseException:
    """The error a person can act on, under Ray's wrappers (RayTaskError, ActorDiedError,
    TrainingFailedError): the deepest of ours (a ValueError naming the clip, a KeyError of a
    registry...) in the chain of causes, else the outermost error."""
    chain, todo, seen = [], [err], set()
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        todo += list((getattr(current, "worker_failures", None) or {}).values())
        todo += [inner for attr in ("cause", "error", "__cause__", "__context__")
                 for inner in [getattr(current, attr, None)] if isinstance(inner, BaseException)]
    ours = [e for e in chain if _is_ours(e)]
    return ours[-1] if ours else err


def fatal_message(err: BaseException) -> str:
    cause = root_cause(err)
    text = str(cause).strip() or type(cause).__name__
    # our own errors say what is wrong and what to do; anything else is named by its type
    if _is_ours(cause) and isinstance(cause, KeyError):   # str() of a KeyError quotes its message
        text = text.strip("'\"")
    elif not _is_ours(cause):
        text = f"{type(cause).__name__}: {text}"
    # Ray's wrappers append the remote traceback to the message: the first paragraph says it
    return text.split("\n\nTraceback")[0].split("\nTraceback (most recent call last)")[0].strip()


def run_job(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None, *,
            console: bool = True) -> int:
    """Run a job's `main`: an error becomes one message on stderr and exit status 1 (or 130
    on Ctrl-C); `--verbose` in argv shows the traceback too. `console=False`: a command that
    starts no Ray (validate) needs no console set-up."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # the console set-up is process-wide, so it is done here, for a job run as a command, and
    # not in `main` (tests call a job's main in their own process)
    if console and not {"-h", "--help"} & set(argv):   # help needs no Ray: 0.3 s instead of 3
        configure("--verbose" in argv)
    try:
        code = main(argv)
        return int(code or 0)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume where it stopped", file=sys.stderr, flush=True)
        return 130
    except SystemExit:
        raise
    except Exception as err:
        if "--verbose" in argv or _state["verbose"]:
            traceback.print_exc()
        print(f"error: {fatal_message(err)}", file=sys.stderr, flush=True)
        if "--verbose" not in argv and not _state["verbose"]:
            print(f"(run again with --verbose for the traceback; Ray's logs: {log_location()})",
                  file=sys.stderr, flush=True)
        return 1
    finally:
        sys.stdout.flush()
        restore_stderr()
        SESSION_LOG.close()


class Ticker:
    """A periodic progress line for a long stage: `label: done/total (pct), rate` every
    `every` seconds from a background thread while the stage runs, then nothing more."""

    def __init__(self, label: str, total: int, count: Callable[[], int], *, every: float = 10.0,
                 unit: str = "clips"):
        self.label, self.total, self.count, self.every, self.unit = label, total, count, every, unit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mer-ray-{label}", daemon=True)
        self._start = time.perf_counter()

    def __enter__(self) -> "Ticker":
        if self.total > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                done = min(self.count(), self.total)
            except Exception:   # a part file being renamed under us: try again next tick
                continue
            elapsed = time.perf_counter() - self._start
            print(f"  {self.label}: {done}/{self.total} {self.unit} ({100 * done / self.total:.0f} %), "
                  f"{done / elapsed:.1f} {self.unit}/s, {elapsed:.0f} s", flush=True)
