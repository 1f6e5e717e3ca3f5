"""``CNNClassifier``: train and use a registered CNN as a scikit-learn classifier."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from classicvision.utils.validation import Interval, Options, StrOptions, fit_context

from . import data as _data
from . import distributed as _dist
from .augment import BatchAugment, parse_augment
from .data import DeviceData, channel_stats, image_shapes, images_to_tensor, is_lazy, normalize
from .engine import (
    autocast_context,
    evaluate,
    load_checkpoint,
    measure_train_step_memory,
    predict_logits,
    save_checkpoint,
    synchronize,
    train_one_epoch,
    training_settings,
)
from .models import (
    check_input_size,
    create_model,
    get_model_config,
    get_model_recipe,
    head_parameter_names,
    is_model,
    load_matching_weights,
    read_pretrained,
)

__all__ = ["CNNClassifier", "MemoryPlanError", "parse_bytes"]

_FORMAT = "cnn.CNNClassifier"
_FORMAT_VERSION = 1
_CKPT_NAME = "last.pt"


#: Bounds on the sizes a saved file may ask :meth:`CNNClassifier.load` to build.
_MAX_INPUT_SIZE = 1024
_MAX_CLASSES = 100_000
_REQUIRED_CONFIG = ("params", "classes", "mean", "std", "model", "num_classes", "in_chans", "input_size")

#: torch's batch-norm layers (every public class; they share only a private base class).
_BATCH_NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
)

#: Weight decay of Adam (the PaddlePaddle book's: none) and AdamW (torch's default) when None.
_ADAM_WEIGHT_DECAY = {"adam": 0.0, "adamw": 0.01}
#: Learning rate of Adam and AdamW when None (the PaddlePaddle book's).
_ADAM_LR = 1e-3

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class _FitPlan:
    """What :meth:`CNNClassifier.fit` decided before training (read by ``_train`` and its helpers)."""

    cfg: dict  # the model's configuration (get_model_config)
    recipe: dict  # its training recipe (get_model_recipe)
    seed: int  # of the initialization, shuffling, augmentation and dropout
    pad: int  # random-crop padding in pixels
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None without mixed precision
    channels_last: bool
    t_start: float  # perf_counter() when fit started (fit_seconds_ counts from it)
    limit: int | None = None  # memory_limit in bytes
    pre_state: dict | None = None  # pretrained state dict
    pre_meta: dict = field(default_factory=dict)  # its file, channels, normalization
    crop_flip: bool = True  # random crop (and flip, when ``flip``) while training
    transforms: tuple = ()  # the extra augmentations (cnn.augment.BatchTransform)
    validation: DeviceData | None = None  # validation_data (this rank's share) on the device, labels encoded
    dist: _dist.DistContext | None = None  # the data-parallel run, None without one
    has_validation: bool = False  # validation_data was given (a rank's share may be empty)


class MemoryPlanError(MemoryError, ValueError):
    """Training cannot fit ``memory_limit``, not even at the smallest batch size."""


def parse_bytes(value: int | str) -> int:
    """A memory size in bytes: an int, or a string such as ``"4GiB"``, ``"512 MB"``, ``"2G"``.

    ``KiB``/``MiB``/``GiB``/``TiB`` and the bare ``K``/``M``/``G``/``T`` are powers
    of 1024; ``KB``/``MB``/``GB``/``TB`` powers of 1000 (case is ignored).

    Raises
    ------
    ValueError
        Not a positive size.
    """
    if isinstance(value, Integral) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"memory_limit must be a positive number of bytes, got {value}")
        return int(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(value))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) * _UNITS[unit] < 1:
        raise ValueError(
            f"memory_limit must be a number of bytes or a size like '4GiB', '512MB' or '2G', got {value!r}"
        )
    return int(float(m.group(1)) * _UNITS[unit])


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it, else its ``repr`` (for saved configs)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def _lr_lambda(schedule: str, total: int, warmup: int):
    """Per-step multiplier of the base learning rate.

    ``onecycle``: linear warm-up from 0.1 to 1 over ``warmup`` steps, then linear
    decay to 0 (airbench's triangle). ``cosine``: same warm-up, then half a cosine
    to 0. ``step``: same warm-up, then x0.1 at 50 % and x0.01 at 75 % of training.
    """
    total = max(total, 1)
    warmup = min(max(warmup, 0), total - 1) if total > 1 else 0

    def fn(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        frac = (step - warmup) / max(total - warmup, 1)
        if schedule == "onecycle":
            return max(1.0 - frac, 0.0)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        return 1.0 if frac < 0.5 else (0.1 if frac < 0.75 else 0.01)

    return fn


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """Train a registered CNN on images, with the scikit-learn classifier API.

    Images go in as the dataset loaders give them; everything data-dependent
    (classes, input size, channels, normalization statistics) is learned in
    :meth:`fit` and saved with the model.

    Parameters
    ----------
    model : str, default="small_convnet"
        A name from :func:`cnn.models.list_models`.
    epochs : int, default=10
    batch_size : int, default=128
        Capped at the number of training images. The last incomplete batch of
        an epoch is dropped (the order is reshuffled every epoch).
    optimizer : {"sgd", "adam", "adamw"}, default="sgd"
        ``"sgd"``: SGD with (Nesterov) momentum, the biases and batch-norm
        weights in their own group (learning rate x the recipe's
        ``bias_lr_scale``, weight decay / ``bias_lr_scale``, airbench's
        grouping). ``"adam"`` (Kingma & Ba, ICLR 2015; the PaddlePaddle
        book's recipe, lr 0.001) and ``"adamw"`` (decoupled weight decay,
        Loshchilov & Hutter, ICLR 2019): no weight decay on the biases and
        batch-norm weights (the 1-D parameters). The schedule and warm-up
        apply to all three.
    lr : float or None, default=None
        Peak learning rate. None: with ``"sgd"``, the ``lr`` of the model's
        training recipe scaled linearly by ``batch_size / lr_batch_size``
        (see :func:`cnn.models.get_model_recipe`); with ``"adam"`` and
        ``"adamw"``, 0.001 (not scaled with the batch size).
    momentum : float in [0, 1) or None, default=None
        SGD's momentum; Adam's and AdamW's ``beta1`` (``beta2`` is 0.999).
        None: for SGD the model's default (0.9; 0.85 for ``fastnet``), for
        Adam and AdamW 0.9.
    nesterov : bool, default=True
        Nesterov momentum (SGD only).
    weight_decay : float >= 0 or None, default=None
        SGD's and Adam's L2 penalty, AdamW's decoupled decay. None: for SGD
        the model's default (5e-4 for the CIFAR nets), for Adam 0 (the
        book's), for AdamW 0.01 (torch's default).
    label_smoothing : float in [0, 1) or None, default=None
        None: the model's default (0.1; 0.2 for ``fastnet``).
    schedule : {"onecycle", "cosine", "step"}, default="onecycle"
        Per-step learning-rate schedule after the warm-up: linear decay to 0,
        cosine decay to 0, or x0.1 steps at 50 % and 75 % of training.
    warmup_epochs : float >= 0, default=1
        Linear warm-up length (from 0.1 x lr).
    input_size : int or None, default=None
        Side of the square network input. None: the model's configured size
        (32 for the CIFAR nets, 224 for most ImageNet nets, 299 for
        ``inception_v3``), or for models configured with ``None``
        (``small_convnet``) the median longer side of the training images,
        capped at the model's ``max_input_size`` (64 for ``small_convnet``).
        Every image, training or test, is resized to ``input_size`` x
        ``input_size`` with antialiased bilinear interpolation; a non-square
        image is stretched to the square (its aspect ratio is not kept,
        nothing is cropped or padded). Sizes below the model's
        ``min_input_size`` raise a ValueError.
    in_chans : {1, 3} or None, default=None
        Network input channels. None: the channels of the ``pretrained``
        weights when they are 1 or 3, else 1 when every training image is
        grayscale, else 3. Gray images are replicated to 3 channels and colour
        images converted to gray as needed.
    augment : bool, str, sequence or None, default=True
        Training augmentation, on the device, per batch. ``True``: random
        crops (reflect padding of ``crop_padding`` pixels) and flips (when
        ``flip``); ``False`` or ``None``: none. A string of ``+``-joined names
        adds PaddleClas's augmentations (:mod:`cnn.augment`) on top of the
        crop and flip: ``"autoaugment"`` (CIFAR-10 policy), ``"randaugment"``,
        ``"cutout"``, ``"random_erasing"``, ``"gridmask"``,
        ``"hide_and_seek"``, ``"mixup"``, ``"cutmix"``, e.g.
        ``"cutout+mixup"``; a leading ``"none+"`` drops the crop and flip
        (``"none+cutout"``). A sequence may hold names and
        :class:`cnn.augment.BatchTransform` instances (other parameters).
        Whatever the order given, each batch goes: AutoAugment / RandAugment
        on the uint8 images, normalization, crop, flip, the occlusions
        (Cutout, RandomErasing, GridMask, HideAndSeek), then Mixup or CutMix
        (one of the two per batch when both are named). Mixup and CutMix
        train on soft targets (label smoothing applies on top); the training
        ``accuracy`` then counts the dominant class. Unknown names fail at
        fit, listing the valid ones.
    flip : bool, default=True
        Random horizontal flips while training (when ``augment``) and flip
        test-time augmentation (when ``tta``). Turn off for digits and text.
    crop_padding : int >= 0 or None, default=None
        None: ``max(1, input_size // 8)`` (4 pixels at 32x32).
    tta : bool, default=True
        Average the softmax of each image and of its mirror image at predict
        time (only when ``flip``).
    device : str, default="auto"
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ...
    amp : {"auto"} or bool, default="auto"
        Mixed precision: bfloat16 autocast (float16 with loss scaling on GPUs
        without bfloat16). ``"auto"``: on for CUDA, off on CPU; ``True`` forces
        it on CPU too.
    channels_last : {"auto"} or bool, default="auto"
        Channels-last memory format; ``"auto"``: on for CUDA only.
    compile : bool, default=False
        ``torch.compile`` the training model; the compile time is measured
        apart (``compile_seconds_``) with a warm-up step whose effect is undone.
    checkpoint_dir : str, path or None, default=None
        Save a checkpoint (``last.pt``) there after every epoch.
    resume : bool, default=False
        Continue from ``checkpoint_dir/last.pt`` if it exists.
    eval_every : int >= 1 or None, default=None
        With ``validation_data`` in :meth:`fit`: evaluate every that many
        epochs and after the last one; None: every epoch. Needs
        ``validation_data``.
    verbose : int, default=0
        1: one line per epoch (loss, train accuracy, images/s, elapsed, ETA).
    random_state : int, RandomState instance or None, default=None
        Seeds the model initialization, the shuffling, the augmentation and
        dropout, with generators local to this estimator: two fits with the same
        integer seed on the CPU give identical weights.
    num_threads : int or None, default=None
        CPU threads torch uses inside fit / predict (restored afterwards).
    memory_limit : int, str or None, default=None
        Memory (bytes, or a size such as ``"4GiB"``, see :func:`parse_bytes`)
        that fit may use for the training tensor and one training step
        (weights, gradients, optimizer state, activations), on the training
        device, on top of what the process already holds (the caller's images,
        the libraries): pass the headroom, not the machine's total. None: no
        planning. When set, fit first measures a training
        step on 2 and 8 images at the chosen input size (a copy of the network;
        on CUDA with ``torch.cuda.max_memory_allocated``, on the CPU from the
        process's resident set size), fits ``base + per_image * batch``, adds
        the training tensor and trains with the largest batch size <=
        ``batch_size`` that fits (``batch_size_``, ``memory_plan_``). If even
        the smallest batch (2 for networks with batch norm, else 1) cannot
        fit, a :class:`MemoryPlanError` (a MemoryError and ValueError) is
        raised before training.
    pretrained : None, "imagenet", str or path, default=None
        Start from pretrained weights instead of a random initialisation.
        ``"imagenet"``: torchvision's ImageNet weights of the model (ImageNet
        models only), read from ``torch.hub.get_dir()/checkpoints`` and never
        downloaded (a missing file raises an error naming it and its URL). A
        path: a state dict saved with ``torch.save`` or a file written by
        :meth:`save`, read with ``torch.load(weights_only=True)``. Every layer
        whose name and shape match is loaded; the classifier head is
        re-initialised for the new classes (and the first convolution when
        the channels differ); see ``pretrained_report_``. Images are then
        normalized with the statistics the weights were trained with, when
        known (the ImageNet ones, or those saved by :meth:`save`).
    freeze : {"none", "backbone"}, default="none"
        ``"backbone"``: train only the classifier head (a linear probe; the
        batch norms of the backbone keep their running statistics).
        ``"none"``: train everything (fine-tuning when ``pretrained``).
    backbone_lr_scale : float >= 0, default=0.1
        With ``pretrained`` and ``freeze="none"``, the backbone's learning rate
        is ``lr * backbone_lr_scale`` (the head's is ``lr``). Unused without
        ``pretrained``.
    distributed : {"auto"} or bool, default="auto"
        Data-parallel training with ``DistributedDataParallel`` (Li et al.,
        VLDB 2020) when the process is one of a ``torchrun --nproc-per-node N``
        launch (any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
        ``MASTER_ADDR``, ``MASTER_PORT``) or a process group is already
        initialized. ``"auto"``: then; ``True``: then, and an error otherwise;
        ``False``: never. See Notes.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    model_ : torch.nn.Module
        The trained network (eval mode, on ``device_``).
    model_config_ : dict
        The model's configuration, facts about its architecture
        (:func:`cnn.models.get_model_config`).
    model_recipe_ : dict
        The model's training recipe, where the parameters left at None take
        their values from (:func:`cnn.models.get_model_recipe`).
    input_size_ : int
    in_chans_ : int
    mean_, std_ : list of float
        Per-channel statistics of the training images in ``[0, 1]`` units.
    device_ : torch.device
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``accuracy`` (on augmented training
        batches), ``lr``, ``images_per_second``, ``seconds``; on the epochs
        evaluated on ``validation_data`` also ``test_loss`` (cross-entropy,
        without label smoothing) and ``test_error`` (1 - top-1 accuracy),
        computed in eval mode without test-time augmentation.
    fit_seconds_ : float
        Training time, data preparation included, compile time and the
        evaluation of ``validation_data`` excluded.
    eval_seconds_ : float
        Time spent evaluating ``validation_data`` (0 without it).
    compile_seconds_ : float
        Time of ``torch.compile`` plus its warm-up step (0 when off).
    n_params_ : int
        Number of model parameters.
    batch_size_ : int
        The batch size used (``batch_size`` capped at the number of images and,
        with ``memory_limit``, at what fits).
    memory_plan_ : dict or None
        With ``memory_limit``: ``per_image_bytes``, ``base_bytes``,
        ``data_bytes``, ``limit_bytes``, ``batch_size`` (chosen),
        ``requested_batch_size``, ``measured`` (bytes per probed batch size),
        ``input_size``, ``device``. None otherwise.
    pretrained_report_ : dict or None
        With ``pretrained``: ``file``, ``loaded`` and ``skipped`` (state-dict
        keys of the network copied from the file / left at initialisation),
        ``reasons`` (why each was skipped) and ``unused`` (keys of the file the
        network has not). None otherwise.
    world_size_ : int
        Processes that trained the network (1 without data parallelism).
    rank_ : int
        This process's rank in that training (0 without data parallelism):
        a script writes its reports and saved models where ``rank_ == 0``.

    Notes
    -----
    ``lr``, ``momentum``, ``weight_decay`` and ``label_smoothing`` default to
    None, meaning the model's own recipe, so that ``fastnet`` gets airbench's
    values (0.85 momentum, label smoothing 0.2, 64x learning rate on biases)
    and the CIFAR nets the usual 0.9 / 5e-4 / 0.1. On CUDA, runs are not
    bit-reproducible (cuDNN autotuning is on for speed); on the CPU they are.

    **Lazy images.** ``images`` may be a lazy sequence such as
    :class:`classicvision.datasets.LazyImages` (any sequence that is not a
    list, tuple or ndarray: :func:`cnn.data.is_lazy`). It is read by index, a
    chunk at a time, straight into the uint8 tensor at the input size
    (``N x C x input_size x input_size`` bytes, whatever the files' sizes), and
    never materialized; :meth:`predict` and :meth:`predict_proba` stream it in
    chunks. Each image is decoded once, plus once more in a first pass that
    reads the sizes when the input size must come from the images (``input_size``
    None and a model configured without one, e.g. ``small_convnet``).

    **Data parallelism** (``torchrun``). Every rank holds the whole training set
    on its device (a lazy one is decoded in blocks, one per rank, exchanged
    with ``all_gather``) and trains on its share of each epoch, split as
    ``torch.utils.data.DistributedSampler`` splits it: one permutation per
    epoch, seeded with the fit's seed + epoch and shared by the ranks; rank
    ``r`` takes every ``N``-th index from ``r``, padded so that all ranks run
    the same number of batches (:func:`cnn.distributed.shard_indices`).
    ``batch_size`` is per rank (as in PyTorch's and timm's training scripts),
    so a step sees ``N x batch_size`` images. A given ``lr`` is used as it is
    (scale it yourself); with ``lr=None`` and SGD the recipe's linear scaling
    applies to the global batch, ``recipe lr x N x batch_size /
    lr_batch_size`` (Goyal et al., 2017, as timm does); Adam and AdamW keep
    0.001. ``memory_limit`` holds per rank (the batch size is the smallest any
    rank can afford). Gradients are averaged by DDP; BatchNorm normalizes with
    each rank's own batch statistics (no SyncBatchNorm), and the running
    statistics of rank 0 are copied to every rank at the end, so that all
    ranks hold identical weights and :meth:`predict` works on each. The
    augmentation, dropout and initialization draw from seed + rank (rank 0's
    initialization is broadcast). The reported training ``loss`` and
    ``accuracy`` are averaged over all ranks' images; ``validation_data`` is
    evaluated sharded (rank ``r`` takes every ``N``-th image) and summed over
    the ranks. Only rank 0 prints (``verbose``) and writes ``checkpoint_dir``;
    resuming needs the same number of processes. A process group that fit
    initialized (``gloo`` on the CPU, ``nccl`` on CUDA, where a device
    without an index becomes ``cuda:LOCAL_RANK``) is destroyed at the end of
    fit; one the caller initialized is left alone.

    Examples
    --------
    >>> from cnn import CNNClassifier
    >>> clf = CNNClassifier(model="small_convnet", epochs=20, flip=False, random_state=0)
    >>> clf.fit(train_images, train_labels).score(test_images, test_labels)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "model": [str],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions({"sgd", "adam", "adamw"})],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "momentum": [Interval(Real, 0, 1, closed="left"), None],
        "nesterov": ["boolean"],
        "weight_decay": [Interval(Real, 0, None, closed="left"), None],
        "label_smoothing": [Interval(Real, 0, 1, closed="left"), None],
        "schedule": [StrOptions({"onecycle", "cosine", "step"})],
        "warmup_epochs": [Interval(Real, 0, None, closed="left")],
        "input_size": [Interval(Integral, 1, None, closed="left"), None],
        "in_chans": [Options(Integral, {1, 3}), None],
        "augment": ["boolean", str, list, tuple, None],
        "flip": ["boolean"],
        "crop_padding": [Interval(Integral, 0, None, closed="left"), None],
        "tta": ["boolean"],
        "device": [str, torch.device],
        "amp": ["boolean", StrOptions({"auto"})],
        "channels_last": ["boolean", StrOptions({"auto"})],
        "compile": ["boolean"],
        "checkpoint_dir": [str, os.PathLike, None],
        "resume": ["boolean"],
        "eval_every": [Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "num_threads": [Interval(Integral, 1, None, closed="left"), None],
        "memory_limit": [Interval(Integral, 1, None, closed="left"), str, None],
        "pretrained": [str, os.PathLike, None],
        "freeze": [StrOptions({"none", "backbone"})],
        "backbone_lr_scale": [Interval(Real, 0, None, closed="left")],
        "distributed": ["boolean", StrOptions({"auto"})],
    }

    def __init__(
        self,
        *,
        model: str = "small_convnet",
        epochs: int = 10,
        batch_size: int = 128,
        optimizer: str = "sgd",
        lr: float | None = None,
        momentum: float | None = None,
        nesterov: bool = True,
        weight_decay: float | None = None,
        label_smoothing: float | None = None,
        schedule: str = "onecycle",
        warmup_epochs: float = 1,
        input_size: int | None = None,
        in_chans: int | None = None,
        augment: bool | str | Sequence | None = True,
        flip: bool = True,
        crop_padding: int | None = None,
        tta: bool = True,
        device: str = "auto",
        amp: bool | str = "auto",
        channels_last: bool | str = "auto",
        compile: bool = False,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        eval_every: int | None = None,
        verbose: int = 0,
        random_state: int | np.random.RandomState | None = None,
        num_threads: int | None = None,
        memory_limit: int | str | None = None,
        pretrained: str | os.PathLike | None = None,
        freeze: str = "none",
        backbone_lr_scale: float = 0.1,
        distributed: bool | str = "auto",
    ):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.input_size = input_size
        self.in_chans = in_chans
        self.augment = augment
        self.flip = flip
        self.crop_padding = crop_padding
        self.tta = tta
        self.device = device
        self.amp = amp
        self.channels_last = channels_last
        self.compile = compile
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.eval_every = eval_every
        self.verbose = verbose
        self.random_state = random_state
        self.num_threads = num_threads
        self.memory_limit = memory_limit
        self.pretrained = pretrained
        self.freeze = freeze
        self.backbone_lr_scale = backbone_lr_scale
        self.distributed = distributed

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags

    # --------------------------------------------------------------- helpers
    def _resolve_device(self) -> torch.device:
        dev = str(self.device)
        if dev == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(dev)
        except RuntimeError as exc:
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {dev!r}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={dev!r} was asked for but CUDA is not available")
        return device

    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        on = (device.type == "cuda") if self.amp == "auto" else bool(self.amp)
        if not on:
            return None
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    def _log(self) -> bool:
        """Whether to print: ``verbose``, and not a rank other than 0 of a data-parallel run."""
        return bool(self.verbose) and _dist.is_main_process()

    @contextlib.contextmanager
    def _threads(self):
        if self.num_threads is None:
            yield
            return
        old = torch.get_num_threads()
        torch.set_num_threads(int(self.num_threads))
        try:
            yield
        finally:
            torch.set_num_threads(old)

    @staticmethod
    def _image_sizes(images, shapes=None) -> list[tuple[int, int]]:
        if shapes is not None:
            return [tuple(sh[:2]) for sh in shapes]
        if isinstance(images, np.ndarray) and images.ndim in (3, 4):
            return [tuple(images.shape[1:3])]
        return [tuple(np.shape(im)[:2]) for im in images]

    @staticmethod
    def _all_gray(images, are_shapes: bool = False) -> bool:
        if are_shapes:
            return all(len(sh) == 2 or (len(sh) == 3 and sh[2] == 1) for sh in images)
        if isinstance(images, np.ndarray) and images.ndim in (3, 4):
            return images.ndim == 3 or images.shape[-1] == 1
        return all(np.ndim(im) == 2 or (np.ndim(im) == 3 and np.shape(im)[2] == 1) for im in images)

    def _ckpt_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / _CKPT_NAME

    def _params_for_saving(self) -> dict:
        return {k: _jsonable(v) for k, v in self.get_params(deep=False).items()}

    def _make_optimizer(
        self,
        net: nn.Module,
        lr: float,
        momentum: float,
        wd: float,
        bias_scale: float,
        backbone_scale: float = 1.0,
        head: frozenset = frozenset(),
    ):
        """The optimizer, with groups: weights, 1-D parameters (biases, norms), the backbone's.

        SGD: the 1-D parameters at ``lr * bias_scale`` and ``wd / bias_scale``.
        Adam / AdamW: the 1-D parameters without weight decay. The backbone's
        parameters (with ``backbone_scale`` != 1) at ``lr * backbone_scale``.
        """
        decay, biases, bb_decay, bb_biases = [], [], [], []
        for name, p in net.named_parameters():
            if not p.requires_grad:
                continue
            backbone = backbone_scale != 1.0 and name not in head
            if p.ndim <= 1:
                (bb_biases if backbone else biases).append(p)
            else:
                (bb_decay if backbone else decay).append(p)
        sgd = self.optimizer == "sgd"
        if not sgd:
            bias_scale = 1.0
        groups = []
        for params, scale in ((decay, 1.0), (bb_decay, backbone_scale)):
            if params or not groups:
                groups.append({"params": params, "lr": lr * scale, "weight_decay": wd})
        for params, scale in ((biases, 1.0), (bb_biases, backbone_scale)):
            if params:
                groups.append({"params": params, "lr": lr * scale * bias_scale,
                               "weight_decay": wd / bias_scale if sgd else 0.0})
        if sgd:
            return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=self.nesterov and momentum > 0)
        cls = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return cls(groups, lr=lr, betas=(momentum, 0.999), weight_decay=wd)

    def _optimizer_defaults(self, recipe: dict) -> tuple[float, float]:
        """``momentum`` (Adam's beta1) and ``weight_decay``, the optimizer's defaults where None."""
        if self.optimizer == "sgd":
            momentum, wd = recipe["momentum"], recipe["weight_decay"]
        else:
            momentum, wd = 0.9, _ADAM_WEIGHT_DECAY[self.optimizer]
        return (self.momentum if self.momentum is not None else momentum,
                self.weight_decay if self.weight_decay is not None else wd)

    # ------------------------------------------------------------------- fit
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, images, y, filenames=None, validation_data=None):
        """Train the network.

        Parameters
        ----------
        images : sequence of (H, W[, C]) arrays, (N, H, W[, C]) ndarray, or lazy sequence
            uint8 (or float in [0, 1]); gray, RGB or RGBA; any sizes. A lazy
            sequence (e.g. :class:`classicvision.datasets.LazyImages`) is read
            by index, a chunk at a time, and never materialized (see Notes).
        y : array-like of shape (N,)
            Class labels (any hashable values numpy can sort).
        filenames : sequence of str, optional
            Used in error messages about bad images.
        validation_data : (images, y) or None, default=None
            Images and labels evaluated after every ``eval_every`` epochs
            (loss and error in ``history_``: the training curves). They are
            never trained on, and the weights do not depend on them (the
            evaluation draws no random numbers); labels must be among the
            training classes. Bench passes the test split, as the
            PaddlePaddle book's chapter plots its test cost per pass. They
            are held on the device as uint8 (not counted by ``memory_limit``).

        Returns
        -------
        self : CNNClassifier

        Raises
        ------
        ValueError
            Unknown model, length mismatch between images and labels, fewer than
            two classes, an invalid image (named by index / file), an input size
            below the model's smallest, a model without ImageNet weights for
            ``pretrained="imagenet"``, or an unreadable weights file; an
            unknown augmentation name (the message lists the valid ones);
            ``validation_data`` that is not ``(images, y)`` of equal lengths,
            holds labels absent from ``y``, or ``eval_every`` without it.
        MemoryPlanError
            With ``memory_limit``: not even the smallest batch fits.
        FileNotFoundError
            A missing ``pretrained`` weights file.
        """
        if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
            raise TypeError(
                f"images must be a sequence of arrays or an (N, H, W[, C]) array, got {type(images).__name__}"
            )
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (one label per image), got shape {y.shape}")
        if len(images) != y.shape[0]:
            raise ValueError(f"images and y have different lengths: {len(images)} images, {y.shape[0]} labels")
        if y.shape[0] == 0:
            raise ValueError("got no training images")
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(f"need at least 2 classes to train a classifier, got {classes.shape[0]}")
        cfg = get_model_config(self.model)  # ValueError listing close names
        recipe = get_model_recipe(self.model)
        crop_flip, transforms = parse_augment(self.augment)  # ValueError listing the valid names
        val_images, val_y = self._check_validation(validation_data, classes)
        limit = None if self.memory_limit is None else parse_bytes(self.memory_limit)

        t_start = time.perf_counter()
        with _dist.process_group(self.distributed, self._resolve_device) as dctx:
            self._fit_prepared(images, y_enc, classes, filenames, cfg, recipe, crop_flip, transforms,
                               val_images, val_y, limit, t_start, dctx)
        return self

    def _fit_prepared(self, images, y_enc, classes, filenames, cfg, recipe, crop_flip, transforms,
                      val_images, val_y, limit, t_start, dctx) -> None:
        """:meth:`fit` after the checks of its arguments, inside the process group of ``dctx`` (or None)."""
        device = dctx.device if dctx is not None else self._resolve_device()
        amp_dtype = self._amp_dtype(device)
        cl = (device.type == "cuda") if self.channels_last == "auto" else bool(self.channels_last)
        pre_state, pre_meta = None, {}
        if self.pretrained is not None:  # fails now on a missing file or a model without weights
            pre_state, pre_meta = read_pretrained(self.model, self.pretrained)
        lazy = is_lazy(images)
        # a lazy sequence is decoded to learn the sizes only when the input size must come from them
        shapes = None
        if lazy and self.input_size is None and cfg["input_size"] is None:
            shapes = _dist.shapes_sharded(images, filenames, dctx, image_shapes)
        if self.in_chans is not None:
            in_chans = self.in_chans
        elif pre_meta.get("in_chans") in (1, 3):
            in_chans = int(pre_meta["in_chans"])
        elif lazy and shapes is None:
            in_chans = None  # 1 if every image is gray, else 3: decided while converting
        else:
            in_chans = 1 if self._all_gray(images if shapes is None else shapes, shapes is not None) else 3
        size = self._choose_input_size(images, cfg, shapes)
        check_input_size(self.model, size)
        n = y_enc.shape[0]
        if limit is not None:
            self._check_data_fits(n, in_chans or 1, size, limit)
        pad = self.crop_padding if self.crop_padding is not None else max(1, size // 8)
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(0, 2**31 - 1))

        self.classes_ = classes
        self.model_config_ = cfg
        self.model_recipe_ = recipe
        self.input_size_ = int(size)
        self.device_ = device
        self._amp_dtype_ = amp_dtype
        self._channels_last_ = cl
        self.world_size_ = dctx.world_size if dctx is not None else 1
        self.rank_ = dctx.rank if dctx is not None else 0

        with self._threads():
            if lazy and dctx is not None:  # each rank decodes its block, then all ranks exchange them
                x = _dist.convert_sharded(images, dctx, images_to_tensor, size=size, in_chans=in_chans,
                                          filenames=filenames)
            else:
                x = images_to_tensor(images, size=size, in_chans=in_chans, filenames=filenames)
            if in_chans is None:
                in_chans = int(x.shape[1])
                if limit is not None:
                    self._check_data_fits(n, in_chans, size, limit)
            self.in_chans_ = int(in_chans)
            mean, std = pre_meta.get("mean"), pre_meta.get("std")
            if pre_state is not None and self._valid_stats(mean, std, in_chans):
                self.mean_, self.std_ = [float(v) for v in mean], [float(v) for v in std]
            else:
                self.mean_, self.std_ = channel_stats(x)
            data = DeviceData(x, torch.from_numpy(y_enc), self.mean_, self.std_, device, channels_last=cl)
            del x
            validation = None
            if val_images is not None:
                # data parallel: each rank evaluates every world_size-th image (summed over the ranks)
                part = None if dctx is None else range(dctx.rank, len(val_images), dctx.world_size)
                if part is None or len(part):
                    try:
                        vx = images_to_tensor(val_images, size=size, in_chans=in_chans, indices=part)
                    except ValueError as exc:
                        raise ValueError(f"validation_data: {exc}") from exc
                    vy = torch.from_numpy(val_y if part is None else val_y[dctx.rank :: dctx.world_size])
                    validation = DeviceData(vx, vy, self.mean_, self.std_, device, channels_last=cl)
                    del vx
            plan = _FitPlan(cfg=cfg, recipe=recipe, seed=seed, pad=pad, device=device, amp_dtype=amp_dtype, channels_last=cl,
                            t_start=t_start, limit=limit, pre_state=pre_state, pre_meta=pre_meta,
                            crop_flip=crop_flip, transforms=tuple(transforms), validation=validation,
                            dist=dctx, has_validation=val_images is not None)
            self._train(data, plan)

    def _check_data_fits(self, n: int, in_chans: int, size: int, limit: int) -> None:
        """Refuse a training tensor larger than ``memory_limit`` on its own."""
        data_bytes = n * in_chans * size * size + 8 * n
        if data_bytes > limit:
            raise MemoryPlanError(
                f"{self.model}: the {n} training images at input_size {size} take "
                f"{_fmt_bytes(data_bytes)} as uint8, more than memory_limit={_fmt_bytes(limit)} "
                f"before any training step (batch_size {self.batch_size}); lower input_size, "
                "train on fewer images or raise memory_limit"
            )

    def _check_validation(self, validation_data, classes: np.ndarray):
        """``(images, encoded labels)`` of ``validation_data``, or ``(None, None)``; checked before training."""
        if validation_data is None:
            if self.eval_every is not None:
                raise ValueError(f"eval_every={self.eval_every} needs validation_data=(images, y) in fit")
            return None, None
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                f"validation_data must be a pair (images, y), got {type(validation_data).__name__}"
                + (f" of length {len(validation_data)}" if hasattr(validation_data, "__len__") else "")
            )
        images, y = validation_data
        if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
            raise TypeError(f"validation_data images must be a sequence of arrays, got {type(images).__name__}")
        y = np.asarray(y)
        if y.ndim != 1 or len(images) != y.shape[0] or y.shape[0] == 0:
            raise ValueError(
                f"validation_data needs one label per image and at least one image: {len(images)} images, "
                f"labels of shape {y.shape}"
            )
        index = {c: i for i, c in enumerate(classes.tolist())}
        encoded = [index.get(v, -1) for v in y.tolist()]
        unknown = sorted({repr(v) for v, i in zip(y.tolist(), encoded) if i < 0})
        if unknown:
            raise ValueError(
                f"validation_data holds labels absent from the training labels: {', '.join(unknown[:10])}"
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            )
        return images, np.asarray(encoded, dtype=np.int64)

    @staticmethod
    def _valid_stats(mean, std, in_chans: int) -> bool:
        try:
            return (
                len(mean) == in_chans == len(std)
                and all(math.isfinite(float(m)) for m in mean)
                and all(math.isfinite(float(v)) and float(v) > 0 for v in std)
            )
        except (TypeError, ValueError):
            return False

    def _choose_input_size(self, images, cfg: dict, shapes=None) -> int:
        """``input_size``, else the model's size, else the images' (or ``shapes``') median longer side capped."""
        if self.input_size is not None:
            return int(self.input_size)
        if cfg["input_size"] is not None:
            return int(cfg["input_size"])
        native = int(np.median([max(s) for s in self._image_sizes(images, shapes)]))
        cap = cfg.get("max_input_size")
        if cap is not None and native > cap:
            if self._log():
                print(
                    f"[{self.model}] input size {cap}: the images' median longer side is {native}, capped at "
                    f"the model's max_input_size (set input_size= to choose another)",
                    flush=True,
                )
            return int(cap)
        return native

    def _plan_memory(self, net, data, bs, loss_fn, autocast, device, limit):
        """Largest batch size <= ``bs`` whose measured training step fits ``limit``."""
        n = len(data)
        data_bytes = data.x.numel() * data.x.element_size() + data.y.numel() * data.y.element_size()
        has_bn = any(isinstance(m, _BATCH_NORMS) for m in net.modules())
        smallest = min(2 if has_bn else 1, bs)

        def make_batch(b):
            idx = torch.arange(b, device=data.device) % n
            return data._finish(normalize(data.x[idx], data.mean, data.std)), data.y[idx]

        def measure(sizes):
            return measure_train_step_memory(
                net, make_batch, sizes, loss_fn=loss_fn, autocast=autocast, device=device,
                stop_above=limit - data_bytes,
            )

        # 2 and 8 images (not 2 and 4: the difference must stand out of the noise of RSS readings)
        measured = dict(measure([2, 8]))
        if len(measured) < 2 and smallest < 2:
            measured.update(measure([1]))
        (b1, m1), (b2, m2) = sorted(measured.items())[0], sorted(measured.items())[-1]
        per_image = max((m2 - m1) / (b2 - b1), 0.0) if b2 > b1 else m1 / b1
        base = max(0.0, max(m - per_image * b for b, m in measured.items()))
        room = limit - data_bytes - base
        fits = bs if per_image <= 0 else int(min(bs, room // per_image)) if room > 0 else 0
        plan = {
            "per_image_bytes": int(per_image),
            "base_bytes": int(base),
            "data_bytes": int(data_bytes),
            "limit_bytes": int(limit),
            "batch_size": int(max(fits, 0)),
            "requested_batch_size": int(self.batch_size),
            "measured": {int(b): int(m) for b, m in measured.items()},
            "input_size": int(self.input_size_),
            "device": str(device),
        }
        if fits < smallest:
            need = base + per_image * smallest + data_bytes
            raise MemoryPlanError(
                f"{self.model} at input_size {self.input_size_}: training with batch size {smallest} needs about "
                f"{_fmt_bytes(need)} ({_fmt_bytes(base)} + {_fmt_bytes(per_image)} per image, measured, plus "
                f"{_fmt_bytes(data_bytes)} for the {n} training images), more than "
                f"memory_limit={_fmt_bytes(limit)} (batch_size={self.batch_size} was asked). "
                "Lower input_size, lower batch_size or raise memory_limit"
            )
        if self._log():
            print(
                f"[{self.model}] memory plan at input_size {self.input_size_}: {_fmt_bytes(base)} + "
                f"{_fmt_bytes(per_image)}/image + {_fmt_bytes(data_bytes)} data <= memory_limit "
                f"{_fmt_bytes(limit)}: batch size {fits} (batch_size={self.batch_size})",
                flush=True,
            )
        return int(fits), plan

    def _train(self, data: DeviceData, plan: _FitPlan) -> None:
        """Build the network, choose the batch size, train (or resume) and set the fitted attributes."""
        recipe, device, dctx = plan.recipe, plan.device, plan.dist
        n = len(data)
        world, rank = (dctx.world_size, dctx.rank) if dctx is not None else (1, 0)
        per_rank = _dist.shard_size(n, world)  # images each rank trains on per epoch
        momentum, wd = self._optimizer_defaults(recipe)
        ls = self.label_smoothing if self.label_smoothing is not None else recipe["label_smoothing"]
        loss_fn = nn.CrossEntropyLoss(label_smoothing=ls)
        autocast = autocast_context(device, plan.amp_dtype)
        with training_settings(device, plan.seed + rank) as gen:
            net, head, eval_modules = self._build_network(data, plan)
            bs = min(self.batch_size, per_rank)
            self.memory_plan_ = None
            if plan.limit is not None:
                bs, self.memory_plan_ = self._plan_memory(net, data, bs, loss_fn, autocast, device, plan.limit)
                if dctx is not None:  # every rank must step with the same batch size
                    bs = int(-_dist.all_reduce([-bs], device, op="max")[0])
            self.batch_size_ = int(bs)
            steps = data.num_batches(bs, drop_last=True, n=per_rank)
            # the linear scaling rule of the recipe's lr applies to the global batch
            optimizer, scheduler = self._optimizer_and_scheduler(net, head, plan, bs * world, steps, momentum, wd)
            start_epoch, history = self._resume(net, optimizer, scheduler, gen, device, n, world, rank)
            train_net = net
            if dctx is not None:
                train_net = nn.parallel.DistributedDataParallel(
                    net, device_ids=[device.index] if device.type == "cuda" else None
                )
            self.compile_seconds_ = 0.0
            if self.compile and start_epoch < self.epochs:
                train_net, self.compile_seconds_ = self._compile(train_net, data, bs, loss_fn, autocast, device)
            self.n_params_ = int(sum(p.numel() for p in net.parameters()))
            augment = BatchAugment(plan.transforms, len(self.classes_)) if plan.transforms else None
            epoch_now = [start_epoch]

            def one_epoch() -> dict:
                order = None
                if dctx is not None:
                    order = _dist.shard_indices(n, world, rank, seed=plan.seed, epoch=epoch_now[0], device=device)
                epoch_now[0] += 1
                batches = data.batches(
                    bs,
                    shuffle=True,
                    drop_last=True,
                    crop_padding=plan.pad if plan.crop_flip else 0,
                    flip=self.flip and plan.crop_flip,
                    generator=gen,
                    augment=augment,
                    order=order,
                )
                stats = train_one_epoch(
                    train_net, batches, optimizer, scheduler,
                    loss_fn=loss_fn, autocast=autocast, scaler=self._scaler(plan.amp_dtype), device=device,
                    eval_modules=eval_modules,
                )
                if dctx is not None:  # the means over all ranks' images
                    k = stats["n"]
                    loss, correct, total = _dist.all_reduce([stats["loss"] * k, stats["accuracy"] * k, k], device)
                    seconds = _dist.all_reduce([stats["seconds"]], device, op="max")[0]
                    stats = {"loss": loss / total, "accuracy": correct / total, "n": int(total), "seconds": seconds,
                             "images_per_second": total / seconds if seconds > 0 else float("inf")}
                return stats

            def checkpoint_state(epoch: int, history: list) -> dict:
                return self._checkpoint_state(net, optimizer, scheduler, epoch, history, gen, device, n, world)

            def validate() -> dict:
                if dctx is None:
                    return evaluate(net, plan.validation.batches(max(bs, 256)), autocast=autocast)
                ev = {"loss": 0.0, "accuracy": 0.0, "n": 0}
                if plan.validation is not None:
                    ev = evaluate(net, plan.validation.batches(max(bs, 256)), autocast=autocast)
                loss, correct, total = _dist.all_reduce([ev["loss"] * ev["n"], ev["accuracy"] * ev["n"], ev["n"]],
                                                        device)
                return {"loss": loss / total, "accuracy": correct / total, "n": int(total)}

            self.eval_seconds_ = 0.0
            self._run_epochs(one_epoch, optimizer, start_epoch, history, checkpoint_state,
                             validate if plan.has_validation else None, main=dctx is None or dctx.is_main)
            train_net = None  # drop the DDP wrapper (and its hooks) before the weights are handed out
        # DDP keeps the parameters equal; the batch-norm statistics are each rank's own: take rank 0's
        _dist.broadcast_module(net, 0)
        net.eval()
        self.model_ = net
        self.history_ = history
        synchronize(device)
        self.fit_seconds_ = time.perf_counter() - plan.t_start - self.compile_seconds_ - self.eval_seconds_

    def _build_network(self, data: DeviceData, plan: _FitPlan) -> tuple[nn.Module, frozenset, list]:
        """The network on the device: pretrained weights, whitening, memory format, frozen backbone.

        Returns the network, the names of its head's parameters and the modules
        kept in eval mode while training (the frozen backbone's batch norms).
        """
        net = create_model(self.model, len(self.classes_), in_chans=self.in_chans_)
        report = None
        if plan.pre_state is not None:
            report = load_matching_weights(net, plan.pre_state, source=plan.pre_meta.get("file", ""))
            if self._log():
                print(
                    f"[{self.model}] pretrained {report['file']}: loaded {len(report['loaded'])} tensors, "
                    f"kept {len(report['skipped'])} at initialisation "
                    f"({', '.join(f'{k}: {v}' for k, v in list(report['reasons'].items())[:4])}"
                    f"{', ...' if len(report['skipped']) > 4 else ''}), "
                    f"{len(report['unused'])} of the file unused",
                    flush=True,
                )
        self.pretrained_report_ = report
        net.to(plan.device)
        if hasattr(net, "init_whitening") and not (report and "whiten.weight" in report["loaded"]):
            sample = next(data.batches(min(len(data), 5000)))[0]
            net.init_whitening(sample)
            del sample
        if plan.channels_last:
            net.to(memory_format=torch.channels_last)
        head = frozenset(head_parameter_names(net))
        eval_modules = []
        if self.freeze == "backbone":
            for name, p in net.named_parameters():
                if name not in head:
                    p.requires_grad_(False)
            eval_modules = [m for m in net.modules() if isinstance(m, _BATCH_NORMS)]
        return net, head, eval_modules

    def _optimizer_and_scheduler(self, net, head, plan: _FitPlan, bs: int, steps: int, momentum, wd):
        """The optimizer (SGD's learning rate scaled to ``bs``) and its per-step schedule over ``epochs * steps``."""
        recipe = plan.recipe
        if self.lr is not None:
            base_lr = self.lr
        elif self.optimizer == "sgd":
            base_lr = recipe["lr"] * bs / recipe["lr_batch_size"]
        else:
            base_lr = _ADAM_LR
        backbone_scale = (
            float(self.backbone_lr_scale) if plan.pre_state is not None and self.freeze == "none" else 1.0
        )
        optimizer = self._make_optimizer(net, base_lr, momentum, wd, recipe["bias_lr_scale"], backbone_scale, head)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(self.schedule, steps * self.epochs, round(self.warmup_epochs * steps))
        )
        return optimizer, scheduler

    def _resume(self, net, optimizer, scheduler, gen, device, n: int, world: int = 1,
                rank: int = 0) -> tuple[int, list[dict]]:
        """The first epoch to run and the history so far: from the checkpoint with ``resume``, else 0 and [].

        Every rank of a data-parallel run reads the file rank 0 wrote, and takes
        its own random state from it.
        """
        ckpt = self._ckpt_path()
        if not (self.resume and ckpt is not None and ckpt.exists()):
            return 0, []
        state = load_checkpoint(ckpt, map_location="cpu")
        self._check_resumable(state, n)
        saved_world = int(state.get("world_size", 1))
        if saved_world != world:
            raise ValueError(
                f"cannot resume from {ckpt}: it was written by a run of {saved_world} process(es), this one has "
                f"{world} (the per-rank split of the data depends on it)"
            )
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng = state["rng_ranks"][rank] if world > 1 else state["rng"]
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], device)
        gen.set_state(rng["generator"].to(gen.get_state().device))
        return int(state["epoch"]), list(state["history"])

    def _run_epochs(self, one_epoch, optimizer, start_epoch: int, history: list, checkpoint_state,
                    validate=None, main: bool = True) -> None:
        """Epochs ``start_epoch..epochs-1``: train, evaluate (``validate``), record ``history``, print, checkpoint.

        Only the ``main`` process (rank 0) writes the checkpoint; every rank
        builds its state (a collective in a data-parallel run).
        """
        ckpt = self._ckpt_path()
        every = self.eval_every or 1
        t_train = time.perf_counter()
        for epoch in range(start_epoch, self.epochs):
            stats = one_epoch()
            rec = {
                "epoch": epoch + 1,
                "loss": stats["loss"],
                "accuracy": stats["accuracy"],
                "lr": float(optimizer.param_groups[0]["lr"]),
                "images_per_second": stats["images_per_second"],
                "seconds": stats["seconds"],
            }
            test = ""
            if validate is not None and ((epoch + 1) % every == 0 or epoch + 1 == self.epochs):
                t0 = time.perf_counter()
                ev = validate()
                self.eval_seconds_ += time.perf_counter() - t0
                rec["test_loss"], rec["test_error"] = ev["loss"], 1.0 - ev["accuracy"]
                test = f" test-loss {rec['test_loss']:.4f} test-err {rec['test_error']:.4f}"
            history.append(rec)
            if self._log():
                done = epoch + 1 - start_epoch
                elapsed = time.perf_counter() - t_train
                eta = elapsed / done * (self.epochs - epoch - 1)
                print(
                    f"[{self.model}] epoch {epoch + 1}/{self.epochs} loss {rec['loss']:.4f} "
                    f"train-acc {rec['accuracy']:.4f}{test} {rec['images_per_second']:.0f} img/s "
                    f"elapsed {elapsed:.1f}s ETA {eta:.1f}s",
                    flush=True,
                )
            if ckpt is not None:
                state = checkpoint_state(epoch + 1, history)
                if main:
                    save_checkpoint(ckpt, state)
                del state

    @staticmethod
    def _scaler(amp_dtype):
        if amp_dtype is torch.float16:
            return torch.amp.GradScaler("cuda")
        return None

    def _compile(self, net, data, bs, loss_fn, autocast, device):
        """Compile ``net`` and run one warm-up step whose side effects are undone."""
        synchronize(device)
        t0 = time.perf_counter()
        compiled = torch.compile(net)
        saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        xb, yb = next(data.batches(bs))
        compiled.train()
        with autocast():
            loss = loss_fn(compiled(xb).float(), yb)
        loss.backward()
        net.zero_grad(set_to_none=True)
        net.load_state_dict(saved)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
        synchronize(device)
        return compiled, time.perf_counter() - t0

    def _checkpoint_state(self, net, optimizer, scheduler, epoch, history, gen, device, n, world: int = 1):
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device).cpu() if device.type == "cuda" else None,
            "generator": gen.get_state().cpu(),
        }
        state = {
            "format": _FORMAT + ".checkpoint",
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "history": history,
            "rng": rng,
            "params": self._params_for_saving(),
            "n_samples": n,
            "classes": self.classes_.tolist(),
        }
        if world > 1:  # every rank's random state (collective: all ranks build the state)
            ranks: list = [None] * world
            torch.distributed.all_gather_object(ranks, rng)
            state["world_size"] = world
            state["rng_ranks"] = ranks
        return state

    def _check_resumable(self, state: dict, n: int) -> None:
        if state.get("format") != _FORMAT + ".checkpoint":
            raise ValueError(f"{self._ckpt_path()} is not a CNNClassifier checkpoint")
        saved = state["params"]
        mine = self._params_for_saving()
        keys = ("model", "epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "random_state",
                "pretrained", "freeze", "optimizer", "augment")
        defaults = {"optimizer": "sgd", "augment": True}  # of checkpoints written before these parameters
        diff = {k: (saved.get(k, defaults.get(k)), mine[k]) for k in keys if saved.get(k, defaults.get(k)) != mine[k]}
        if diff:
            raise ValueError(f"cannot resume: parameters differ from the checkpoint's (saved, now): {diff}")
        if state["n_samples"] != n or state["classes"] != self.classes_.tolist():
            raise ValueError(
                "cannot resume: the training data differ from the checkpoint's "
                f"({state['n_samples']} images now {n}, or different classes)"
            )

    # --------------------------------------------------------------- predict
    def _logits(self, images, filenames=None) -> torch.Tensor:
        check_is_fitted(self, "model_")
        if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
            raise TypeError(f"images must be a sequence of arrays, got {type(images).__name__}")
        # a planned training batch fits; inference needs less memory per image
        planned = getattr(self, "memory_plan_", None)
        bs = self.batch_size_ if planned else max(self.batch_size, 256)
        n = len(images)
        if is_lazy(images):  # streamed: chunks of whole batches, so the batches are those of a list
            per_image = self.in_chans_ * self.input_size_**2
            chunk = max(1, _data.CHUNK_BYTES // (per_image * bs)) * bs
            parts = [range(a, min(a + chunk, n)) for a in range(0, n, chunk)]
        else:
            parts = [None]
        outs = []
        with self._threads():
            for part in parts:
                x = images_to_tensor(images, size=self.input_size_, in_chans=self.in_chans_, filenames=filenames,
                                     indices=part)
                data = DeviceData(x, None, self.mean_, self.std_, self.device_, channels_last=self._channels_last_)
                del x
                outs.append(predict_logits(
                    self.model_,
                    data.batches(bs),
                    autocast=autocast_context(self.device_, self._amp_dtype_),
                    tta_flip=self.tta and self.flip,
                ))
                del data
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=outs[0].ndim - 2)

    def decision_function(self, images, filenames=None) -> np.ndarray:
        """Logits, float32 (averaged over the flip when ``tta``).

        Returns
        -------
        ndarray of shape (N, n_classes), or (N,) for two classes
            With two classes, as scikit-learn's binary classifiers do, the score
            of ``classes_[1]``: the logit difference ``logit[1] - logit[0]``
            (positive means ``classes_[1]``).
        """
        logits = self._logits(images, filenames)
        if logits.ndim == 3:
            logits = logits.mean(0)
        if logits.shape[1] == 2:
            logits = logits[:, 1] - logits[:, 0]
        return logits.cpu().numpy()

    def predict_proba(self, images, filenames=None) -> np.ndarray:
        """Class probabilities, ``(N, n_classes)`` float64, columns in ``classes_`` order.

        The softmax, averaged over each image and its mirror image when ``tta``.
        """
        logits = self._logits(images, filenames)
        prob = logits.double().softmax(-1)
        if prob.ndim == 3:
            prob = prob.mean(0)
        return prob.cpu().numpy()

    def predict(self, images, filenames=None) -> np.ndarray:
        """Predicted labels, ``(N,)``, values from ``classes_``."""
        return self.classes_[self.predict_proba(images, filenames).argmax(1)]

    # ------------------------------------------------------------- save/load
    # ------------------------------------------------------------- export
    def export_onnx(self, path: str | os.PathLike, *, opset: int | None = None) -> Path:
        """Write the fitted network, its input normalization included, as an ONNX file.

        The file takes ``image``: uint8 ``(batch, in_chans_, input_size_, input_size_)``,
        the images as this classifier resizes them (:func:`cnn.data.images_to_tensor`),
        and returns ``logits``: float32 ``(batch, n_classes)`` in ``classes_`` order; the
        flip test-time augmentation is not in the graph. :class:`cnn.export.OnnxPredictor`
        runs the file with this classifier's preprocessing and flip TTA
        (:func:`cnn.export.export_onnx` has the details).

        Parameters
        ----------
        path : str or path
            The ``.onnx`` file to write (atomically).
        opset : int or None, default=None
            ONNX opset version; None: 17.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        from .export import export_onnx  # onnx is loaded only when exporting

        return export_onnx(self, path, opset=opset)

    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted classifier to one file (``torch.save`` of tensors and plain data).

        The file holds the ``state_dict`` and a JSON-serializable ``config``
        (parameters, classes, normalization, model name, sizes), nothing that
        needs unpickling of Python objects; :meth:`load` reads it with
        ``weights_only=True``.

        The file gets the permissions of a new file (``0o666 & ~umask``); it is
        written to a temporary file first, so a failed save leaves no partial
        file (and an earlier file at ``path`` intact).

        Raises
        ------
        TypeError
            If the class labels are not str, int, float or bool.
        OSError
            If the file cannot be written (e.g. a full disk); names ``path``.
        """
        check_is_fitted(self, "model_")
        classes = self.classes_.tolist()
        if not all(isinstance(c, (str, int, float, bool)) for c in classes):
            raise TypeError("save() supports class labels of type str, int, float or bool only")
        config = {
            "params": self._params_for_saving(),
            "classes": classes,
            "mean": list(self.mean_),
            "std": list(self.std_),
            "model": self.model,
            "num_classes": len(classes),
            "in_chans": self.in_chans_,
            "input_size": self.input_size_,
            "n_params": self.n_params_,
            "fit_seconds": self.fit_seconds_,
            "compile_seconds": self.compile_seconds_,
            "eval_seconds": float(getattr(self, "eval_seconds_", 0.0)),
            "history": self.history_,
            "batch_size_used": int(getattr(self, "batch_size_", self.batch_size)),
            "world_size": int(getattr(self, "world_size_", 1)),
        }
        json.dumps(config)  # guarantees the config is plain data
        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        save_checkpoint(path, {"format": _FORMAT, "format_version": _FORMAT_VERSION,
                               "config": config, "state_dict": state})

    @staticmethod
    def _check_saved(path, cfg, state) -> None:
        """Refuse a saved file whose config is incomplete or out of bounds, before building anything."""
        if not isinstance(cfg, dict):
            raise ValueError(f"{path}: the saved 'config' is not a dict; not a file written by CNNClassifier.save")
        for key in _REQUIRED_CONFIG:
            if key not in cfg:
                raise ValueError(
                    f"{path}: the saved config lacks the key {key!r}; the file is incomplete or "
                    "not written by CNNClassifier.save"
                )

        def bounded(key, lo, hi):
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{path}: config {key!r} is {v!r}, outside the valid range {lo}..{hi}")
            return v

        if not isinstance(cfg["model"], str) or not is_model(cfg["model"]):
            raise ValueError(f"{path}: config 'model' is {cfg['model']!r}, not a registered model")
        if not isinstance(cfg["params"], dict):
            raise ValueError(f"{path}: config 'params' is not a dict")
        bounded("input_size", 1, _MAX_INPUT_SIZE)
        k = bounded("num_classes", 1, _MAX_CLASSES)
        c = bounded("in_chans", 1, 3)
        if c not in (1, 3):
            raise ValueError(f"{path}: config 'in_chans' is {c}; CNNClassifier supports 1 or 3")
        if not isinstance(cfg["classes"], list) or len(cfg["classes"]) != k:
            raise ValueError(f"{path}: config 'classes' does not hold num_classes={k} labels")
        for key in ("mean", "std"):
            v = cfg[key]
            if not (isinstance(v, list) and len(v) == c and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v
            )) or (key == "std" and min(v) <= 0):
                raise ValueError(f"{path}: config {key!r} must be {c} finite numbers (one per channel), got {v!r}")
        if not isinstance(state, dict) or not state or not all(
            isinstance(n, str) and isinstance(t, torch.Tensor) for n, t in state.items()
        ):
            raise ValueError(f"{path}: 'state_dict' is not a mapping of names to tensors")
        if not any(t.ndim == 2 and t.shape[0] == k for t in state.values()):
            raise ValueError(f"{path}: config 'num_classes' is {k} but no classifier weight in the file has {k} rows")
        first = next((t for t in state.values() if t.ndim == 4), None)
        if first is not None and first.shape[1] != c:
            raise ValueError(
                f"{path}: config 'in_chans' is {c} but the first convolution of the file takes {first.shape[1]}"
            )

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> CNNClassifier:
        """Load a classifier written by :meth:`save`, without unpickling any object.

        Every size read from the file is checked before anything is built:
        ``input_size`` 1..1024, ``num_classes`` 1..100000 and matching the
        classes and the classifier weight, ``in_chans`` 1 or 3 and matching the
        first convolution, one ``mean`` and ``std`` per channel.

        Parameters
        ----------
        path : str or path
        device : str, default="auto"
            Where to put the model (overrides the saved ``device``).

        Returns
        -------
        CNNClassifier
            Fitted, ready to predict.

        Raises
        ------
        ValueError
            If the file carries Python objects other than tensors and plain
            containers, is not a file written by :meth:`save`, lacks a config
            key or holds a size out of bounds (the message names the file and
            the key), or its weights do not fit the model.
        """
        blob = load_checkpoint(path, map_location="cpu")
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise ValueError(f"{path} was not written by CNNClassifier.save")
        version = blob.get("format_version", 0)
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise ValueError(f"{path} has format version {version!r}, newer than this code")
        cfg = blob.get("config")
        cls._check_saved(path, cfg, blob.get("state_dict"))
        params = dict(cfg["params"])
        params["device"] = device
        valid = cls().get_params(deep=False)
        params = {k: v for k, v in params.items() if k in valid}
        if isinstance(params.get("random_state"), str):
            params["random_state"] = None
        clf = cls(**params)
        dev = clf._resolve_device()
        net = create_model(cfg["model"], int(cfg["num_classes"]), in_chans=int(cfg["in_chans"]))
        try:
            net.load_state_dict(blob["state_dict"])
        except RuntimeError as exc:
            raise ValueError(f"{path}: the weights do not fit model {cfg['model']!r}: {exc}") from exc
        net.to(dev).eval()
        clf.classes_ = np.asarray(cfg["classes"])
        clf.model_config_ = get_model_config(cfg["model"])
        clf.model_recipe_ = get_model_recipe(cfg["model"])
        clf.input_size_ = int(cfg["input_size"])
        clf.in_chans_ = int(cfg["in_chans"])
        clf.mean_, clf.std_ = [float(v) for v in cfg["mean"]], [float(v) for v in cfg["std"]]
        clf.device_ = dev
        clf._amp_dtype_ = clf._amp_dtype(dev)
        clf._channels_last_ = (dev.type == "cuda") if clf.channels_last == "auto" else bool(clf.channels_last)
        if clf._channels_last_:
            net.to(memory_format=torch.channels_last)
        clf.model_ = net
        clf.n_params_ = int(sum(p.numel() for p in net.parameters()))
        clf.fit_seconds_ = float(cfg.get("fit_seconds", float("nan")))
        clf.compile_seconds_ = float(cfg.get("compile_seconds", 0.0))
        clf.eval_seconds_ = float(cfg.get("eval_seconds", 0.0))
        clf.history_ = list(cfg.get("history", []))
        used = cfg.get("batch_size_used")
        clf.batch_size_ = int(used) if isinstance(used, int) and used >= 1 else int(clf.batch_size)
        clf.memory_plan_ = None
        clf.pretrained_report_ = None
        world = cfg.get("world_size", 1)
        clf.world_size_ = int(world) if isinstance(world, int) and world >= 1 else 1
        clf.rank_ = 0
        return clf
