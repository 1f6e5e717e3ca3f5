"""Progress lines of a comparison: stage start and end, heartbeats, chunk counts with an ETA.

:class:`Progress` writes ``[bench] ...`` lines to a stream (stderr by default, ``None``
for silence). A stage that reports no progress of its own (fitting a codebook or an SVM)
gets a heartbeat line every ``heartbeat`` seconds from a daemon thread; chunked stages
(feature extraction, prediction) call ``update(done)`` and get ``done/total``, the
elapsed time and an ETA. :func:`solver_progress` lets a
:class:`~classicvision.kernels.LinearSVM` print its own per-iteration lines instead.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from classicvision.kernels import LinearSVM

__all__ = ["Progress", "Stage", "format_seconds", "solver_progress", "NO_ETA"]


def format_seconds(s: float | None) -> str:
    if s is None or not np.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"

NO_ETA = "no ETA: this step reports no progress"

class Progress:
    """Stage progress lines on a stream (stderr by default).

    Parameters
    ----------
    stream : text stream or None
        Where lines go; ``None`` silences them.
    interval : float
        Minimum seconds between two lines of the same chunked stage (the last
        chunk is always reported).
    heartbeat : float
        Seconds between "still running" lines of stages that report no progress
        (fitting a codebook, an SVM); 0 disables them.
    """

    def __init__(self, stream: TextIO | None = sys.stderr, interval: float = 2.0, heartbeat: float = 30.0) -> None:
        self.stream = stream
        self.interval = interval
        self.heartbeat = heartbeat

    def line(self, text: str) -> None:
        if self.stream is not None:
            print(f"[bench] {text}", file=self.stream, flush=True)

    def stage(self, run: str, stage: str, *, eta_note: str = NO_ETA) -> Stage:
        """Context manager printing the stage start and its elapsed time at the end.

        ``eta_note`` ends each heartbeat line (where the estimate of the time left is, if anywhere).
        """
        return Stage(self, run, stage, eta_note)

    def chunks(self, run: str, stage: str, total: int) -> Callable[[int], None]:
        """Return ``update(done)``; each call prints ``done/total``, elapsed and ETA."""
        t0 = time.perf_counter()
        last = [-float("inf")]

        def update(done: int) -> None:
            el = time.perf_counter() - t0
            # at most one line every `interval` seconds, plus the final one
            if done < total and el - last[0] < self.interval:
                return
            last[0] = el
            eta = el / done * (total - done) if done else float("nan")
            pct = 100.0 * done / total if total else 100.0
            self.line(
                f"{run}: {stage} {done}/{total} ({pct:.0f}%) elapsed {format_seconds(el)} "
                f"ETA {format_seconds(eta)}"
            )

        return update

class Stage:
    """A stage without progress callbacks: start line, a heartbeat line with the
    elapsed time every ``progress.heartbeat`` seconds (from a daemon thread), and the
    end line with the total time."""

    def __init__(self, progress: Progress, run: str, stage: str, eta_note: str) -> None:
        self.progress, self.run, self.stage, self.eta_note = progress, run, stage, eta_note
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while not self._stop.wait(self.progress.heartbeat):
            el = time.perf_counter() - self.t0
            self.progress.line(f"{self.run}: {self.stage} still running, elapsed {format_seconds(el)} "
                               f"({self.eta_note})")

    def __enter__(self) -> Stage:
        self.t0 = time.perf_counter()
        self.progress.line(f"{self.run}: {self.stage} ...")
        if self.progress.stream is not None and self.progress.heartbeat:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        status = "done" if exc_type is None else f"failed ({exc_type.__name__})"
        self.progress.line(f"{self.run}: {self.stage} {status} in {format_seconds(self.seconds)}")

@contextlib.contextmanager
def solver_progress(final: Any, n_samples: int, progress: Progress):
    """While fitting ``final``, have it print its own progress lines (with an ETA) to
    the progress stream when it can: a :class:`~classicvision.kernels.LinearSVM`
    with its Newton solver. Yields the note the heartbeat lines should end with;
    the estimator's ``verbose`` is restored afterwards, so saved models stay quiet."""
    if (progress.stream is None or not isinstance(final, LinearSVM)
            or final.solver_for(n_samples) != "newton"):
        yield NO_ETA
        return
    previous = final.verbose
    final.set_params(verbose=1)
    try:
        with contextlib.redirect_stdout(progress.stream):
            yield "ETA in the LinearSVM lines"
    finally:
        final.set_params(verbose=previous)
