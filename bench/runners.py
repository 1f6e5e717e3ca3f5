"""One benchmark run per track: fit on train, score on test, time both, size the model.

:func:`run_classic` runs a classicvision preset (a ``Pipeline`` whose first step,
``"features"``, maps images to a 2-D array) with the features step cached on disk
(:mod:`bench.cache`); :func:`run_cnn` runs a ``cnn.CNNClassifier``. Both return the run
record of the ``report.json`` contract (``name``, ``track``, ``params``, ``status``,
``error``, ``top1``, ``top5``, ``macro_f1``, ``per_class_recall``, ``confusion``,
``fit_seconds``, ``predict_seconds``, ``images_per_second``, ``model_bytes``) plus a few
extra keys (``timings``, ``cache_hit``, ``score_kind``, ``model_path``; the latency of one
image, ``latency_ms`` and ``latency_p90_ms`` per thread count with ``latency_threads``, see
:mod:`bench.latency`; ``onnx`` for an exported CNN; ``float``, ``float_model`` and
``quantization`` for a ``quantize=int8`` run). They raise on failure; :mod:`bench.compare` runs each in a process of its own and turns exceptions and
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
from joblib import parallel_config
from joblib.externals.loky import get_reusable_executor
from sklearn.pipeline import Pipeline

from bench.latency import latency_record, thread_counts
from bench.models_io import load_skops, store_model, write_sidecar
from bench.progress import Progress, solver_progress
from bench.scoring import compute_scores, map_chunks, record_metrics
from bench.specs import (
    RunSpec,
    Split,
    classic_params,
    cnn_params,
    empty_record,
    is_lazy,
    n_images,
    safe_name,
    take,
)
from classicvision.augment import MirrorAugmented, with_mirrors
from classicvision.presets import make_preset

__all__ = ["build_pipeline", "build_cnn", "run_classic", "run_cnn", "release_idle_workers", "classic_latency",
           "cnn_latency", "deep_params", "LATENCY_IMAGES", "QUANTIZE_OPTIONS"]

#: Test images the latency of one image is measured on (the timed calls cycle through them).
LATENCY_IMAGES = 8
#: Seconds of timed calls per thread count (after at least 5 calls): about a second per run.
LATENCY_SECONDS = 0.5
#: The values of a CNN run's ``quantize=`` option.
QUANTIZE_OPTIONS = ("int8",)


def _latency_sample(test: Split) -> Any:
    """The first :data:`LATENCY_IMAGES` test images, decoded (what the latency is timed on)."""
    images = take(test.images, np.arange(min(LATENCY_IMAGES, len(test))))
    return list(images) if is_lazy(images) else images


@contextlib.contextmanager
def deep_params(est: Any, **values: Any):
    """Set every deep parameter of ``est`` whose last component is a key of ``values``, then
    restore them (on fitted estimators: ``set_params`` refits nothing); an object without
    ``get_params`` is left as it is."""
    if not hasattr(est, "get_params"):
        yield
        return
    keys = {k: suffix for suffix in values for k in est.get_params(deep=True)
            if k == suffix or k.endswith("__" + suffix)}
    old = {k: v for k, v in est.get_params(deep=True).items() if k in keys}
    try:
        for k, suffix in keys.items():
            with contextlib.suppress(TypeError, ValueError):
                est.set_params(**{k: values[suffix]})
        yield
    finally:
        for k, v in old.items():
            with contextlib.suppress(TypeError, ValueError):
                est.set_params(**{k: v})


def _scoring_method(model: Any) -> Any:
    for name in ("decision_function", "predict_proba", "predict"):
        if hasattr(model, name):
            return getattr(model, name)
    raise TypeError(f"{type(model).__name__} has no decision_function, predict_proba or predict")


def classic_latency(model: Any, images: Any, *, seconds: float = LATENCY_SECONDS,
                    threads: list[int] | None = None) -> dict:
    """Latency keys (:func:`bench.latency.latency_record`) of a fitted classic model.

    Parameters
    ----------
    model : fitted Pipeline or MirrorAugmented
        Timed through its scoring method (``decision_function``, else ``predict_proba``,
        else ``predict``) on one decoded image: extraction, coding, pooling, kernel map and
        SVM (both mirrors for a test-time mirrored model). Every ``n_jobs`` of the model
        is 1 and every ``verbose`` 0 while it is timed (restored after): the threads, not
        joblib's processes, are what is pinned.
    images : (n, H, W[, C]) ndarray or sequence of arrays
        Decoded test images (the calls cycle through them).
    seconds : float
        Timed seconds per thread count.
    threads : list of int or None
        Default :func:`bench.latency.thread_counts`.

    Returns
    -------
    dict
        ``latency_ms``, ``latency_p90_ms``, ``latency_threads``, ``latency_repeats``,
        ``latency_batch_size``.
    """
    fn = _scoring_method(model)
    with deep_params(model, n_jobs=1, verbose=0):
        return latency_record(fn, images, threads=threads, max_seconds=seconds)


def cnn_latency(clf: Any, images: Any, *, seconds: float = LATENCY_SECONDS,
                threads: list[int] | None = None) -> dict:
    """Latency keys of a fitted ``CNNClassifier``: ``predict_proba`` on one decoded image
    (resize, normalization, forward pass and flip test-time augmentation, on the classifier's
    device), on 1 and N torch threads (its ``num_threads`` is None while timed, so the pinned
    count applies). Keys as :func:`classic_latency`'s, plus ``latency_device``."""
    old = clf.num_threads
    clf.num_threads = None
    try:
        rec = latency_record(clf.predict_proba, images, threads=threads, max_seconds=seconds)
    finally:
        clf.num_threads = old
    rec["latency_device"] = str(getattr(clf, "device_", "cpu"))
    return rec


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
                     progress: Progress, want_step: bool = False) -> dict | None:
    """The cache entry of the features step (train and test features, fitted step), or None.

    ``need_step``: the fitted step itself is needed (to save the model), so an entry
    without it, or whose step file cannot be read back, is a miss. ``want_step``: load
    the step when the entry has one (to time the model), without recomputing otherwise.
    """
    hit = cache.get(key) if cache is not None and key is not None else None
    if hit is None:
        return None
    if hit["features_path"] is None or not (need_step or want_step):
        return None if need_step else {**hit, "step": None}
    try:
        return {**hit, "step": load_skops(hit["features_path"])}
    except Exception as exc:  # unreadable / refused entry: recompute it
        if not need_step:
            progress.line(f"{spec.name}: cached features step unusable ({type(exc).__name__}: {exc}); "
                          "no latency measured")
            return {**hit, "step": None}
        progress.line(f"{spec.name}: cached features step unusable ({type(exc).__name__}: {exc}); recomputing")
        return None


def _features(spec: RunSpec, features: Any, train_images: Any, y_train: np.ndarray, test_images: Any, *,
              cache: Any, data_identity: Mapping[str, Any] | None, need_step: bool, chunk: int | None,
              progress: Progress, want_step: bool = False) -> tuple[np.ndarray, np.ndarray, Any, dict, bool]:
    """Fit the features step on the train images and transform both splits, or read
    them from the cache; returns ``(Xtr, Xte, fitted step or None, timings, cache_hit)``."""
    key = cache.key_for(features, data_identity) if cache is not None and data_identity is not None else None
    hit = _cached_features(spec, cache, key, need_step, progress, want_step)
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
    latency_seconds: float | None = LATENCY_SECONDS,
    stream_dir: str | Path | None = None,
    on_cluster: bool = False,
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
    latency_seconds : float or None
        Timed seconds per thread count of the latency of one image
        (:func:`classic_latency`); None: not measured.
    stream_dir : path or None
        Stream (``compare --stream``, :mod:`bench.streaming`): the features go to
        on-disk stores in this folder, block by block (kept for a resume), and the
        classifier is fitted out of core; the features cache holds them too, as
        float16 files under a key of their own, read back memory-mapped.
    on_cluster : bool
        The joblib work goes to a Dask cluster (``--scheduler`` / ``--dask-workers``):
        the features step's tasks do, the classifier stays in this process (joblib's
        threading backend for its fit and scoring, as its threads ask for anyway), so
        Gram slabs and scores are not shipped to the workers.

    Returns
    -------
    record : dict
        The run record (``status: "ok"``), with the latency keys when measured (or
        ``latency_error`` when the fitted features step is not at hand: a cache entry
        without it).

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
    if stream_dir is not None:
        if mirror is not None:
            raise ValueError(f"{spec.name}: --stream cannot train on mirror images (mirror=True needs every "
                             "image in memory); use mirror='symmetric' or run without --stream")
        rec["stream"] = True
        scores, fitted_features, rest, timings, rec["cache_hit"] = _streamed_run(
            spec, features, rest, train_images, y_train, test_images, seed=seed, folder=Path(stream_dir),
            progress=progress, on_cluster=on_cluster, cache=cache, data_identity=data_identity, n_jobs=n_jobs)
        return _finish_classic(rec, spec, train, test, scores, fitted_features, rest, timings, mirror=None,
                               models_dir=models_dir, progress=progress, latency_seconds=latency_seconds)
    if mirror is not None:
        rec["mirror"] = {"train": True, "test_time": bool(mirror.test_time)}
        train_images, y_train = with_mirrors(train_images, y_train)
        if mirror.test_time:
            test_images = with_mirrors(test_images)
        data_identity = {**(data_identity or {}), "mirror": rec["mirror"]}
    Xtr, Xte, fitted_features, timings, rec["cache_hit"] = _features(
        spec, features, train_images, y_train, test_images, cache=cache, data_identity=data_identity,
        need_step=models_dir is not None, chunk=chunk, progress=progress, want_step=latency_seconds is not None)
    release_idle_workers()
    Xtr, Xte = np.asarray(Xtr, dtype=np.float32), np.asarray(Xte, dtype=np.float32)
    rec["n_features"] = int(Xtr.shape[1])

    last, final = rest.steps[-1]
    with _local(on_cluster), solver_progress(final, Xtr.shape[0], progress) as eta_note, \
            progress.stage(spec.name, f"fit {last} on {Xtr.shape[0]}x{Xtr.shape[1]} features",
                           eta_note=eta_note) as st:
        rest.fit(Xtr, y_train)
    timings["classifier_fit_seconds"] = st.seconds
    t0 = time.perf_counter()
    with _local(on_cluster):
        scores, rec["score_kind"] = compute_scores(
            rest, Xte, len(train.target_names), chunk=chunk or max(64, -(-len(Xte) // 20)),
            update=progress.chunks(spec.name, f"predict ({last})", len(Xte)))
    if mirror is not None and mirror.test_time:  # the scores of each image and of its mirror, averaged
        scores = MirrorAugmented.average_mirrored(scores)
    timings["classifier_predict_seconds"] = time.perf_counter() - t0
    return _finish_classic(rec, spec, train, test, scores, fitted_features, rest, timings, mirror=mirror,
                           models_dir=models_dir, progress=progress, latency_seconds=latency_seconds)


def _local(on_cluster: bool) -> Any:
    """joblib's threading backend while the classifier runs, when the features ran on Dask."""
    return parallel_config(backend="threading") if on_cluster else contextlib.nullcontext()


def _streamed_run(spec: RunSpec, features: Any, rest: Pipeline, train_images: Any, y_train: np.ndarray,
                  test_images: Any, *, seed: int | None, folder: Path, progress: Progress,
                  on_cluster: bool = False, cache: Any = None, data_identity: Mapping[str, Any] | None = None,
                  n_jobs: int | None = None) -> tuple[np.ndarray, Any, Pipeline, dict, bool]:
    """:func:`run_classic`'s fit and scoring through on-disk stores (``--stream``), the features
    read from the features cache when it has them; the last item says whether it did."""
    from bench.streaming import STORE_DTYPE, streamed_classifier, streamed_features

    # the streamed features have cache entries of their own (float16, never served to in-memory runs)
    key = (cache.key_for(features, {**data_identity, "stream": STORE_DTYPE})
           if cache is not None and data_identity is not None else None)
    hit = _cached_features(spec, cache, key, True, progress)  # the step is needed: model, latency
    if hit is not None:
        progress.line(f"{spec.name}: features cache hit ({key[:12]}), reading its {hit['train'].dtype} "
                      "features block by block")
        Str, Ste, fitted_features = hit["train"], hit["test"], hit["step"]
        timings = {k: float(hit["meta"][k]) for k in ("features_fit_seconds", "features_test_seconds")}
    else:
        Str, Ste, fitted_features, timings = streamed_features(
            spec, features, train_images, y_train, test_images, folder=folder, progress=progress, cache=cache,
            cache_key=key, n_jobs=n_jobs)
    release_idle_workers()
    with _local(on_cluster):
        rest, scores, more = streamed_classifier(rest, Str, y_train, Ste, seed=seed, name=spec.name,
                                                 progress=progress)
    timings.update(more)
    timings["store"] = {"folder": None if hit is not None else str(folder), "dtype": str(Str.dtype),
                        "n_features": int(Str.shape[1])}
    return scores, fitted_features, rest, timings, hit is not None


def _finish_classic(rec: dict, spec: RunSpec, train: Split, test: Split, scores: np.ndarray, fitted_features: Any,
                    rest: Pipeline, timings: dict, *, mirror: MirrorAugmented | None, models_dir, progress: Progress,
                    latency_seconds: float | None) -> dict:
    """The metrics, times, saved model and latency of a fitted classic run."""
    rec["score_kind"] = rec.get("score_kind") or "decision_function"
    if "store" in timings:
        rec["n_features"] = timings["store"]["n_features"]
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
        if latency_seconds is not None:
            with progress.stage(spec.name, f"latency of one image on {thread_counts()} threads"):
                rec.update(classic_latency(fitted, _latency_sample(test), seconds=latency_seconds))
    elif latency_seconds is not None:
        rec["latency_error"] = "the fitted features step is not in the features cache entry: no latency"
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


def quantize_option(spec: RunSpec) -> str | None:
    """The ``quantize=`` option of a CNN run spec (None without one).

    Raises
    ------
    ValueError
        A value other than those of :data:`QUANTIZE_OPTIONS`.
    """
    q = spec.overrides.get("quantize")
    if q is None:
        return None
    if q not in QUANTIZE_OPTIONS:
        raise ValueError(f"{spec.name}: quantize={q!r} is not supported; valid: {', '.join(QUANTIZE_OPTIONS)}")
    return str(q)


def float_spec(spec: RunSpec) -> RunSpec:
    """The spec of the float model a ``quantize=`` run starts from: its overrides without ``quantize``."""
    return RunSpec(spec.name, spec.track, spec.base, {k: v for k, v in spec.overrides.items() if k != "quantize"})


def _file_stem(spec: RunSpec) -> str:
    return safe_name(spec.name)


def _float_classifier(spec: RunSpec, train: Split, *, seed, epochs, device, defaults, memory_limit,
                      progress: Progress, float_model: str | Path | None,
                      validation: Split | None = None) -> tuple[Any, float, dict]:
    """The trained float classifier of a run, its training seconds and where it came from.

    ``float_model``: the file of the same model saved by another run of the comparison,
    loaded instead of training again when it reads back (else the model is trained here).
    """
    if float_model is not None:
        from cnn import CNNClassifier  # torch, in the CNN runs only

        try:
            clf = CNNClassifier.load(float_model, device=device)
        except Exception as exc:  # unreadable: train instead, and say so
            progress.line(f"{spec.name}: cannot reuse {float_model} ({type(exc).__name__}: {exc}); training")
        else:
            progress.line(f"{spec.name}: reusing the float model {float_model}")
            return clf, 0.0, {"source": "reused", "path": str(float_model)}
    clf = build_cnn(spec, seed=seed, epochs=epochs, device=device, verbose=progress.stream is not None,
                    defaults=defaults, memory_limit=memory_limit)
    redirect = (contextlib.redirect_stdout(progress.stream) if progress.stream is not None
                else contextlib.nullcontext())
    with progress.stage(spec.name, f"train {spec.base} on {len(train)} images",
                        eta_note="ETA in the epoch lines") as st, redirect:
        # validation: the test split, for the per-epoch test loss / error of the curves (never
        # trained on; the weights are the same without it); its evaluation time is not fit time
        val = None if validation is None else (validation.images, validation.target)
        clf.fit(train.images, train.target, validation_data=val)
    return clf, st.seconds - float(getattr(clf, "eval_seconds_", 0.0)), {"source": "trained in this run"}


def _score(model: Any, test: Split, n_classes: int, chunk: int, update) -> tuple[np.ndarray, str, float]:
    t0 = time.perf_counter()
    scores, kind = compute_scores(_ProbaOnly(model), test.images, n_classes, chunk=chunk, update=update)
    return scores, kind, time.perf_counter() - t0


def _onnx_record(clf: Any, path: Path, test: Split, torch_scores: np.ndarray, n_classes: int, chunk: int,
                 latency_seconds: float | None) -> dict:
    """Export ``clf`` to ``path`` and measure the ONNX Runtime copy: size, top-1, agreement
    with PyTorch's predictions, the largest logit difference, latency."""
    from cnn.export import OnnxPredictor, export_onnx

    export_onnx(clf, path)
    pred = OnnxPredictor(path)
    scores, _, seconds = _score(pred, test, n_classes, chunk, None)
    y = np.asarray(test.target)
    sub = _latency_sample(test) if len(test) <= 256 else take(test.images, np.arange(256))
    logit_diff = float(np.max(np.abs(pred.decision_function(sub) - clf.decision_function(sub))))
    out = {"path": str(path), "bytes": path.stat().st_size,
           "top1": float(np.mean(scores.argmax(1) == y)),
           "agreement": float(np.mean(scores.argmax(1) == torch_scores.argmax(1))),
           "max_abs_logit_diff": logit_diff, "logit_diff_images": n_images(sub),
           "predict_seconds": seconds, "runtime": "onnxruntime (CPUExecutionProvider)"}
    if latency_seconds is not None:
        out.update(latency_record(None, _latency_sample(test), max_seconds=latency_seconds,
                                  predictor_for=lambda t: OnnxPredictor(path, threads=t).predict_proba))
    return out


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
    latency_seconds: float | None = LATENCY_SECONDS,
    onnx_dir: str | Path | None = None,
    float_model: str | Path | None = None,
) -> dict:
    """Train ``cnn.CNNClassifier(model=spec.base)`` on ``train`` and score it on ``test``.

    ``model_bytes`` is the size of the weights file ``CNNClassifier.save`` writes.
    Epoch progress comes from the classifier's own ``verbose`` output (one line per
    epoch with elapsed time and ETA), redirected to the progress stream (stderr).
    ``defaults`` are classifier parameters applied unless overridden (the dataset's
    defaults, e.g. ``flip=False`` for digits).

    ``latency_seconds``: timed seconds per thread count of the latency of one image
    (:func:`cnn_latency`; None: not measured). ``onnx_dir``: export the trained network
    there as ``<name>.onnx`` (:func:`cnn.export.export_onnx`) and record, under ``onnx``,
    its size, ONNX Runtime's top-1, its agreement with PyTorch, the largest logit
    difference and its latency.

    A spec with ``quantize="int8"`` (``--cnn resnet20:quantize=int8``) gives the int8 run:
    the float model (loaded from ``float_model``, the file another run of the comparison
    saved, when given; else trained here) is quantized with a calibration sample of the
    training images (:func:`cnn.quantize.quantize_classifier`), and the run's metrics,
    ``model_bytes`` (the int8 ``.onnx`` file) and latency are the int8 model's, run with
    ONNX Runtime; ``float`` holds the float model's top-1, size and latency measured in
    the same process, ``float_model`` where the float model came from, ``quantization``
    the settings.
    """
    progress = progress or Progress(None)
    rec = empty_record(spec, cnn_params(spec, seed, epochs, defaults))
    quantize = quantize_option(spec)
    n_classes = len(train.target_names)
    clf, fit_seconds, source = _float_classifier(
        float_spec(spec), train, seed=seed, epochs=epochs, device=device, defaults=defaults,
        memory_limit=memory_limit, progress=progress, float_model=float_model if quantize else None,
        validation=test)
    rec["params"]["device"] = device
    rec["history"] = [dict(h) for h in getattr(clf, "history_", [])]
    rec["eval_seconds"] = float(getattr(clf, "eval_seconds_", 0.0))
    scores, kind, predict_seconds = _score(clf, test, n_classes, chunk,
                                           progress.chunks(spec.name, "predict", len(test)))
    resolved = getattr(clf, "device_", None)
    if resolved is not None:
        rec["params"]["device_used"] = str(resolved)
    if quantize is not None:
        return _quantized_run(rec, spec, clf, train, test, scores, fit_seconds, predict_seconds, source,
                              models_dir=models_dir, onnx_dir=onnx_dir, seed=seed, chunk=chunk,
                              latency_seconds=latency_seconds,
                              progress=progress)
    rec.update(record_metrics(test.target, scores, test.target_names))
    rec["score_kind"] = kind
    rec["fit_seconds"] = fit_seconds
    rec["predict_seconds"] = predict_seconds
    rec["images_per_second"] = len(test) / predict_seconds if predict_seconds > 0 else None
    rec.update(store_model(clf, "cnn", spec, train, models_dir))
    if latency_seconds is not None:
        with progress.stage(spec.name, f"latency of one image on {thread_counts()} threads"):
            rec.update(cnn_latency(clf, _latency_sample(test), seconds=latency_seconds))
    if onnx_dir is not None:
        path = Path(onnx_dir) / f"{_file_stem(spec)}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        with progress.stage(spec.name, f"ONNX export to {path}"):
            try:
                rec["onnx"] = _onnx_record(clf, path, test, scores, n_classes, chunk, latency_seconds)
            except Exception as exc:  # a network the exporter cannot take: the run's results stand
                rec["onnx"] = {"path": str(path), "error": f"{type(exc).__name__}: {exc}"}
                progress.line(f"{spec.name}: ONNX export failed: {rec['onnx']['error']}")
    return rec


def _quantized_run(rec: dict, spec: RunSpec, clf: Any, train: Split, test: Split, float_scores: np.ndarray,
                   fit_seconds: float, float_predict_seconds: float, source: dict, *, models_dir, onnx_dir, seed,
                   chunk, latency_seconds, progress: Progress) -> dict:
    """The int8 run of :func:`run_cnn`: quantize ``clf``, score the int8 model, record both."""
    import tempfile

    from bench.models_io import cnn_nbytes
    from cnn.export import OnnxPredictor
    from cnn.quantize import DEFAULT_CALIBRATION, quantize_classifier

    n_classes = len(train.target_names)
    y = np.asarray(test.target)
    sample = _latency_sample(test)
    float_bytes = Path(source["path"]).stat().st_size if source.get("path") else cnn_nbytes(clf)
    floatrec = {"top1": float(np.mean(float_scores.argmax(1) == y)), "model_bytes": float_bytes,
                "predict_seconds": float_predict_seconds}
    if latency_seconds is not None:
        floatrec.update(cnn_latency(clf, sample, seconds=latency_seconds))
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        folder = Path(models_dir or onnx_dir or tmp)
        path = folder / f"{_file_stem(spec)}.onnx"
        with progress.stage(spec.name, f"int8 quantization ({DEFAULT_CALIBRATION} calibration images)") as st:
            quantize_classifier(clf, path, train.images, n_calibration=DEFAULT_CALIBRATION, random_state=seed)
        pred = OnnxPredictor(path)
        scores, kind, predict_seconds = _score(pred, test, n_classes, chunk,
                                               progress.chunks(spec.name, "predict (int8)", len(test)))
        rec.update(record_metrics(test.target, scores, test.target_names))
        rec["score_kind"] = kind
        rec["fit_seconds"] = fit_seconds + st.seconds
        rec["predict_seconds"] = predict_seconds
        rec["images_per_second"] = len(test) / predict_seconds if predict_seconds > 0 else None
        rec["model_bytes"] = path.stat().st_size
        rec["timings"] = {"train_seconds": fit_seconds, "quantize_seconds": st.seconds}
        rec["quantization"] = pred.metadata_.get("quantization")
        rec["float"] = floatrec
        rec["float_model"] = source
        rec["agreement_with_float"] = float(np.mean(scores.argmax(1) == float_scores.argmax(1)))
        if latency_seconds is not None:
            rec.update(latency_record(None, sample, max_seconds=latency_seconds,
                                      predictor_for=lambda t: OnnxPredictor(path, threads=t).predict_proba))
            rec["latency_runtime"] = "onnxruntime (CPUExecutionProvider)"
        if models_dir is not None or onnx_dir is not None:
            write_sidecar(path, spec, train)
            rec["model_path"] = str(path)
    return rec


class _ProbaOnly:
    """View of a classifier exposing only ``predict_proba`` and ``classes_``."""

    def __init__(self, clf: Any) -> None:
        self.predict_proba = clf.predict_proba
        self.classes_ = getattr(clf, "classes_", None)
        if self.classes_ is None:
            del self.classes_
