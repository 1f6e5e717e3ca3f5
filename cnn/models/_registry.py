"""Model registry: ``@register_model``, ``create_model``, ``list_models``.

A builder is a plain function ``builder(num_classes, in_chans=3, **kwargs) -> nn.Module``
decorated with :func:`register_model`. The decorator records the builder under its
function name together with a default configuration (input size, normalization
statistics, training defaults), which :func:`get_model_config` returns.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
from copy import deepcopy
from typing import Any, Callable

from torch import nn

#: Defaults shared by the models built for 32x32 CIFAR images: input size and the
#: CIFAR-10 training-set channel statistics (models override what differs).
CIFAR_DEFAULTS: dict[str, Any] = {
    "input_size": 32,
    "mean": (0.4914, 0.4822, 0.4465),
    "std": (0.2470, 0.2435, 0.2616),
    "lr_batch_size": 128,
    "family": "cifar",
}

__all__ = [
    "register_model",
    "create_model",
    "list_models",
    "get_model_config",
    "is_model",
    "DEFAULT_CONFIG",
]

#: Defaults shared by every model; a builder's ``config`` overrides the keys it names.
#: ``input_size=None`` means "the native size of the training images".
#: ``test_input_size`` is the smallest input the architecture accepts that the
#: model-zoo smoke test uses for the expensive ImageNet networks.
DEFAULT_CONFIG: dict[str, Any] = {
    "input_size": 32,
    "test_input_size": None,
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "lr": 0.1,
    "lr_batch_size": 128,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "label_smoothing": 0.1,
    "bias_lr_scale": 1.0,
    "family": "other",
    "paper": "",
}

_builders: dict[str, Callable[..., nn.Module]] = {}
_configs: dict[str, dict[str, Any]] = {}
_modules: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, config: dict | None = None):
    """Register a model builder under its function name.

    Use as ``@register_model`` or ``@register_model(config={...})``.

    Parameters
    ----------
    fn : callable, optional
        ``fn(num_classes, in_chans=3, **kwargs) -> torch.nn.Module``.
    config : dict, optional
        Default configuration overriding :data:`DEFAULT_CONFIG` (``input_size``,
        ``mean``, ``std``, ``lr``, ...).

    Raises
    ------
    ValueError
        If a model with the same name is already registered (names are never
        silently overwritten).
    """

    def decorator(func: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = func.__name__
        if name in _builders:
            raise ValueError(
                f"model {name!r} is already registered (by {_modules[name]}); "
                "model names must be unique"
            )
        cfg = dict(DEFAULT_CONFIG)
        if config:
            unknown = set(config) - set(DEFAULT_CONFIG)
            if unknown:
                raise ValueError(f"unknown config keys for {name!r}: {sorted(unknown)}")
            cfg.update(config)
        _builders[name] = func
        _configs[name] = cfg
        _modules[name] = func.__module__
        module = sys.modules.get(func.__module__)
        if module is not None and hasattr(module, "__all__") and name not in module.__all__:
            module.__all__.append(name)
        func.default_config = deepcopy(cfg)
        return func

    if fn is not None:
        return decorator(fn)
    return decorator


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(str(name), list(_builders), n=5, cutoff=0.5)
    hint = f"; did you mean one of {close}?" if close else ""
    return ValueError(
        f"unknown model {name!r}{hint} (list_models() gives the {len(_builders)} known names)"
    )


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _builders


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching an fnmatch ``pattern``.

    Parameters
    ----------
    pattern : str, default="*"
        Shell-style wildcard, e.g. ``"resnet*"`` or ``"efficientnet_b[0-3]"``.

    Returns
    -------
    list of str
    """
    return sorted(n for n in _builders if fnmatch.fnmatchcase(n, pattern))


def get_model_config(name: str) -> dict[str, Any]:
    """A copy of the default configuration of model ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists close matches.
    """
    if name not in _configs:
        raise _unknown(name)
    return deepcopy(_configs[name])


def create_model(name: str, num_classes: int, in_chans: int = 3, **kwargs) -> nn.Module:
    """Build an untrained model by name.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    num_classes : int
        Size of the classifier output, >= 1.
    in_chans : int, default=3
        Input channels (1 for grayscale, 3 for RGB).
    **kwargs
        Passed to the builder (e.g. ``shortcut="B"`` for the CIFAR ResNets).

    Returns
    -------
    torch.nn.Module
        The model, with attributes ``model_name`` and ``default_config``.

    Raises
    ------
    ValueError
        Unknown name (close matches are listed) or invalid ``num_classes`` /
        ``in_chans``.
    """
    if name not in _builders:
        raise _unknown(name)
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if int(in_chans) != in_chans or in_chans < 1:
        raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
    model = _builders[name](num_classes=int(num_classes), in_chans=int(in_chans), **kwargs)
    model.model_name = name
    model.default_config = get_model_config(name)
    return model
