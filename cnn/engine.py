"""Training engine: plain ``train_one_epoch`` / ``evaluate`` functions and checkpoints.

The functions take any iterable of ``(images, labels)`` batches already on the
model's device (e.g. :meth:`cnn.data.DeviceData.batches`), so they work the same
with a DataLoader. Metrics are weighted by the number of samples in each batch;
losses and correct counts are accumulated on the device and read back once per
epoch, so the GPU is never stalled by a per-batch ``.item()``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

__all__ = [
    "autocast_context",
    "train_one_epoch",
    "evaluate",
    "predict_logits",
    "save_checkpoint",
    "load_checkpoint",
    "synchronize",
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
) -> dict[str, float]:
    """Train ``model`` for one pass over ``batches``.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable of (images, labels)
        Tensors on the model's device.
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

    Returns
    -------
    dict
        ``loss`` and ``accuracy`` (sample-weighted means over the epoch),
        ``n`` (images seen), ``seconds`` and ``images_per_second``.
    """
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy
    model.train()
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
            bc = (logits.detach().argmax(1) == yb).sum()
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
    averaged probabilities).

    Returns
    -------
    dict
        ``loss``, ``accuracy``, ``n``.
    """
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy
    model.eval()
    loss_sum = 0.0
    correct = 0
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
            loss_sum += float(loss) * b
            correct += int((prob.argmax(1) == yb).sum())
            n += b
    if n == 0:
        raise ValueError("evaluate got no batches")
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": n}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically (temporary file, then ``os.replace``).

    A crash while writing leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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
