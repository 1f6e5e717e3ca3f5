"""The out-of-core averaged-SGD linear SVM on CIFAR-10's ``coates_soft_threshold`` features.

Issue 14's ASGD figure: the features of the 50,000 CIFAR-10 training images and the
10,000 test images, as ``python -m bench compare --dataset cifar10 --pipelines
coates_soft_threshold --cnn none --n-jobs 2 --no-cache`` computes them (the preset's
``"cifar10"`` settings, seed 0, mirror-symmetric features, 12,800-D), are written to
:class:`~classicvision.store.FeatureStore` folders on disk; then the rest of the
pipeline (``ChunkedStandardScaler`` + a linear SVM with the preset's ``C``) is fitted
out of core by :func:`classicvision.store.fit_chunked` with
``LinearSVM(solver="asgd")`` (scikit-learn's ``SGDClassifier(average=True)``, chunk by
chunk, several passes), and scored on the test store chunk by chunk. The in-memory
Newton solver's figure on the same features is 78.62% top-1 (BENCHMARKS.md).

Stages (each skipped when its output is already there, so the script resumes):

1. ``extract``: fit the features step on the training images, write
   ``OUT/train-float32`` and ``OUT/test-float32`` chunk by chunk (a killed run
   restarted writes only the missing chunks), and a float16 copy of each
   (``OUT/*-float16``), converted chunk by chunk from the float32 store.
2. ``asgd``: for every setting asked (``--passes``, ``--loss``, ``--alpha-scale``,
   ``--dtype``), fit scaler + ASGD on the training store, report top-1 on the test
   store, the fit time and the time per pass. ``--cv K`` first scores the settings by
   K-fold cross-validation on the *training* store only (folds of random rows,
   the scaler refitted per fold) and then fits the best one on all of it.
3. ``newton`` (``--newton``): the in-memory Newton solver on the same features, for
   the reference figure on this machine (holds the 2.6 GB of features in memory).
4. ``newton-ooc``: the same Newton solver out of core (``LinearSVM(solver="newton")``
   through ``fit_chunked``: the scaler fitted chunk by chunk, then one pass over the
   store per conjugate-gradient step), for each ``--dtype``.

``--from-cache DIR`` replaces ``extract``'s feature computation by a ``bench`` features
cache entry of the same preset (``DIR`` holds its ``train.npy`` / ``test.npy``, as a
``compare`` run without ``--no-cache`` leaves them under ``~/.cache/classicvision/bench``),
copied into the stores chunk by chunk (the labels come from the dataset, in the order
``compare`` reads it).

Every line printed is also appended to ``OUT/results.jsonl``.

Usage::

    PYTHONPATH=. nice python scripts/asgd_cifar10.py --out /tmp/h2 --stage extract
    PYTHONPATH=. python scripts/asgd_cifar10.py --out /tmp/h2 --stage asgd --passes 5 10 --loss hinge
    PYTHONPATH=. python scripts/asgd_cifar10.py --out /tmp/h2 --stage asgd --cv 3 --passes 5 10 \
        --loss hinge squared_hinge

The machine this was measured on had 2 cores shared with other jobs; times are
wall-clock seconds under that load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "datasets", "cifar10.tar.gz")
PRESET = "coates_soft_threshold"


def log(out: str, **record) -> None:
    """Print one result line and append it to ``OUT/results.jsonl``."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    print(json.dumps(record), flush=True)
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")


def build_preset(n_jobs: int):
    """The preset as ``bench compare`` builds it on CIFAR-10 (seed 0): ``(features, rest)``."""
    from bench.compare import classic_run
    from bench.runners import _classic_parts, build_pipeline
    from bench.specs import RunSpec

    spec, _ = classic_run(RunSpec(PRESET, "classic", PRESET, {}), 0, "cifar10", image_side=32.0)
    mirror, features, rest = _classic_parts(spec, build_pipeline(spec, seed=0, n_jobs=n_jobs))
    if mirror is not None:
        raise RuntimeError(f"{PRESET}: expected mirror-symmetric features, got a MirrorAugmented wrapper")
    return features, rest


def load(split: str, data: str):
    from classicvision.datasets import load_dataset

    b = load_dataset("cifar10", root=data, split=split)
    return b.images, np.asarray(b.target, dtype=np.int64)


def write_store(out, name, features, images, chunk_rows):
    """Transform ``images`` into the float32 store ``OUT/<name>-float32``, resuming it."""
    from classicvision.store import FeatureStore

    path = os.path.join(out, f"{name}-float32")
    n = len(images)
    d = getattr(features, "n_features_out_", None)
    if not d:
        d = features.transform(images[:1]).shape[1]
    store = FeatureStore.create(path, n, d, chunk_rows=chunk_rows, attrs={"preset": PRESET, "split": name},
                                exist_ok=True)
    missing = store.missing_chunks()
    t0 = time.perf_counter()
    for j, (a, b) in enumerate(missing):
        store.write(a, features.transform(images[a:b]))
        if j % 5 == 0:
            el = time.perf_counter() - t0
            print(f"  {name}: chunk {j + 1}/{len(missing)} rows {a}..{b - 1}, {el:.0f}s, "
                  f"ETA {el / (j + 1) * (len(missing) - j - 1):.0f}s", flush=True)
    return store, len(missing), time.perf_counter() - t0


def to_float16(out, name):
    """Copy ``OUT/<name>-float32`` to ``OUT/<name>-float16`` chunk by chunk."""
    from classicvision.store import FeatureStore

    src = FeatureStore.open(os.path.join(out, f"{name}-float32"))
    dst = FeatureStore.create(os.path.join(out, f"{name}-float16"), *src.shape, dtype="float16",
                              chunk_rows=src.chunk_rows, attrs=src.attrs, exist_ok=True)
    for a, b in dst.missing_chunks():
        dst.write(a, src[a:b])
    return dst


def import_cache(args) -> None:
    """``extract`` from a features cache entry: its arrays copied into the stores chunk by chunk."""
    from classicvision.store import FeatureStore

    meta = json.load(open(os.path.join(args.from_cache, "meta.json")))
    if meta.get("preset") != PRESET:
        raise SystemExit(f"{args.from_cache} caches {meta.get('preset')!r}, not {PRESET!r}")
    for split in ("train", "test"):
        _, y = load(split, args.data)
        X = np.load(os.path.join(args.from_cache, f"{split}.npy"), mmap_mode="r")
        if len(X) != len(y):
            raise SystemExit(f"{split}.npy has {len(X)} rows for {len(y)} labels")
        np.save(os.path.join(args.out, f"{split}-labels.npy"), y)
        t0 = time.perf_counter()
        store = FeatureStore.create(os.path.join(args.out, f"{split}-float32"), *X.shape,
                                    chunk_rows=args.chunk_rows, attrs={"preset": PRESET, "split": split},
                                    exist_ok=True)
        for a, b in store.missing_chunks():
            store.write(a, X[a:b])
        log(args.out, stage="import", split=split, shape=list(X.shape), cache=args.from_cache,
            seconds=round(time.perf_counter() - t0, 1), features_fit_seconds=meta.get("features_fit_seconds"))
        t0 = time.perf_counter()
        to_float16(args.out, split)
        log(args.out, stage="float16 copy", split=split, seconds=round(time.perf_counter() - t0, 1))


def stage_extract(args):
    os.makedirs(args.out, exist_ok=True)
    if args.from_cache:
        return import_cache(args)
    step_file = os.path.join(args.out, "features.pkl")
    if os.path.exists(step_file):
        with open(step_file, "rb") as f:
            features = pickle.load(f)
        fit_s = None
    else:
        features, _ = build_preset(args.n_jobs)
        images, y = load("train", args.data)
        t0 = time.perf_counter()
        features.fit(images, y)
        fit_s = time.perf_counter() - t0
        with open(step_file + ".tmp", "wb") as f:
            pickle.dump(features, f)
        os.replace(step_file + ".tmp", step_file)
    for split in ("train", "test"):
        images, y = load(split, args.data)
        np.save(os.path.join(args.out, f"{split}-labels.npy"), y)
        store, n_written, secs = write_store(args.out, split, features, images, args.chunk_rows)
        log(args.out, stage="extract", split=split, shape=list(store.shape), chunks_written=n_written,
            seconds=round(secs, 1), features_fit_seconds=None if fit_s is None else round(fit_s, 1))
        fit_s = None
        t0 = time.perf_counter()
        to_float16(args.out, split)
        log(args.out, stage="float16 copy", split=split, seconds=round(time.perf_counter() - t0, 1))


def _stores(out, dtype):
    from classicvision.store import FeatureStore

    tr = FeatureStore.open(os.path.join(out, f"train-{dtype}"))
    te = FeatureStore.open(os.path.join(out, f"test-{dtype}"))
    for s in (tr, te):
        if not s.complete:
            raise SystemExit(f"{s.path} is not complete: run --stage extract first")
    return tr, te, np.load(os.path.join(out, "train-labels.npy")), np.load(os.path.join(out, "test-labels.npy"))


def make_rest(C, passes, loss, alpha_scale, seed, n_threads=None, solver="asgd"):
    """``ChunkedStandardScaler`` + ``LinearSVM(solver="asgd")`` (or ``"minibatch-asgd"``) with the
    preset's C."""
    from sklearn.pipeline import Pipeline

    from classicvision.kernels import LinearSVM
    from classicvision.preprocessing import ChunkedStandardScaler

    svm = LinearSVM(C=C / alpha_scale, solver=solver, loss=loss, n_passes=passes, random_state=seed,
                    n_threads=n_threads)
    return Pipeline([("scale", ChunkedStandardScaler(copy=False)), ("svm", svm)])


def stage_asgd(args):
    from classicvision.store import fit_chunked, predict_chunked

    _, rest = build_preset(1)
    C = float(rest.steps[-1][1].C)
    grid = list(itertools.product(args.dtype, args.passes, args.loss, args.alpha_scale))
    if args.cv:
        tr, _, ytr, _ = _stores(args.out, args.dtype[0])
        scores = {}
        # folds of rows drawn at random (CIFAR-10's training set is stored in class order)
        folds = np.array_split(np.random.RandomState(0).permutation(len(tr)), args.cv)
        for dtype, passes, loss, scale in grid:
            tr, _, ytr, _ = _stores(args.out, dtype)
            accs = []
            for k, held in enumerate(folds):
                held_rows = np.sort(held)
                mask = np.ones(len(tr), bool)
                mask[held_rows] = False
                rest_k = make_rest(C, passes, loss, scale, args.seed, solver=args.solver)
                fit_chunked(rest_k, tr, ytr, rows=np.flatnonzero(mask), random_state=args.seed)
                pred = predict_chunked(rest_k, tr, rows=held_rows)
                accs.append(float(np.mean(pred == ytr[held_rows])))
            scores[(dtype, passes, loss, scale)] = float(np.mean(accs))
            log(args.out, stage="asgd cv", dtype=dtype, passes=passes, loss=loss, C=C / scale,
                folds=args.cv, cv_top1=round(100 * np.mean(accs), 2), fold_top1=[round(100 * a, 2) for a in accs])
        grid = [max(scores, key=scores.get)]
    for dtype, passes, loss, scale in grid:
        tr, te, ytr, yte = _stores(args.out, dtype)
        rest = make_rest(C, passes, loss, scale, args.seed, n_threads=args.n_jobs, solver=args.solver)
        t0 = time.perf_counter()
        fit_chunked(rest, tr, ytr, random_state=args.seed)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = predict_chunked(rest, te)
        pred_s = time.perf_counter() - t0
        svm = rest.steps[-1][1]
        log(args.out, stage="asgd", solver=args.solver, dtype=dtype, passes=passes, loss=loss, C=C / scale,
            top1=round(100 * float(np.mean(pred == yte)), 2), fit_seconds=round(fit_s, 1),
            seconds_per_pass=[round(s, 1) for s in svm.pass_seconds_], predict_seconds=round(pred_s, 1),
            n_train=len(tr), n_features=tr.shape[1])


def stage_newton(args):
    _, rest = build_preset(1)
    tr, te, ytr, yte = _stores(args.out, "float32")
    X = tr.to_array()
    t0 = time.perf_counter()
    rest.fit(X, ytr)
    fit_s = time.perf_counter() - t0
    del X
    from classicvision.store import predict_chunked

    pred = predict_chunked(rest, te)
    log(args.out, stage="newton", top1=round(100 * float(np.mean(pred == yte)), 2), fit_seconds=round(fit_s, 1),
        solver=rest.steps[-1][1].solver_)


def stage_newton_ooc(args):
    """The exact Newton solver reading the store block by block (scaler + LinearSVM(solver="newton"))."""
    from sklearn.base import clone

    from classicvision.store import fit_chunked, predict_chunked

    _, rest = build_preset(1)
    C = float(rest.steps[-1][1].C)
    for dtype in args.dtype:
        tr, te, ytr, yte = _stores(args.out, dtype)
        pipe = clone(rest)  # the preset's steps after the features, its SVM made to read the store
        pipe.steps[-1][1].set_params(solver="newton", verbose=1)
        t0 = time.perf_counter()
        fit_chunked(pipe, tr, ytr, block_rows=args.block_rows)
        fit_s = time.perf_counter() - t0
        pred = predict_chunked(pipe, te)
        svm = pipe.steps[-1][1]
        log(args.out, stage="newton-ooc", dtype=dtype, C=C, top1=round(100 * float(np.mean(pred == yte)), 2),
            fit_seconds=round(fit_s, 1), newton_iterations=int(svm.n_iter_), cg_steps=int(svm.n_cg_iter_),
            preconditioner=svm.preconditioner_, block_rows=args.block_rows, n_train=len(tr),
            n_features=tr.shape[1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/h2", help="folder of the stores and results.jsonl (default /tmp/h2)")
    p.add_argument("--data", default=DEFAULT_DATA, help="the CIFAR-10 archive")
    p.add_argument("--stage", choices=["extract", "asgd", "newton", "newton-ooc", "all"], default="all")
    p.add_argument("--from-cache", default=None, metavar="DIR",
                   help="extract: copy the features of this bench cache entry instead of computing them")
    p.add_argument("--block-rows", type=int, default=4096, help="newton-ooc: rows per read (default 4096)")
    p.add_argument("--n-jobs", type=int, default=2,
                   help="joblib jobs of the features step, threads of ASGD's one-vs-rest classes (default 2)")
    p.add_argument("--chunk-rows", type=int, default=1024, help="rows per store chunk (default 1024)")
    p.add_argument("--passes", type=int, nargs="+", default=[10], help="ASGD passes (default 10)")
    p.add_argument("--loss", nargs="+", default=["hinge"], choices=["hinge", "squared_hinge"])
    p.add_argument("--alpha-scale", type=float, nargs="+", default=[1.0],
                   help="divide the preset's C by these (a larger regularization; default 1)")
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float16"])
    p.add_argument("--solver", default="asgd", choices=["asgd", "minibatch-asgd"],
                   help="asgd: LinearSVM's ASGD solver (solver='asgd': SGDClassifier, or 'minibatch-asgd')")
    p.add_argument("--cv", type=int, default=0, help="K-fold CV on the training store to pick the setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--newton", action="store_true", help="with --stage all: the Newton reference too")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.stage in ("extract", "all"):
        stage_extract(args)
    if args.stage in ("asgd", "all"):
        stage_asgd(args)
    if args.stage == "newton" or (args.stage == "all" and args.newton):
        stage_newton(args)
    if args.stage == "newton-ooc":
        stage_newton_ooc(args)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
