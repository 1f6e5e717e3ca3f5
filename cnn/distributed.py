"""Data-parallel training helpers: the process group of a ``torchrun`` launch, the per-rank split.

:meth:`cnn.CNNClassifier.fit` trains with ``torch.nn.parallel.DistributedDataParallel``
(Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
VLDB 2020) when it runs in a process that ``torchrun`` (``python -m torch.distributed.run``)
or another launcher started: the environment holds ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. This module holds what that needs and
nothing of the classifier: :func:`process_group` (join or create the group),
:func:`shard_indices` (the ``DistributedSampler`` split of a device-resident data set),
:func:`all_reduce` and :func:`broadcast_module`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistContext",
    "env_world_size",
    "process_group",
    "shard_indices",
    "shard_size",
    "all_reduce",
    "broadcast_module",
    "is_main_process",
]


@dataclass(frozen=True)
class DistContext:
    """The data-parallel run a process takes part in.

    Attributes
    ----------
    rank, world_size, local_rank : int
        This process's rank, the number of processes, its rank on its machine.
    device : torch.device
        Its training device (``cuda:LOCAL_RANK`` on GPUs when no index was asked for).
    backend : str
        ``"gloo"`` or ``"nccl"`` (or the backend of a group the caller initialized).
    created : bool
        Whether :func:`process_group` initialized the group (and so destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    created: bool

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs."""
        return self.rank == 0


def _env_int(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from exc


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset): the processes a launcher started."""
    return int(_env_int("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """True outside a process group and on rank 0 of one (the process that should write files)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@contextlib.contextmanager
def process_group(mode: bool | str, resolve_device: Callable[[], torch.device]) -> Iterator[DistContext | None]:
    """Join the data-parallel run this process belongs to, if any, for the duration of the block.

    Parameters
    ----------
    mode : {"auto", True, False}
        ``"auto"``: distributed when a process group is already initialized (the
        caller's own ``init_process_group``) or the environment says so
        (``WORLD_SIZE`` > 1, as ``torchrun`` sets it); ``True``: the same, but a
        process outside such a run is an error; ``False``: never (each process
        trains on its own).
    resolve_device : callable
        Returns the training device asked for. Under a launcher a CUDA device
        without an index becomes ``cuda:LOCAL_RANK`` (and the current device).

    Yields
    ------
    DistContext or None
        None when not distributed. A group this function initialized (``nccl``
        for CUDA, ``gloo`` for the CPU, ``init_method="env://"``) is destroyed on
        exit, also when the block raises; a group the caller initialized is left.

    Raises
    ------
    ValueError
        ``mode=True`` outside a distributed run; a launcher environment lacking
        ``RANK`` or with a rank out of range; a CUDA device under a ``gloo``
        group or a CPU device under an ``nccl`` group.
    """
    initialized = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if initialized else env_world_size()
    if mode is False or (not initialized and world <= 1):
        if mode is True:
            raise ValueError(
                "distributed=True, but this process is not part of a distributed run: no process group is "
                "initialized and WORLD_SIZE is unset or 1 (launch with torchrun --nproc-per-node N)"
            )
        yield None
        return
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 asks for distributed training, but this torch has no torch.distributed")
    local_rank = int(_env_int("LOCAL_RANK", 0))
    device = resolve_device()
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
    created = False
    if initialized:
        rank, backend = dist.get_rank(), str(dist.get_backend())
    else:
        rank = _env_int("RANK")
        if rank is None or not 0 <= rank < world:
            raise ValueError(
                f"WORLD_SIZE={world} but RANK is {os.environ.get('RANK')!r}: the launcher must set RANK in "
                f"0..{world - 1} (and MASTER_ADDR, MASTER_PORT)"
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, **kwargs)
        created = True
    try:
        if "nccl" in backend and device.type != "cuda":
            raise ValueError(f"the process group's backend is nccl but the training device is {device}")
        if backend == "gloo" and device.type == "cuda":
            raise ValueError(f"the process group's backend is gloo but the training device is {device}; use nccl")
        yield DistContext(rank=int(rank), world_size=int(world), local_rank=local_rank, device=device,
                          backend=backend, created=created)
    finally:
        if created:
            dist.destroy_process_group()


def shard_size(n: int, world_size: int) -> int:
    """Indices per rank of :func:`shard_indices`: ``ceil(n / world_size)``."""
    return math.ceil(n / world_size)


def shard_indices(
    n: int, world_size: int, rank: int, *, seed: int, epoch: int, shuffle: bool = True,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The indices of ``range(n)`` that ``rank`` trains on in ``epoch``, as ``DistributedSampler`` draws them.

    Every rank draws the same permutation (``torch.randperm`` with a CPU generator
    seeded ``seed + epoch``: the ``set_epoch`` semantics), pads it with its own
    first indices to ``world_size * ceil(n / world_size)`` and takes every
    ``world_size``-th index from position ``rank``. Over the ranks the shards
    cover ``range(n)``, hold equally many indices, and overlap only in the
    ``world_size * ceil(n / world_size) - n`` padding indices.

    Parameters
    ----------
    n : int
        Size of the data set.
    world_size, rank : int
    seed : int
        Shared by all ranks.
    epoch : int
    shuffle : bool, default=True
        False: ``arange(n)`` instead of the permutation.
    device : torch.device or str, default="cpu"
        Where the returned indices are.

    Returns
    -------
    (ceil(n / world_size),) int64 tensor

    Examples
    --------
    >>> shard_indices(5, 2, 0, seed=0, epoch=0, shuffle=False).tolist()
    [0, 2, 4]
    >>> shard_indices(5, 2, 1, seed=0, epoch=0, shuffle=False).tolist()
    [1, 3, 0]
    """
    if n < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need n >= 1 and 0 <= rank < world_size, got n={n}, rank={rank}, world_size={world_size}")
    if shuffle:
        g = torch.Generator()
        g.manual_seed(int(seed) + int(epoch))
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    total = world_size * shard_size(n, world_size)
    if total > n:
        order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
    return order[rank:total:world_size].to(device)


def all_reduce(values: Sequence[float], device: torch.device, op: str = "sum") -> list[float]:
    """``values`` summed (``op="sum"``) or maximized (``"max"``) over the ranks, in float64.

    Outside a process group the values come back unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank (in place).

    ``DistributedDataParallel`` keeps the parameters equal; the batch-norm
    running statistics each rank updated from its last batch differ, so this
    is run once after training so that every rank holds identical weights.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            if t.is_contiguous():
                dist.broadcast(t, src)
            else:  # e.g. channels-last weights: collectives take contiguous tensors
                buf = t.contiguous()
                dist.broadcast(buf, src)
                t.copy_(buf)
