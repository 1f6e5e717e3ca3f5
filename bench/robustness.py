"""``python -m bench robustness RUN_DIR``: the saved models of a run, on disturbed test images.

For a folder written by ``python -m bench compare --save-models``, every saved model
(:func:`bench.models_io.load_model`: classic pipelines through the skops allowlist, CNNs
through ``CNNClassifier.load``, the ``.onnx`` of ``quantize=int8`` runs through ONNX
Runtime) is scored on the run's own test set, reloaded as
``compare`` loaded it (the dataset, split, seed and ``--limit`` recorded in
``report.json``, with :func:`bench.compare.load_split_sets`; its digest is checked
against the report's), and on disturbed copies of it: every disturbance of
:mod:`classicvision.disturbances` (illumination, occlusion, viewpoint, blur, noise,
JPEG) at every severity, drawn with ``--seed`` (the same images for every model).
Images that ``compare`` downscaled (photos, to the largest size a run needs; the
report's ``dataset.image_bound``) are downscaled the same way before they are
disturbed, and the folder's ``compare`` lock is held meanwhile.

The section (:func:`run_robustness`) records, per run, the clean accuracy on the
evaluated images, the accuracy per disturbance and severity, the mean accuracy over
the disturbances (mean over disturbances of their mean over severities, CIFAR-10-C's
"corruption accuracy") and its drop from clean; it is stored in ``report.json`` under
``"robustness"`` (the rest of the report kept) with the figure ``robustness.png``
beside it (accuracy against severity, one panel per disturbance, every run on the
same axes: classic runs solid, CNNs dashed). A run whose model is missing, cannot
be loaded or fails to predict is recorded as failed with its reason, and the others
go on. :func:`render_markdown` and :func:`render_html` give the tables and the figure
for ``report.md`` / ``report.html``.

Cost: every model predicts ``n_test x (1 + disturbances x severities)`` images (51
times the test set with the defaults); ``--limit N`` evaluates a stratified subset
of ``N`` test images (default 1000, ``--limit all`` for the whole test set).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import html
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.cli import positive_int
from bench.specs import DatasetError, Split, UsageError, safe_name, take
from classicvision.disturbances import DISTURBANCES, SEVERITIES, disturb_batch, disturbance_params

# bench.compare, bench.models_io, bench.cache, bench.scoring, bench.progress and bench.report
# are imported where they are used: ``python -m bench`` builds this command's parser
# (add_parser) on every call, and those modules take seconds to import (scikit-learn,
# skops, the extractors); the command line stays quick.
if TYPE_CHECKING:
    from bench.progress import Progress

__all__ = ["FIGURE", "DEFAULT_LIMIT", "add_parser", "cmd", "run_robustness", "plot_robustness",
           "render_markdown", "render_html"]

#: File name of the figure, beside ``report.json``.
FIGURE = "robustness.png"
#: Test images evaluated when ``--limit`` is not given (stratified subset).
DEFAULT_LIMIT = 1000
#: Disturbed images scored in one call per model, at most (bytes of uint8 pixels).
GROUP_BYTES = 64 << 20
_SUFFIX = {"classic": ".skops", "cnn": ".pt"}


# ----------------------------------------------------------------------------- command line
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated severities such as 1,3,5, got {text!r}") from None
    bad = [v for v in values if v not in SEVERITIES]
    if bad or not values:
        raise argparse.ArgumentTypeError(
            f"severities must be among {','.join(map(str, SEVERITIES))}, got {text!r}")
    return sorted(set(values))


def _names(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if names == ["all"]:
        return list(DISTURBANCES)
    bad = [n for n in names if n not in DISTURBANCES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown disturbance(s) {', '.join(bad) or repr(text)}; valid: {', '.join(DISTURBANCES)} (or all)")
    return list(dict.fromkeys(names))


def _limit(text: str) -> int | None:
    """``--limit``: a positive number of images, or ``all`` (None)."""
    return None if text.strip().lower() == "all" else positive_int(text)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``robustness RUN_DIR [--seed S] [--severities 1,2,3,4,5] [--disturbances ...]
    [--limit N] [--device D] [--quiet]`` on ``subparsers`` (``add_subparsers()``'s result).

    Returns
    -------
    parser : argparse.ArgumentParser
        The subcommand's parser; :func:`cmd` runs its parsed arguments.
    """
    p = subparsers.add_parser(
        "robustness", help="accuracy of a run's saved models on disturbed test images",
        description="Score every model saved by 'compare --save-models' in RUN_DIR on disturbed copies of the "
                    "run's test set (CIFAR-10-C style: illumination, occlusion, viewpoint, blur, noise, JPEG; "
                    "five severities) and add a robustness section and robustness.png to the report.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a compare --out folder with models/ (compare --save-models)")
    p.add_argument("--seed", type=int, default=0, help="seed of the disturbances and of the --limit subset "
                                                       "(default: 0)")
    p.add_argument("--severities", type=_int_list, default=list(SEVERITIES), metavar="LIST",
                   help="severities to run, comma separated (default: 1,2,3,4,5)")
    p.add_argument("--disturbances", type=_names, default=list(DISTURBANCES), metavar="NAMES",
                   help=f"disturbances, comma separated (default: all: {','.join(DISTURBANCES)})")
    p.add_argument("--limit", type=_limit, default=DEFAULT_LIMIT, metavar="N",
                   help=f"test images evaluated, a stratified subset (default: {DEFAULT_LIMIT}; 'all': every one)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="CNN device (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def cmd(args: argparse.Namespace) -> int:
    """Run ``robustness`` from its parsed arguments; print the summary table.

    Returns
    -------
    exit_code : int
        0 when every run was evaluated, 1 when some run failed (the section says why),
        2 when the folder or its data cannot be used (the message says why).
    """
    from bench.progress import Progress
    from bench.report import md_table

    progress = Progress(None if args.quiet else sys.stderr)
    command = "python -m bench robustness " + " ".join(
        [str(args.run_dir), "--seed", str(args.seed), "--severities", ",".join(map(str, args.severities)),
         "--disturbances", ",".join(args.disturbances), "--limit", str(args.limit or "all")])
    try:
        section = run_robustness(args.run_dir, seed=args.seed, severities=args.severities,
                                 disturbances=args.disturbances, limit=args.limit, device=args.device,
                                 progress=progress, command=command)
    except (UsageError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(md_table(_summary_rows(section)))
    print(f"robustness section in {Path(args.run_dir) / 'report.json'}; figure {Path(args.run_dir) / FIGURE}")
    return 1 if any(r["status"] != "ok" for r in section["runs"]) else 0


# ----------------------------------------------------------------------------- data and models
def _data_args(report: Mapping[str, Any]) -> argparse.Namespace:
    """The ``compare`` data options of a report, as :func:`bench.compare.load_split_sets` takes them."""
    opts = report.get("options") or {}
    if not opts.get("dataset"):
        raise UsageError("the report has no options.dataset: not written by 'python -m bench compare'")
    return argparse.Namespace(
        dataset=opts["dataset"], root=opts.get("root"), limit=opts.get("limit"), seed=opts.get("seed"),
        train_per_class=opts.get("train_per_class"), test_per_class=opts.get("test_per_class"),
        splits=opts.get("splits", 1) or 1, max_pixels=None)


def _test_sets(report: Mapping[str, Any], run_dir: Path, limit: int | None, seed: int,
               progress: Progress) -> list[Split]:
    """The run's test split(s), checked against the report's digest, downscaled as the runs
    saw them, and cut to a stratified ``limit``."""
    from bench.cache import dataset_digest
    from bench.compare import bound_images, load_split_sets, stratified_subset

    sets, _ = load_split_sets(_data_args(report))
    ds = report.get("dataset") or {}
    digests = ds.get("split_digests") or ([ds["digest"]] if ds.get("digest") else [])
    for i, (_, _, test) in enumerate(sets):
        want = digests[i]["test"] if i < len(digests) else None
        if want is not None and dataset_digest(test.images, test.target) != want:
            raise DatasetError(f"{run_dir / 'report.json'}: the test set loaded now (dataset "
                               f"{ds.get('name')!r}, split {i}) differs from the one the runs were scored on; "
                               "the dataset files changed since")
    bound = ds.get("image_bound")
    tests = [test for _, _, test in sets]
    if bound:
        bound_images(tests, [("long", int(bound["long"])), ("short", int(bound["short"]))], progress)
    out = []
    for test in tests:
        idx = stratified_subset(test.target, limit, seed) if limit is not None else np.arange(len(test))
        out.append(Split(take(test.images, idx), test.target[idx], test.target_names))
    return out


def _model_path(run_dir: Path, run: Mapping[str, Any], split: int, n_splits: int) -> Path:
    """Where the model of ``run`` for ``split`` is: ``RUN_DIR/models[/split<i>]/<name>.<ext>``,
    else (one split) the ``model_path`` recorded."""
    suffix = Path(str(run.get("model_path") or "")).suffix or _SUFFIX.get(str(run.get("track")), ".skops")
    folder = run_dir / "models" / (f"split{split}" if n_splits > 1 else "")
    path = folder / f"{safe_name(str(run.get('name')))}{suffix}"
    if not path.is_file() and n_splits == 1 and run.get("model_path"):
        return Path(str(run["model_path"]))
    return path


def _load_models(run: Mapping[str, Any], run_dir: Path, n_splits: int, device: str) -> list[Any]:
    from bench.models_io import load_model

    if run.get("status") != "ok":
        raise RuntimeError(f"the run itself did not succeed (status {run.get('status')!r}: {run.get('error')})")
    models = []
    for i in range(n_splits):
        path = _model_path(run_dir, run, i, n_splits)
        if not path.is_file():
            why = (f"compare could not save it: {run['model_bytes_error']}" if run.get("model_bytes_error")
                   else "run compare with --save-models")
            raise FileNotFoundError(f"no saved model at {path} ({why})")
        if path.suffix == ".pt" and device != "auto":
            from cnn import CNNClassifier  # torch, only for a CNN on a chosen device

            models.append(CNNClassifier.load(path, device=device))
        else:
            models.append(load_model(path)[0])
    return models


def _accuracy(model: Any, images: Any, target: np.ndarray, n_classes: int) -> float:
    from bench.scoring import compute_scores

    scores, _ = compute_scores(model, images, n_classes, chunk=4096)
    return float(np.mean(scores.argmax(axis=1) == target))


# ----------------------------------------------------------------------------- the evaluation
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _median_shape(images: Any) -> list[int]:
    shapes = np.array([np.shape(im)[:2] for im in images]) if len(images) else np.zeros((1, 2))
    return [int(v) for v in np.median(shapes, axis=0)]


def run_robustness(
    run_dir: str | os.PathLike,
    *,
    seed: int = 0,
    severities: Sequence[int] = SEVERITIES,
    disturbances: Sequence[str] | None = None,
    limit: int | None = DEFAULT_LIMIT,
    device: str = "auto",
    progress: Progress | None = None,
    command: str | None = None,
    lock: bool = True,
) -> dict:
    """Score every saved model of a ``compare`` folder on disturbed copies of its test set.

    Parameters
    ----------
    run_dir : path-like
        A ``compare --out`` folder whose runs were saved (``--save-models``).
    seed : int
        Seed of the disturbances (:func:`classicvision.disturbances.disturb_batch`)
        and of the stratified ``limit`` subset.
    severities : sequence of int
        Among 1..5.
    disturbances : sequence of str or None
        Keys of :data:`classicvision.disturbances.DISTURBANCES`; None: all of them.
    limit : int or None
        Test images evaluated (a stratified subset, per split); None: all.
    device : {"auto", "cpu", "cuda"}
        Where the CNNs predict.
    progress : bench.progress.Progress or None
    command : str or None
        The command line, recorded in the section.
    lock : bool
        Hold the folder's ``compare`` lock (:class:`bench.compare.OutputLock`) while
        evaluating and writing; False for a caller that already holds it.

    Returns
    -------
    section : dict
        ``seed``, ``severities``, ``disturbances`` (name -> description), ``params``
        (name -> the parameters per severity at the median test image size),
        ``n_test``, ``n_splits``, ``figure``, ``seconds`` and ``runs``: per run
        ``name``, ``track``, ``status`` ("ok" / "failed"), ``error``, ``clean``,
        ``accuracy`` (name -> one accuracy per severity), ``mean_by_disturbance``,
        ``mean`` (over disturbances), ``drop`` (``clean - mean``), ``seconds``.
        Also written to ``RUN_DIR/report.json`` as ``"robustness"`` (atomically; the
        other keys of the report are kept) with ``RUN_DIR/robustness.png``, and
        ``report.md`` / ``report.html`` are rewritten.

    Raises
    ------
    ValueError
        ``run_dir`` has no readable report (:func:`bench.report.load_report`), or an
        unknown disturbance / severity (the message lists the valid ones).
    UsageError
        Another ``compare`` holds the folder, or the report has no data options.
    DatasetError
        The dataset cannot be loaded or is not the one the runs were scored on.

    References
    ----------
    D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to Common
    Corruptions and Perturbations", ICLR 2019 (the protocol and the mean accuracy over
    corruptions).
    """
    from bench.compare import OutputLock
    from bench.progress import Progress
    from bench.report import load_report, write_json_atomic, write_reports

    run_dir = Path(run_dir)
    progress = progress or Progress(None)
    kinds = list(DISTURBANCES) if disturbances is None else list(dict.fromkeys(disturbances))
    bad = [k for k in kinds if k not in DISTURBANCES]
    if bad or not kinds:
        raise ValueError(f"unknown disturbance(s) {bad or kinds}; valid: {', '.join(DISTURBANCES)}")
    sevs = sorted(set(int(s) for s in severities))
    if not sevs or any(s not in SEVERITIES for s in sevs):
        raise ValueError(f"severities must be among {', '.join(map(str, SEVERITIES))}, got {list(severities)}")
    report = load_report(run_dir)
    with OutputLock(run_dir) if lock else contextlib.nullcontext():
        section = _evaluate(report, run_dir, kinds, sevs, seed, limit, device, progress)
        section["command"] = command
        plot_robustness(section, run_dir / FIGURE)
        current = load_report(run_dir)  # as it is now: nothing written since is lost
        current["robustness"] = section
        write_json_atomic(current, run_dir / "report.json")
        write_reports(current, run_dir, figures=False)
    return section


def _evaluate(report: Mapping[str, Any], run_dir: Path, kinds: list[str], sevs: list[int], seed: int,
              limit: int | None, device: str, progress: Progress) -> dict:
    t_start = time.perf_counter()
    with progress.stage("robustness", f"load the test set of {run_dir}"):
        tests = _test_sets(report, run_dir, limit, seed, progress)
    n_classes = len((report.get("dataset") or {}).get("classes") or tests[0].target_names)
    shape = _median_shape(tests[0].images)
    results: list[dict] = []
    loaded: list[tuple[dict, list[Any]]] = []
    for run in report.get("runs", []):
        res = {"name": run.get("name"), "track": run.get("track"), "status": "ok", "error": None,
               "clean": None, "accuracy": {}, "mean_by_disturbance": None, "mean": None, "drop": None,
               "seconds": 0.0}
        results.append(res)
        try:
            t0 = time.perf_counter()
            models = _load_models(run, run_dir, len(tests), device)
            res["clean"] = float(np.mean([_accuracy(m, t.images, t.target, n_classes)
                                          for m, t in zip(models, tests)]))
            res["seconds"] += time.perf_counter() - t0
        except Exception as exc:  # one run's model failing never stops the others
            _fail(res, exc, progress)
            continue
        res["accuracy"] = {k: [] for k in kinds}
        loaded.append((res, models))
        progress.line(f"robustness: {res['name']}: clean accuracy {100 * res['clean']:.2f}% "
                      f"on {sum(len(t) for t in tests)} test images")
    cells = [(kind, sev) for kind in kinds for sev in sevs]
    update = progress.chunks("robustness", f"{len(cells)} disturbed test sets x {len(loaded)} models", len(cells))
    pending: list[tuple[str, int, list[Any]]] = []
    for n, (kind, sev) in enumerate(cells, 1):
        pending.append((kind, sev, [disturb_batch(t.images, kind, sev, random_state=seed) for t in tests]))
        if n == len(cells) or sum(_nbytes(d) for _, _, sets in pending for d in sets) >= GROUP_BYTES:
            _score_group(pending, loaded, tests, n_classes, progress)
            pending = []
            update(n)
    for res, _ in loaded:
        if res["status"] == "ok":
            by_kind = {k: float(np.mean(v)) for k, v in res["accuracy"].items()}
            res["mean_by_disturbance"] = by_kind
            res["mean"] = float(np.mean(list(by_kind.values())))
            res["drop"] = res["clean"] - res["mean"]
    return {
        "created": _now(),
        "seed": seed,
        "severities": sevs,
        "disturbances": {k: DISTURBANCES[k] for k in kinds},
        "params": {k: [disturbance_params(k, s, shape) for s in sevs] for k in kinds},
        "image_shape": shape,
        "limit": limit,
        "n_test": sum(len(t) for t in tests),
        "n_splits": len(tests),
        "figure": FIGURE,
        "seconds": time.perf_counter() - t_start,
        "runs": results,
    }


def _nbytes(images: Any) -> int:
    return int(images.nbytes) if isinstance(images, np.ndarray) else sum(np.asarray(im).nbytes for im in images)


def _concat(parts: Sequence[Any]) -> Any:
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return [im for p in parts for im in p]


def _score_group(pending: Sequence[tuple[str, int, list[Any]]], loaded: Sequence[tuple[dict, list[Any]]],
                 tests: Sequence[Split], n_classes: int, progress: Progress) -> None:
    """Score every model on a group of disturbed test sets in one call per split (a call
    has a fixed cost: the kernel map's set-up, the CNN's batching) and record each set's
    accuracy."""
    from bench.scoring import compute_scores

    for res, models in loaded:
        if res["status"] != "ok":
            continue
        t0 = time.perf_counter()
        try:
            per_split = []
            for j, (model, test) in enumerate(zip(models, tests)):
                batch = _concat([sets[j] for _, _, sets in pending])
                scores, _ = compute_scores(model, batch, n_classes, chunk=4096)
                hits = (scores.argmax(axis=1) == np.tile(test.target, len(pending))).reshape(len(pending), -1)
                per_split.append(hits.mean(axis=1))
        except Exception as exc:
            names = ", ".join(f"{k} {s}" for k, s, _ in pending)
            _fail(res, exc, progress, f" (scoring the disturbed sets {names})")
            continue
        for (kind, _, _), acc in zip(pending, np.mean(per_split, axis=0)):
            res["accuracy"][kind].append(float(acc))
        res["seconds"] += time.perf_counter() - t0


def _fail(res: dict, exc: BaseException, progress: Progress, where: str = "") -> None:
    res.update(status="failed", error=f"{type(exc).__name__}: {exc}{where}", accuracy={},
               mean_by_disturbance=None, mean=None, drop=None)
    progress.line(f"robustness: {res['name']}: FAILED: {res['error']}")


# ----------------------------------------------------------------------------- figure
def plot_robustness(section: Mapping[str, Any], path: str | os.PathLike | None):
    """Accuracy against severity, one panel per disturbance, every successful run on the
    same axes (severity 0 is the clean accuracy); classic runs are solid lines with
    circles, CNNs dashed lines with squares, one colour per run.

    Parameters
    ----------
    section : dict
        As :func:`run_robustness` returns it.
    path : path-like or None
        Where to write the PNG (atomically); None draws the figure only.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    from bench.report import new_figure, save_figure

    kinds = list(section.get("disturbances") or {})
    sevs = list(section.get("severities") or [])
    runs = [r for r in section.get("runs", []) if r.get("status") == "ok"]
    ncols = min(5, max(1, len(kinds)))
    nrows = max(1, -(-len(kinds) // ncols))
    legend_rows = -(-len(runs) // 4)
    height = 2.8 * nrows + 0.6 + 0.25 * legend_rows
    fig = new_figure((3.2 * ncols, height))
    styles = {"classic": ("-", "o"), "cnn": ("--", "s")}
    handles = []
    for j, kind in enumerate(kinds):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        for i, r in enumerate(runs):
            line, marker = styles.get(str(r.get("track")), (":", "^"))
            ys = [100.0 * r["clean"]] + [100.0 * v for v in r["accuracy"].get(kind, [])]
            (h,) = ax.plot([0] + sevs[:len(ys) - 1], ys, linestyle=line, marker=marker, markersize=4,
                           color=f"C{i % 10}", label=f"{r.get('name')} ({r.get('track')})")
            if j == 0:
                handles.append(h)
        ax.set_title(kind, fontsize=10)
        ax.set_xticks([0] + sevs)
        ax.set_xticklabels(["clean"] + [str(s) for s in sevs], fontsize=8)
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        if j % ncols == 0:
            ax.set_ylabel("accuracy (%)")
        if j // ncols == nrows - 1:
            ax.set_xlabel("severity")
    if not runs:
        fig.text(0.5, 0.5, "no successful run", ha="center", va="center")
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(f"accuracy under disturbance ({section.get('n_test')} test images, seed {section.get('seed')}; "
                 "classic solid, CNN dashed)", fontsize=11, y=1 - 0.12 / height, va="top")
    fig.tight_layout(rect=(0, (0.15 + 0.25 * legend_rows) / height, 1, 1))  # makes room for the suptitle
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- tables
def _pct(v: Any, signed: bool = False) -> str:
    return "–" if v is None else format(100.0 * float(v), "+.2f" if signed else ".2f")


def _summary_rows(section: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for r in section.get("runs", []):
        ok = r.get("status") == "ok"
        worst = min(r["mean_by_disturbance"].items(), key=lambda kv: kv[1]) if ok and r.get(
            "mean_by_disturbance") else None
        rows.append({
            "run": str(r.get("name")), "track": str(r.get("track")), "status": str(r.get("status")),
            "clean %": _pct(r.get("clean")), "mean disturbed %": _pct(r.get("mean")),
            "drop (pts)": _pct(r.get("drop")),
            "worst disturbance": f"{worst[0]} ({_pct(worst[1])}%)" if worst else "–",
        })
    return rows


def _run_rows(section: Mapping[str, Any], run: Mapping[str, Any]) -> list[dict[str, str]]:
    sevs = list(section.get("severities") or [])
    rows = []
    for kind, accs in (run.get("accuracy") or {}).items():
        row = {"disturbance": kind}
        row.update({str(s): _pct(a) for s, a in zip(sevs, accs)})
        mean = (run.get("mean_by_disturbance") or {}).get(kind)
        row["mean"] = _pct(mean)
        row["drop (pts)"] = _pct(None if mean is None else run["clean"] - mean)
        rows.append(row)
    if rows:
        row = {"disturbance": "**mean over disturbances**"}
        row.update({str(s): _pct(np.mean([v[j] for v in run["accuracy"].values()])) for j, s in enumerate(sevs)})
        row["mean"] = _pct(run.get("mean"))
        row["drop (pts)"] = _pct(run.get("drop"))
        rows.append(row)
    return rows


def _param_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def _param_rows(section: Mapping[str, Any]) -> list[dict[str, str]]:
    sevs = list(section.get("severities") or [])
    return [{"disturbance": k, **{str(s): _param_text(p) for s, p in zip(sevs, section["params"].get(k, []))}}
            for k in section.get("disturbances") or {}]


def _intro(section: Mapping[str, Any]) -> str:
    shape = section.get("image_shape") or ["?", "?"]
    splits = f" (over {section['n_splits']} splits)" if (section.get("n_splits") or 1) > 1 else ""
    limit = section.get("limit")
    return (f"{section.get('n_test')} test images{splits}"
            + (f" (a stratified subset of at most {limit})" if limit else " (the whole test set)")
            + f", disturbed with seed {section.get('seed')} at severities "
            + ", ".join(map(str, section.get("severities") or []))
            + " (CIFAR-10-C protocol, Hendrycks & Dietterich 2019, where it applies; parameters at the median "
            f"test image size {shape[0]}x{shape[1]} below). Mean = mean over disturbances of the mean over "
            "severities; drop = clean - mean, in points.")


def render_markdown(section: Mapping[str, Any], *, heading: str = "##", figure: str | None = None) -> str:
    """The robustness section of ``report.md``: a summary table of the runs, a table per
    run (accuracy % per disturbance and severity, mean, drop), the figure, the
    parameters per severity and the failed runs.

    Parameters
    ----------
    section : dict
        As :func:`run_robustness` returns it (``report["robustness"]``).
    heading : str
        The Markdown heading level of the section (sub-headings get one more ``#``).
    figure : str or None
        Where the figure is linked from: None, ``section["figure"]`` (beside the
        report, for ``report.md``); a path relative to another document (for
        BENCHMARKS.md); ``""``: no figure.

    Returns
    -------
    text : str
    """
    from bench.report import md_table

    sub = heading + "#"
    parts = [f"{heading} Robustness\n", _intro(section) + "\n", md_table(_summary_rows(section))]
    for r in section.get("runs", []):
        if r.get("status") != "ok":
            continue
        parts += [f"\n{sub} {r.get('name')} ({r.get('track')}): clean {_pct(r.get('clean'))}%\n",
                  md_table(_run_rows(section, r))]
    link = section.get("figure", FIGURE) if figure is None else figure
    if link:
        parts.append(f"\n![accuracy against severity]({link})\n")
    parts += [f"\n{sub} Disturbance parameters\n", md_table(_param_rows(section))]
    failed = [{"run": str(r.get("name")), "track": str(r.get("track")), "error": str(r.get("error"))}
              for r in section.get("runs", []) if r.get("status") != "ok"]
    if failed:
        parts += [f"\n{sub} Runs not evaluated\n", md_table(failed)]
    if section.get("command"):
        parts.append(f"\nCommand: `{section['command']}`\n")
    return "\n".join(parts)


def render_html(section: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> str:
    """The robustness section of ``report.html``: the same tables as
    :func:`render_markdown`, and the figure embedded (read from ``out_dir``, the
    report's folder, when it holds it).

    Parameters
    ----------
    section : dict
        ``report["robustness"]``.
    out_dir : path-like or None
        The folder of the report; None: no figure.

    Returns
    -------
    html : str
        A fragment (``<h2>`` and what follows), for the body of ``report.html``.
    """
    from bench.report import html_table, img_tag

    e = html.escape
    parts = ['<h2 id="robustness">Robustness</h2>', f'<p class="note">{e(_intro(section))}</p>',
             html_table(_summary_rows(section), "robustness-summary")]
    for i, r in enumerate(section.get("runs", [])):
        if r.get("status") != "ok":
            continue
        rows = [{k: v.replace("**", "") for k, v in row.items()} for row in _run_rows(section, r)]
        parts += [f"<h3>{e(str(r.get('name')))} ({e(str(r.get('track')))}): clean {_pct(r.get('clean'))}%</h3>",
                  html_table(rows, f"robustness-run-{i}")]
    fig = Path(out_dir) / str(section.get("figure", FIGURE)) if out_dir is not None else None
    if fig is not None and fig.is_file():
        parts.append(f'<div class="figs"><figure>{img_tag(fig, "accuracy against severity")}'
                     "<figcaption>accuracy against severity (classic solid, CNN dashed)</figcaption></figure></div>")
    parts += ["<h3>Disturbance parameters</h3>", html_table(_param_rows(section), "robustness-params")]
    failed = [{"run": str(r.get("name")), "track": str(r.get("track")), "error": str(r.get("error"))}
              for r in section.get("runs", []) if r.get("status") != "ok"]
    if failed:
        parts += ["<h3>Runs not evaluated</h3>", html_table(failed, "robustness-failed")]
    return "\n".join(parts)
