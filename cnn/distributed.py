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
    "block_range",
    "shapes_sharded",
    "convert_sharded",
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


def block_range(n: int, world_size: int, rank: int) -> range:
    """Rank ``rank``'s contiguous block of ``range(n)``: ``ceil(n / world_size)`` items (the last ranks fewer)."""
    per = shard_size(n, world_size)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def shapes_sharded(images, filenames, ctx: DistContext | None, shapes_of: Callable) -> list:
    """``shapes_of(images, filenames)`` of a lazy sequence, each rank reading only its block (gathered).

    Parameters
    ----------
    images : lazy sequence
    filenames : sequence of str or None
    ctx : DistContext or None
        None: ``shapes_of`` of all images in this process.
    shapes_of : callable
        :func:`cnn.data.image_shapes`.

    Returns
    -------
    list of tuple
        The shape of every image, in order, on every rank.
    """
    if ctx is None:
        return shapes_of(images, filenames)
    block = block_range(len(images), ctx.world_size, ctx.rank)
    mine = [tuple(sh) for sh in shapes_of(_Subset(images, block), _subset_names(filenames, block))] if len(block) else []
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, mine)
    return [sh for part in parts for sh in part]


def convert_sharded(images, ctx: DistContext, to_tensor: Callable, *, size: int, in_chans: int | None,
                    filenames=None) -> torch.Tensor:
    """All of a lazy sequence as one uint8 tensor on every rank, each rank decoding only its block.

    Rank ``r`` converts its contiguous block (:func:`block_range`) with
    ``to_tensor`` (:func:`cnn.data.images_to_tensor`); the blocks are exchanged
    with ``all_gather`` (on the training device for ``nccl``). With
    ``in_chans=None`` the ranks agree on 3 channels when any block has colour
    (a gray block is replicated, as the 3-channel conversion does). The result
    equals ``to_tensor(images, ...)`` in one process.

    Returns
    -------
    (N, C, size, size) uint8 tensor
        On the training device for ``nccl``, else on the CPU.
    """
    n, world = len(images), ctx.world_size
    per = shard_size(n, world)
    block = block_range(n, world, ctx.rank)
    if len(block):
        part = to_tensor(images, size=size, in_chans=in_chans, filenames=filenames, indices=block)
    else:
        part = torch.empty((0, in_chans or 1, size, size), dtype=torch.uint8)
    on = ctx.device if "nccl" in ctx.backend else torch.device("cpu")
    if in_chans is None:
        c = int(all_reduce([part.shape[1] if len(block) else 1], on, op="max")[0])
        if part.shape[1] != c:
            part = part.repeat(1, c, 1, 1)
    c = part.shape[1]
    padded = torch.zeros((per, c, size, size), dtype=torch.uint8, device=on)
    padded[: part.shape[0]] = part.to(on)
    del part
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    del padded
    return torch.cat(parts)[:n]


def _subset_names(filenames, block: range):
    return None if filenames is None else [filenames[i] for i in block]


class _Subset(Sequence):
    """Items ``block`` of a sequence, read on access (for :func:`shapes_sharded`)."""

    def __init__(self, seq, block: range):
        self._seq, self._block = seq, block
        names = getattr(seq, "filenames", None)
        if names is not None:
            try:
                self.filenames = [names[i] for i in block]
            except (TypeError, IndexError):
                pass

    def __len__(self) -> int:
        return len(self._block)

    def __getitem__(self, i):
        return self._seq[self._block[i]]
