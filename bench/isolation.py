"""Each run of a comparison in a process of its own, under a memory budget.

:func:`run_isolated` starts ``python -m bench.worker JOB RESULT`` (:mod:`bench.worker`)
for one run and waits for it, so whatever ends that process (an exception, the kernel's
out-of-memory killer, a segfault, ``SIGKILL``, ``os._exit``) ends only that run: the
command records the outcome in words and goes on with the next run.

The run is a fresh interpreter, not a fork of the command: a fork would inherit thread
pools it cannot use (GNU OpenMP's, torch's), and its first parallel region could wait
forever for threads that only exist in the parent. The decoded images reach it without a
copy through memory-mapped files (:mod:`bench.handoff`). It leads a process group of its
own, so the joblib workers it starts are stopped with it, and Ctrl-C in the terminal
reaches only the command, which stops the run.

Memory: a watchdog thread in the command samples the memory of the run's process and of
its descendants (psutil) a few times a second, keeps the peak, and stops the group when
it passes the budget (``memory_limit``). What is counted is the run's own resident
memory, its unique set size (USS): the pages of shared libraries and of the mapped
images that other processes map too are not the run's. The peak goes into every run
record as ``max_rss_bytes``.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np
import psutil

__all__ = [
    "Outcome",
    "run_isolated",
    "default_memory_limit",
    "parse_memory",
    "format_bytes",
    "write_result",
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


def _death_cause(returncode: int, peak: int | None, limit: int | None, stopped_at_limit: bool) -> str:
    peak_txt = f"peak RSS {format_bytes(peak)}"
    if stopped_at_limit:
        return (f"stopped at the memory limit: resident memory reached {format_bytes(peak)} of the "
                f"{format_bytes(limit)} allowed per run (--memory-limit)")
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = ", probably out of memory (the kernel's OOM killer sends it)" if sig == signal.SIGKILL else ""
        return f"killed by signal {sig} ({name}){hint}; {peak_txt}"
    return f"the run's process exited with code {returncode} without a result; {peak_txt}"


def run_isolated(
    job_path: str | os.PathLike,
    *,
    progress_stream: TextIO | None,
    memory_limit: int | None = None,
    poll: float = 0.2,
    command: Sequence[str] | None = None,
) -> Outcome:
    """Run the job in ``job_path`` in a process of its own and report how it ended.

    Parameters
    ----------
    job_path : path-like
        A job file of :mod:`bench.worker`; the result is written beside it.
    progress_stream : text stream or None
        Where the run's output (its progress lines) is copied, line by line, as it
        comes; None drops it (the last lines are kept for the log of a run that dies).
    memory_limit : int or None
        Bytes of their own resident memory (USS) the run's processes may use; past
        it the group is killed and the outcome says so. None: no limit (the peak is
        still measured).
    poll : float
        Seconds between two memory samples.
    command : sequence of str, optional
        The worker's command line before the two file arguments (default:
        ``python -m bench.worker``).

    Returns
    -------
    Outcome

    Raises
    ------
    KeyboardInterrupt
        When the command is interrupted while waiting; the run is stopped first.
    """
    job_path = Path(job_path)
    result_path = job_path.with_name(job_path.name + ".result.json")
    result_path.unlink(missing_ok=True)
    argv = [*(command or (sys.executable, "-m", "bench.worker")), os.fspath(job_path), os.fspath(result_path)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    tail: collections.deque[str] = collections.deque(maxlen=60)

    def forward() -> None:
        for raw in proc.stdout:
            text = raw.decode("utf-8", errors="backslashreplace")
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
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            used = _tree_memory(root)
            peak[0] = max(peak[0], used)
            if memory_limit is not None and used > memory_limit and not at_limit[0]:
                at_limit[0] = True
                _kill_group(proc.pid)
            done.wait(poll)

    reader = threading.Thread(target=forward, daemon=True)
    watchdog = threading.Thread(target=watch, daemon=True)
    reader.start()
    watchdog.start()
    try:
        returncode = proc.wait()
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        done.set()
        watchdog.join()
        _kill_group(proc.pid)  # workers the run left behind
        reader.join(timeout=5)
        proc.stdout.close()
    peak_bytes = peak[0] or None

    payload = None
    if result_path.is_file():
        try:
            payload = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = None
        result_path.unlink(missing_ok=True)
    if payload is not None and not at_limit[0] and returncode == 0:
        if payload.get("status") == "ok":
            return Outcome("ok", value=payload.get("value"), max_rss_bytes=peak_bytes)
        if payload.get("status") == "interrupted":
            return Outcome("interrupted", max_rss_bytes=peak_bytes)
        return Outcome("failed", error=payload.get("error"), traceback=payload.get("traceback"),
                       max_rss_bytes=peak_bytes)
    cause = _death_cause(returncode, peak_bytes, memory_limit, at_limit[0])
    short = "MemoryLimitExceeded" if at_limit[0] else "ChildProcessDied"
    return Outcome("failed", error=f"{short}: {cause}", cause=cause, traceback="".join(tail) or None,
                   max_rss_bytes=peak_bytes)


def write_result(path: str | os.PathLike, payload: dict) -> None:
    """Write a worker's result atomically (what :func:`run_isolated` reads back)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, default=_jsonable), encoding="utf-8")
    os.replace(tmp, path)
