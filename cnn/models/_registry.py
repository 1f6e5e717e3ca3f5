"""Model registry: ``@register_model``, ``create_model``, ``list_models``.

A builder is a plain function ``builder(num_classes, in_chans=3, **kwargs) -> nn.Module``
decorated with :func:`register_model`. The decorator records the builder under its
function name together with two dicts kept apart:

* its **configuration**, facts about the architecture (input sizes, the
  normalization statistics, the torchvision or timm weights, who builds it,
  family, paper), which
  :func:`get_model_config` returns (keys of :data:`DEFAULT_CONFIG`);
* its **training recipe**, the defaults ``CNNClassifier`` trains it with
  (learning rate and the batch size it refers to, momentum, weight decay, label
  smoothing, bias learning-rate scale), which :func:`get_model_recipe` returns
  (keys of :data:`DEFAULT_RECIPE`).

Every registered network has timm's interface: ``forward_features(x)`` (the
last feature map), ``forward_head(x, pre_logits=False)``, ``num_features``
(channels of that map) and ``head_hidden_size`` (width of
``forward_head(x, pre_logits=True)``); builders of the project's own nets define
them, torchvision's get them from :func:`cnn.models.imagenet.with_feature_interface`,
timm's have them.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import sys
from collections.abc import Callable, Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

#: Configuration shared by the models built for 32x32 CIFAR images: input size and
#: the CIFAR-10 training-set channel statistics (models override what differs).
CIFAR_DEFAULTS: dict[str, Any] = {
    "input_size": 32,
    "mean": (0.4914, 0.4822, 0.4465),
    "std": (0.2470, 0.2435, 0.2616),
    "family": "cifar",
}

__all__ = [
    "register_model",
    "create_model",
    "list_models",
    "get_model_config",
    "get_model_recipe",
    "is_model",
    "check_input_size",
    "head_parameter_names",
    "imagenet_weights_file",
    "load_matching_weights",
    "models_with_pretrained_weights",
    "read_pretrained",
    "DEFAULT_CONFIG",
    "DEFAULT_RECIPE",
]

#: Configuration defaults shared by every model (facts about the architecture); a
#: builder's ``config`` overrides the keys it names.
#: ``input_size=None`` means "the native size of the training images" (their
#: median longer side), capped at ``max_input_size`` when that is set.
#: ``test_input_size`` is the small input the model-zoo smoke test uses for the
#: expensive ImageNet networks; ``min_input_size`` the smallest side the
#: architecture accepts (with a batch of 2 in training mode).
#: ``torchvision_weights`` names the torchvision model whose ImageNet weights
#: ``create_model(..., pretrained="imagenet")`` loads (None: there are none);
#: ``timm_weights`` the Hugging Face hub repository of timm's ImageNet weights
#: (``"timm/<model>.<tag>"``), read from the local hub cache instead.
#: ``source`` says who builds the network: ``"classicvision"`` (this package),
#: ``"torchvision"`` or ``"timm"``.
DEFAULT_CONFIG: dict[str, Any] = {
    "input_size": 32,
    "test_input_size": None,
    "min_input_size": 1,
    "max_input_size": None,
    "torchvision_weights": None,
    "timm_weights": None,
    "source": "classicvision",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "family": "other",
    "paper": "",
}

#: Training-recipe defaults shared by every model; a builder's ``recipe`` overrides
#: the keys it names. ``lr`` is the peak SGD learning rate at a batch of
#: ``lr_batch_size`` images (``CNNClassifier`` scales it linearly to its batch
#: size); ``bias_lr_scale`` multiplies the learning rate of biases and norms.
DEFAULT_RECIPE: dict[str, Any] = {
    "lr": 0.1,
    "lr_batch_size": 128,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "label_smoothing": 0.1,
    "bias_lr_scale": 1.0,
}

_builders: dict[str, Callable[..., nn.Module]] = {}
_configs: dict[str, dict[str, Any]] = {}
_recipes: dict[str, dict[str, Any]] = {}
_modules: dict[str, str] = {}


def _with_defaults(defaults: dict, given: dict | None, what: str, name: str) -> dict:
    out = dict(defaults)
    if given:
        unknown = set(given) - set(defaults)
        if unknown:
            raise ValueError(f"unknown {what} keys for {name!r}: {sorted(unknown)}")
        out.update(given)
    return out


def register_model(
    fn: Callable[..., nn.Module] | None = None, *, config: dict | None = None, recipe: dict | None = None
):
    """Register a model builder under its function name.

    Use as ``@register_model`` or ``@register_model(config={...}, recipe={...})``.

    Parameters
    ----------
    fn : callable, optional
        ``fn(num_classes, in_chans=3, **kwargs) -> torch.nn.Module``.
    config : dict, optional
        Facts about the architecture overriding :data:`DEFAULT_CONFIG`
        (``input_size``, ``min_input_size``, ``mean``, ``std``, ``family``, ...).
    recipe : dict, optional
        Training defaults overriding :data:`DEFAULT_RECIPE` (``lr``,
        ``lr_batch_size``, ``momentum``, ``weight_decay``, ...).

    Raises
    ------
    ValueError
        If a model with the same name is already registered (names are never
        silently overwritten), or ``config`` / ``recipe`` has a key the
        defaults do not (a recipe key in ``config`` too).
    """

    def decorator(func: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = func.__name__
        if name in _builders:
            raise ValueError(
                f"model {name!r} is already registered (by {_modules[name]}); "
                "model names must be unique"
            )
        cfg = _with_defaults(DEFAULT_CONFIG, config, "config", name)
        rec = _with_defaults(DEFAULT_RECIPE, recipe, "recipe", name)
        _builders[name] = func
        _configs[name] = cfg
        _recipes[name] = rec
        _modules[name] = func.__module__
        module = sys.modules.get(func.__module__)
        if module is not None and hasattr(module, "__all__") and name not in module.__all__:
            module.__all__.append(name)
        func.default_config = deepcopy(cfg)
        func.default_recipe = deepcopy(rec)
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
    """A copy of the configuration of model ``name``: facts about its architecture.

    Parameters
    ----------
    name : str
        A registered model (:func:`list_models`).

    Returns
    -------
    config : dict
        The keys of :data:`DEFAULT_CONFIG` (``input_size``, ``test_input_size``,
        ``min_input_size``, ``max_input_size``, ``torchvision_weights``,
        ``timm_weights``, ``source``, ``mean``, ``std``, ``family``, ``paper``).

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists close matches.
    """
    if name not in _configs:
        raise _unknown(name)
    return deepcopy(_configs[name])


def get_model_recipe(name: str) -> dict[str, Any]:
    """A copy of the training recipe of model ``name``: the defaults ``CNNClassifier`` trains it with.

    Takes and raises as :func:`get_model_config`; returns a dict with the keys of
    :data:`DEFAULT_RECIPE` (``lr``, ``lr_batch_size``, ``momentum``,
    ``weight_decay``, ``label_smoothing``, ``bias_lr_scale``).
    """
    if name not in _recipes:
        raise _unknown(name)
    return deepcopy(_recipes[name])


def check_input_size(name: str, size: int) -> None:
    """Raise if model ``name`` cannot take ``size`` x ``size`` inputs.

    Raises
    ------
    ValueError
        If ``size`` is below the configured ``min_input_size``; the message names
        the size, the model and its smallest supported input.
    """
    smallest = int(get_model_config(name)["min_input_size"] or 1)
    if int(size) < smallest:
        raise ValueError(
            f"input size {int(size)}x{int(size)} is too small for model {name!r}: its smallest supported "
            f"input is {smallest}x{smallest} (set input_size >= {smallest}, or use larger images)"
        )


def models_with_pretrained_weights() -> list[str]:
    """Sorted names of the models ``pretrained="imagenet"`` can load weights for (torchvision's or timm's)."""
    return sorted(n for n, c in _configs.items() if c.get("torchvision_weights") or c.get("timm_weights"))


def _hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` resolves it (read at each call)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "huggingface" / "hub"


#: The weight files a timm repository on the Hugging Face hub holds, in the order they are looked for.
_TIMM_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm_weights_file(repo: str) -> tuple[Path, str]:
    """The cached file of hub repository ``repo`` (or its cache folder when none is there) and its URL."""
    folder = _hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    ref = folder / "refs" / "main"
    url = f"https://huggingface.co/{repo}/resolve/main/{_TIMM_FILES[0]}"
    revisions = [ref.read_text().strip()] if ref.is_file() else []
    if (folder / "snapshots").is_dir():
        revisions += sorted(p.name for p in (folder / "snapshots").iterdir() if p.name not in revisions)
    for rev in revisions:
        for fname in _TIMM_FILES:
            path = folder / "snapshots" / rev / fname
            if path.is_file():
                return path, f"https://huggingface.co/{repo}/resolve/main/{fname}"
    return folder, url


def imagenet_weights_file(name: str) -> tuple[Path, str]:
    """Where the ImageNet weights for model ``name`` are expected, and their URL.

    For torchvision's models the path is ``torch.hub.get_dir() / "checkpoints" /
    <file name of the URL>`` (``$TORCH_HOME/hub/checkpoints/...``), where
    torchvision's own loader caches the ``Weights.DEFAULT`` file of the model
    (:func:`torchvision.models.get_model_weights`). For timm's models
    (``timm_weights``, a Hugging Face hub repository) it is the file
    ``timm.create_model(..., pretrained=True)`` would have cached
    (``$HF_HUB_CACHE/models--timm--<model>.<tag>/snapshots/<revision>/model.safetensors``,
    or ``pytorch_model.bin``), or, when no such file is there, the
    repository's cache folder. Nothing is downloaded.

    Returns
    -------
    path : pathlib.Path
    url : str

    Raises
    ------
    ValueError
        If the model has no pretrained weights (the message lists those that have).
    """
    cfg = get_model_config(name)
    if cfg.get("timm_weights"):
        return _timm_weights_file(cfg["timm_weights"])
    tv_name = cfg.get("torchvision_weights")
    if not tv_name:
        raise ValueError(
            f"model {name!r} has no pretrained ImageNet weights (only its own random initialisation); "
            f"models with them: {models_with_pretrained_weights()}"
        )
    import torchvision

    url = torchvision.models.get_model_weights(tv_name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path), url


def _load_weights(path: Path) -> Any:
    """A ``.safetensors`` file (tensors only, by design) or a torch file read with ``weights_only=True``."""
    from ..engine import load_checkpoint  # lazy: cnn.engine imports nothing from here

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    return load_checkpoint(path, map_location="cpu")


# torchvision's DenseNet checkpoints name "norm.1" what the modules call "norm1"
# (torchvision.models.densenet._load_state_dict applies the same renaming).
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(
            f"{path} holds no state dict (a non-empty mapping of parameter names to tensors), "
            "nor a file written by CNNClassifier.save"
        )
    return dict(obj)


def read_pretrained(name: str, pretrained: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read pretrained weights for model ``name``: ``"imagenet"`` or a weights file.

    Parameters
    ----------
    name : str
        The registered model the weights are for.
    pretrained : "imagenet", str or path
        ``"imagenet"``: the ImageNet weights of the model, torchvision's read
        from the torch hub cache, timm's from the Hugging Face hub cache
        (:func:`imagenet_weights_file`); they are never downloaded here.
        Otherwise a file: a ``state_dict`` saved with ``torch.save`` (``.pt`` /
        ``.pth`` / ``.bin``, possibly under a ``"state_dict"`` or ``"model"``
        key), a ``.safetensors`` file (timm's hub format), a file written by
        ``CNNClassifier.save`` or a ``CNNClassifier`` checkpoint. Torch files
        are read with ``torch.load(weights_only=True)``.

    Returns
    -------
    state : dict of str to tensor
    meta : dict
        ``file`` (the path read) and, when the file says so, ``mean``, ``std``
        (normalization the weights were trained with, ``[0, 1]`` units),
        ``in_chans`` and ``model``.

    Raises
    ------
    ValueError
        The model has no ImageNet weights, or the file holds Python objects
        other than tensors and plain containers, or no state dict.
    FileNotFoundError
        The file is missing (for ``"imagenet"``: the message names the path
        looked for and the URL to fetch it from).
    """
    if isinstance(pretrained, str) and pretrained == "imagenet":
        path, url = imagenet_weights_file(name)
        repo = get_model_config(name).get("timm_weights")
        if repo and not path.is_file():
            raise FileNotFoundError(
                f"pretrained='imagenet' for model {name!r} needs timm's weights (Hugging Face hub repository "
                f"{repo}), which are not in the local hub cache {path} (they are not downloaded implicitly). "
                f"Download {url} and pass pretrained=<that file>, or set HF_HUB_CACHE to a hub cache holding "
                f"{repo} (e.g. filled with `huggingface-cli download {repo}` on a machine with network)"
            )
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained='imagenet' for model {name!r} needs torchvision's weights file {path}, which is "
                f"missing (it is not downloaded implicitly). Download {url} and put it there "
                f"(e.g. curl -L -o '{path}' {url}), or set TORCH_HOME to a folder holding "
                f"hub/checkpoints/{path.name}"
            )
        state = _as_state_dict(_load_weights(path), path)
        if not repo:
            state = {(_DENSENET_KEY.sub(r"\1\2", k)): v for k, v in state.items()}
        cfg = get_model_config(name)
        return state, {"file": str(path), "mean": list(cfg["mean"]), "std": list(cfg["std"]), "in_chans": 3,
                       "model": name}
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (pretrained is 'imagenet' or a file)")
    blob = _load_weights(path)
    meta: dict[str, Any] = {"file": str(path)}
    if isinstance(blob, Mapping) and blob.get("format") == "cnn.CNNClassifier":
        cfg = blob.get("config") if isinstance(blob.get("config"), Mapping) else {}
        for key in ("mean", "std", "in_chans", "model"):
            if key in cfg:
                meta[key] = cfg[key]
        blob = blob.get("state_dict")
    elif isinstance(blob, Mapping) and isinstance(blob.get("state_dict"), Mapping):
        blob = blob["state_dict"]
    elif isinstance(blob, Mapping) and isinstance(blob.get("model"), Mapping):  # a CNNClassifier checkpoint
        blob = blob["model"]
    state = _as_state_dict(blob, path)
    if "in_chans" not in meta:
        first = next((v for v in state.values() if v.ndim == 4), None)
        if first is not None:
            meta["in_chans"] = int(first.shape[1])
    return state, meta


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names (``state_dict`` keys) of the classifier head of ``model``.

    The module timm's ``model.get_classifier()`` returns, where the model has
    that method (DPN's head is a 1x1 convolution), else the last ``nn.Linear``.
    """
    head = None
    get_classifier = getattr(model, "get_classifier", None)
    classifier = get_classifier() if callable(get_classifier) else None
    for mname, module in model.named_modules():
        if classifier is not None and module is classifier and mname:
            head = mname
            break
        if isinstance(module, nn.Linear):
            head = mname
    if head is None:
        return []
    return [k for k in model.state_dict() if k.startswith(head + ".")]


def load_matching_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, reinit_head: bool = True, source: str = ""
) -> dict[str, Any]:
    """Copy into ``model`` every tensor of ``state`` whose name and shape match.

    Parameters
    ----------
    model : torch.nn.Module
    state : mapping of str to tensor
    reinit_head : bool, default=True
        Keep the classifier head (:func:`head_parameter_names`) at its fresh
        initialisation, for new classes.
    source : str
        Where the weights come from (for the report).

    Returns
    -------
    dict
        ``loaded`` (model keys copied), ``skipped`` (model keys left at their
        initialisation), ``reasons`` (why each was skipped: ``"head"``,
        ``"missing"`` or ``"shape (a, b) != (c, d)"``), ``unused`` (keys of
        ``state`` the model has not) and ``file``.

    Raises
    ------
    ValueError
        If no tensor at all matches (the weights are for another architecture).
    """
    own = model.state_dict()
    head = set(head_parameter_names(model)) if reinit_head else set()
    loaded, skipped, reasons, new = [], [], {}, {}
    for key, value in own.items():
        src = state.get(key)
        if key in head:
            reasons[key] = "head"
        elif src is None:
            reasons[key] = "missing"
        elif tuple(src.shape) != tuple(value.shape):
            reasons[key] = f"shape {tuple(src.shape)} != {tuple(value.shape)}"
        else:
            new[key] = src
            loaded.append(key)
            continue
        skipped.append(key)
    if not loaded:
        raise ValueError(
            f"no layer of {source or 'the pretrained weights'} matches model "
            f"{getattr(model, 'model_name', type(model).__name__)!r} by name and shape"
        )
    model.load_state_dict(new, strict=False)
    unused = [k for k in state if k not in own]
    return {"file": source, "loaded": loaded, "skipped": skipped, "reasons": reasons, "unused": unused}


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    pretrained: str | os.PathLike | Mapping | None = None,
    **kwargs,
) -> nn.Module:
    """Build a model by name, untrained or from pretrained weights.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    num_classes : int
        Size of the classifier output, >= 1.
    in_chans : int, default=3
        Input channels (1 for grayscale, 3 for RGB).
    pretrained : None, "imagenet", str, path or mapping, default=None
        None: random initialisation. ``"imagenet"``: torchvision's or timm's
        ImageNet weights (see :func:`models_with_pretrained_weights`), read from
        the torch hub or Hugging Face hub cache, never downloaded (a missing
        file raises an error naming where it was looked for and its URL). A file path (see :func:`read_pretrained`)
        or a state dict: its tensors are copied where name and shape match;
        the classifier head is re-initialised for the new classes, and so is
        the first convolution when ``in_chans`` differs. What was loaded and
        skipped is in the model's ``pretrained_report`` attribute
        (:func:`load_matching_weights`).
    **kwargs
        Passed to the builder (e.g. ``shortcut="B"`` for the CIFAR ResNets).

    Returns
    -------
    torch.nn.Module
        The model, with attributes ``model_name``, ``default_config`` and
        ``pretrained_report`` (None without ``pretrained``).

    Raises
    ------
    ValueError
        Unknown name (close matches are listed), invalid ``num_classes`` /
        ``in_chans``, a model without ImageNet weights, or weights that match
        no layer.
    FileNotFoundError
        A missing weights file.
    """
    if name not in _builders:
        raise _unknown(name)
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if int(in_chans) != in_chans or in_chans < 1:
        raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
    state = source = None
    if pretrained is not None:
        if isinstance(pretrained, Mapping):
            state, source = dict(pretrained), "the given state dict"
        else:
            state, meta = read_pretrained(name, pretrained)
            source = meta["file"]
    model = _builders[name](num_classes=int(num_classes), in_chans=int(in_chans), **kwargs)
    model.model_name = name
    model.default_config = get_model_config(name)
    model.pretrained_report = None
    if state is not None:
        model.pretrained_report = load_matching_weights(model, state, source=source)
    return model
