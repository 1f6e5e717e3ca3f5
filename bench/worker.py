"""``python -m bench.worker JOB RESULT``: one run of a comparison, in a process of its own.

Started by :func:`bench.isolation.run_isolated` for each run of ``compare``. ``JOB`` is a
pickle the command wrote into a private folder of ``--out`` (mode 0700) just before:
the run's spec, its options and the index of the memory-mapped splits
(:mod:`bench.handoff`). The run's record, or its error and traceback, goes to ``RESULT``
as JSON; Ctrl-C gives ``{"status": "interrupted"}``. Progress lines go to stderr, which
the command forwards.

``CLASSICVISION_BENCH_PRELOAD`` (comma-separated module names) is imported first, so a
test or an instrumentation module can patch the runners inside the run.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import traceback

# Before torch is imported, as python -m bench does (see bench/__main__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str]) -> int:
    from bench.isolation import write_result

    job_path, result_path = argv
    try:
        for name in filter(None, os.environ.get("CLASSICVISION_BENCH_PRELOAD", "").split(",")):
            importlib.import_module(name.strip())
        with open(job_path, "rb") as fh:
            job = pickle.load(fh)  # the command's own file, in a folder only it can read
        from bench.compare import run_job

        payload = {"status": "ok", "value": run_job(job, sys.stderr)}
    except KeyboardInterrupt:
        payload = {"status": "interrupted"}
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the command
        payload = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    write_result(result_path, payload)
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
