"""Each run of a comparison in a child process of its own, under a memory budget.

:func:`run_isolated` forks the command's process, runs one job in the child and waits
for it, so whatever ends the child (an exception, the kernel's
out-of-memory killer, a segfault, ``SIGKILL``, ``os._exit``) ends only that run: the
parent records the outcome in words and goes on with the next run.

The child is forked, not spawned: it starts at once (no re-import of torch), and it
sees the parent's decoded images without a copy (the pages are shared copy-on-write
and never written). It is the leader of a process group of its own, so the joblib
workers it starts are stopped with it.

Memory: a watchdog thread in the parent samples the memory of the child and of its
descendants (psutil) a few times a second, keeps the peak, and stops the group when it
passes the budget (``memory_limit``). What is counted is the run's own resident memory,
its unique set size (USS): the pages it shares with the command it was forked from (the
decoded images, the imported libraries) are the command's, not the run's. Its plain
RSS, and the kernel's ``ru_maxrss``, would count them again in every run: a run forked
from a process holding 9 GB would start over any budget. The peak goes into every run
record as ``max_rss_bytes``.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import psutil

__all__ = [
    "Outcome",
    "run_isolated",
    "default_memory_limit",
    "parse_memory",
    "format_bytes",
    "DEFAULT_MEMORY_FRACTION",
]

#: Fraction of the memory available when a comparison starts that one run may use
#: unless ``--memory-limit`` says otherwise (the rest is left to the parent, which
#: holds the decoded images, and to the rest of the machine).
DEFAULT_MEMORY_FRACTION = 0.8

def format_bytes(n: float | None) -> str:
    """A byte count in binary units: ``512 B``, ``3.4 MiB``, ``1.2 GiB``; ``"?"`` for None."""
    if n is None:
        return "?"
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024.0 or unit == "TiB":
            return f"{int(v)} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024.0
    return "?"  # unreachable


def parse_memory(text: str | int | float) -> int:
    """Parse a memory size: a fraction of the memory available now (a number below 1,
    ``"0.5"``), or a size as :func:`cnn.classifier.parse_bytes` reads it (``"8GiB"``,
    ``"8G"`` binary, ``"8GB"`` decimal, ``"512MiB"``, a number of bytes).

    Raises
    ------
    ValueError
        For anything else, or a size that is not positive.
    """
    from cnn.classifier import parse_bytes  # delayed: torch, for a command-line check

    try:
        value = float(text)
    except (TypeError, ValueError):
        value = None
    if value is not None and not isinstance(text, bool) and 0 < value < 1:
        return int(value * psutil.virtual_memory().available)
    try:
        return parse_bytes(int(value) if value is not None and value == int(value) else text)
    except (ValueError, OverflowError):
        raise ValueError(f"memory size {text!r}: expected e.g. 8GiB, 512MiB, 4G or a fraction such as 0.5") from None


def default_memory_limit() -> int:
    """:data:`DEFAULT_MEMORY_FRACTION` of the memory available now (bytes)."""
    return int(DEFAULT_MEMORY_FRACTION * psutil.virtual_memory().available)


@dataclass
class Outcome:
    """How a child run ended.

    Attributes
    ----------
    status : {"ok", "failed", "interrupted"}
        ``"ok"``: the job returned ``value``; ``"failed"``: it raised (``error``,
        ``traceback``) or the process died (``cause``); ``"interrupted"``: it was
        stopped by Ctrl-C.
    value : object
        What the job returned (after a JSON round trip), for ``"ok"``.
    error : str or None
        ``"Type: message"`` of the exception, or a short form of ``cause``.
    cause : str or None
        Why the process died, in words, when it did not return.
    traceback : str or None
        The child's traceback, or the last lines it printed when it died.
    max_rss_bytes : int or None
        Peak unique resident memory (USS) of the child and its descendants: what
        the run held beyond the pages it shared with its parent.
    """

    status: str
    value: Any = None
    error: str | None = None
    cause: str | None = None
    traceback: str | None = None
    max_rss_bytes: int | None = None


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, os.PathLike)):
        return os.fspath(o)
    return str(o)


def _tree_memory(proc: psutil.Process) -> int:
    """Unique resident memory (USS) of ``proc`` and of all its descendants (bytes)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0
    for p in procs:
        try:
            total += p.memory_full_info().uss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return total


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _native_threads() -> int:
    """Threads of this process, native ones (an OpenMP pool, OpenCV's) included."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _child(job: Callable[[TextIO | None], Any], write_fd: int, quiet: bool, result_path: Path,
           threaded_parent: bool) -> None:
    """Body of the forked child; never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        if threaded_parent:
            # GNU OpenMP is not fork-safe: a pool the parent started is gone in the child
            # but still looks alive, and the child's first parallel region would wait for
            # it forever. One OpenMP thread never touches the pool (slower, never stuck).
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="openmp")
        stream = os.fdopen(write_fd, "w", buffering=1, errors="backslashreplace")
        try:
            payload = {"status": "ok", "value": job(None if quiet else stream)}
        except KeyboardInterrupt:
            payload = {"status": "interrupted"}
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
            payload = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()}
        text = json.dumps(payload, default=_jsonable)
        tmp = result_path.with_name(result_path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, result_path)
        stream.flush()
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        code = 70
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def _death_cause(status: int, peak: int | None, limit: int | None, stopped_at_limit: bool) -> str:
    peak_txt = f"peak RSS {format_bytes(peak)}"
    if stopped_at_limit:
        return (f"stopped at the memory limit: resident memory reached {format_bytes(peak)} of the "
                f"{format_bytes(limit)} allowed per run (--memory-limit)")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = ", probably out of memory (the kernel's OOM killer sends it)" if sig == signal.SIGKILL else ""
        return f"killed by signal {sig} ({name}){hint}; {peak_txt}"
    code = os.waitstatus_to_exitcode(status)
    return f"the run's process exited with code {code} without a result; {peak_txt}"


def run_isolated(
    job: Callable[[TextIO | None], Any],
    *,
    progress_stream: TextIO | None,
    memory_limit: int | None = None,
    workdir: str | os.PathLike | None = None,
    poll: float = 0.2,
) -> Outcome:
    """Run ``job(stream)`` in a forked child process and report how it ended.

    Parameters
    ----------
    job : callable
        Called in the child with a text stream for progress lines (None when
        ``progress_stream`` is None); its return value must be JSON-serializable
        (numpy scalars and arrays are converted).
    progress_stream : text stream or None
        Where the child's progress lines are copied, line by line, as they come.
    memory_limit : int or None
        Bytes of their own resident memory (USS) the child and its descendants
        may use; past it the group is killed and the outcome says so. None: no limit (the peak is still
        measured).
    workdir : path-like or None
        Folder for the child's result file (a temporary folder when None).
    poll : float
        Seconds between two memory samples.

    Returns
    -------
    Outcome

    Raises
    ------
    KeyboardInterrupt
        When the parent is interrupted while waiting; the child is stopped first.
    """
    folder = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".run-", suffix=".json", dir=folder)
    os.close(fd)
    result_path = Path(name)
    result_path.unlink()
    for s in (sys.stdout, sys.stderr, progress_stream):
        try:
            if s is not None:
                s.flush()
        except (OSError, ValueError):
            pass
    threaded_parent = _native_threads() > threading.active_count()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        _child(job, write_fd, progress_stream is None, result_path, threaded_parent)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # also from this side, so killpg works from the first sample
    except OSError:
        pass

    tail: collections.deque[str] = collections.deque(maxlen=60)

    def forward() -> None:
        with os.fdopen(read_fd, "r", errors="backslashreplace") as pipe:
            for text in pipe:
                tail.append(text)
                if progress_stream is not None:
                    try:
                        progress_stream.write(text)
                        progress_stream.flush()
                    except (OSError, ValueError):
                        pass

    peak = [0]
    at_limit = [False]
    done = threading.Event()

    def watch() -> None:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            used = _tree_memory(proc)
            peak[0] = max(peak[0], used)
            if memory_limit is not None and used > memory_limit and not at_limit[0]:
                at_limit[0] = True
                _kill_group(pid)
            done.wait(poll)

    reader = threading.Thread(target=forward, daemon=True)
    watchdog = threading.Thread(target=watch, daemon=True)
    reader.start()
    watchdog.start()
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        _kill_group(pid)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise
    finally:
        done.set()
        watchdog.join()
        _kill_group(pid)  # workers the run left behind
        reader.join(timeout=5)
    peak_bytes = peak[0] or None

    payload = None
    if result_path.is_file():
        try:
            payload = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = None
        result_path.unlink(missing_ok=True)
    if payload is not None and not at_limit[0] and os.WIFEXITED(status):
        if payload.get("status") == "ok":
            return Outcome("ok", value=payload.get("value"), max_rss_bytes=peak_bytes)
        if payload.get("status") == "interrupted":
            return Outcome("interrupted", max_rss_bytes=peak_bytes)
        return Outcome("failed", error=payload.get("error"), traceback=payload.get("traceback"),
                       max_rss_bytes=peak_bytes)
    cause = _death_cause(status, peak_bytes, memory_limit, at_limit[0])
    short = "MemoryLimitExceeded" if at_limit[0] else "ChildProcessDied"
    return Outcome("failed", error=f"{short}: {cause}", cause=cause, traceback="".join(tail) or None,
                   max_rss_bytes=peak_bytes)
