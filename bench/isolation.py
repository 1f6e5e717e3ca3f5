"""Each run of a comparison in a process of its own, under a memory budget.

:func:`run_isolated` runs one job (:func:`bench.worker.run_child`) in a child process
and waits for it, so whatever ends that process (an exception, the kernel's
out-of-memory killer, a segfault, ``SIGKILL``, ``os._exit``) ends only that run: the
command records the outcome in words and goes on with the next run.

The children come from a fork server (``multiprocessing``'s ``"forkserver"``): a clean
process started once per command that has imported the libraries a run needs (torch,
scikit-learn, skops: seconds each) and never run a thread pool. A child forked from it
starts at once and can use every pool, where a fork of the command itself would inherit
GNU OpenMP and torch pools it cannot use and could wait forever for threads that exist
only in the parent. The decoded images reach the child without a copy through
memory-mapped files (:mod:`bench.handoff`). It leads a process group of its own, so the
joblib workers it starts are stopped with it, and Ctrl-C in the terminal reaches only the
command, which stops the run. Its progress lines and its result come back over a pipe.

Memory: a watchdog thread in the command samples the memory of the child and of its
descendants (psutil) a few times a second, keeps the peak, and stops the group when it
passes the budget (``memory_limit``). What is counted is the run's own resident memory,
its unique set size (USS): the pages it shares with the fork server (the imported
libraries) and with other processes (the mapped images) are not the run's. The peak goes
into every run record as ``max_rss_bytes``.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import psutil

__all__ = [
    "Outcome",
    "run_isolated",
    "default_memory_limit",
    "parse_memory",
    "format_bytes",
    "jsonable_payload",
    "headroom",
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


def headroom(limit: int, *, margin: float = 0.1) -> int:
    """Bytes of ``limit`` a run may still take: the limit less what this process
    tree holds now (counted as the watchdog counts it, USS) and a ``margin``
    (fraction of ``limit``) for what a memory plan does not count (scoring
    buffers, the allocator's slack); at least 1 byte, so that a plan made on it
    fails with its own message rather than on a zero.

    This is what a run hands to :class:`cnn.CNNClassifier` as ``memory_limit``,
    which plans the training on top of what the process already holds.
    """
    own = _tree_memory(psutil.Process())
    return max(int(limit - own - margin * limit), 1)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # not (yet) a group leader: the process alone
        try:
            os.kill(pid, signal.SIGKILL)
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


_FORKSERVER: Any = None


def _context() -> Any:
    """The fork server's multiprocessing context (started on first use, preloaded)."""
    global _FORKSERVER
    if _FORKSERVER is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["bench.worker"])
        _FORKSERVER = ctx
    return _FORKSERVER


def _stop_with(command_pid: int) -> None:
    """In a run: stop the run as soon as the command ``command_pid`` is gone.

    A command killed outright (``SIGKILL``, or ``SIGTERM`` before it could stop its
    run) would otherwise leave the run training on as an orphan, and the fork server
    that forked it holding its preloaded libraries. A daemon thread waits for the
    command's exit (``pidfd_open``; a one-second ``psutil`` poll where Linux lacks it),
    then kills the fork server and the run's process group (the run alone while it is
    not yet the leader of a group of its own).
    """
    def wait() -> None:
        try:
            fd = os.pidfd_open(command_pid)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux), or already gone
            while psutil.pid_exists(command_pid) and psutil.Process(command_pid).status() != psutil.STATUS_ZOMBIE:
                time.sleep(1.0)
        else:
            select.select([fd], [], [])  # readable once the process has exited
        server = os.getppid()
        if server not in (1, command_pid):
            with contextlib.suppress(OSError):
                os.kill(server, signal.SIGKILL)
        if os.getpgid(0) == os.getpid():
            os.killpg(0, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, daemon=True, name="bench-stop-with-command").start()


def _run_guarded(command_pid: int, target: str | Callable[..., Any], *args: Any) -> None:
    """The body of a run's process: :func:`_stop_with` the command, then ``target``
    (a callable, or its ``"module:function"`` name, imported here)."""
    _stop_with(command_pid)
    if isinstance(target, str):
        module, _, name = target.partition(":")
        target = getattr(importlib.import_module(module), name)
    target(*args)


def run_isolated(
    target: str | Callable[..., Any],
    args: tuple = (),
    *,
    progress_stream: TextIO | None,
    memory_limit: int | None = None,
    poll: float = 0.2,
) -> Outcome:
    """Run ``target(*args, conn)`` in a child process and report how it ended.

    Parameters
    ----------
    target : callable or str
        A module-level function, or its ``"module:function"`` name (imported in the
        run, so the caller need not import it); it is named to the fork server, not
        sent. It gets
        ``args`` and a connection on which it sends ``("line", text)`` progress lines
        and, last, ``("result", payload)`` with ``payload`` a dict whose ``status`` is
        ``"ok"`` (with ``value``), ``"failed"`` (``error``, ``traceback``) or
        ``"interrupted"``; :func:`bench.worker.run_child` is that function.
    args : tuple
        Picklable arguments.
    progress_stream : text stream or None
        Where the progress lines are copied as they come; None drops them (the last
        ones are kept for the log of a run that dies).
    memory_limit : int or None
        Bytes of their own resident memory (USS) the run's processes may use; past
        it the group is killed and the outcome says so. None: no limit (the peak is
        still measured).
    poll : float
        Seconds between two memory samples.

    Returns
    -------
    Outcome

    Raises
    ------
    KeyboardInterrupt
        When the command is interrupted while waiting; the run is stopped first.
    """
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run_guarded, args=(os.getpid(), target, *args, send), name="bench-run")
    proc.start()
    send.close()
    tail: collections.deque[str] = collections.deque(maxlen=60)
    payload: list[dict] = []

    def forward() -> None:
        while True:
            try:
                kind, data = receive.recv()
            except (EOFError, OSError):
                return
            if kind == "result":  # the last message
                payload.append(data)
                return
            tail.append(data)
            if progress_stream is not None:
                try:
                    progress_stream.write(data)
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
        proc.join()
    except BaseException:
        _kill_group(proc.pid)
        proc.join()
        raise
    finally:
        done.set()
        watchdog.join()
        _kill_group(proc.pid)  # workers the run left behind
        reader.join(timeout=5)
        receive.close()
    returncode = proc.exitcode if proc.exitcode is not None else -signal.SIGKILL
    peak_bytes = peak[0] or None
    result = payload[0] if payload else None
    if result is not None and not at_limit[0] and returncode == 0:
        if result.get("status") == "ok":
            return Outcome("ok", value=result.get("value"), max_rss_bytes=peak_bytes)
        if result.get("status") == "interrupted":
            return Outcome("interrupted", max_rss_bytes=peak_bytes)
        return Outcome("failed", error=result.get("error"), traceback=result.get("traceback"),
                       max_rss_bytes=peak_bytes)
    cause = _death_cause(returncode, peak_bytes, memory_limit, at_limit[0])
    short = "MemoryLimitExceeded" if at_limit[0] else "ChildProcessDied"
    return Outcome("failed", error=f"{short}: {cause}", cause=cause, traceback="".join(tail) or None,
                   max_rss_bytes=peak_bytes)


def jsonable_payload(payload: dict) -> dict:
    """``payload`` after a JSON round trip (numpy values, paths made plain)."""
    return json.loads(json.dumps(payload, default=_jsonable))
