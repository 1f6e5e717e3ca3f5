"""``python -m bench compare``: run classic presets and CNNs on one dataset, side by side.

Flow: check every requested name and the ``--out`` folder (fail fast, before loading data
or training), lock ``--out`` against a second compare, load the train and test splits
(optionally capped by ``--limit``, stratified and seeded; ``--splits K`` draws K random
per-class splits), then run each pipeline (built with the preset's settings for the
images, see :func:`classic_run`) and each CNN in turn, each in a process of its own
under a memory budget (:mod:`bench.isolation`), so a run that dies is recorded as failed
with its cause and the others go on. After every run ``report.json`` is rewritten
atomically together with ``report.md``, the figures and ``report.html``.

``report.json`` keeps every run it has ever finished in that folder: runs are merged by
name (re-running one replaces that run only, runs not asked for this time are kept), so
an interrupted or killed comparison never leaves fewer finished runs than there were;
re-running with the same ``--out`` and data options skips the runs already ``"ok"`` and
redoes failed or missing ones; ``--fresh`` starts the folder's report over.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache import FeatureCache, dataset_digest
from bench.environment import environment_info
from bench.handoff import load_split_sets as mapped_splits
from bench.handoff import save_split_sets
from bench.isolation import Outcome, default_memory_limit, format_bytes, headroom, parse_memory, run_isolated
from bench.progress import Progress
from bench.published import published_figure
from bench.report import write_reports
from bench.runners import LATENCY_SECONDS, float_spec, quantize_option, run_classic, run_cnn
from bench.specs import (
    DatasetError,
    RunSpec,
    Split,
    UsageError,
    check_names,
    classic_params,
    cnn_params,
    empty_record,
    is_lazy,
    model_names,
    parse_specs,
    preset_names,
    safe_name,
    sample_side_images,
    take,
)
from classicvision.datasets import dataset_root, load_dataset, split_per_class
from classicvision.features import resize_max_side
from classicvision.presets import SMALL_IMAGE_SIDE, median_image_side, preset_params, setting_for

__all__ = [
    "UsageError",
    "DatasetError",
    "parse_specs",
    "check_names",
    "stratified_subset",
    "default_dataset_root",
    "load_splits",
    "data_options",
    "classic_run",
    "run_compare",
    "default_runs",
    "OutputLock",
]

REPORT_SCHEMA_VERSION = 1

#: CNNClassifier parameters bench sets per dataset unless the run overrides them:
#: handwritten digits are not mirror-symmetric, so no flip augmentation / flip TTA.
CNN_DATASET_DEFAULTS: dict[str, dict[str, Any]] = {"digits": {"flip": False}}


# ----------------------------------------------------------------------------- data
def stratified_subset(y: np.ndarray, n: int, seed: int | None) -> np.ndarray:
    """Sorted indices of ``n`` samples with class proportions kept (each class's share
    rounded by interleaving), reproducible for a given ``seed``."""
    y = np.asarray(y)
    if n >= y.shape[0]:
        return np.arange(y.shape[0])
    rng = np.random.default_rng(seed)
    order = rng.permutation(y.shape[0])
    ys = y[order]
    # rank of each sample within its class (in the shuffled order), as a fraction of
    # the class size: taking the n smallest fractions keeps every class's share.
    _, inv, counts = np.unique(ys, return_inverse=True, return_counts=True)
    rank = np.empty_like(inv)
    sort = np.argsort(inv, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[sort] = np.arange(ys.shape[0]) - np.repeat(starts, counts)
    key = (rank + rng.random(ys.shape[0])) / counts[inv]
    chosen = order[np.argsort(key, kind="stable")[:n]]
    return np.sort(chosen)


def default_dataset_root(name: str) -> Path | None:
    """Where a named dataset is looked for when ``--root`` is not given:
    ``$CLASSICVISION_DATA`` if set (:func:`classicvision.datasets.dataset_root`), else
    the project's shared ``../shared/datasets`` folder next to the repository when it
    exists, else None (digits need no root, a folder needs ``--root``)."""
    if name in ("digits", "folder", "imagenet"):
        return None
    try:
        return dataset_root(name)
    except ValueError:  # no $CLASSICVISION_DATA
        shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
        return shared if shared.is_dir() else None


def data_options(args: Any) -> dict:
    """The options that define the data of a comparison (must match to resume)."""
    opts = {
        "dataset": args.dataset,
        "root": str(args.root) if args.root is not None else None,
        "limit": args.limit,
        "seed": args.seed,
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
    }
    splits = getattr(args, "splits", 1) or 1
    if splits != 1:  # absent for one split, so reports written before --splits still resume
        opts["splits"] = splits
    if getattr(args, "stream", False):  # likewise: absent unless streaming
        opts["stream"] = True
    return opts


def _to_split(b: Any, names: list[str] | None = None) -> Split:
    return Split(
        images=b.images,
        target=np.asarray(b.target, dtype=np.int64),
        target_names=[str(n) for n in (names or b.target_names)],
        filenames=list(b.filenames) if getattr(b, "filenames", None) is not None else None,
    )


def _dataset_root(args: Any) -> Path | None:
    root = dataset_root(args.dataset, args.root) if args.root is not None else default_dataset_root(args.dataset)
    if args.dataset == "folder" and root is None:
        raise DatasetError("--dataset folder needs --root PATH (an ImageFolder directory or .tar/.tar.gz)")
    if args.dataset == "imagenet" and root is None:
        raise DatasetError("--dataset imagenet needs --root DIR (the ImageNet layout: train/<wnid>/*.JPEG and val/)")
    if root is not None and not root.exists():
        raise DatasetError(f"dataset {args.dataset!r}: path not found: {root}")
    return root


def _load(args: Any, root: Path | None, split: str | None, **kw: Any) -> Any:
    if args.dataset != "digits":
        kw["root"] = root
        if getattr(args, "max_pixels", None) is not None:
            kw["max_pixels"] = args.max_pixels
        if getattr(args, "stream", False):  # the bundled digits are arrays already
            kw["lazy"] = True
    try:
        return load_dataset(args.dataset, split=split, **kw)
    except Exception as exc:
        where = f" from {root}" if root is not None else ""
        raise DatasetError(f"cannot load dataset {args.dataset!r}{where}: {type(exc).__name__}: {exc}") from exc


def _limit(split: Split, limit: int | None, seed: int | None) -> None:
    if limit is None:
        return
    idx = stratified_subset(split.target, limit, seed)
    split.images = take(split.images, idx)
    split.target = split.target[idx]
    if split.filenames is not None:
        split.filenames = [split.filenames[i] for i in idx]


def load_splits(args: Any) -> tuple[Split, Split, dict]:
    """Load train and test splits as the options say; returns ``(train, test, info)``.

    Raises :class:`DatasetError` (naming the dataset and path) when loading fails.
    """
    root = _dataset_root(args)
    kw: dict[str, Any] = {}
    if args.train_per_class is not None:
        kw["train_per_class"] = args.train_per_class
    if args.test_per_class is not None:
        kw["test_per_class"] = args.test_per_class
    if kw:
        kw["random_state"] = args.seed
    tr = _load(args, root, "train", **kw)
    te = _load(args, root, "test", **kw)
    if list(tr.target_names) != list(te.target_names):
        raise DatasetError(
            f"dataset {args.dataset!r}: train and test have different classes "
            f"({list(tr.target_names)} vs {list(te.target_names)})"
        )
    train, test = _to_split(tr), _to_split(te)
    for split in (train, test):
        _limit(split, args.limit, args.seed)
    return train, test, _info(args, root, train, test)


def _info(args: Any, root: Path | None, train: Split, test: Split) -> dict:
    return {
        "name": args.dataset,
        "n_train": len(train),
        "n_test": len(test),
        "classes": list(train.target_names),
        "root": str(root) if root is not None else None,
    }


def load_split_sets(args: Any) -> tuple[list[tuple[int, Split, Split]], dict]:
    """The ``(seed, train, test)`` splits a comparison runs on, and the dataset info.

    One split (``--splits 1``, the default): :func:`load_splits`. ``--splits K``: the
    whole dataset is loaded once and K random per-class splits are drawn from it
    (:func:`classicvision.datasets.split_per_class` with seeds ``seed`` ...
    ``seed + K - 1``: ``--train-per-class`` images of each class for training, up to
    ``--test-per-class`` of the rest for testing), the protocol of the 15-Scene and
    Caltech-101 papers. The splits' images are views of the one decoded copy.

    Raises
    ------
    UsageError
        ``--splits`` above 1 without ``--train-per-class``.
    DatasetError
        The dataset could not be loaded, or a class cannot be split as asked.
    """
    k = int(getattr(args, "splits", 1) or 1)
    if k == 1:
        train, test, info = load_splits(args)
        return [(args.seed, train, test)], info
    if args.train_per_class is None:
        raise UsageError(f"--splits {k} draws random per-class splits: it needs --train-per-class N "
                         "(and --test-per-class M for up to M test images per class)")
    root = _dataset_root(args)
    pool = _to_split(_load(args, root, None))
    sets = []
    for i in range(k):
        seed = args.seed + i
        try:
            tr_idx, te_idx = split_per_class(pool.target, args.train_per_class, args.test_per_class,
                                             random_state=seed, target_names=pool.target_names)
        except ValueError as exc:
            raise DatasetError(f"dataset {args.dataset!r}{f' from {root}' if root else ''}: {exc}") from exc
        parts = []
        for idx in (tr_idx, te_idx):
            part = Split(take(pool.images, idx), pool.target[idx], pool.target_names,
                         [pool.filenames[j] for j in idx] if pool.filenames is not None else None)
            _limit(part, args.limit, seed)
            parts.append(part)
        sets.append((seed, parts[0], parts[1]))
    info = _info(args, root, sets[0][1], sets[0][2])
    info["splits"] = k
    return sets, info


# ----------------------------------------------------------------------------- defaults
def _pretrained_available(model: str) -> bool:
    """Whether torchvision's ImageNet weights of ``model`` are in the torch hub cache."""
    try:  # torch only when the defaults are chosen for a folder of photos
        import torch
        import torchvision.models as tvm

        weights = tvm.get_model_weights(model).DEFAULT
        name = os.path.basename(weights.url)
        return (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()
    except Exception:  # no such model in torchvision, or no weights API: not available
        return False


def default_runs(dataset: str, train: Split) -> tuple[str, str, str]:
    """The ``--pipelines`` and ``--cnn`` a comparison runs when none are given, and why.

    Digits keep ``hog_svm`` against ``small_convnet`` (seconds). Other datasets get the
    strongest classic preset that costs about a minute per thousand images on 2 cores
    (measured on 15-Scene, BENCHMARKS.md): ``fisher`` on photos; on small images
    (median side <= ``classicvision.presets.SMALL_IMAGE_SIDE`` px) ``coates_soft_threshold``, the strongest
    preset on CIFAR-10. The CNN is one sized for the images: ``resnet20`` (32 px) on small
    images, ``small_convnet`` (its input capped at 64 px) on photos, plus an ImageNet
    ``resnet18`` fine-tuned when its torchvision weights are in the torch hub cache.

    Returns
    -------
    pipelines, cnn, why : str
    """
    if dataset == "digits":
        return "hog_svm", "small_convnet", "digits: hog_svm against small_convnet (the quick demo)"
    side = median_image_side(train.images)
    if side <= SMALL_IMAGE_SIDE:
        return ("coates_soft_threshold", "resnet20",
                f"small images (median side {side:.0f} px <= {SMALL_IMAGE_SIDE}): coates_soft_threshold, the "
                "strongest classic preset on CIFAR-10, against resnet20, the CIFAR ResNet")
    cnn, why_cnn = "small_convnet", "small_convnet (input capped at 64 px) from scratch"
    if _pretrained_available("resnet18"):
        cnn += ",resnet18:pretrained=imagenet"
        why_cnn += ", and resnet18 fine-tuned from the ImageNet weights found in the torch hub cache"
    else:
        why_cnn += " (ImageNet weights for resnet18 are not in the torch hub cache: no fine-tuned run)"
    return ("fisher", cnn,
            f"photos (median side {side:.0f} px): fisher (improved Fisher vectors, the strongest classic "
            f"preset at about a minute per thousand images on 2 cores) against {why_cnn}")


# ----------------------------------------------------------------------------- output folder
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_out_dir(dataset: str) -> Path:
    """``runs/<dataset>-<UTC timestamp>``."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{dataset}-{stamp}"


#: Free space an output folder must have before a comparison starts.
MIN_FREE_BYTES = 64 << 20


def check_out_dir(out: Path) -> None:
    """Refuse an ``--out`` that cannot take a report, before any data is loaded.

    Raises
    ------
    UsageError
        ``out`` is a file, cannot be created, is not writable, holds a ``report.json``
        that is not a file, or is on a disk with less than :data:`MIN_FREE_BYTES` free.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; choose another --out")
    report = out / "report.json"
    if report.exists() and not report.is_file():
        raise UsageError(f"{report} is not a file (a folder?); remove it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from exc
    probe = out / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise UsageError(f"--out {out}: the folder is not writable ({exc.strerror or exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise UsageError(f"--out {out}: only {format_bytes(free)} free on its disk; "
                         f"a comparison needs at least {format_bytes(MIN_FREE_BYTES)}")


class OutputLock:
    """An exclusive lock on an output folder (``OUT/.lock``, ``fcntl.flock``).

    The kernel drops the lock when its holder exits, however it ends, so a killed
    comparison never leaves a stale lock. A second ``compare`` on the same folder fails
    at once with :class:`UsageError`.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / ".lock"
        self._fh = None

    def __enter__(self) -> OutputLock:
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise UsageError(f"{self.path.parent} is in use by another compare (pid {holder}); "
                                 "wait for it to finish or choose another --out") from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.truncate(0)
            self._fh.close()  # closing releases the lock
            self._fh = None


def _load_previous(out: Path, options: Mapping[str, Any]) -> dict | None:
    path = out / "report.json"
    if not path.exists():
        return None
    try:
        prev = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} exists but is not a readable report ({exc}); "
                         "choose another --out, or --fresh to start over (the file is kept aside)") from exc
    if not isinstance(prev, dict) or not isinstance(prev.get("runs", []), list):
        raise UsageError(f"{path} is not a compare report (a JSON {type(prev).__name__}, not an object with "
                         "a 'runs' list); choose another --out, or --fresh to start over (the file is kept aside)")
    prev_opts = prev.get("options", {})
    diff = {k: (prev_opts.get(k), v) for k, v in options.items() if prev_opts.get(k) != v}
    if diff:
        desc = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
        raise UsageError(
            f"{out} already holds a report for other data options ({desc}); "
            "use another --out, the same options to resume, or --fresh to start over (the old report is kept aside)"
        )
    return prev


def _set_aside(out: Path, why: str, progress: Progress) -> None:
    """Rename ``OUT/report.json`` to ``OUT/report-<UTC time>.json`` (nothing is deleted)."""
    path = out / "report.json"
    if not path.is_file():
        return
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    aside = out / f"report-{stamp}.json"
    os.replace(path, aside)
    progress.line(f"{out}: {why}; the previous report is kept as {aside.name}")


# ----------------------------------------------------------------------------- runs
def classic_run(spec: RunSpec, seed: int | None, dataset: str,
                image_side: float | None = None) -> tuple[RunSpec, dict]:
    """The spec bench builds a classic run from, and the run record's ``params``.

    The spec asks ``make_preset`` for the settings that fit the images: the dataset's
    own when the preset has some for ``dataset``, else its small-image settings when the
    training images' median side ``image_side`` is small
    (:func:`classicvision.presets.setting_for`). An override ``NAME:dataset=...`` given
    on the command line wins; ``dataset=none`` gives the paper's defaults. ``params``
    adds to ``classic_params`` the ``preset_dataset`` whose settings apply (None when
    none do) and the ``effective`` builder parameters
    (:func:`classicvision.presets.preset_params`, without ``n_jobs`` and
    ``random_state``, which bench sets); they identify the run for resume, so runs
    recorded before a preset's settings changed are redone.
    """
    kwargs = dict(spec.overrides)
    forced = "dataset" in kwargs
    chosen = kwargs.pop("dataset", dataset)
    side = None if forced else image_side
    params = classic_params(spec, seed)
    try:
        params["preset_dataset"] = setting_for(spec.base, dataset=chosen, image_side=side)
        effective = preset_params(spec.base, dataset=chosen, image_side=side, **kwargs)
    except ValueError:  # an unknown override: the run fails with this error, recorded
        effective = None
    if effective is not None:
        effective = {k: v for k, v in effective.items() if k not in ("n_jobs", "random_state")}
    params["effective"] = effective
    build = {**kwargs, "dataset": chosen}
    if side is not None:
        build["image_side"] = side
    return RunSpec(spec.name, spec.track, spec.base, build), params


def _same_run(a: Mapping[str, Any], name: str, track: str, params: Mapping[str, Any]) -> bool:
    if a.get("name") != name or a.get("track") != track:
        return False
    p = dict(a.get("params") or {})
    p.pop("device", None)
    p.pop("device_used", None)
    q = json.loads(json.dumps(dict(params), default=str))
    return p == q


def _model_file_ok(rec: Mapping[str, Any]) -> bool:
    path = rec.get("model_path")
    return bool(path) and Path(path).is_file()


def _aggregate(records: Sequence[dict], seeds: Sequence[int]) -> dict:
    """One run record from the records of the same run on several splits.

    The metrics are the means over the splits (the confusion matrix is the sum);
    ``splits`` keeps each split's top-1 and mean per-class accuracy with their mean
    and sample standard deviation (``ddof=1``), as the papers report them.
    """
    rec = dict(records[0])
    k = len(records)
    split_info: dict[str, Any] = {"n": k, "seeds": list(seeds)}
    for key in ("top1", "mean_class_accuracy", "top5", "macro_f1"):
        vals = [r.get(key) for r in records]
        if any(v is None for v in vals):
            continue
        arr = np.asarray(vals, dtype=np.float64)
        rec[key] = float(arr.mean())
        if key in ("top1", "mean_class_accuracy"):
            split_info[key] = arr.tolist()
            split_info[f"{key}_mean"] = float(arr.mean())
            split_info[f"{key}_std"] = float(arr.std(ddof=1)) if k > 1 else 0.0
    for key in ("fit_seconds", "predict_seconds", "images_per_second"):
        vals = [r.get(key) for r in records]
        if all(v is not None for v in vals):
            rec[key] = float(np.mean(vals))
    if all(r.get("confusion") is not None for r in records):
        conf = np.sum([np.asarray(r["confusion"]) for r in records], axis=0)
        rec["confusion"] = conf.tolist()
    if all(r.get("per_class_recall") is not None for r in records):
        first = records[0]["per_class_recall"]
        if isinstance(first, dict):
            rec["per_class_recall"] = {c: float(np.mean([r["per_class_recall"][c] for r in records])) for c in first}
        else:
            rec["per_class_recall"] = np.mean([r["per_class_recall"] for r in records], axis=0).tolist()
    rec["cache_hit"] = all(r.get("cache_hit") for r in records) if "cache_hit" in rec else None
    if rec["cache_hit"] is None:
        rec.pop("cache_hit")
    rec["splits"] = split_info
    return rec


@contextlib.contextmanager
def _cluster(ctx: Mapping[str, Any], progress: Progress) -> Iterator[Any]:
    """The Dask client the classic runs' joblib work goes to (``--scheduler`` /
    ``--dask-workers``), or None: joblib as it is."""
    scheduler, workers = ctx.get("scheduler"), ctx.get("dask_workers")
    if scheduler is None and workers is None:
        yield None
        return
    from classicvision.utils.parallel import dask_backend

    with dask_backend(scheduler=scheduler, n_workers=workers) as client:
        cores = client.ncores()
        where = scheduler or f"a local cluster of {workers} worker processes"
        progress.line(f"dask: extraction and encoding run on {where} "
                      f"({len(cores)} workers, {sum(cores.values())} threads)")
        yield client


def run_job(job: Mapping[str, Any], stream: Any) -> dict:
    """One run on every split (in the run's own process, :mod:`bench.worker`); its record.

    ``job`` is what :func:`_execute` writes: ``spec``, ``build_spec``, ``splits`` (the
    index of :func:`bench.handoff.save_split_sets`), ``ctx`` (the runners' options) and
    ``progress`` (``quiet``, ``interval``, ``heartbeat``).
    """
    spec, build_spec, ctx = job["spec"], job["build_spec"], job["ctx"]
    opts = job["progress"]
    progress = Progress(None if opts["quiet"] else stream, interval=opts["interval"], heartbeat=opts["heartbeat"])
    sets = mapped_splits(job["splits"])
    records = []
    with _cluster(ctx, progress) if spec.track == "classic" else contextlib.nullcontext() as client:
        for i, (seed, train, test) in enumerate(sets):
            records.append(_run_split(spec, build_spec, ctx, progress, i, seed, train, test, len(sets), client))
    return records[0] if len(records) == 1 else _aggregate(records, [s for s, _, _ in sets])


def _run_split(spec: RunSpec, build_spec: RunSpec, ctx: Mapping[str, Any], progress: Progress, i: int,
               seed: int, train: Split, test: Split, n_sets: int, client: Any) -> dict:
    """One run on split ``i`` of ``n_sets``: its record (``client``: the Dask client, or None)."""
    if n_sets > 1:
        progress.line(f"{spec.name}: split {i + 1}/{n_sets} (seed {seed})")
    models_dir = ctx["models_dir"]
    if models_dir is not None and n_sets > 1:
        models_dir = models_dir / f"split{i}"
    latency = ctx.get("latency_seconds", LATENCY_SECONDS)
    if spec.track == "classic":
        stream_dir = ctx.get("stream_dir")
        if stream_dir is not None:
            stream_dir = stream_dir / safe_name(spec.name) / f"split{i}"
        rec = run_classic(build_spec, train, test, seed=seed, n_jobs=ctx["n_jobs"], cache=ctx["cache"],
                          data_identity=ctx["identities"][i], models_dir=models_dir, progress=progress,
                          latency_seconds=latency, stream_dir=stream_dir, on_cluster=client is not None)
        if client is not None:
            cores = client.ncores()
            rec["dask"] = {"scheduler": ctx.get("scheduler") or "local", "workers": len(cores),
                           "threads": sum(cores.values())}
        return rec
    # the classifier plans on top of what this process holds: hand it the headroom
    room = None if ctx["memory_limit"] is None else headroom(ctx["memory_limit"])
    onnx_dir = ctx.get("onnx_dir")
    if onnx_dir is not None and n_sets > 1:
        onnx_dir = onnx_dir / f"split{i}"
    return run_cnn(spec, train, test, seed=seed, epochs=ctx["epochs"], device=ctx["device"],
                   defaults=ctx["cnn_defaults"], models_dir=models_dir, progress=progress,
                   memory_limit=room, latency_seconds=latency, onnx_dir=onnx_dir,
                   float_model=ctx.get("float_model") if n_sets == 1 else None)


def _execute(spec: RunSpec, build_spec: RunSpec, params: dict, ctx: Mapping[str, Any], progress: Progress) -> dict:
    """Run one spec on every split in a process of its own; return its record."""
    job = {"spec": spec, "build_spec": build_spec, "splits": ctx["splits"], "environ": dict(os.environ),
           "ctx": {k: ctx.get(k) for k in ("n_jobs", "cache", "identities", "models_dir", "epochs", "device",
                                           "memory_limit", "cnn_defaults", "latency_seconds", "onnx_dir",
                                           "float_model", "stream_dir", "scheduler", "dask_workers")},
           "progress": {"quiet": progress.stream is None, "interval": progress.interval,
                        "heartbeat": progress.heartbeat}}
    # named, not imported: bench.worker imports this module (the runs' code), and torch
    outcome: Outcome = run_isolated("bench.worker:run_child", (job,), progress_stream=progress.stream,
                                    memory_limit=ctx["memory_limit"])
    if outcome.status == "interrupted":
        raise KeyboardInterrupt
    if outcome.status == "ok":
        rec = dict(outcome.value)
        if spec.track == "classic":
            rec["params"] = params
        rec["status"] = "ok"
    else:
        rec = empty_record(spec, params)
        rec["status"] = "failed"
        rec["error"] = outcome.error
        if outcome.cause:
            rec["cause"] = outcome.cause
        logs = ctx["out"] / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{safe_name(spec.name)}.log"
        log.write_text((outcome.traceback or "") + (f"\n{outcome.cause}\n" if outcome.cause else ""),
                       encoding="utf-8", errors="backslashreplace")
        rec["log"] = str(log)
    rec["max_rss_bytes"] = outcome.max_rss_bytes
    return rec


def _needed_size(spec: RunSpec, params: Mapping[str, Any]) -> tuple[str, int] | None:
    """What a run needs of an image: ``("long", n)``, its longer side up to ``n`` px
    (an extractor that downscales to ``max_size``), ``("short", n)``, its shorter side
    down to ``n`` px (a net stretched to ``n`` x ``n``, a fixed-size resize), or None:
    the image as it is."""
    if spec.track == "classic":
        eff = params.get("effective") or {}
        if "image_size" in eff and "max_size" not in eff:
            return ("short", int(eff["image_size"]))
        return ("long", int(eff["max_size"])) if eff.get("max_size") else None
    # torch only when a CNN run is planned: a classic-only comparison never imports it
    from cnn import get_model_config

    cfg = get_model_config(spec.base)
    size = spec.overrides.get("input_size") or cfg.get("input_size") or cfg.get("max_input_size")
    return ("short", int(size)) if size else None


def bound_images(splits: Sequence[Split], needs: Sequence[tuple[str, int] | None],
                 progress: Progress) -> tuple[int, int] | None:
    """Downscale, in place, the images larger than every run of the comparison needs.

    Each image keeps the largest size any run asks for (see :func:`_needed_size`), with
    area interpolation (:func:`classicvision.features.resize_max_side`, the extractors'
    own): the run that needs the most gets what it would have taken from the full-size
    image, the others downscale further as they would have, so a folder of large photos
    is held once, as uint8, at the size of its largest use. Nothing is done when a run
    needs the full size. Arrays of equal-size images (CIFAR-10, digits) are left as they
    are; an image shared by several splits is downscaled once.

    Returns
    -------
    bound : (long, short) or None
        The bound applied (it belongs in the features cache key), None when no image
        was downscaled.
    """
    if not needs or any(n is None for n in needs):
        return None
    long_need = max((n for kind, n in needs if kind == "long"), default=0)
    short_need = max((n for kind, n in needs if kind == "short"), default=0)
    if any(is_lazy(split.images) for split in splits):
        return _bound_lazy(splits, long_need, short_need, progress)
    done: dict[int, np.ndarray] = {}
    for split in splits:
        if isinstance(split.images, np.ndarray):
            continue
        images = split.images
        for i, im in enumerate(images):
            if id(im) in done:
                images[i] = done[id(im)]
                continue
            h, w = np.shape(im)[:2]
            target = max(long_need, -(-short_need * max(h, w) // max(1, min(h, w))))
            if max(h, w) > target:
                done[id(im)] = images[i] = resize_max_side(np.asarray(im), target)
    if not done:
        return None
    sides = [f"{what} side {n} px" for what, n in (("longer", long_need), ("shorter", short_need)) if n]
    progress.line(f"dataset: {len(done)} images downscaled to the largest size a run needs "
                  f"({' and '.join(sides)} at least)")
    return long_need, short_need


def _bound_lazy(splits: Sequence[Split], long_need: int, short_need: int,
                progress: Progress) -> tuple[int, int] | None:
    """:func:`bound_images` for lazy sequences: each image is downscaled when it is
    decoded (``with_max_side``), to the longer side every run needs. Without the
    images' sizes, a shorter-side need (a net's input) cannot be turned into a longer
    side, so any such need leaves the images at full size (the runs resize them)."""
    if short_need or not long_need:
        return None
    for split in splits:
        if is_lazy(split.images):
            split.images = split.images.with_max_side(long_need)
    progress.line(f"dataset: images downscaled when decoded to the largest size a run needs "
                  f"(longer side {long_need} px at most)")
    return long_need, 0


def _n_jobs(args: Any) -> int | None:
    """The classic pipelines' ``n_jobs``: ``--n-jobs``; on Dask, -1 unless given (joblib
    sends the work of ``n_jobs`` other than None and 1 to the cluster's threads)."""
    if getattr(args, "scheduler", None) or getattr(args, "dask_workers", None):
        if args.n_jobs == 1:
            raise UsageError("--n-jobs 1 keeps the classic features in the run's process; with --scheduler or "
                             "--dask-workers leave --n-jobs out (the cluster's threads are used)")
        return -1 if args.n_jobs is None else args.n_jobs
    return args.n_jobs


def _requested(args: Any) -> tuple[list[RunSpec] | None, list[RunSpec] | None]:
    """Parse and check ``--pipelines`` / ``--cnn``; None where the default is to be chosen."""

    def parse(text: str | None, track: str, names) -> list[RunSpec] | None:
        if text is None:
            return None
        specs = parse_specs(text, track, all_names=names() if str(text).strip().lower() == "all" else ())
        if specs:
            check_names(specs, names(), "preset" if track == "classic" else "model")
        return specs

    classic = parse(args.pipelines, "classic", preset_names)
    cnns = parse(args.cnn, "cnn", model_names)
    if classic == [] and cnns == []:
        raise UsageError("nothing to run: --pipelines and --cnn are both empty/none")
    return classic, cnns


def _memory_limit(args: Any) -> int:
    text = getattr(args, "memory_limit", None)
    if text is None:
        return default_memory_limit()
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise UsageError(f"--memory-limit: {exc}") from exc


def _defaults(args: Any, classic, cnns, train: Split, progress: Progress) -> tuple[list, list]:
    """Fill in the runs not asked for (``None``) with :func:`default_runs`, saying which."""
    if classic is not None and cnns is not None:
        return classic, cnns
    pipelines, cnn, why = default_runs(args.dataset, train)
    if classic is None and cnns is None:
        progress.line(f"default runs: {why}")
    else:  # one side was asked for: only the other is chosen
        flag, names = ("--pipelines", pipelines) if classic is None else ("--cnn", cnn)
        progress.line(f"default {flag} {names} (for {why.split(':', 1)[0]})")
    return (parse_specs(pipelines, "classic") if classic is None else classic,
            parse_specs(cnn, "cnn") if cnns is None else cnns)


def _previous_runs(out: Path, options: Mapping[str, Any], fresh: bool, progress: Progress) -> dict | None:
    """The previous report of ``out`` to resume from (None with ``--fresh``, set aside)."""
    for stale in out.glob(".data-*"):  # left by a compare that was killed
        shutil.rmtree(stale, ignore_errors=True)
    if fresh:
        _set_aside(out, "--fresh", progress)
        return None
    return _load_previous(out, options)


def _kept_runs(prev: dict | None, info: Mapping[str, Any], out: Path, progress: Progress) -> list[dict]:
    """The runs of the previous report, if it was made on the same data; else none (set aside)."""
    if prev is None:
        return []
    data = prev.get("dataset", {})
    if data.get("digest") == info["digest"] and data.get("split_digests") == info.get("split_digests"):
        return [r for r in prev.get("runs", []) if isinstance(r, dict)]
    _set_aside(out, "the data changed since the previous report; redoing every run", progress)
    return []


def _identities(sets, digests: list[dict], options: Mapping[str, Any], bound) -> list[dict]:
    """What the features cache keys on, per split: the full-size images' digest, the split
    and the downscaling bound (the same files give other pixels under another bound)."""
    identities = []
    for (seed, _, _), digest in zip(sets, digests):
        identity = {k: v for k, v in options.items() if k not in ("root", "splits")}
        identity["digest"] = digest
        if len(sets) > 1:
            identity["seed"] = seed
        if bound is not None:
            identity["image_bound"] = list(bound)
        identities.append(identity)
    return identities


def run_compare(args: Any, *, command: str | None = None, progress: Progress | None = None) -> tuple[dict, int]:
    """Run the comparison described by parsed ``compare`` arguments.

    Returns
    -------
    report : dict
        The final report (also written to ``args.out``).
    exit_code : int
        0 when every run succeeded, 1 when some run failed (its record says why).

    Raises
    ------
    UsageError
        Unknown preset / model names, no run requested, an ``--out`` folder that cannot
        take a report, is in use by another compare, or holds a report for other data
        options.
    DatasetError
        The dataset could not be loaded.
    """
    progress = progress or Progress()
    if getattr(args, "robustness", False) and not args.save_models:
        raise UsageError("--robustness scores the saved models: add --save-models")
    if getattr(args, "robustness", False) and getattr(args, "stream", False):
        raise UsageError("--robustness disturbs test images held in memory: run it without --stream")
    if getattr(args, "scheduler", None) and getattr(args, "dask_workers", None):
        raise UsageError("--scheduler connects to a running Dask cluster and --dask-workers starts one: give one")
    _n_jobs(args)  # --n-jobs 1 with a cluster: refused before any data is read
    classic, cnns = _requested(args)
    out = Path(args.out) if args.out else default_out_dir(args.dataset)
    memory_limit = _memory_limit(args)
    check_out_dir(out)
    options = data_options(args)
    with OutputLock(out):
        prev = _previous_runs(out, options, bool(getattr(args, "fresh", False)), progress)
        with progress.stage("dataset", f"load {args.dataset!r}"):
            sets, info = load_split_sets(args)
        classic, cnns = _defaults(args, classic, cnns, sets[0][1], progress)
        cnns = _float_first(cnns)
        digests = [{"train": dataset_digest(tr.images, tr.target), "test": dataset_digest(te.images, te.target)}
                   for _, tr, te in sets]
        info["digest"] = digests[0]
        if len(sets) > 1:
            info["split_digests"] = digests
        info["median_side"] = image_side = median_image_side(sample_side_images(sets[0][1].images, args.seed))
        progress.line(f"dataset {args.dataset}: {info['n_train']} train, {info['n_test']} test, "
                      f"{len(info['classes'])} classes" + (f", {len(sets)} splits" if len(sets) > 1 else "")
                      + f"; output in {out}; memory limit per run {format_bytes(memory_limit)}")
        runs = _kept_runs(prev, info, out, progress)
        report: dict[str, Any] = {
            "schema_version": REPORT_SCHEMA_VERSION,
            "created": _now(),
            "command": command,
            "options": {**options, "epochs": args.epochs, "device": args.device, "n_jobs": args.n_jobs,
                        "cache": not args.no_cache, "save_models": bool(args.save_models),
                        "pipelines": ",".join(s.name for s in classic) or "none",
                        "cnn": ",".join(s.name for s in cnns) or "none",
                        "memory_limit_bytes": memory_limit, "latency": not getattr(args, "no_latency", False),
                        "export_onnx": bool(getattr(args, "export_onnx", False)),
                        "stream": bool(getattr(args, "stream", False)),
                        "scheduler": getattr(args, "scheduler", None),
                        "dask_workers": getattr(args, "dask_workers", None)},
            "dataset": info,
            "environment": environment_info(),
            "runs": runs,
        }
        if prev is not None and runs and prev.get("robustness"):  # kept until a run's model changes
            report["robustness"] = prev["robustness"]
        write_reports(report, out, figures=False)

        ctx = {
            "out": out, "n_jobs": _n_jobs(args), "cache": FeatureCache(enabled=not args.no_cache),
            "models_dir": out / "models" if args.save_models else None,
            "epochs": args.epochs, "device": args.device, "memory_limit": memory_limit,
            "cnn_defaults": dict(CNN_DATASET_DEFAULTS.get(args.dataset, {})), "sets": sets,
            "latency_seconds": None if getattr(args, "no_latency", False) else LATENCY_SECONDS,
            "onnx_dir": out / "models" if getattr(args, "export_onnx", False) else None,
            "stream_dir": out / "stores" if getattr(args, "stream", False) else None,
            "scheduler": getattr(args, "scheduler", None), "dask_workers": getattr(args, "dask_workers", None),
        }
        specs = classic + cnns
        planned = [classic_run(spec, args.seed, args.dataset, image_side) if spec.track == "classic"
                   else (spec, cnn_params(spec, args.seed, args.epochs, ctx["cnn_defaults"])) for spec in specs]
        bound = bound_images([part for _, tr, te in sets for part in (tr, te)],
                             [_needed_size(spec, params) for spec, (_, params) in zip(specs, planned)], progress)
        if bound is not None:
            info["image_bound"] = {"long": bound[0], "short": bound[1]}
        ctx["identities"] = _identities(sets, digests, options, bound)
        try:
            n_failed = _run_all(specs, planned, runs, report, ctx, progress, out, args)
        finally:
            if ctx.get("data_dir") is not None:
                shutil.rmtree(ctx["data_dir"], ignore_errors=True)
        asked = {s.name for s in specs}
        n_ok = sum(r.get("status") == "ok" for r in runs if r.get("name") in asked)
        progress.line(f"{n_ok}/{len(specs)} runs ok; report in {out / 'report.md'} and {out / 'report.html'}")
        report["out"] = str(out)
    return report, (1 if n_failed or n_ok < len(specs) else 0)


def _float_first(cnns: Sequence[RunSpec]) -> list[RunSpec]:
    """The CNN specs with the ``quantize=`` runs after the others (each after its float model's run)."""
    return sorted(cnns, key=lambda s: s.overrides.get("quantize") is not None)


def _float_sibling_model(spec: RunSpec, specs: Sequence[RunSpec], runs: Sequence[Mapping[str, Any]]) -> str | None:
    """For a ``quantize=`` run, the saved model file of its float run in this comparison, if any.

    The float run is the spec of the same model with the same overrides but ``quantize``;
    its model is reused only when its record is ``"ok"`` and its saved file (``--save-models``)
    exists, so the int8 run quantizes the very network the float run reports. Otherwise (no
    such run, models not saved, or a CNN spec the override check rejects) None: the int8 run
    trains its own float model.
    """
    if spec.track != "cnn":
        return None
    try:
        if quantize_option(spec) is None:
            return None
    except ValueError:
        return None
    want = float_spec(spec)
    for other in specs:
        if other.track == "cnn" and other.base == want.base and dict(other.overrides) == dict(want.overrides):
            rec = next((r for r in runs if r.get("name") == other.name), None)
            if rec is not None and rec.get("status") == "ok" and _model_file_ok(rec) \
                    and str(rec["model_path"]).endswith(".pt"):
                return str(rec["model_path"])
    return None


def _run_all(specs, planned, runs: list[dict], report: dict, ctx: dict, progress: Progress, out: Path,
             args: Any) -> int:
    """The run loop of :func:`run_compare`; returns the number of failed runs."""
    n_failed = 0
    for i, (spec, (build_spec, params)) in enumerate(zip(specs, planned), 1):
        done = next((r for r in runs if r.get("status") == "ok" and _same_run(r, spec.name, spec.track, params)),
                    None)
        if done is not None and ctx["models_dir"] is not None and not _model_file_ok(done):
            progress.line(f"[{i}/{len(specs)}] {spec.name}: its saved model {done.get('model_path')} is "
                          "missing; redoing the run")
            done = None
        if done is not None:
            progress.line(f"[{i}/{len(specs)}] {spec.name}: already done in {out}, skipping")
            continue
        progress.line(f"[{i}/{len(specs)}] {spec.name} ({spec.track}) ...")
        ctx["float_model"] = _float_sibling_model(spec, specs, runs)
        if ctx.get("splits") is None:  # the images on disk, once, for the runs to map
            ctx["data_dir"] = Path(tempfile.mkdtemp(prefix=".data-", dir=out))
            ctx["splits"] = save_split_sets(ctx["sets"], ctx["data_dir"])
        rec = _execute(spec, build_spec, params, ctx, progress)
        if rec["status"] == "ok":
            progress.line(f"[{i}/{len(specs)}] {spec.name}: top-1 {100 * rec['top1']:.2f}% "
                          f"(fit {rec['fit_seconds']:.1f}s, predict {rec['predict_seconds']:.1f}s, "
                          f"peak RSS {format_bytes(rec.get('max_rss_bytes'))})")
        else:
            n_failed += 1
            progress.line(f"[{i}/{len(specs)}] {spec.name}: FAILED: {rec['error']} (details in {rec['log']})")
        fig = published_figure(spec.base, spec.track, args.dataset)
        if fig:
            rec["published"] = fig
        pos = next((j for j, r in enumerate(runs) if r.get("name") == spec.name), None)
        if pos is None:
            runs.append(rec)
        else:
            runs[pos] = rec
        report.pop("robustness", None)  # scored on models this run has just replaced or added to
        write_reports(report, out)

    return n_failed
