"""Training engine: plain ``train_one_epoch`` / ``evaluate`` functions and checkpoints.

The functions take any iterable of ``(images, labels)`` batches already on the
model's device (e.g. :meth:`cnn.data.DeviceData.batches`), so they work the same
with a DataLoader. Metrics are weighted by the number of samples in each batch;
losses and correct counts are accumulated on the device and read back once per
epoch, so the GPU is never stalled by a per-batch ``.item()``.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import gc
import os
import pickle
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "autocast_context",
    "training_settings",
    "train_one_epoch",
    "evaluate",
    "predict_logits",
    "save_checkpoint",
    "load_checkpoint",
    "synchronize",
    "measure_train_step_memory",
]


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work on ``device`` (no-op on CPU), for honest timings."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_context(device: torch.device | str, dtype: torch.dtype | None) -> Callable[[], Any]:
    """A factory of autocast contexts, or of null contexts when ``dtype`` is None.

    Parameters
    ----------
    device : torch.device or str
    dtype : torch.dtype or None
        ``torch.bfloat16`` (CPU or CUDA) or ``torch.float16`` (CUDA).

    Notes
    -----
    The parameters stay float32; under autocast BatchNorm runs on float32
    weights and statistics (it is not on autocast's lower-precision list).
    """
    device = torch.device(device)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def training_settings(device: torch.device | str, seed: int) -> Iterator[torch.Generator]:
    """The process-wide torch state of one training run, restored on exit.

    Inside the context: torch's global random state (CPU, and ``device`` when
    it is a GPU) is forked and seeded with ``seed``, so the caller's random
    streams are untouched; on the CPU deterministic algorithms are on
    (``warn_only``), so two runs with one seed give identical weights; on
    CUDA cuDNN autotuning (``cudnn.benchmark``) is on, for speed. On exit the
    random state, the deterministic-algorithms setting and ``cudnn.benchmark``
    are what they were before, also when training raises.

    Parameters
    ----------
    device : torch.device or str
        The training device.
    seed : int
        Seed of the global generators and of the yielded generator.

    Yields
    ------
    generator : torch.Generator
        A generator on ``device`` seeded with ``seed`` (shuffling, augmentation).
    """
    device = torch.device(device)
    det_before = torch.are_deterministic_algorithms_enabled()
    det_warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_before = torch.backends.cudnn.benchmark
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
        torch.manual_seed(seed)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = True
        try:
            yield gen
        finally:
            if device.type == "cpu":
                torch.use_deterministic_algorithms(det_before, warn_only=det_warn_before)
            torch.backends.cudnn.benchmark = cudnn_before


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None = None,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    scaler: torch.amp.GradScaler | None = None,
    device: torch.device | str | None = None,
    eval_modules: Sequence[nn.Module] = (),
) -> dict[str, float]:
    """Train ``model`` for one pass over ``batches``.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable of (images, labels)
        Tensors on the model's device; labels are class indices ``(B,)`` or
        soft targets ``(B, n_classes)`` (Mixup, CutMix).
    optimizer : torch.optim.Optimizer
    scheduler : LRScheduler, optional
        Stepped after every batch (per-step schedules).
    loss_fn : callable, default=cross-entropy
        ``loss_fn(logits, labels)`` returning the batch-mean loss.
    autocast : callable
        Factory of the mixed-precision context (:func:`autocast_context`).
    scaler : torch.amp.GradScaler, optional
        For float16 training.
    device : torch.device, optional
        Synchronized before reading the clock.
    eval_modules : sequence of torch.nn.Module
        Submodules kept in eval mode (e.g. the batch norms of a frozen
        backbone, so that their running statistics are used and kept).

    Returns
    -------
    dict
        ``loss`` and ``accuracy`` (sample-weighted means over the epoch; with
        soft targets a prediction counts as right when it is the target's
        largest class), ``n`` (images seen), ``seconds`` and ``images_per_second``.
    """
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy
    model.train()
    for module in eval_modules:
        module.eval()
    if device is not None:
        synchronize(device)
    t0 = time.perf_counter()
    loss_sum = correct = None
    n = 0
    for xb, yb in batches:
        with autocast():
            logits = model(xb)
            loss = loss_fn(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        with torch.no_grad():
            b = yb.shape[0]
            bl = loss.detach().float() * b
            hard = yb.argmax(1) if yb.ndim == 2 else yb  # soft targets (Mixup, CutMix): the dominant class
            bc = (logits.detach().argmax(1) == hard).sum()
            loss_sum = bl if loss_sum is None else loss_sum + bl
            correct = bc if correct is None else correct + bc
        n += b
    if device is not None:
        synchronize(device)
    seconds = time.perf_counter() - t0
    if n == 0:
        raise ValueError("train_one_epoch got no batches")
    return {
        "loss": float(loss_sum) / n,
        "accuracy": float(correct) / n,
        "n": n,
        "seconds": seconds,
        "images_per_second": n / seconds if seconds > 0 else float("inf"),
    }


def predict_logits(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple],
    *,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    tta_flip: bool = False,
) -> torch.Tensor:
    """Logits of ``model`` over ``batches`` (under ``inference_mode``), as float32.

    With ``tta_flip`` the logits of each image and of its mirror image are both
    computed and returned stacked as ``(2, N, K)``; otherwise ``(N, K)``.
    """
    model.eval()
    outs, flips = [], []
    with torch.inference_mode():
        for b in batches:
            xb = b[0] if isinstance(b, (tuple, list)) else b
            with autocast():
                outs.append(model(xb).float())
                if tta_flip:
                    flips.append(model(xb.flip(3)).float())
    logits = torch.cat(outs)
    if tta_flip:
        return torch.stack([logits, torch.cat(flips)])
    return logits


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    tta_flip: bool = False,
) -> dict[str, float]:
    """Loss and top-1 accuracy of ``model`` on labelled ``batches``.

    Runs under ``torch.inference_mode()`` in eval mode; metrics are weighted by
    the number of samples of each batch. With ``tta_flip`` the softmax of each
    image and of its mirror image are averaged (the loss is then the NLL of the
    averaged probabilities). The loss and correct counts are summed on the
    device (the loss in float64, so the sum is the one Python floats would
    give; float32 on devices without float64) and read back once, at the end.

    Returns
    -------
    dict
        ``loss``, ``accuracy``, ``n``.
    """
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy
    model.eval()
    loss_sum = correct = None
    n = 0
    with torch.inference_mode():
        for xb, yb in batches:
            with autocast():
                logits = model(xb).float()
                if tta_flip:
                    prob = (logits.softmax(1) + model(xb.flip(3)).float().softmax(1)) / 2
                    loss = nn.functional.nll_loss(prob.clamp_min(1e-12).log(), yb)
                else:
                    prob = logits
                    loss = loss_fn(logits, yb)
            b = yb.shape[0]
            bl = loss.to(torch.float32 if loss.device.type == "mps" else torch.float64) * b
            bc = (prob.argmax(1) == yb).sum()
            loss_sum = bl if loss_sum is None else loss_sum + bl
            correct = bc if correct is None else correct + bc
            n += b
    if n == 0:
        raise ValueError("evaluate got no batches")
    return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n, "n": n}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically (temporary file, then ``os.replace``).

    A crash while writing leaves the previous checkpoint intact and no partial
    file. The file gets the usual permissions of a new file, ``0o666 & ~umask``
    (0644 under the common umask 022), not the 0600 of a temporary file.

    Raises
    ------
    OSError
        If the file cannot be written (full disk, quota, read-only folder): the
        message names ``path``; the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
        if isinstance(exc, RuntimeError) and "write" in str(exc).lower():
            # torch.save reports a failed write (e.g. ENOSPC) as RuntimeError
            raise OSError(errno.EIO, f"cannot write {path} (disk full?): {exc}") from exc
        raise


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` (or ``CNNClassifier.save``) safely.

    Uses ``torch.load(..., weights_only=True)``: only tensors and plain containers
    (dict, list, tuple, str, int, float, bool, None) are accepted, never
    arbitrary Python objects.

    Raises
    ------
    ValueError
        If the file holds anything else (e.g. a pickled class instance), or is
        not a torch file.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"refusing to load {path}: it contains Python objects other than tensors and "
            f"plain containers, which weights_only loading does not unpickle ({exc})"
        ) from exc
    except (RuntimeError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable torch checkpoint: {exc}") from exc


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``), so that RSS growth shows new use."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class _PeakRSS:
    """Sample the process RSS from a thread while the block runs; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.0005):
        self.interval = interval
        self.peak = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._stop = threading.Event()
        self.peak = _rss_bytes()
        self._maxrss0 = _maxrss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        maxrss = _maxrss_bytes()
        if maxrss > self._maxrss0:  # a new high-water mark was set inside the block
            self.peak = max(self.peak, maxrss)
        return False


def measure_train_step_memory(
    model: nn.Module,
    make_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    batch_sizes: Sequence[int],
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    device: torch.device | str = "cpu",
    stop_above: float | None = None,
) -> dict[int, int]:
    """Memory one training step takes, measured for each batch size.

    A copy of ``model`` (so that the model, its statistics and the random state
    are left as they were) runs forward, backward and an SGD-with-momentum step
    on ``make_batch(b)``: once unmeasured with the first batch size (one-time
    allocations such as kernel caches then count in every measurement), then
    for each ``b`` in order.

    Parameters
    ----------
    model : torch.nn.Module
    make_batch : callable
        ``make_batch(b) -> (images, labels)`` on ``device``.
    batch_sizes : sequence of int
    loss_fn : callable, default=cross-entropy
    autocast : callable
        Factory of the mixed-precision context.
    device : torch.device or str
    stop_above : float, optional
        Stop after the first batch size whose step needs more bytes than this.

    Returns
    -------
    dict of int to int
        Bytes the step needed above what the process held before the copy was
        made: the copy's weights, gradients and momentum, the activations kept
        for backward and the workspace. On CUDA: the growth of
        ``torch.cuda.max_memory_allocated``. On the CPU: the peak growth of the
        process's resident set size (sampled from a thread, and the
        ``getrusage`` high-water mark), but at least the bytes of the tensors
        autograd saved plus three times the weights (a lower bound that the
        reuse of freed memory by the allocator cannot hide); freed heap memory
        is handed back to the OS (``malloc_trim``) before each step so that the
        growth is visible.
    """
    device = torch.device(device)
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy
    out: dict[int, int] = {}
    fork = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork, device_type=device.type):
        gc.collect()
        if device.type == "cuda":
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            start = torch.cuda.memory_allocated(device)
        else:
            _trim_heap()
            start = _rss_bytes()
        probe = copy.deepcopy(model)
        probe.train()
        params = [p for p in probe.parameters() if p.requires_grad]
        # weights, plus a gradient and a momentum buffer for each trained one
        param_bytes = sum(p.numel() * p.element_size() * (3 if p.requires_grad else 1) for p in probe.parameters())
        opt = torch.optim.SGD(params, lr=0.0, momentum=0.9) if params else None
        own = {p.data_ptr() for p in probe.parameters()}
        for i, b in enumerate([batch_sizes[0], *batch_sizes] if batch_sizes else []):
            saved: dict[int, int] = {}

            def pack(t: torch.Tensor):
                if t.data_ptr() not in own:
                    saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            xb, yb = make_batch(int(b))
            if device.type == "cpu":
                gc.collect()
                _trim_heap()
            meter = _PeakRSS() if device.type == "cpu" else contextlib.nullcontext()
            with meter:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    with autocast():
                        loss = loss_fn(probe(xb).float(), yb)
                loss.backward()
                if opt is not None:
                    opt.step()
                    opt.zero_grad(set_to_none=False)
                del loss
            if device.type == "cuda":
                synchronize(device)
                measured = torch.cuda.max_memory_allocated(device) - start
            else:
                measured = meter.peak - start
            lower = sum(saved.values()) + param_bytes + xb.numel() * xb.element_size()
            del xb, yb
            if i == 0:  # the warm-up step
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                continue
            out[int(b)] = int(max(measured, lower))
            if stop_above is not None and out[int(b)] > stop_above:
                break
        del probe, opt
        gc.collect()
    return out
