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
