"""The body of one run of ``compare``, in a child of the fork server (:mod:`bench.isolation`).

Importing this module imports what every run needs (the runners, skops, torch): the fork
server preloads it once per command, so that a run starts in milliseconds instead of the
seconds those imports take.

A run gets the command's environment as it is when the run starts (``job["environ"]``:
the fork server's own is that of the first run), and imports the modules named in its
``CLASSICVISION_BENCH_PRELOAD`` (comma-separated, found on its ``PYTHONPATH``) first, so a
test or an instrumentation module can patch the runners inside the run.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

import skops.io  # noqa: F401 - preloaded for the runs (saving models, the features cache)

import bench.compare  # noqa: F401 - the runners
import bench.models_io  # noqa: F401
import cnn  # noqa: F401 - preloaded for the runs (torch)
from bench.isolation import jsonable_payload

__all__ = ["run_child"]


class _Lines:
    """A text stream that sends each line over a connection (``("line", text)``)."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.buffer = conn, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.conn.send(("line", line + "\n"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def run_child(job: dict, conn: Any) -> None:
    """Run ``job`` (:func:`bench.compare.run_job`), sending progress lines and the result."""
    os.setpgid(0, 0)  # a group of its own: its workers stop with it, Ctrl-C does not reach it
    stream = _Lines(conn)
    try:
        os.environ.clear()
        os.environ.update(job["environ"])
        for p in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
            if p not in sys.path:
                sys.path.insert(0, p)
        for name in os.environ.get("CLASSICVISION_BENCH_PRELOAD", "").split(","):
            if name.strip():
                importlib.import_module(name.strip())
        payload = {"status": "ok", "value": bench.compare.run_job(job, stream)}
    except KeyboardInterrupt:
        payload = {"status": "interrupted"}
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the command
        payload = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    if stream.buffer:
        conn.send(("line", stream.buffer + "\n"))
    conn.send(("result", jsonable_payload(payload)))
    conn.close()
