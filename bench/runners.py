"""One benchmark run per track: fit on train, score on test, time both, size the model.

:func:`run_classic` runs a classicvision preset (a ``Pipeline`` whose first step,
``"features"``, maps images to a 2-D array) with the features step cached on disk
(:mod:`bench.cache`); :func:`run_cnn` runs a ``cnn.CNNClassifier``. Both return the run
record of the ``report.json`` contract (``name``, ``track``, ``params``, ``status``,
``error``, ``top1``, ``top5``, ``macro_f1``, ``per_class_recall``, ``confusion``,
``fit_seconds``, ``predict_seconds``, ``images_per_second``, ``model_bytes``) plus a few
extra keys (``timings``, ``cache_hit``, ``score_kind``, ``model_path``). They raise on
failure; :mod:`bench.compare` turns exceptions into ``status: "failed"`` records.

Progress goes to stderr, one line per stage update, with elapsed time and an ETA for
the chunked stages (feature extraction of train and test images, CNN prediction).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

import numpy as np

from bench.specs import RunSpec, Split, n_images, safe_name, take

__all__ = [
    "RunSpec",
    "Split",
    "Progress",
    "take",
    "n_images",
    "safe_name",
    "build_pipeline",
    "build_cnn",
    "run_classic",
    "run_cnn",
    "compute_scores",
    "empty_record",
]


def _fmt_seconds(s: float | None) -> str:
    if s is None or not np.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


_NO_ETA = "no ETA: this step reports no progress"


class Progress:
    """Stage progress lines on a stream (stderr by default).

    Parameters
    ----------
    stream : text stream or None
        Where lines go; ``None`` silences them.
    interval : float
        Minimum seconds between two lines of the same chunked stage (the last
        chunk is always reported).
    heartbeat : float
        Seconds between "still running" lines of stages that report no progress
        (fitting a codebook, an SVM); 0 disables them.
    """

    def __init__(self, stream: TextIO | None = sys.stderr, interval: float = 2.0, heartbeat: float = 30.0) -> None:
        self.stream = stream
        self.interval = interval
        self.heartbeat = heartbeat

    def line(self, text: str) -> None:
        if self.stream is not None:
            print(f"[bench] {text}", file=self.stream, flush=True)

    def stage(self, run: str, stage: str, *, eta_note: str = _NO_ETA) -> "_Stage":
        """Context manager printing the stage start and its elapsed time at the end.

        ``eta_note`` ends each heartbeat line (where the estimate of the time left is, if anywhere).
        """
        return _Stage(self, run, stage, eta_note)

    def chunks(self, run: str, stage: str, total: int) -> Callable[[int], None]:
        """Return ``update(done)``; each call prints ``done/total``, elapsed and ETA."""
        t0 = time.perf_counter()
        last = [-float("inf")]

        def update(done: int) -> None:
            el = time.perf_counter() - t0
            # at most one line every `interval` seconds, plus the final one
            if done < total and el - last[0] < self.interval:
                return
            last[0] = el
            eta = el / done * (total - done) if done else float("nan")
            pct = 100.0 * done / total if total else 100.0
            self.line(
                f"{run}: {stage} {done}/{total} ({pct:.0f}%) elapsed {_fmt_seconds(el)} "
                f"ETA {_fmt_seconds(eta)}"
            )

        return update


class _Stage:
    """A stage without progress callbacks: start line, a heartbeat line with the
    elapsed time every ``progress.heartbeat`` seconds (from a daemon thread), and the
    end line with the total time."""

    def __init__(self, progress: Progress, run: str, stage: str, eta_note: str) -> None:
        self.progress, self.run, self.stage, self.eta_note = progress, run, stage, eta_note
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while not self._stop.wait(self.progress.heartbeat):
            el = time.perf_counter() - self.t0
            self.progress.line(f"{self.run}: {self.stage} still running, elapsed {_fmt_seconds(el)} "
                               f"({self.eta_note})")

    def __enter__(self) -> "_Stage":
        self.t0 = time.perf_counter()
        self.progress.line(f"{self.run}: {self.stage} ...")
        if self.progress.stream is not None and self.progress.heartbeat:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        status = "done" if exc_type is None else f"failed ({exc_type.__name__})"
        self.progress.line(f"{self.run}: {self.stage} {status} in {_fmt_seconds(self.seconds)}")


@contextlib.contextmanager
def _solver_progress(final: Any, n_samples: int, progress: Progress):
    """While fitting ``final``, have it print its own progress lines (with an ETA) to
    the progress stream when it can: a :class:`~classicvision.kernels.LinearSVM`
    with its Newton solver. Yields the note the heartbeat lines should end with;
    the estimator's ``verbose`` is restored afterwards, so saved models stay quiet."""
    from classicvision.kernels import LinearSVM

    if (progress.stream is None or not isinstance(final, LinearSVM)
            or final.solver_for(n_samples) != "newton"):
        yield _NO_ETA
        return
    previous = final.verbose
    final.set_params(verbose=1)
    try:
        with contextlib.redirect_stdout(progress.stream):
            yield "ETA in the LinearSVM lines"
    finally:
        final.set_params(verbose=previous)


def _chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    chunk = max(1, int(chunk))
    return [(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def _map_chunks(
    fn: Callable[[Any], np.ndarray],
    images: Any,
    chunk: int,
    update: Callable[[int], None] | None,
) -> np.ndarray:
    """Apply ``fn`` to consecutive chunks of ``images`` and stack the results.

    The output array is allocated once from the first chunk's shape and dtype and
    filled in place, so peak memory is one copy of the result (plus one chunk), not
    two as with a final concatenation.
    """
    n = n_images(images)
    result = None
    for lo, hi in _chunk_bounds(n, chunk):
        out = fn(images[lo:hi])
        if hasattr(out, "toarray"):  # sparse feature matrices
            out = out.toarray()
        out = np.asarray(out)
        if out.shape[0] != hi - lo:
            raise ValueError(f"{getattr(fn, '__name__', fn)} returned {out.shape[0]} rows for {hi - lo} images")
        if result is None:
            result = np.empty((n,) + out.shape[1:], dtype=out.dtype)
        result[lo:hi] = out
        if update is not None:
            update(hi)
    if result is None:
        raise ValueError("no images to process")
    return result


def compute_scores(
    estimator: Any, X: Any, n_classes: int, *, chunk: int = 2048, update=None
) -> tuple[np.ndarray, str]:
    """Per-class scores of ``estimator`` on ``X``, as an ``(n, n_classes)`` array.

    Uses ``decision_function`` when the final estimator has it (its arg-max is the
    prediction of margin classifiers; Platt-scaled ``predict_proba`` of an SVC can
    disagree with ``predict``), else ``predict_proba``, else one-hot ``predict``.
    Columns follow the estimator's ``classes_`` and are scattered into the dataset's
    ``n_classes`` columns; classes never seen in training get the lowest score.

    Returns
    -------
    scores : (n, n_classes) ndarray of float64
    kind : {"decision_function", "predict_proba", "predict"}
    """
    if hasattr(estimator, "decision_function"):
        kind, fn = "decision_function", estimator.decision_function
    elif hasattr(estimator, "predict_proba"):
        kind, fn = "predict_proba", estimator.predict_proba
    else:
        kind, fn = "predict", estimator.predict
    raw = _map_chunks(fn, X, chunk, update).astype(np.float64, copy=False)
    classes = np.asarray(getattr(estimator, "classes_", np.arange(n_classes)))
    if kind == "predict":
        pred = raw.astype(np.int64).ravel()
        out = np.zeros((pred.shape[0], n_classes))
        out[np.arange(pred.shape[0]), pred] = 1.0
        return out, kind
    if raw.ndim == 1:  # binary decision_function: positive class score
        raw = np.stack([-raw, raw], axis=1)
    fill = 0.0 if kind == "predict_proba" else (raw.min() - 1.0 if raw.size else 0.0)
    out = np.full((raw.shape[0], n_classes), fill)
    out[:, classes.astype(np.int64)] = raw
    return out, kind


def _metrics(y_true: np.ndarray, scores: np.ndarray, target_names: list[str]) -> dict:
    from classicvision.metrics import classification_report

    rep = classification_report(y_true, scores, target_names=target_names)
    d = rep.to_dict()
    recall = d.get("per_class_recall", rep.per_class_recall)
    return {
        "top1": _num(rep.top1),
        "top5": _num(rep.top5),
        "macro_f1": _num(rep.macro_f1),
        "mean_class_accuracy": _num(rep.mean_class_accuracy),
        "per_class_recall": _tolist(recall),
        "confusion": _tolist(d.get("confusion", rep.confusion)),
    }


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def _tolist(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {str(k): _tolist(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_tolist(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


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


def _set_matching_params(est: Any, suffix: str, value: Any) -> None:
    """Set every (deep) parameter whose last component is ``suffix``."""
    keys = [k for k in est.get_params(deep=True) if k == suffix or k.endswith("__" + suffix)]
    if keys:
        est.set_params(**{k: value for k in keys})


def build_pipeline(spec: RunSpec, *, seed: int | None, n_jobs: int | None) -> Any:
    """``make_preset(spec.base, **overrides)`` with every ``random_state`` set to ``seed``
    and every ``n_jobs`` set to ``n_jobs`` (when given). Override keys containing
    ``__`` are step parameters and go through ``set_params`` instead."""
    from classicvision.augment import MirrorAugmented
    from classicvision.presets import make_preset

    kw = {k: v for k, v in spec.overrides.items() if "__" not in k}
    deep = {k: v for k, v in spec.overrides.items() if "__" in k}
    pipe = make_preset(spec.base, **kw)
    if seed is not None:
        _set_matching_params(pipe, "random_state", seed)
    if n_jobs is not None:
        _set_matching_params(pipe, "n_jobs", n_jobs)
    if deep:
        # step parameters name the pipeline's steps, also inside a MirrorAugmented wrapper
        (pipe.estimator if isinstance(pipe, MirrorAugmented) else pipe).set_params(**deep)
    return pipe


def _release_idle_workers() -> None:
    """Stop joblib's worker processes once the features are computed.

    joblib keeps its loky workers alive for 5 minutes after a parallel call, each
    holding the heap it grew while extracting (about 0.6 GB each on CIFAR-10), which
    would stay resident while the classifier trains. The next parallel call starts
    fresh workers.
    """
    try:
        from joblib.externals.loky import reusable_executor

        executor = getattr(reusable_executor, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)
    except Exception:  # a joblib without this layout: keep the workers, lose nothing else
        pass


def _with_mirrors(images: Any) -> Any:
    """The images followed by their left-right mirrors (an array stays an array)."""
    from classicvision.augment import mirror_images

    if isinstance(images, np.ndarray) and images.ndim >= 3 and images.dtype != object:
        return np.concatenate([images, images[:, :, ::-1]])
    return list(images) + mirror_images(images)


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


def classic_params(spec: RunSpec, seed: int | None) -> dict:
    """The ``params`` of a classic run record (what identifies it for resume)."""
    return {"preset": spec.base, "overrides": dict(spec.overrides), "random_state": seed}


def cnn_params(
    spec: RunSpec, seed: int | None, epochs: int | None, defaults: Mapping[str, Any] | None = None
) -> dict:
    """The ``params`` of a CNN run record (what identifies it for resume)."""
    return {"model": spec.base, "overrides": dict(spec.overrides), "random_state": seed, "epochs": epochs,
            "dataset_defaults": dict(defaults or {})}


def _write_sidecar(path: Path, spec: RunSpec, train: Split) -> None:
    """Describe a saved model for ``bench predict``: class names and input format."""
    shape = None
    if isinstance(train.images, np.ndarray):
        shape = list(train.images.shape[1:])
    else:
        shapes = {tuple(np.shape(im)) for im in train.images[:1000]}
        if len(shapes) == 1:
            shape = list(next(iter(shapes)))
    first = np.asarray(train.images[0])
    info = {
        "name": spec.name,
        "track": spec.track,
        "base": spec.base,
        "target_names": list(train.target_names),
        "color": bool(first.ndim == 3 and first.shape[-1] == 3),
        "image_shape": shape,
        "dtype": str(first.dtype),
        "max_value": int(np.iinfo(first.dtype).max) if np.issubdtype(first.dtype, np.integer) else 1,
    }
    path.with_suffix(".json").write_text(json.dumps(info, indent=1))


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
    """
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    import classicvision
    from classicvision.augment import MirrorAugmented

    progress = progress or Progress(None)
    rec = empty_record(spec, classic_params(spec, seed))
    n_classes = len(train.target_names)
    pipe = build_pipeline(spec, seed=seed, n_jobs=n_jobs)
    mirror = None
    if isinstance(pipe, MirrorAugmented):  # train on mirrors too, as the wrapper's fit does
        mirror, pipe = pipe, pipe.estimator
        rec["mirror"] = {"train": True, "test_time": bool(mirror.test_time)}
    rec["pipeline"] = [[name, type(step).__name__] for name, step in pipe.steps]
    timings: dict[str, float] = {}

    if pipe.steps[0][0] != "features":
        raise ValueError(
            f"preset {spec.base!r}: first pipeline step is {pipe.steps[0][0]!r}, expected 'features'"
        )
    features = pipe.steps[0][1]
    rest = Pipeline(pipe.steps[1:]) if len(pipe.steps) > 1 else None
    if rest is None:
        raise ValueError(f"preset {spec.base!r} has no classifier after the 'features' step")
    if "verbose" in features.get_params(deep=False) and progress.stream is not None:
        try:
            features.set_params(verbose=1)
        except (TypeError, ValueError):
            pass

    train_images, y_train, test_images = train.images, np.asarray(train.target), test.images
    if mirror is not None:
        train_images, y_train = _with_mirrors(train_images), np.concatenate([y_train, y_train])
        if mirror.test_time:
            test_images = _with_mirrors(test_images)
        data_identity = {**(data_identity or {}), "mirror": rec["mirror"]}
    ntr, nte = n_images(train_images), n_images(test_images)
    chunk_tr = chunk or max(64, -(-ntr // 20))
    chunk_te = chunk or max(64, -(-nte // 20))

    key = None
    hit = None
    if cache is not None and data_identity is not None:
        from bench.cache import features_step_signature

        key = cache.make_key(
            dataset=data_identity,
            step_signature=features_step_signature(features),
            version=getattr(classicvision, "__version__", "0"),
        )
        hit = cache.get(key)
        if hit is not None and hit["features_path"] is None and models_dir is not None:
            hit = None  # the fitted step is needed to save the model: recompute
    fitted_features = None
    if hit is not None and hit["features_path"] is not None:
        from bench.models_io import load_skops

        try:
            fitted_features = load_skops(hit["features_path"])
        except Exception as exc:  # unreadable / refused entry: recompute it
            progress.line(f"{spec.name}: cached features step unusable ({type(exc).__name__}: {exc}); recomputing")
            hit = None
    if hit is not None:
        progress.line(f"{spec.name}: features cache hit ({key[:12]}), skipping extraction")
        Xtr, Xte = hit["train"], hit["test"]
        timings["features_fit_seconds"] = float(hit["meta"]["features_fit_seconds"])
        timings["features_test_seconds"] = float(hit["meta"]["features_test_seconds"])
        rec["cache_hit"] = True
    else:
        t0 = time.perf_counter()
        with progress.stage(spec.name, f"fit features step on {ntr} train images"):
            features.fit(train_images, y_train)
        Xtr = _map_chunks(
            features.transform, train_images, chunk_tr,
            progress.chunks(spec.name, "features (train)", ntr),
        )
        timings["features_fit_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        Xte = _map_chunks(
            features.transform, test_images, chunk_te,
            progress.chunks(spec.name, "features (test)", nte),
        )
        timings["features_test_seconds"] = time.perf_counter() - t0
        fitted_features = features
        rec["cache_hit"] = False
        if cache is not None and key is not None:
            cache.put(
                key, train=Xtr, test=Xte, features_step=features,
                meta={**timings, "step": type(features).__name__, "preset": spec.base,
                      "n_train": ntr, "n_test": nte, "n_features": int(Xtr.shape[1])},
            )
    _release_idle_workers()
    Xtr = np.asarray(Xtr, dtype=np.float32)
    Xte = np.asarray(Xte, dtype=np.float32)
    rec["n_features"] = int(Xtr.shape[1])

    last, final = rest.steps[-1]
    with _solver_progress(final, Xtr.shape[0], progress) as eta_note, \
            progress.stage(spec.name, f"fit {last} on {Xtr.shape[0]}x{Xtr.shape[1]} features",
                           eta_note=eta_note) as st:
        rest.fit(Xtr, y_train)
    timings["classifier_fit_seconds"] = st.seconds
    t0 = time.perf_counter()
    scores, kind = compute_scores(
        rest, Xte, n_classes, chunk=chunk_te, update=progress.chunks(spec.name, f"predict ({last})", nte)
    )
    if mirror is not None and mirror.test_time:  # average the scores of each image and its mirror
        scores = 0.5 * (scores[: len(test)] + scores[len(test) :])
        nte = len(test)
    timings["classifier_predict_seconds"] = time.perf_counter() - t0
    rec.update(_metrics(test.target, scores, test.target_names))
    rec["score_kind"] = kind
    rec["fit_seconds"] = timings["features_fit_seconds"] + timings["classifier_fit_seconds"]
    rec["predict_seconds"] = timings["features_test_seconds"] + timings["classifier_predict_seconds"]
    rec["images_per_second"] = nte / rec["predict_seconds"] if rec["predict_seconds"] > 0 else None
    rec["timings"] = timings

    if fitted_features is not None:
        fitted = Pipeline([("features", fitted_features)] + list(rest.steps))
        if mirror is not None:
            wrapper = clone(mirror)
            wrapper.estimator_, wrapper.classes_ = fitted, fitted.classes_
            fitted = wrapper
        try:
            if models_dir is not None:
                from bench.models_io import save_model

                path = save_model(fitted, models_dir, safe_name(spec.name), "classic")
                _write_sidecar(path, spec, train)
                rec["model_path"] = str(path)
                rec["model_bytes"] = path.stat().st_size
            else:
                from bench.models_io import skops_nbytes

                rec["model_bytes"] = skops_nbytes(fitted)
        except Exception as exc:  # a step skops cannot serialize: sizes unknown
            rec["model_bytes_error"] = f"{type(exc).__name__}: {exc}"
    return rec


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
    rec.update(_metrics(test.target, scores, test.target_names))
    rec["score_kind"] = kind
    rec["fit_seconds"] = fit_seconds
    rec["predict_seconds"] = predict_seconds
    rec["images_per_second"] = nte / predict_seconds if predict_seconds > 0 else None
    resolved = getattr(clf, "device_", None)
    if resolved is not None:
        rec["params"]["device_used"] = str(resolved)
    if models_dir is not None:
        from bench.models_io import save_model

        path = save_model(clf, models_dir, safe_name(spec.name), "cnn")
        _write_sidecar(path, spec, train)
        rec["model_path"] = str(path)
        rec["model_bytes"] = path.stat().st_size
    else:
        from bench.models_io import cnn_nbytes

        rec["model_bytes"] = cnn_nbytes(clf)
    return rec


class _ProbaOnly:
    """View of a classifier exposing only ``predict_proba`` and ``classes_``."""

    def __init__(self, clf: Any) -> None:
        self.predict_proba = clf.predict_proba
        self.classes_ = getattr(clf, "classes_", None)
        if self.classes_ is None:
            del self.classes_
