"""``CNNFeatures``: a CNN's pooled penultimate activations as a scikit-learn transformer.

The "CNN features off-the-shelf" baseline: a network trained for classification
(here, or elsewhere and loaded from a file) describes each image by the
activations before its classifier, and a linear SVM is trained on them, so that
``make_pipeline(CNNFeatures(...), LinearSVM())`` bridges the CNN track and the
classic one.

References
----------
A. S. Razavian, H. Azizpour, J. Sullivan, S. Carlsson, "CNN Features off-the-shelf:
an Astounding Baseline for Recognition", CVPR Workshops 2014,
https://doi.org/10.1109/CVPRW.2014.131 ;
J. Donahue, Y. Jia, O. Vinyals, J. Hoffman, N. Zhang, E. Tzeng, T. Darrell, "DeCAF:
A Deep Convolutional Activation Feature for Generic Visual Recognition", ICML 2014,
https://arxiv.org/abs/1310.1531
"""

from __future__ import annotations

import os
from numbers import Integral
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from classicvision.utils.validation import Interval, Options, StrOptions, fit_context

from .classifier import CNNClassifier
from .data import DeviceData, channel_stats, images_to_tensor
from .models import check_input_size, create_model, get_model_config, read_pretrained

__all__ = ["CNNFeatures"]


def _resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; otherwise the named device, which must exist."""
    name = ("cuda" if torch.cuda.is_available() else "cpu") if str(device) == "auto" else str(device)
    try:
        out = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from exc
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was asked for but CUDA is not available")
    return out


def _stats_for(meta: dict, in_chans: int) -> tuple[list[float], list[float]] | None:
    """The normalization saved with pretrained weights, when it is one positive, finite value per channel."""
    mean, std = (np.asarray(meta.get(k, []), dtype=np.float64).ravel() for k in ("mean", "std"))
    ok = mean.size == std.size == in_chans and np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    return (mean.tolist(), std.tolist()) if ok else None


def _check_images(images: Any, what: str) -> None:
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"{what}: images must be a sequence of arrays or an (N, H, W[, C]) array, "
                        f"got {type(images).__name__}")


class CNNFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Pooled penultimate features of a CNN, for a classic classifier (Razavian et al. 2014).

    ``fit`` either trains a :class:`cnn.CNNClassifier` on the labelled images
    (``train=True``: from scratch, or fine-tuned from ``pretrained``) or only
    loads a pretrained network and keeps it frozen (``train=False``).
    ``transform`` runs the network in eval mode, batched on the device, and
    returns one float32 row per image.

    Parameters
    ----------
    model : str, default="small_convnet"
        A registered model (:func:`cnn.list_models`).
    pretrained : None, "imagenet", str or path, default=None
        Weights to start from, as for :class:`cnn.CNNClassifier` (ImageNet
        weights from the local torch / Hugging Face hub caches, never
        downloaded, or a weights file). Required with ``train=False``.
    train : bool, default=True
        True: ``fit(images, y)`` trains the network on ``y`` (``epochs``
        epochs). False: the ``pretrained`` network is used frozen, as
        off-the-shelf features; ``fit`` needs no labels and only reads the
        images' size and colour statistics where the weights do not fix them.
    layer : {"pre_logits", "pooled"}, default="pre_logits"
        ``"pre_logits"``: the input of the last linear layer,
        ``model.forward_head(model.forward_features(x), pre_logits=True)``
        (fc7 of AlexNet / VGG, DeCAF's layer; the pooled map for most nets),
        ``head_hidden_size`` wide. ``"pooled"``: the global average of the last
        feature map (``forward_features``), ``num_features`` wide.
    epochs : int >= 1, default=10
        Training epochs (``train=True``).
    input_size : int or None, default=None
        Side of the network input. None: the model's configured size, else (for
        models configured with None, e.g. ``small_convnet``) the training images'
        median longer side capped at the model's ``max_input_size``.
    in_chans : {1, 3} or None, default=None
        Network input channels. None: those of the pretrained weights when they
        are 1 or 3, else 1 when every fit image is gray, else 3.
    batch_size : int >= 1, default=128
        Training batch size and inference batch size of ``transform``.
    device : str, default="auto"
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the training (``train=True``); with an int, two fits on the CPU
        give identical features.
    classifier_params : dict or None, default=None
        Further :class:`cnn.CNNClassifier` parameters for training
        (``lr``, ``flip``, ``augment``, ``freeze``, ``num_threads``, ...).
    verbose : int, default=0
        Passed to the classifier.

    Attributes
    ----------
    model_ : torch.nn.Module
        The network (eval mode, on ``device_``).
    input_size_ : int
    in_chans_ : int
    mean_, std_ : list of float
        Normalization of the network input, ``[0, 1]`` units.
    device_ : torch.device
    n_features_out_ : int
        Width of the features (``model_.head_hidden_size`` or ``num_features``).
    classes_ : ndarray or None
        The classes the network was trained on (``train=True``), else None.
    history_ : list of dict
        The classifier's per-epoch training record (empty with ``train=False``).
    pretrained_report_ : dict or None
        What was loaded from ``pretrained`` (see :func:`cnn.models.load_matching_weights`).

    Notes
    -----
    Pickling (and skops) stores the network as its model name, head size and
    ``state_dict`` as numpy arrays, no torch module; it is rebuilt with
    :func:`cnn.create_model` on load, on ``device`` where available, else the CPU.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from classicvision.kernels import LinearSVM
    >>> from cnn import CNNFeatures
    >>> pipe = make_pipeline(CNNFeatures(model="small_convnet", epochs=2, random_state=0), LinearSVM())
    >>> pipe.fit(train_images, train_labels).score(test_images, test_labels)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "model": [str],
        "pretrained": [str, os.PathLike, None],
        "train": ["boolean"],
        "layer": [StrOptions({"pre_logits", "pooled"})],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "input_size": [Interval(Integral, 1, None, closed="left"), None],
        "in_chans": [Options(Integral, {1, 3}), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "classifier_params": [dict, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        model: str = "small_convnet",
        pretrained: str | os.PathLike | None = None,
        train: bool = True,
        layer: str = "pre_logits",
        epochs: int = 10,
        input_size: int | None = None,
        in_chans: int | None = None,
        batch_size: int = 128,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        classifier_params: dict | None = None,
        verbose: int = 0,
    ):
        self.model = model
        self.pretrained = pretrained
        self.train = train
        self.layer = layer
        self.epochs = epochs
        self.input_size = input_size
        self.in_chans = in_chans
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.classifier_params = classifier_params
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------- fit
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, images, y=None, filenames=None):
        """Train the network on ``(images, y)``, or load the frozen pretrained one.

        Parameters
        ----------
        images : sequence of (H, W[, C]) arrays or (N, H, W[, C]) ndarray
            uint8 (or float in ``[0, 1]``); gray, RGB or RGBA; any sizes.
        y : array-like of shape (N,) or None
            Class labels; required with ``train=True``, ignored otherwise.
        filenames : sequence of str, optional
            Used in error messages about bad images.

        Returns
        -------
        self : CNNFeatures

        Raises
        ------
        ValueError
            ``train=True`` without ``y``, ``train=False`` without ``pretrained``,
            an unknown model, bad images or labels (see :meth:`cnn.CNNClassifier.fit`),
            an input size below the model's smallest, unreadable weights.
        FileNotFoundError
            A missing ``pretrained`` file.
        """
        _check_images(images, "CNNFeatures.fit")
        if self.train:
            if y is None:
                raise ValueError(
                    "CNNFeatures(train=True).fit needs labels y to train the network; pass y, or use "
                    "train=False with pretrained=<weights> for frozen off-the-shelf features"
                )
            self._fit_trained(images, y, filenames)
        else:
            if self.pretrained is None:
                raise ValueError(
                    "CNNFeatures(train=False) uses a frozen pretrained network: set pretrained='imagenet' or "
                    "pretrained=<weights file>, or train=True to train the network on the labels"
                )
            self._fit_frozen(images, filenames)
        self.model_.eval()
        self.n_features_out_ = int(self.model_.head_hidden_size if self.layer == "pre_logits"
                                   else self.model_.num_features)
        self._n_features_out = self.n_features_out_
        return self

    def _fit_trained(self, images, y, filenames) -> None:
        params = dict(self.classifier_params or {})
        clash = sorted(set(params) & {"model", "pretrained", "epochs", "input_size", "in_chans", "batch_size",
                                      "device", "random_state", "verbose"})
        if clash:
            raise ValueError(f"classifier_params must not repeat CNNFeatures' own parameters: {clash}")
        clf = CNNClassifier(
            model=self.model, pretrained=self.pretrained, epochs=self.epochs, input_size=self.input_size,
            in_chans=self.in_chans, batch_size=self.batch_size, device=self.device,
            random_state=self.random_state, verbose=self.verbose, **params,
        )
        clf.fit(images, y, filenames=filenames)
        self.model_ = clf.model_
        self.input_size_ = int(clf.input_size_)
        self.in_chans_ = int(clf.in_chans_)
        self.mean_ = [float(v) for v in clf.mean_]
        self.std_ = [float(v) for v in clf.std_]
        self.device_ = clf.device_
        self.classes_ = clf.classes_
        self.history_ = list(clf.history_)
        self.pretrained_report_ = clf.pretrained_report_
        self._num_classes = len(clf.classes_)

    def _fit_frozen(self, images, filenames) -> None:
        cfg = get_model_config(self.model)
        device = _resolve_device(self.device)
        state, meta = read_pretrained(self.model, self.pretrained)
        if self.in_chans is not None:
            in_chans = int(self.in_chans)
        elif meta.get("in_chans") in (1, 3):
            in_chans = int(meta["in_chans"])
        else:
            gray = [np.ndim(im) == 2 or np.shape(im)[-1] == 1 for im in images]
            in_chans = 1 if all(gray) else 3
        if self.input_size is not None:
            size = int(self.input_size)
        elif cfg["input_size"] is not None:
            size = int(cfg["input_size"])
        else:
            size = int(np.median([max(np.shape(im)[:2]) for im in images]))
            if cfg.get("max_input_size") is not None:
                size = min(size, int(cfg["max_input_size"]))
        check_input_size(self.model, size)
        stats = _stats_for(meta, in_chans)
        if stats is not None:
            self.mean_, self.std_ = stats
        else:
            x = images_to_tensor(images, size=size, in_chans=in_chans, filenames=filenames)
            self.mean_, self.std_ = channel_stats(x)
        # the head is unused by the features: one output, re-initialised (load_matching_weights)
        net = create_model(self.model, 1, in_chans=in_chans, pretrained=state)
        self.pretrained_report_ = {**net.pretrained_report, "file": meta.get("file", "")}
        self.model_ = net.to(device)
        self.input_size_, self.in_chans_, self.device_ = size, in_chans, device
        self.classes_ = None
        self.history_ = []
        self._num_classes = 1

    # ------------------------------------------------------------- transform
    def transform(self, images, filenames=None) -> np.ndarray:
        """Features of ``images``: float32, ``(N, n_features_out_)``.

        Parameters
        ----------
        images : sequence of (H, W[, C]) arrays or (N, H, W[, C]) ndarray
            Resized to ``input_size_`` and converted to ``in_chans_`` channels
            as at fit time.
        filenames : sequence of str, optional
            Used in error messages about bad images.

        Returns
        -------
        ndarray of shape (N, n_features_out_), float32
        """
        check_is_fitted(self, "model_")
        _check_images(images, "CNNFeatures.transform")
        net = self.model_.eval()
        out = []
        with torch.inference_mode():
            x = images_to_tensor(images, size=self.input_size_, in_chans=self.in_chans_, filenames=filenames)
            data = DeviceData(x, None, self.mean_, self.std_, self.device_)
            for xb, _ in data.batches(self.batch_size):
                fmap = net.forward_features(xb)
                if self.layer == "pre_logits":
                    f = net.forward_head(fmap, pre_logits=True)
                else:
                    f = torch.flatten(F.adaptive_avg_pool2d(fmap, 1), 1)
                out.append(f.float().cpu())
        return torch.cat(out).numpy()

    # ------------------------------------------------------------ persistence
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        net = state.pop("model_", None)
        if net is not None:
            state["model_"] = {
                "model": self.model,
                "num_classes": int(self._num_classes),
                "in_chans": int(self.in_chans_),
                "state_dict": {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
            }
            state["device_"] = str(self.device_)
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.get("model_")
        if isinstance(saved, dict):
            try:
                device = _resolve_device(state.get("device", "auto"))
            except ValueError:  # e.g. saved on CUDA, loaded on a CPU machine
                device = torch.device("cpu")
            net = create_model(saved["model"], saved["num_classes"], in_chans=saved["in_chans"])
            net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in saved["state_dict"].items()})
            state = {**state, "model_": net.to(device).eval(), "device_": device}
        self.__dict__.update(state)
