"""Shared test configuration.

Tests marked ``datasets`` read the real archives in ``../shared/datasets`` (relative
to the repository root) and are skipped when that folder is absent, as on a user's
machine.
"""

import os
from pathlib import Path

# Before torch is imported (see bench/__main__.py): OpenMP threads that spin while
# waiting slow torch down badly when pytest shares the cores with anything else.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def pytest_collection_modifyitems(config, items):
    if SHARED_DATASETS.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real datasets not found at {SHARED_DATASETS}")
    for item in items:
        if "datasets" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Folder holding cifar10.tar.gz and scene15.tar.gz."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch on one intra-op thread for a test module: on a shared 2-core machine its
    2-thread pool spins against other processes and runs many times slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def in_runs(tmp_path, monkeypatch):
    """``in_runs(code)``: run ``code`` in every run's process of ``bench compare``.

    Runs are processes of their own (``bench.worker``), so a monkeypatch made in the test
    does not reach them; the code goes into a module that the worker imports first
    (``CLASSICVISION_BENCH_PRELOAD``). ``bench.compare`` is imported as ``cmp`` and
    ``real_classic`` / ``real_cnn`` hold the runners before any change; ``MARKS`` is a
    folder the code can leave files in, for the test to read.
    """
    folder = tmp_path / "run_hooks"
    marks = tmp_path / "run_marks"
    folder.mkdir()
    marks.mkdir()
    names = []

    def add(code: str) -> Path:
        name = f"bench_run_hook_{len(names)}"
        header = ("import os, signal, time\nimport numpy as np\nimport bench.compare as cmp\n"
                  f"MARKS = {str(marks)!r}\nreal_classic, real_cnn = cmp.run_classic, cmp.run_cnn\n")
        (folder / f"{name}.py").write_text(header + code)
        names.append(name)
        monkeypatch.setenv("CLASSICVISION_BENCH_PRELOAD", names[-1])
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
        return marks

    return add
