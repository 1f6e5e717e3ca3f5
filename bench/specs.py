"""What a comparison runs: run specs, their command-line parsing, the splits' containers,
and the empty run records (:func:`empty_record`) with the ``params`` that identify a run.

A leaf module: :mod:`bench.compare`, :mod:`bench.runners` and :mod:`bench.report` all
import it, and it imports none of them (it is where the names a report needs to list
the unfinished runs of a comparison come from).
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from classicvision.base import is_lazy_sequence

__all__ = [
    "UsageError",
    "DatasetError",
    "RunSpec",
    "Split",
    "parse_specs",
    "check_names",
    "preset_names",
    "model_names",
    "n_images",
    "is_lazy",
    "sample_side_images",
    "LAZY_SIDE_SAMPLE",
    "take",
    "safe_name",
    "empty_record",
    "classic_params",
    "cnn_params",
]


class UsageError(ValueError):
    """Bad command-line input (unknown preset / model names, conflicting --out)."""


class DatasetError(RuntimeError):
    """The dataset could not be loaded."""


@dataclass(frozen=True)
class RunSpec:
    """What to run: a display ``name``, its ``track``, the preset / model ``base`` name
    and keyword ``overrides`` (given on the command line as ``base:key=value:...``)."""

    name: str
    track: str
    base: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Split:
    """Images and integer labels of one split."""

    images: Any
    target: np.ndarray
    target_names: list[str]
    filenames: Sequence[str] | None = None

    def __len__(self) -> int:
        return n_images(self.images)


def is_lazy(images: Any) -> bool:
    """True for a lazy image sequence (:func:`classicvision.base.is_lazy_sequence`, with
    ``with_max_side`` too): decoded on access, so bench indexes and slices it and never
    converts it to an array."""
    return is_lazy_sequence(images) and hasattr(images, "with_max_side")


#: Images decoded to read the median side of a lazy training set (a seeded sample).
LAZY_SIDE_SAMPLE = 256


def sample_side_images(images: Any, seed: int | None = 0) -> Any:
    """The images whose shapes give the median side: all of them, or for a lazy sequence
    a seeded sample of :data:`LAZY_SIDE_SAMPLE` (each decoded once)."""
    if not is_lazy(images) or len(images) <= LAZY_SIDE_SAMPLE:
        return images if not is_lazy(images) else list(images)
    idx = np.sort(np.random.default_rng(seed).choice(len(images), LAZY_SIDE_SAMPLE, replace=False))
    return list(images[idx])


def n_images(images: Any) -> int:
    """Number of images in an ``(N, ...)`` array or a sequence of arrays."""
    return int(images.shape[0]) if isinstance(images, np.ndarray) else len(images)


def take(images: Any, idx: Sequence[int] | np.ndarray) -> Any:
    """Select images by index from an ``(N, ...)`` array, a list of arrays or a lazy
    sequence (a lazy subset: nothing is decoded)."""
    idx = np.asarray(idx, dtype=np.intp)
    if isinstance(images, np.ndarray) or is_lazy(images):
        return images[idx]
    return [images[i] for i in idx]


def safe_name(name: str) -> str:
    """A file-name-safe version of a run name (``hog_svm:C=10`` -> ``hog_svm_C=10``)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", name).strip("_") or "run"


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` at the ``sep`` characters outside (), [] and {} brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_specs(text: str | None, track: str, *, all_names: Iterable[str] = ()) -> list[RunSpec]:
    """Parse ``"name,name:key=value:key=value"`` into run specs.

    ``"all"`` expands to ``all_names``; ``"none"`` / empty gives no run. A name may carry
    overrides after colons (``hog_svm:svm__C=10``); values are Python literals (numbers,
    booleans, tuples such as ``levels=(1,2)``: commas inside brackets do not separate
    items) or plain strings. The run's display name is the whole item.
    """
    if text is None:
        return []
    text = text.strip()
    if text.lower() in ("", "none"):
        return []
    if text.lower() == "all":
        return [RunSpec(n, track, n, {}) for n in all_names]
    specs = []
    for item in _split_top_level(text):
        item = item.strip()
        if not item:
            continue
        base, *kvs = item.split(":")
        overrides = {}
        for kv in kvs:
            if "=" not in kv:
                raise UsageError(f"bad override {kv!r} in {item!r}: expected key=value")
            k, v = kv.split("=", 1)
            overrides[k.strip()] = _parse_value(v.strip())
        specs.append(RunSpec(item, track, base.strip(), overrides))
    return specs


def check_names(specs: Sequence[RunSpec], available: Iterable[str], what: str) -> None:
    """Raise :class:`UsageError` listing close matches for every unknown base name."""
    available = sorted(available)
    problems = []
    for s in specs:
        if s.base not in available:
            close = difflib.get_close_matches(s.base, available, n=4, cutoff=0.5)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            problems.append(f"unknown {what} {s.base!r}{hint}")
    if problems:
        raise UsageError("; ".join(problems) + f". Available {what}s: {', '.join(available)}")
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise UsageError(f"{what} {s.name!r} requested twice")
        seen.add(s.name)


def preset_names() -> list[str]:
    """The classic presets' names (``classicvision.presets.PRESETS``)."""
    # Delayed on purpose: the presets pull in every extractor and encoder, which the
    # report renderer (a user of this module) does not need.
    from classicvision.presets import PRESETS

    return list(PRESETS)


def model_names() -> list[str]:
    """The CNN registry's names (``cnn.list_models()``)."""
    # Delayed on purpose: importing cnn imports torch (seconds).
    from cnn import list_models

    return list(list_models())


# ----------------------------------------------------------------------------- run records
def empty_record(spec: RunSpec, params: Mapping[str, Any]) -> dict:
    """A run record with every contract key present and no results."""
    return {
        "name": spec.name,
        "track": spec.track,
        "params": dict(params),
        "status": None,
        "error": None,
        "top1": None,
        "top5": None,
        "macro_f1": None,
        "mean_class_accuracy": None,
        "per_class_recall": None,
        "confusion": None,
        "fit_seconds": None,
        "predict_seconds": None,
        "images_per_second": None,
        "model_bytes": None,
    }

def classic_params(spec: RunSpec, seed: int | None) -> dict:
    """The ``params`` of a classic run record (what identifies it for resume)."""
    return {"preset": spec.base, "overrides": dict(spec.overrides), "random_state": seed}

def cnn_params(
    spec: RunSpec, seed: int | None, epochs: int | None, defaults: Mapping[str, Any] | None = None
) -> dict:
    """The ``params`` of a CNN run record (what identifies it for resume)."""
    return {"model": spec.base, "overrides": dict(spec.overrides), "random_state": seed, "epochs": epochs,
            "dataset_defaults": dict(defaults or {})}
