"""One benchmark run per track: fit on train, score on test, time both, size the model.

:func:`run_classic` runs a classicvision preset (a ``Pipeline`` whose first step,
``"features"``, maps images to a 2-D array) with the features step cached on disk
(:mod:`bench.cache`); :func:`run_cnn` runs a ``cnn.CNNClassifier``. Both return the run
record of the ``report.json`` contract (``name``, ``track``, ``params``, ``status``,
``error``, ``top1``, ``top5``, ``macro_f1``, ``per_class_recall``, ``confusion``,
``fit_seconds``, ``predict_seconds``, ``images_per_second``, ``model_bytes``) plus a few
extra keys (``timings``, ``cache_hit``, ``score_kind``, ``model_path``). They raise on
failure; :mod:`bench.compare` runs each in a process of its own and turns exceptions and
deaths into ``status: "failed"`` records.

The other jobs of a run live in their own modules: progress lines in
:mod:`bench.progress`, chunked scoring and metrics in :mod:`bench.scoring`, the empty
record and its ``params`` in :mod:`bench.specs`, saving and sizing models in
:mod:`bench.models_io`, the features cache in :mod:`bench.cache`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from joblib.externals.loky import get_reusable_executor
from sklearn.pipeline import Pipeline

import classicvision
from bench.cache import features_step_signature
from bench.models_io import load_skops, store_model
from bench.progress import Progress, solver_progress
from bench.scoring import compute_scores, map_chunks, record_metrics
from bench.specs import RunSpec, Split, classic_params, cnn_params, empty_record, n_images
from classicvision.augment import MirrorAugmented, with_mirrors
from classicvision.presets import make_preset

__all__ = ["build_pipeline", "build_cnn", "run_classic", "run_cnn", "release_idle_workers"]


def _set_matching_params(est: Any, suffix: str, value: Any, explicit: set[str]) -> None:
    """Set every (deep) parameter whose last component is ``suffix``, except those
    named in ``explicit`` (the user's overrides win)."""
    keys = [k for k in est.get_params(deep=True)
            if (k == suffix or k.endswith("__" + suffix)) and k not in explicit]
    if keys:
        est.set_params(**{k: value for k in keys})


def build_pipeline(spec: RunSpec, *, seed: int | None, n_jobs: int | None) -> Any:
    """``make_preset(spec.base, **spec.overrides)`` seeded and parallelised.

    Every ``random_state`` of the pipeline is set to ``seed`` and every ``n_jobs`` to
    ``n_jobs`` (when given), except where the overrides set them: a builder parameter
    ``random_state=`` / ``n_jobs=`` keeps the whole preset at the user's value, a step
    parameter (``svm__random_state=3``) keeps that step's. ``make_preset`` applies the
    overrides, builder parameters and ``step__param`` ones alike.
    """
    pipe = make_preset(spec.base, **spec.overrides)
    target = pipe.estimator if isinstance(pipe, MirrorAugmented) else pipe
    explicit = set(spec.overrides)
    for name, value in (("random_state", seed), ("n_jobs", n_jobs)):
        if value is not None and name not in explicit:
            _set_matching_params(target, name, value, explicit)
    return pipe


def release_idle_workers() -> None:
    """Stop joblib's worker processes once the features are computed.

    joblib keeps its loky workers alive for 5 minutes after a parallel call, each
    holding the heap it grew while extracting (about 0.6 GB each on CIFAR-10), which
    would stay resident while the classifier trains. loky has one reusable executor per
    process: getting it (which replaces joblib's if its settings differ) and shutting it
    down stops them; the next parallel call starts fresh workers.
    """
    get_reusable_executor().shutdown(wait=True)


def _classic_parts(spec: RunSpec, pipe: Any) -> tuple[MirrorAugmented | None, Any, Pipeline]:
    """``(mirror wrapper or None, features step, the steps after it)`` of a preset."""
    mirror = None
    if isinstance(pipe, MirrorAugmented):  # bench fits the wrapped pipeline on the mirrors itself
        mirror, pipe = pipe, pipe.estimator
    if pipe.steps[0][0] != "features":
        raise ValueError(
            f"preset {spec.base!r}: first pipeline step is {pipe.steps[0][0]!r}, expected 'features'"
        )
    if len(pipe.steps) < 2:
        raise ValueError(f"preset {spec.base!r} has no classifier after the 'features' step")
    return mirror, pipe.steps[0][1], Pipeline(pipe.steps[1:])


def _cached_features(spec: RunSpec, cache: Any, key: str | None, need_step: bool,
                     progress: Progress) -> dict | None:
    """The cache entry of the features step (train and test features, fitted step), or None.

    ``need_step``: the fitted step itself is needed (to save the model), so an entry
    without it, or whose step file cannot be read back, is a miss.
    """
    hit = cache.get(key) if cache is not None and key is not None else None
    if hit is None:
        return None
    if hit["features_path"] is None:
        return None if need_step else {**hit, "step": None}
    try:
        return {**hit, "step": load_skops(hit["features_path"])}
    except Exception as exc:  # unreadable / refused entry: recompute it
        progress.line(f"{spec.name}: cached features step unusable ({type(exc).__name__}: {exc}); recomputing")
        return None


def _features(spec: RunSpec, features: Any, train_images: Any, y_train: np.ndarray, test_images: Any, *,
              cache: Any, data_identity: Mapping[str, Any] | None, need_step: bool, chunk: int | None,
              progress: Progress) -> tuple[np.ndarray, np.ndarray, Any, dict, bool]:
    """Fit the features step on the train images and transform both splits, or read
    them from the cache; returns ``(Xtr, Xte, fitted step or None, timings, cache_hit)``."""
    key = None
    if cache is not None and data_identity is not None:
        key = cache.make_key(dataset=data_identity, step_signature=features_step_signature(features),
                             version=getattr(classicvision, "__version__", "0"))
    hit = _cached_features(spec, cache, key, need_step, progress)
    if hit is not None:
        progress.line(f"{spec.name}: features cache hit ({key[:12]}), skipping extraction")
        timings = {k: float(hit["meta"][k]) for k in ("features_fit_seconds", "features_test_seconds")}
        return hit["train"], hit["test"], hit["step"], timings, True
    ntr, nte = n_images(train_images), n_images(test_images)
    t0 = time.perf_counter()
    with progress.stage(spec.name, f"fit features step on {ntr} train images"):
        features.fit(train_images, y_train)
    Xtr = map_chunks(features.transform, train_images, chunk or max(64, -(-ntr // 20)),
                     progress.chunks(spec.name, "features (train)", ntr))
    timings = {"features_fit_seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    Xte = map_chunks(features.transform, test_images, chunk or max(64, -(-nte // 20)),
                     progress.chunks(spec.name, "features (test)", nte))
    timings["features_test_seconds"] = time.perf_counter() - t0
    if key is not None:
        cache.put(key, train=Xtr, test=Xte, features_step=features,
                  meta={**timings, "step": type(features).__name__, "preset": spec.base,
                        "n_train": ntr, "n_test": nte, "n_features": int(Xtr.shape[1])})
    return Xtr, Xte, features, timings, False


def run_classic(
    spec: RunSpec,
    train: Split,
    test: Split,
    *,
    seed: int | None = 0,
    n_jobs: int | None = None,
    cache: Any = None,
    data_identity: Mapping[str, Any] | None = None,
    models_dir: str | Path | None = None,
    progress: Progress | None = None,
    chunk: int | None = None,
) -> dict:
    """Fit a classic preset on ``train`` and score it on ``test``.

    Parameters
    ----------
    spec : RunSpec
        ``track == "classic"``; ``base`` is a key of ``classicvision.presets.PRESETS``.
    train, test : Split
    seed : int or None
        Sets every ``random_state`` of the pipeline.
    n_jobs : int or None
        Sets every ``n_jobs`` of the pipeline.
    cache : bench.cache.FeatureCache or None
        Cache for the ``"features"`` step outputs; ``None`` disables it.
    data_identity : mapping
        Dataset identity used in the cache key (name, digests, split options).
    models_dir : path or None
        When given, the fitted pipeline is written there as ``<name>.skops``.
    progress : Progress or None
    chunk : int or None
        Images per transform chunk (bounds memory; default ``max(64, n // 20)``).

    Returns
    -------
    record : dict
        The run record (``status: "ok"``).

    Notes
    -----
    The features step is fitted on the train images, then train and test images are
    transformed in chunks (progress with ETA). On a cache hit the fitted step is
    loaded back from the cache and ``fit_seconds`` / ``predict_seconds`` reuse the
    extraction times measured when the entry was built (``timings`` has the split and
    ``cache_hit`` is True), so times stay comparable between fresh and cached runs.
    A preset wrapped in :class:`~classicvision.augment.MirrorAugmented` is trained on
    the images and their mirrors (and scored on both when ``test_time``), as the
    wrapper's own ``fit`` does, with the features of the mirrors cached too.
    """
    progress = progress or Progress(None)
    rec = empty_record(spec, classic_params(spec, seed))
    mirror, features, rest = _classic_parts(spec, build_pipeline(spec, seed=seed, n_jobs=n_jobs))
    rec["pipeline"] = [["features", type(features).__name__]] + [[n, type(s).__name__] for n, s in rest.steps]
    if "verbose" in features.get_params(deep=False) and progress.stream is not None:
        with contextlib.suppress(TypeError, ValueError):
            features.set_params(verbose=1)
    train_images, y_train, test_images = train.images, np.asarray(train.target), test.images
    if mirror is not None:
        rec["mirror"] = {"train": True, "test_time": bool(mirror.test_time)}
        train_images, y_train = with_mirrors(train_images, y_train)
        if mirror.test_time:
            test_images = with_mirrors(test_images)
        data_identity = {**(data_identity or {}), "mirror": rec["mirror"]}
    Xtr, Xte, fitted_features, timings, rec["cache_hit"] = _features(
        spec, features, train_images, y_train, test_images, cache=cache, data_identity=data_identity,
        need_step=models_dir is not None, chunk=chunk, progress=progress)
    release_idle_workers()
    Xtr, Xte = np.asarray(Xtr, dtype=np.float32), np.asarray(Xte, dtype=np.float32)
    rec["n_features"] = int(Xtr.shape[1])

    last, final = rest.steps[-1]
    with solver_progress(final, Xtr.shape[0], progress) as eta_note, \
            progress.stage(spec.name, f"fit {last} on {Xtr.shape[0]}x{Xtr.shape[1]} features",
                           eta_note=eta_note) as st:
        rest.fit(Xtr, y_train)
    timings["classifier_fit_seconds"] = st.seconds
    t0 = time.perf_counter()
    scores, rec["score_kind"] = compute_scores(
        rest, Xte, len(train.target_names), chunk=chunk or max(64, -(-len(Xte) // 20)),
        update=progress.chunks(spec.name, f"predict ({last})", len(Xte)))
    if mirror is not None and mirror.test_time:  # the scores of each image and of its mirror, averaged
        scores = MirrorAugmented.average_mirrored(scores)
    timings["classifier_predict_seconds"] = time.perf_counter() - t0
    rec.update(record_metrics(test.target, scores, test.target_names))
    rec["fit_seconds"] = timings["features_fit_seconds"] + timings["classifier_fit_seconds"]
    rec["predict_seconds"] = timings["features_test_seconds"] + timings["classifier_predict_seconds"]
    rec["images_per_second"] = len(test) / rec["predict_seconds"] if rec["predict_seconds"] > 0 else None
    rec["timings"] = timings
    if fitted_features is not None:
        fitted = Pipeline([("features", fitted_features)] + list(rest.steps))
        if mirror is not None:
            fitted = MirrorAugmented.from_fitted(fitted, test_time=mirror.test_time)
        try:
            rec.update(store_model(fitted, "classic", spec, train, models_dir))
        except Exception as exc:  # a step skops cannot serialize: sizes unknown, results kept
            rec["model_bytes_error"] = f"{type(exc).__name__}: {exc}"
    return rec


def build_cnn(
    spec: RunSpec,
    *,
    seed: int | None,
    epochs: int | None,
    device: str,
    verbose: bool,
    defaults: Mapping[str, Any] | None = None,
    memory_limit: int | None = None,
) -> Any:
    """``cnn.CNNClassifier(model=spec.base, ...)`` with the bench options applied.

    Precedence: ``spec.overrides`` > ``epochs`` / ``seed`` / ``device`` / ``memory_limit``
    > ``defaults`` (dataset-specific defaults such as ``flip=False`` for digits).
    ``memory_limit`` (bytes) lets the classifier choose a batch size that fits."""
    # torch is imported by the runs that train a CNN only: the parent process and the
    # classic runs do without it (seconds of start-up and hundreds of MB resident)
    from cnn import CNNClassifier

    clf = CNNClassifier(model=spec.base)
    params = clf.get_params()
    kw: dict[str, Any] = dict(defaults or {})
    kw["device"] = device
    if seed is not None and "random_state" in params:
        kw["random_state"] = seed
    if epochs is not None:
        kw["epochs"] = epochs
    if memory_limit is not None and "memory_limit" in params:
        kw["memory_limit"] = memory_limit
    if "verbose" in params:
        kw["verbose"] = 1 if verbose else 0
    kw.update(spec.overrides)
    unknown = sorted(set(kw) - set(params))
    if unknown:
        raise ValueError(
            f"{spec.name}: CNNClassifier has no parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(params))}"
        )
    return clf.set_params(**kw)


def run_cnn(
    spec: RunSpec,
    train: Split,
    test: Split,
    *,
    seed: int | None = 0,
    epochs: int | None = None,
    device: str = "auto",
    defaults: Mapping[str, Any] | None = None,
    models_dir: str | Path | None = None,
    progress: Progress | None = None,
    chunk: int = 1024,
    memory_limit: int | None = None,
) -> dict:
    """Train ``cnn.CNNClassifier(model=spec.base)`` on ``train`` and score it on ``test``.

    ``model_bytes`` is the size of the weights file ``CNNClassifier.save`` writes.
    Epoch progress comes from the classifier's own ``verbose`` output (one line per
    epoch with elapsed time and ETA), redirected to the progress stream (stderr).
    ``defaults`` are classifier parameters applied unless overridden (the dataset's
    defaults, e.g. ``flip=False`` for digits).
    """
    progress = progress or Progress(None)
    rec = empty_record(spec, cnn_params(spec, seed, epochs, defaults))
    n_classes = len(train.target_names)
    clf = build_cnn(spec, seed=seed, epochs=epochs, device=device, verbose=progress.stream is not None,
                    defaults=defaults, memory_limit=memory_limit)
    rec["params"]["device"] = device
    ntr, nte = len(train), len(test)
    redirect = (contextlib.redirect_stdout(progress.stream) if progress.stream is not None
                else contextlib.nullcontext())
    with progress.stage(spec.name, f"train {spec.base} on {ntr} images",
                        eta_note="ETA in the epoch lines") as st, redirect:
        clf.fit(train.images, train.target)
    fit_seconds = st.seconds
    t0 = time.perf_counter()
    scores, kind = compute_scores(
        _ProbaOnly(clf), test.images, n_classes, chunk=chunk,
        update=progress.chunks(spec.name, "predict", nte),
    )
    predict_seconds = time.perf_counter() - t0
    rec.update(record_metrics(test.target, scores, test.target_names))
    rec["score_kind"] = kind
    rec["fit_seconds"] = fit_seconds
    rec["predict_seconds"] = predict_seconds
    rec["images_per_second"] = nte / predict_seconds if predict_seconds > 0 else None
    resolved = getattr(clf, "device_", None)
    if resolved is not None:
        rec["params"]["device_used"] = str(resolved)
    rec.update(store_model(clf, "cnn", spec, train, models_dir))
    return rec


class _ProbaOnly:
    """View of a classifier exposing only ``predict_proba`` and ``classes_``."""

    def __init__(self, clf: Any) -> None:
        self.predict_proba = clf.predict_proba
        self.classes_ = getattr(clf, "classes_", None)
        if self.classes_ is None:
            del self.classes_
