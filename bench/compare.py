"""``python -m bench compare``: run classic presets and CNNs on one dataset, side by side.

Flow: check every requested name (fail fast, before loading data or training), load the
train and test splits (optionally capped by ``--limit``, stratified and seeded), then run
each pipeline (built with the preset's settings for ``--dataset``, see
:func:`classic_run`) and each CNN in turn. After every run ``report.json`` is rewritten
atomically together with ``report.md``, the figures and ``report.html``, so an
interrupted comparison leaves a valid report; re-running with the same ``--out`` and the
same data options skips the runs already ``"ok"`` and redoes failed or missing ones.
"""

from __future__ import annotations

import ast
import datetime as _dt
import difflib
import json
import os
import traceback
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from bench.runners import (
    Progress,
    RunSpec,
    Split,
    classic_params,
    cnn_params,
    empty_record,
    run_classic,
    run_cnn,
    safe_name,
    take,
)

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
]

REPORT_SCHEMA_VERSION = 1

#: CNNClassifier parameters bench sets per dataset unless the run overrides them:
#: handwritten digits are not mirror-symmetric, so no flip augmentation / flip TTA.
CNN_DATASET_DEFAULTS: dict[str, dict[str, Any]] = {"digits": {"flip": False}}


class UsageError(ValueError):
    """Bad command-line input (unknown preset / model names, conflicting --out)."""


class DatasetError(RuntimeError):
    """The dataset could not be loaded."""


# ----------------------------------------------------------------------------- names
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


def _preset_names() -> list[str]:
    try:
        from classicvision.presets import PRESETS
    except Exception as exc:
        raise UsageError(f"classicvision.presets is not available ({type(exc).__name__}: {exc})") from exc
    return list(PRESETS)


def _model_names() -> list[str]:
    try:
        from cnn import list_models
    except Exception as exc:
        raise UsageError(f"the cnn package is not available ({type(exc).__name__}: {exc})") from exc
    return list(list_models())


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
    """Where ``cifar10`` / ``scene15`` are looked for when ``--root`` is not given:
    ``$CLASSICVISION_DATA`` if set, else the project's shared ``../shared/datasets``
    folder next to the repository when it exists, else None."""
    if name in ("digits", "folder"):
        return None
    env = os.environ.get("CLASSICVISION_DATA")
    if env:
        return Path(env)
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return shared if shared.is_dir() else None


def data_options(args: Any) -> dict:
    """The options that define the data of a comparison (must match to resume)."""
    return {
        "dataset": args.dataset,
        "root": str(args.root) if args.root is not None else None,
        "limit": args.limit,
        "seed": args.seed,
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
    }


def _to_split(b: Any, names: list[str] | None = None) -> Split:
    return Split(
        images=b.images,
        target=np.asarray(b.target, dtype=np.int64),
        target_names=[str(n) for n in (names or b.target_names)],
        filenames=list(b.filenames) if getattr(b, "filenames", None) is not None else None,
    )


def load_splits(args: Any) -> tuple[Split, Split, dict]:
    """Load train and test splits as the options say; returns ``(train, test, info)``.

    Raises :class:`DatasetError` (naming the dataset and path) when loading fails.
    """
    from classicvision.datasets import load_dataset

    root = Path(args.root).expanduser() if args.root is not None else default_dataset_root(args.dataset)
    if args.dataset == "folder" and root is None:
        raise DatasetError("--dataset folder needs --root PATH (an ImageFolder directory or .tar/.tar.gz)")
    if root is not None and not root.exists():
        raise DatasetError(f"dataset {args.dataset!r}: path not found: {root}")
    kw: dict[str, Any] = {}
    if args.train_per_class is not None:
        kw["train_per_class"] = args.train_per_class
    if args.test_per_class is not None:
        kw["test_per_class"] = args.test_per_class
    if kw:
        kw["random_state"] = args.seed
    if args.dataset != "digits":
        kw["root"] = root
    try:
        tr = load_dataset(args.dataset, split="train", **kw)
        te = load_dataset(args.dataset, split="test", **kw)
    except Exception as exc:
        where = f" from {root}" if root is not None else ""
        raise DatasetError(f"cannot load dataset {args.dataset!r}{where}: {type(exc).__name__}: {exc}") from exc
    if list(tr.target_names) != list(te.target_names):
        raise DatasetError(
            f"dataset {args.dataset!r}: train and test have different classes "
            f"({list(tr.target_names)} vs {list(te.target_names)})"
        )
    train, test = _to_split(tr), _to_split(te)
    if args.limit is not None:
        for split, name in ((train, "train"), (test, "test")):
            idx = stratified_subset(split.target, args.limit, args.seed)
            split.images = take(split.images, idx)
            split.target = split.target[idx]
            if split.filenames is not None:
                split.filenames = [split.filenames[i] for i in idx]
    info = {
        "name": args.dataset,
        "n_train": len(train),
        "n_test": len(test),
        "classes": list(train.target_names),
        "root": str(root) if root is not None else None,
    }
    return train, test, info


# ----------------------------------------------------------------------------- report
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_out_dir(dataset: str) -> Path:
    """``runs/<dataset>-<UTC timestamp>``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{dataset}-{stamp}"


def _load_previous(out: Path, options: Mapping[str, Any]) -> dict | None:
    path = out / "report.json"
    if not path.is_file():
        return None
    try:
        prev = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} exists but is not a readable report ({exc}); choose another --out") from exc
    prev_opts = prev.get("options", {})
    diff = {k: (prev_opts.get(k), v) for k, v in options.items() if prev_opts.get(k) != v}
    if diff:
        desc = ", ".join(f"{k}: {a!r} there vs {b!r} now" for k, (a, b) in diff.items())
        raise UsageError(
            f"{out} already holds a report for other data options ({desc}); "
            "use another --out, or the same options to resume"
        )
    return prev


def classic_run(spec: RunSpec, seed: int | None, dataset: str) -> tuple[RunSpec, dict]:
    """The spec bench builds a classic run from, and the run record's ``params``.

    The spec asks ``make_preset`` for the dataset's settings (``dataset=`` keyword; an
    override ``NAME:dataset=...`` given on the command line wins, ``dataset=none`` gives
    the paper's defaults). ``params`` adds to ``classic_params`` the ``preset_dataset``
    whose settings apply (None when the preset has none for it) and the ``effective``
    builder parameters (:func:`classicvision.presets.preset_params`, without ``n_jobs``
    and ``random_state``, which bench sets); they identify the run for resume, so runs
    recorded before a preset's settings changed are redone.
    """
    from classicvision.presets import PRESETS, preset_params

    kwargs = dict(spec.overrides)
    chosen = kwargs.pop("dataset", dataset)
    params = classic_params(spec, seed)
    settings = PRESETS.get(spec.base, {}).get("datasets", {})
    params["preset_dataset"] = chosen if chosen in settings else None
    try:
        effective = preset_params(spec.base, dataset=chosen, **kwargs)
    except ValueError:  # an unknown override: the run fails with this error, recorded
        effective = None
    if effective is not None:
        effective = {k: v for k, v in effective.items() if k not in ("n_jobs", "random_state")}
    params["effective"] = effective
    return RunSpec(spec.name, spec.track, spec.base, {**kwargs, "dataset": chosen}), params


def _same_run(a: Mapping[str, Any], name: str, track: str, params: Mapping[str, Any]) -> bool:
    if a.get("name") != name or a.get("track") != track:
        return False
    p = dict(a.get("params") or {})
    p.pop("device", None)
    p.pop("device_used", None)
    q = json.loads(json.dumps(dict(params), default=str))
    return p == q


def run_compare(args: Any, *, command: str | None = None, progress: Progress | None = None) -> tuple[dict, int]:
    """Run the comparison described by parsed ``compare`` arguments.

    Returns
    -------
    report : dict
        The final report (also written to ``args.out``).
    exit_code : int
        0 when at least one run succeeded, 1 when every run failed.

    Raises
    ------
    UsageError
        Unknown preset / model names, no run requested, or an ``--out`` folder that
        holds a report for other data options.
    DatasetError
        The dataset could not be loaded.
    """
    from bench.cache import FeatureCache, dataset_digest
    from bench.published import published_figure
    from bench.report import environment_info, write_reports

    progress = progress or Progress()
    classic = parse_specs(args.pipelines, "classic", all_names=_preset_names() if str(args.pipelines).strip().lower() == "all" else ())
    cnns = parse_specs(args.cnn, "cnn", all_names=_model_names() if str(args.cnn).strip().lower() == "all" else ())
    if not classic and not cnns:
        raise UsageError("nothing to run: --pipelines and --cnn are both empty/none")
    if classic:
        check_names(classic, _preset_names(), "preset")
    if cnns:
        check_names(cnns, _model_names(), "model")

    out = Path(args.out) if args.out else default_out_dir(args.dataset)
    options = data_options(args)
    prev = _load_previous(out, options)

    with progress.stage("dataset", f"load {args.dataset!r}"):
        train, test, info = load_splits(args)
    info["digest"] = {
        "train": dataset_digest(train.images, train.target),
        "test": dataset_digest(test.images, test.target),
    }
    progress.line(f"dataset {args.dataset}: {info['n_train']} train, {info['n_test']} test, "
                  f"{len(info['classes'])} classes; output in {out}")
    previous_runs = []
    if prev is not None:
        if prev.get("dataset", {}).get("digest") == info["digest"]:
            previous_runs = [r for r in prev.get("runs", []) if r.get("status") == "ok"]
        else:
            progress.line(f"{out}: the data changed since the previous report; redoing every run")

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created": _now(),
        "command": command,
        "options": {**options, "epochs": args.epochs, "device": args.device, "n_jobs": args.n_jobs,
                    "cache": not args.no_cache, "save_models": bool(args.save_models),
                    "pipelines": args.pipelines, "cnn": args.cnn},
        "dataset": info,
        "environment": environment_info(),
        "runs": [],
    }
    write_reports(report, out, figures=False)

    cache = FeatureCache(enabled=not args.no_cache)
    identity = {k: v for k, v in options.items() if k != "root"}
    identity["digest"] = info["digest"]
    models_dir = out / "models" if args.save_models else None
    logs = out / "logs"
    specs = classic + cnns
    cnn_defaults = dict(CNN_DATASET_DEFAULTS.get(args.dataset, {}))
    for i, spec in enumerate(specs, 1):
        if spec.track == "classic":
            build_spec, params = classic_run(spec, args.seed, args.dataset)
        else:
            build_spec, params = spec, cnn_params(spec, args.seed, args.epochs, cnn_defaults)
        done = next((r for r in previous_runs if _same_run(r, spec.name, spec.track, params)), None)
        if done is not None and (models_dir is None or done.get("model_path")):
            progress.line(f"[{i}/{len(specs)}] {spec.name}: already done in {out}, skipping")
            report["runs"].append(done)
            write_reports(report, out)
            continue
        progress.line(f"[{i}/{len(specs)}] {spec.name} ({spec.track}) ...")
        try:
            if spec.track == "classic":
                rec = run_classic(build_spec, train, test, seed=args.seed, n_jobs=args.n_jobs, cache=cache,
                                  data_identity=identity, models_dir=models_dir, progress=progress)
                rec["params"] = params
            else:
                rec = run_cnn(spec, train, test, seed=args.seed, epochs=args.epochs, device=args.device,
                              defaults=cnn_defaults, models_dir=models_dir, progress=progress)
            rec["status"] = "ok"
            progress.line(f"[{i}/{len(specs)}] {spec.name}: top-1 {100 * rec['top1']:.2f}% "
                          f"(fit {rec['fit_seconds']:.1f}s, predict {rec['predict_seconds']:.1f}s)")
        except Exception as exc:
            rec = empty_record(spec, params)
            rec["status"] = "failed"
            rec["error"] = f"{type(exc).__name__}: {exc}"
            logs.mkdir(parents=True, exist_ok=True)
            log = logs / f"{safe_name(spec.name)}.log"
            log.write_text(traceback.format_exc())
            rec["log"] = str(log)
            progress.line(f"[{i}/{len(specs)}] {spec.name}: FAILED: {rec['error']} (traceback in {log})")
        fig = published_figure(spec.base, spec.track, args.dataset)
        if fig:
            rec["published"] = fig
        report["runs"].append(rec)
        write_reports(report, out)

    n_ok = sum(r.get("status") == "ok" for r in report["runs"])
    progress.line(f"{n_ok}/{len(specs)} runs ok; report in {out / 'report.md'} and {out / 'report.html'}")
    report["out"] = str(out)
    return report, (0 if n_ok else 1)
