"""CNNClassifier under torchrun: DistributedDataParallel on 2 CPU processes with gloo (issue 14).

The launch test runs ``python -m torch.distributed.run --nproc-per-node 2`` on an unchanged
training script (the digits, ``small_convnet``) and checks it reaches the accuracy of the
same script in one process within a point, that only rank 0 wrote the checkpoints and
the report, that both ranks end with identical weights, and that each rank decoded only its
block of the lazy training images.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from classicvision.datasets import load_digits_images
from cnn import CNNClassifier
from cnn.distributed import block_range, process_group, shard_indices, shard_size

REPO = Path(__file__).resolve().parents[1]
EPOCHS, BATCH = 6, 64

SCRIPT = """
import json, os, sys
from collections.abc import Sequence
import torch
import cnn.classifier as C
from classicvision.datasets import load_digits_images

out, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rank = os.environ["RANK"]
real_save = C.save_checkpoint

def logged_save(path, state):  # records which rank wrote a checkpoint
    with open(os.path.join(out, f"saves-{rank}.log"), "a") as fh:
        fh.write(f"{path}\\n")
    real_save(path, state)

class Lazy(Sequence):  # decodes on access, counts the accesses, refuses np.asarray
    def __init__(self, arrays):
        self.arrays, self.accesses = arrays, []
    def __len__(self):
        return len(self.arrays)
    def __getitem__(self, i):
        self.accesses.append(int(i))
        return self.arrays[i].copy()
    def __array__(self, *args, **kwargs):
        raise TypeError("lazy")

C.save_checkpoint = logged_save
tr, te = load_digits_images(split="train"), load_digits_images(split="test")
lazy = Lazy(tr.images)
clf = C.CNNClassifier(model="small_convnet", epochs=epochs, batch_size=batch, flip=False, random_state=0,
                      num_threads=1, checkpoint_dir=os.path.join(out, "ckpt"))
clf.fit(lazy, tr.target, validation_data=(te.images, te.target))
torch.save(clf.model_.state_dict(), os.path.join(out, f"weights-{rank}.pt"))
info = {"rank": clf.rank_, "world_size": clf.world_size_, "accuracy": clf.score(te.images, te.target),
        "history": clf.history_, "group_left": torch.distributed.is_initialized(), "mean": clf.mean_,
        "accesses": lazy.accesses}
with open(os.path.join(out, f"rank-{rank}.json"), "w") as fh:
    json.dump(info, fh)
if clf.rank_ == 0:
    with open(os.path.join(out, "report.json"), "w") as fh:
        json.dump({"accuracy": info["accuracy"], "written_by": rank}, fh)
"""


class _Lazy(Sequence):
    """Decodes (copies) on access; ``np.asarray`` refused, as LazyImages's is."""

    def __init__(self, arrays):
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, i):
        return self.arrays[i].copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("lazy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------ the per-rank split
@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3), (5, 8), (1198, 4)])
def test_shard_indices_cover_disjoint_equal_like_distributed_sampler(n, world):
    for epoch in (0, 3):
        shards = [shard_indices(n, world, r, seed=17, epoch=epoch) for r in range(world)]
        size = shard_size(n, world)
        assert all(s.dtype == torch.int64 and s.shape == (size,) for s in shards)  # equal lengths
        flat = torch.stack(shards, 1).reshape(-1)  # the padded permutation, in order
        assert sorted(flat[:n].tolist()) == list(range(n))  # covering, disjoint but for the padding
        assert flat[n:].tolist() == flat[: world * size - n].tolist()  # padded with the first indices
        for r in range(world):  # the same draw as torch's DistributedSampler with set_epoch
            sampler = DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=True, seed=17)
            sampler.set_epoch(epoch)
            assert shards[r].tolist() == list(sampler)
    assert shard_indices(n, world, 0, seed=17, epoch=0).tolist() != shard_indices(n, world, 0, seed=17, epoch=1).tolist()
    with pytest.raises(ValueError, match="rank"):
        shard_indices(n, world, world, seed=0, epoch=0)


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3), (5, 8)])
def test_block_range_covers_in_order(n, world):
    blocks = [block_range(n, world, r) for r in range(world)]
    assert [i for b in blocks for i in b] == list(range(n))
    assert all(len(b) <= shard_size(n, world) for b in blocks)


def test_process_group_outside_a_launch(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    cpu = lambda: torch.device("cpu")  # noqa: E731
    for mode in ("auto", False):
        with process_group(mode, cpu) as ctx:
            assert ctx is None
    with pytest.raises(ValueError, match="not part of a distributed run"), process_group(True, cpu):
        pass
    monkeypatch.setenv("WORLD_SIZE", "2")
    with process_group(False, cpu) as ctx:  # the off switch
        assert ctx is None
    with pytest.raises(ValueError, match="RANK"), process_group("auto", cpu):
        pass
    assert not torch.distributed.is_initialized()


def test_fit_distributed_true_outside_a_launch_is_an_error(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    tr = load_digits_images(split="train")
    clf = CNNClassifier(epochs=1, distributed=True, num_threads=1)
    with pytest.raises(ValueError, match="torchrun"):
        clf.fit(tr.images[:40], tr.target[:40])
    with pytest.raises(ValueError, match="distributed"):
        CNNClassifier(distributed="always").fit(tr.images[:40], tr.target[:40])


def test_fit_in_a_group_the_caller_initialized(tmp_path, monkeypatch):
    """A one-process gloo group of the caller's: fit trains through DDP in it and leaves it initialized."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        tr = load_digits_images(split="train")
        X, y = tr.images[:200], tr.target[:200]
        kw = dict(epochs=2, batch_size=40, flip=False, random_state=0, num_threads=1)
        clf = CNNClassifier(checkpoint_dir=tmp_path / "ckpt", **kw).fit(X, y, validation_data=(X[:50], y[:50]))
        assert torch.distributed.is_initialized()  # not fit's to destroy
        assert clf.world_size_ == 1 and clf.rank_ == 0 and len(clf.history_) == 2
        assert "test_error" in clf.history_[-1] and clf.predict(X[:5]).shape == (5,)
        lazy = CNNClassifier(checkpoint_dir=tmp_path / "ckpt2", **kw).fit(_Lazy(X), y, validation_data=(X[:50], y[:50]))
        assert all(torch.equal(a, b) for a, b in zip(clf.model_.state_dict().values(),
                                                     lazy.model_.state_dict().values()))
        # the data-parallel split (a seeded permutation per epoch), not the single-process shuffle
        off = CNNClassifier(distributed=False, **kw).fit(X, y)
        assert off.world_size_ == 1
        assert not all(torch.equal(a, b) for a, b in zip(clf.model_.state_dict().values(),
                                                         off.model_.state_dict().values()))
    finally:
        torch.distributed.destroy_process_group()


# ------------------------------------------------------------ torchrun, 2 processes
def test_torchrun_two_gloo_processes_match_one(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(script), str(out), str(EPOCHS), str(BATCH)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # meanwhile, the same training in this process (one process: no process group)
        tr, te = load_digits_images(split="train"), load_digits_images(split="test")
        one = CNNClassifier(model="small_convnet", epochs=EPOCHS, batch_size=BATCH, flip=False, random_state=0,
                            num_threads=1).fit(tr.images, tr.target)
        one_acc = one.score(te.images, te.target)
        log, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{log[-4000:]}"
    assert one.world_size_ == 1 and one.rank_ == 0

    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world_size"] for r in ranks} == {2}
    assert not any(r["group_left"] for r in ranks)  # fit destroyed the group it created
    # the loss and accuracy are averaged over the ranks: the same history on both
    assert ranks[0]["history"] == ranks[1]["history"] and len(ranks[0]["history"]) == EPOCHS
    assert "test_error" in ranks[0]["history"][-1]
    # identical weights, so predict gives the same everywhere
    w0, w1 = (torch.load(out / f"weights-{r}.pt", weights_only=True) for r in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert ranks[0]["accuracy"] == ranks[1]["accuracy"]
    # the lazy training images: each rank decoded its own half (sizes, then pixels), with the tensor of one process
    n = len(tr.target)
    assert [sorted(set(r["accesses"])) for r in ranks] == [list(range(599)), list(range(599, n))]
    assert [len(r["accesses"]) for r in ranks] == [2 * 599, 2 * (n - 599)]
    assert ranks[0]["mean"] == ranks[1]["mean"] == one.mean_
    # the "done when": the single-process accuracy within a point
    # within a point, counted in test images (one point of 599 is 5.99 images: 6 allowed); the
    # single-process figure itself moves between machines (98.16% and 98.66% seen)
    n_test = len(te.target)
    assert round((one_acc - ranks[0]["accuracy"]) * n_test) <= round(0.01 * n_test), (ranks[0]["accuracy"], one_acc)
    # only rank 0 wrote: one checkpoint per epoch, and the report
    assert not (out / "saves-1.log").exists()
    assert (out / "saves-0.log").read_text().splitlines() == [str(out / "ckpt" / "last.pt")] * EPOCHS
    assert json.loads((out / "report.json").read_text())["written_by"] == "0"
    state = torch.load(out / "ckpt" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2 and state["epoch"] == EPOCHS
    np.testing.assert_allclose(state["history"][-1]["loss"], ranks[0]["history"][-1]["loss"])
    # resuming needs as many processes
    again = CNNClassifier(model="small_convnet", epochs=EPOCHS, batch_size=BATCH, flip=False, random_state=0,
                          num_threads=1, checkpoint_dir=out / "ckpt", resume=True)
    with pytest.raises(ValueError, match="2 process"):
        again.fit(tr.images, tr.target)
