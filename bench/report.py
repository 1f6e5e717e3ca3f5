"""Writers for ``report.json``, ``report.md``, ``report.html``, the figures and BENCHMARKS.md.

Every file is written atomically: to a uniquely named temporary file in the same folder
(:func:`tempfile.mkstemp`), then ``os.replace``, so concurrent writers of one folder
never collide and a reader never sees half a file; the final files get the usual
``0o666 & ~umask`` mode. :func:`load_report` reads a ``report.json`` back, checked.
``report.md`` and ``report.html`` hold the same tables: the side-by-side table of all
runs, the reproduction table (published vs measured), per-class recall and the
environment. The HTML file is self-contained: inline CSS and the figures embedded as
base64 PNG data URIs, so it can be mailed or archived as one file.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot global state):
``confusion_<name>.png`` per successful run and ``accuracy_vs_time.png`` for all runs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import isolation
from bench.curves import curves_html, curves_markdown, write_curves
from bench.published import JPEG_NOTE, METRIC_NOTE, METRICS, mean_class_accuracy, reproduction_rows, split_stats
from bench.robustness import render_html as robustness_html
from bench.robustness import render_markdown as robustness_markdown
from bench.specs import UsageError, model_names, parse_specs, preset_names, safe_name

__all__ = [
    "write_json_atomic",
    "load_report",
    "md_table",
    "format_bytes",
    "summary_rows",
    "latency_thread_counts",
    "latency_column",
    "vs_float",
    "onnx_rows",
    "render_markdown",
    "render_html",
    "plot_confusion",
    "plot_accuracy_vs_time",
    "write_reports",
    "render_benchmarks",
    "confusion_filename",
    "new_figure",
    "save_figure",
    "html_table",
    "img_tag",
]



def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic set-and-restore
    os.umask(mask)
    return mask


def _atomic_write(path: str | os.PathLike, write, mode: str = "w") -> None:
    """Write ``path`` through a unique temporary file in its folder and ``os.replace``.

    ``write(fh)`` fills the open temporary file (``mode`` ``"w"``: text, UTF-8, or
    ``"wb"``). The file gets mode ``0o666 & ~umask`` (not :func:`tempfile.mkstemp`'s
    0600); on any error the temporary file is removed and the old ``path`` is kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as JSON to ``path`` through a unique temporary file and ``os.replace``."""

    def write(fh):
        json.dump(obj, fh, indent=1, allow_nan=False, default=_json_default)
        fh.write("\n")

    _atomic_write(path, write)


def load_report(path: str | os.PathLike) -> dict:
    """Read a ``report.json`` (or the one in the folder ``path``), checked.

    Parameters
    ----------
    path : path-like
        A ``report.json`` file, or a folder holding one (a ``compare --out`` folder).

    Returns
    -------
    report : dict
        The parsed report: a JSON object whose ``"runs"`` is a list of objects.

    Raises
    ------
    ValueError
        Naming the file, when it is missing, is a folder, is not valid JSON, or is not
        a JSON object with a ``"runs"`` list of objects.
    """
    p = Path(path)
    f = p / "report.json" if p.is_dir() and p.name != "report.json" else p
    if not f.exists():
        where = f"no report.json in {p}" if f != p else f"{f}: no such file"
        raise ValueError(f"{where} (expected the report.json written by 'python -m bench compare')")
    if f.is_dir():
        raise ValueError(f"{f}: is a folder, not a report.json file")
    if not f.is_file():
        raise ValueError(f"{f}: not a regular file")
    try:
        rep = json.loads(f.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{f}: not a UTF-8 text file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{f}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{f}: unreadable ({exc})") from None
    if not isinstance(rep, dict):
        raise ValueError(f"{f}: a JSON {_json_kind(rep)}, expected a JSON object with a \"runs\" list")
    runs = rep.get("runs")
    if not isinstance(runs, list):
        got = "no \"runs\"" if "runs" not in rep else f"\"runs\" is a JSON {_json_kind(runs)}"
        raise ValueError(f"{f}: {got}, expected a \"runs\" list")
    for i, r in enumerate(runs):
        if not isinstance(r, dict):
            raise ValueError(f"{f}: runs[{i}] is a JSON {_json_kind(r)}, expected an object")
    return rep


def _json_kind(v: Any) -> str:
    return {list: "list", dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _write_text_atomic(text: str, path: Path) -> None:
    _atomic_write(path, lambda fh: fh.write(text))


def save_figure(fig, path: str | os.PathLike) -> None:
    """``fig.savefig`` as PNG, atomically."""
    _atomic_write(path, lambda fh: fig.savefig(fh, format="png"), mode="wb")


# ----------------------------------------------------------------------------- tables
def _f(x: Any, fmt: str) -> str:
    if x is None:
        return "–"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(v):
        return "–"
    return format(v, fmt)


def _pct(x: Any, signed: bool = False) -> str:
    if x is None:
        return "–"
    return _f(100.0 * float(x), "+.2f" if signed else ".2f")


def format_bytes(n: Any) -> str:
    """A byte count in binary units: ``512 B``, ``3.4 MiB``, ``1.2 GiB``; ``–`` for None
    (or anything that is not a non-negative number)."""
    try:
        v = float(n)
    except (TypeError, ValueError):
        return "–" if n is None else str(n)
    return isolation.format_bytes(v) if np.isfinite(v) and v >= 0 else "–"


def _pm(mean: Any, std: Any, decimals: int = 2) -> str:
    """``mean ± std%`` of two fractions, in percent."""
    if mean is None:
        return "–"
    m = _f(100.0 * float(mean), f".{decimals}f")
    if std is None:
        return m
    return f"{m} ± {_f(100.0 * float(std), f'.{decimals}f')}%"


def _measured(run: Mapping[str, Any], metric: str) -> float | None:
    """The run's value of ``metric``: the mean over its splits when it has several."""
    st = split_stats(run, metric)
    if st is not None:
        return st[0]
    v = run.get(metric)
    if v is None and metric == "mean_class_accuracy" and run.get("status") == "ok":
        v = mean_class_accuracy(run.get("confusion"))  # older records
    return v


def latency_thread_counts(runs: Iterable[Mapping[str, Any]], key: str = "latency_ms") -> list[int]:
    """The thread counts any of ``runs`` has a latency for (``run[key]``), sorted."""
    counts: set[int] = set()
    for r in runs:
        lat = r.get(key)
        if isinstance(lat, Mapping):
            counts.update(int(t) for t in lat if str(t).isdigit())
    return sorted(counts)


def latency_column(threads: int) -> str:
    """The summary table's column of the latency of one image on ``threads`` threads."""
    return f"latency ms ({threads} thr)"


def _latency_cells(lat: Any, counts: Sequence[int]) -> dict[str, str]:
    lat = lat if isinstance(lat, Mapping) else {}
    return {latency_column(t): _f(lat.get(str(t)), ".2f") for t in counts}


def vs_float(run: Mapping[str, Any]) -> str:
    """The change of a quantized run against its float model: ``-0.40 pt, 3.4x smaller, 2.1x faster``.

    From the run's ``float`` record (top-1, ``model_bytes`` and latency of the float model,
    measured in the same run); the speed-up is on 1 thread. ``–`` for a run without one.
    """
    ref = run.get("float")
    if not isinstance(ref, Mapping) or run.get("status") != "ok":
        return "–"
    parts = []
    if run.get("top1") is not None and ref.get("top1") is not None:
        parts.append(f"{100.0 * (float(run['top1']) - float(ref['top1'])):+.2f} pt")
    if run.get("model_bytes") and ref.get("model_bytes"):
        parts.append(f"{float(ref['model_bytes']) / float(run['model_bytes']):.1f}x smaller")
    mine, theirs = run.get("latency_ms") or {}, ref.get("latency_ms") or {}
    if mine.get("1") and theirs.get("1"):
        parts.append(f"{float(theirs['1']) / float(mine['1']):.1f}x faster (1 thr)")
    return ", ".join(parts) or "–"


def summary_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The side-by-side table as rows of formatted strings (one per run).

    A run with repeated splits (``run["splits"]``) shows top-1 and mean class accuracy
    as ``mean ± std%`` over its K splits, noted ``(K splits)``. The ``peak RSS`` column
    (``max_rss_bytes``, the peak resident memory of the run's process) is there when a
    run of the report recorded it; so are the columns ``latency ms (T thr)`` (the median
    latency of one decoded image at batch size 1 on T threads, ``latency_ms``) after
    ``images/s``, and ``vs float`` (:func:`vs_float`) when a run is a quantized one.
    """
    runs = report.get("runs", [])
    with_rss = any(r.get("max_rss_bytes") is not None for r in runs)
    counts = latency_thread_counts(runs)
    with_float = any(isinstance(r.get("float"), Mapping) for r in runs)
    rows = []
    for r in runs:
        ok = r.get("status") == "ok"
        n_test = report.get("dataset", {}).get("n_test") or 0
        ms = (
            1000.0 * r["predict_seconds"] / n_test
            if ok and r.get("predict_seconds") is not None and n_test
            else None
        )
        top1 = split_stats(r, "top1") if ok else None
        mca = split_stats(r, "mean_class_accuracy") if ok else None
        row = {
            "name": str(r.get("name")),
            "track": str(r.get("track")),
            "status": str(r.get("status")) + (" (cached features)" if r.get("cache_hit") else ""),
            "model MB": _f(r["model_bytes"] / 1e6, ".3f") if r.get("model_bytes") else "–",
            "top-1 %": (f"{_pm(top1[0], top1[1])} ({top1[2]} splits)" if top1 is not None
                        else _pct(r.get("top1"))),
            "top-5 %": _pct(r.get("top5")),
            "mean class acc %": (_pm(mca[0], mca[1]) if mca is not None
                                 else _pct(_measured(r, "mean_class_accuracy"))),
            "macro-F1 %": _pct(r.get("macro_f1")),
            "fit s": _f(r.get("fit_seconds"), ".2f"),
            "predict ms/image": _f(ms, ".3f"),
            "images/s": _f(r.get("images_per_second"), ".1f"),
        }
        row.update(_latency_cells(r.get("latency_ms") if ok else None, counts))
        if with_float:
            row["vs float"] = vs_float(r)
        if with_rss:
            row["peak RSS"] = format_bytes(r.get("max_rss_bytes"))
        rows.append(row)
    return rows


def onnx_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The ONNX export table (``compare --export-onnx``): one row per run with an ``onnx`` record.

    Columns: the ONNX file's size, ONNX Runtime's top-1, its agreement with PyTorch's
    predictions on the test set, the largest absolute logit difference (on the images
    noted), and the latency of one image per thread count.
    """
    runs = [r for r in report.get("runs", []) if isinstance(r.get("onnx"), Mapping)]
    counts = latency_thread_counts([r["onnx"] for r in runs])
    rows = []
    for r in runs:
        o = r["onnx"]
        row = {
            "name": str(r.get("name")),
            "ONNX MB": _f(o["bytes"] / 1e6, ".3f") if o.get("bytes") else "–",
            "ORT top-1 %": _pct(o.get("top1")),
            "PyTorch top-1 %": _pct(r.get("top1")),
            "agreement %": _pct(o.get("agreement")),
            "max abs logit diff": (_f(o.get("max_abs_logit_diff"), ".2e")
                                 + (f" ({o['logit_diff_images']} images)" if o.get("logit_diff_images") else "")),
        }
        row.update(_latency_cells(o.get("latency_ms"), counts))
        if any(x["onnx"].get("error") for x in runs):
            row["error"] = str(o.get("error") or "–")
        rows.append(row)
    return rows


LATENCY_NOTE = ("latency ms (T thr): median time to score one decoded image (batch size 1, decoding "
                "excluded; the model's own preprocessing included) with T threads pinned for torch and "
                "BLAS/OpenMP (ONNX Runtime: T intra-op threads).")


def _metric_label(row: Mapping[str, Any]) -> str:
    label = METRICS.get(row["metric"], row["metric"])
    if row["measured_metric"] != row["metric"]:
        label += (f" (measured: {METRICS.get(row['measured_metric'], row['measured_metric'])}; "
                  f"this record has no {label})")
    return label


def _metric_note(repro: Sequence[Mapping[str, str]]) -> str:
    """The metric note, when a row of the reproduction table is not plain top-1."""
    return METRIC_NOTE if any(r["metric"] != METRICS["top1"] for r in repro) else ""


def _published_cell(row: Mapping[str, Any]) -> str:
    """The published figure: ``91.25``, or ``64.6 ± 0.8%`` (as precise as it was published)."""
    if row.get("published_std") is None:
        return _pct(row["published"])
    v, sd = 100.0 * row["published"], 100.0 * row["published_std"]
    one = all(abs(x - round(x, 1)) < 1e-6 for x in (v, sd))
    return _pm(row["published"], row["published_std"], decimals=1 if one else 2)


def _reproduction_table(report: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = _reproduction_cells(report)
    by_name = {str(r.get("name")): r for r in report.get("runs", [])}
    if any(isinstance(r.get("float"), Mapping) for r in by_name.values()):
        for row in rows:  # a quantized run's change against its float model, beside the figures
            row["vs float"] = vs_float(by_name.get(row["name"], {}))
    return rows


def _reproduction_cells(report: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "name": str(row["name"]),
            "track": str(row["track"]),
            "published %": _published_cell(row),
            "measured %": (_pm(row["measured"], row.get("measured_std"))
                           + (f" ({row['n_splits']} splits)" if row.get("n_splits") else "")
                           if row.get("measured_std") is not None else _pct(row["measured"])),
            "difference (pts)": _pct(row["difference"], signed=True),
            "metric": _metric_label(row),
            "citation": row["citation"] + (f" ({row['note']})" if row.get("note") else ""),
        }
        for row in reproduction_rows(report)
    ]


def _recall_table(report: Mapping[str, Any]) -> list[dict[str, str]]:
    classes = report.get("dataset", {}).get("classes") or []
    runs = [r for r in report.get("runs", []) if r.get("status") == "ok" and r.get("per_class_recall")]
    rows = []
    for i, c in enumerate(classes):
        row = {"class": str(c)}
        for r in runs:
            rec = r["per_class_recall"]
            v = rec.get(c) if isinstance(rec, Mapping) else (rec[i] if i < len(rec) else None)
            row[str(r["name"])] = _pct(v)
        rows.append(row)
    return rows


def _env_rows(env: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = [{"item": "python", "value": str(env.get("python"))}]
    if env.get("platform"):
        rows.append({"item": "platform", "value": str(env["platform"])})
    cpu = env.get("cpu") or {}
    rows.append({"item": "cpu", "value": f"{cpu.get('model')} ({cpu.get('count')} logical, {cpu.get('usable', cpu.get('count'))} usable)"})
    rows.append({"item": "gpu", "value": str(env.get("gpu") or "none")})
    for k, v in (env.get("packages") or {}).items():
        rows.append({"item": k, "value": str(v) if v is not None else "not installed"})
    return rows


def md_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (columns: ``columns``, else the first row's keys).

    Cells are ``str``-ed, ``|`` escaped and newlines flattened; no rows gives ``_(none)_``.
    """
    if not rows:
        return "_(none)_\n"
    columns = list(columns or rows[0].keys())
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(esc(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out) + "\n"


_md_table = md_table  # the former private name, kept for scripts that import it

def _dataset_line(report: Mapping[str, Any]) -> str:
    d = report.get("dataset", {})
    classes = d.get("classes") or []
    return (
        f"dataset **{d.get('name')}**: {d.get('n_train')} train / {d.get('n_test')} test images, "
        f"{len(classes)} classes"
    )


def _failed_runs(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows of the failed runs: name, track, error, and ``cause`` when a run recorded one
    (a sentence such as "killed by signal 9, probably out of memory; peak RSS 21.7 GiB")."""
    failed = [r for r in report.get("runs", []) if r.get("status") != "ok"]
    with_cause = any(r.get("cause") for r in failed)
    rows = []
    for r in failed:
        row = {"name": str(r.get("name")), "track": str(r.get("track"))}
        if with_cause:
            row["cause"] = str(r.get("cause") or "–")
        row["error"] = str(r.get("error")) if r.get("error") is not None else "–"
        rows.append(row)
    return rows


def render_markdown(report: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> str:
    """The Markdown report: side-by-side, reproduction, per-class recall, environment."""
    ds = report.get("dataset", {})
    parts = [
        f"# classicvision bench: {ds.get('name')}\n",
        _dataset_line(report) + (f"; created {report.get('created')}" if report.get("created") else "") + "\n",
    ]
    if report.get("command"):
        parts.append(f"Command: `{report['command']}`\n")
    parts += ["## Side by side\n", md_table(summary_rows(report))]
    parts.append(
        "\nfit s includes feature extraction for classic runs; predict ms/image and images/s "
        "cover the whole test set (features + classifier, or the CNN forward pass).\n"
    )
    if latency_thread_counts(report.get("runs", [])):
        parts.append(f"{LATENCY_NOTE}\n")
    failed = _failed_runs(report)
    if failed:
        parts += ["\n### Failed runs\n", md_table(failed)]
    onnx = onnx_rows(report)
    if onnx:
        parts += ["\n## ONNX export\n", md_table(onnx)]
    parts += ["\n## Reproduction\n"]
    repro = _reproduction_table(report)
    if repro:
        parts += [md_table(repro), f"\n{_metric_note(repro)}\n"]
    else:
        parts.append("No published figure for these runs on this dataset.\n")
    if ds.get("name") == "cifar10":
        parts.append(f"\n{JPEG_NOTE}\n")
    curves = curves_markdown(report, out_dir)
    if curves:
        parts += ["\n" + curves]
    parts += ["\n## Per-class recall (%)\n", md_table(_recall_table(report))]
    if report.get("robustness"):
        parts += ["\n" + robustness_markdown(report["robustness"])]
    parts += ["\n## Environment\n", md_table(_env_rows(report.get("environment", {})))]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- figures
def confusion_filename(name: str) -> str:
    """File name of a run's confusion-matrix figure."""
    return f"confusion_{safe_name(name)}.png"


def new_figure(size: tuple[float, float]):
    """A matplotlib ``Figure`` of ``size`` inches on the Agg canvas (no pyplot state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(run: Mapping[str, Any], class_names: Sequence[str], path: str | os.PathLike) -> None:
    """Row-normalized confusion matrix of one run (colors: recall; numbers: counts)."""
    cm = np.asarray(run["confusion"], dtype=np.float64)
    n = cm.shape[0]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(12.0, max(4.0, 0.45 * n + 2.5))
    fig = new_figure((side, side * 0.9))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    names = list(class_names)[:n] if class_names else [str(i) for i in range(n)]
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=90 if n > 10 or max(map(len, names)) > 4 else 0, fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top1 = run.get("top1")
    ax.set_title(f"{run.get('name')} ({run.get('track')})" + (f": top-1 {100 * top1:.2f}%" if top1 is not None else ""))
    if n <= 20:
        for i, j in zip(*np.nonzero(cm)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    save_figure(fig, path)


def _log_ticks(lo: float, hi: float, max_ticks: int = 9) -> list[float]:
    """Tick positions for a log axis on ``[lo, hi]``: 1-2-3-5 steps per decade, thinned.

    Any range at least a factor 4 wide holds two of the 1-2-3-5 values (consecutive ones
    are at most a factor 2 apart), so the axis always has labelled ticks, even without a
    power of ten in range. Wide ranges keep fewer values per decade, then fewer decades,
    to stay within ``max_ticks``.
    """
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return []
    k0, k1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    best: list[float] = []
    for subs in ((1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0 ** k for k in range(k0, k1 + 1) for m in subs]
        ticks = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
        if len(ticks) < 2:
            break
        best = ticks
        if len(ticks) <= max_ticks:
            return ticks
    if len(best) > max_ticks:  # many decades: every n-th power of ten
        step = -(-len(best) // max_ticks)
        best = best[::step]
    return best


def _time_label(v: float) -> str:
    return f"{v:g}" if v >= 1e-3 else f"{v:.0e}"


def plot_accuracy_vs_time(runs: Iterable[Mapping[str, Any]], path: str | os.PathLike | None,
                          title: str = ""):
    """Scatter of top-1 accuracy against training (fit) time, one point per successful run.

    The time axis is logarithmic and always carries at least two labelled ticks; the
    accuracy axis stops at 100%. A run with repeated splits is drawn at its mean top-1
    with a bar of one std.

    Parameters
    ----------
    runs : iterable of dict
        The run records of a report.
    path : path-like or None
        Where to write the PNG (atomically); None draws the figure only.
    title : str
        The figure title (default: "accuracy vs training time").

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure (drawn on an Agg canvas).
    """
    ok = [r for r in runs if r.get("status") == "ok" and _measured(r, "top1") is not None and r.get("fit_seconds")]
    fig = new_figure((7.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    colors = {"classic": "tab:blue", "cnn": "tab:orange"}

    def acc(r):
        return 100.0 * float(_measured(r, "top1"))

    for track in ("classic", "cnn"):
        pts = [r for r in ok if r.get("track") == track]
        if pts:
            ax.scatter([r["fit_seconds"] for r in pts], [acc(r) for r in pts],
                       s=40, color=colors[track], label=track, zorder=3, clip_on=False)
            spread = [r for r in pts if split_stats(r, "top1") is not None]
            if spread:
                ax.errorbar([r["fit_seconds"] for r in spread], [acc(r) for r in spread],
                            yerr=[100.0 * split_stats(r, "top1")[1] for r in spread], fmt="none",
                            ecolor=colors[track], elinewidth=1, capsize=3, zorder=2)
    for r in ok:
        ax.annotate(str(r["name"]), (r["fit_seconds"], acc(r)), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    if ok:
        from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

        xs = np.array([r["fit_seconds"] for r in ok], dtype=float)
        ys = np.array([acc(r) for r in ok], dtype=float)
        lo, hi = xs.min() / 2.0, xs.max() * 2.0
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ticks = _log_ticks(lo, hi)
        if ticks:
            ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _time_label(v)))
        ax.xaxis.set_minor_locator(LogLocator(subs="all"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        top = min(100.0, ys.max() + 2.0)
        ax.set_ylim(min(max(0.0, ys.min() - 2.0), top - 1.0), top)
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no successful run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title or "accuracy vs training time")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# ----------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.failed{color:#b00}
.figs{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figcaption{font-size:.85em;color:#555;text-align:center}
img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.9em}
code{background:#f3f3f3;padding:0 .2em}
"""

# Marks every image with its decoded width once the page has loaded, so a headless
# browser dump (or a reader's devtools) shows that each embedded figure decodes.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img');
  var ok = 0;
  imgs.forEach(function (im) {
    im.setAttribute('data-natural-width', String(im.naturalWidth));
    if (im.complete && im.naturalWidth > 0) { ok += 1; }
  });
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-decoded', String(ok));
});
"""


def html_table(rows: Sequence[Mapping[str, str]], table_id: str, columns: Sequence[str] | None = None) -> str:
    """An HTML ``<table id=table_id>`` of ``rows`` (``columns``, default the first row's keys),
    values escaped, failed statuses marked; a "(none)" note for no rows."""
    if not rows:
        return f'<p id="{table_id}" class="note">(none)</p>'
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = str(r.get(c, ""))
            cls = ' class="failed"' if c == "status" and v.startswith("failed") else ""
            cells.append(f"<td{cls}>{html.escape(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def img_tag(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG at ``path`` embedded as a data URI (a report stays one file)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(report: Mapping[str, Any], out_dir: str | os.PathLike) -> str:
    """The self-contained HTML report; figures are read from ``out_dir`` and embedded."""
    out_dir = Path(out_dir)
    ds = report.get("dataset", {})
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>classicvision bench: {e(str(ds.get('name')))}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head><body>",
        f"<h1>classicvision bench: {e(str(ds.get('name')))}</h1>",
        f"<p>{e(_dataset_line(report).replace('**', ''))}"
        + (f"; created {e(str(report['created']))}" if report.get("created") else "")
        + "</p>",
    ]
    if report.get("command"):
        parts.append(f"<p class=\"note\">Command: <code>{e(str(report['command']))}</code></p>")
    parts += ["<h2>Side by side</h2>", html_table(summary_rows(report), "summary")]
    parts.append(
        '<p class="note">fit s includes feature extraction for classic runs; predict ms/image and '
        "images/s cover the whole test set.</p>"
    )
    if latency_thread_counts(report.get("runs", [])):
        parts.append(f'<p class="note">{e(LATENCY_NOTE)}</p>')
    failed = _failed_runs(report)
    if failed:
        parts += ["<h3>Failed runs</h3>", html_table(failed, "failed")]
    onnx = onnx_rows(report)
    if onnx:
        parts += ["<h2>ONNX export</h2>", html_table(onnx, "onnx")]
    parts += ["<h2>Reproduction</h2>"]
    repro = _reproduction_table(report)
    if repro:
        parts.append(html_table(repro, "reproduction"))
        if _metric_note(repro):
            parts.append(f'<p class="note">{e(_metric_note(repro))}</p>')
    else:
        parts.append('<p id="reproduction" class="note">No published figure for these runs on this dataset.</p>')
    if ds.get("name") == "cifar10":
        parts.append(f'<p class="note">{e(JPEG_NOTE)}</p>')
    parts += ["<h2>Figures</h2>", '<div class="figs">']
    avt = out_dir / "accuracy_vs_time.png"
    if avt.is_file():
        parts.append(f"<figure>{img_tag(avt, 'accuracy vs training time')}<figcaption>top-1 vs training time</figcaption></figure>")
    for r in report.get("runs", []):
        p = out_dir / confusion_filename(str(r.get("name")))
        if r.get("status") == "ok" and p.is_file():
            parts.append(
                f"<figure>{img_tag(p, 'confusion matrix ' + str(r.get('name')))}"
                f"<figcaption>confusion matrix: {e(str(r.get('name')))}</figcaption></figure>"
            )
    parts.append("</div>")
    curves = curves_html(report, out_dir)
    if curves:
        parts.append(curves)
    parts += ["<h2>Per-class recall (%)</h2>", html_table(_recall_table(report), "recall")]
    if report.get("robustness"):
        parts.append(robustness_html(report["robustness"], out_dir))
    parts += ["<h2>Environment</h2>", html_table(_env_rows(report.get("environment", {})), "environment")]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(report: Mapping[str, Any], out_dir: str | os.PathLike, *, figures: bool = True) -> None:
    """Write ``report.json`` (atomically), the figures, ``report.md`` and ``report.html``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report, out_dir / "report.json")
    classes = report.get("dataset", {}).get("classes") or []
    if figures:
        for r in report.get("runs", []):
            if r.get("status") == "ok" and r.get("confusion") is not None:
                plot_confusion(r, classes, out_dir / confusion_filename(str(r.get("name"))))
        plot_accuracy_vs_time(report.get("runs", []), out_dir / "accuracy_vs_time.png",
                              title=f"{report.get('dataset', {}).get('name')}: top-1 vs training time")
        write_curves(report, out_dir)
    _write_text_atomic(render_markdown(report, out_dir), out_dir / "report.md")
    _write_text_atomic(render_html(report, out_dir), out_dir / "report.html")


# ----------------------------------------------------------------------------- BENCHMARKS.md
def unfinished_runs(rep: Mapping[str, Any]) -> list[str]:
    """Names of the runs the report's ``options`` asked for that have no record in it.

    A ``compare`` stopped midway leaves a valid ``report.json`` with the runs finished so
    far; this names the others (``"all"`` is expanded with today's preset and model
    lists). Returns an empty list when the options cannot be parsed.
    """

    opts = rep.get("options") or {}
    done = {r.get("name") for r in rep.get("runs", [])}
    asked: list[str] = []
    try:
        for key, track, names in (("pipelines", "classic", preset_names), ("cnn", "cnn", model_names)):
            text = opts.get(key)
            everything = isinstance(text, str) and text.strip().lower() == "all"
            asked += [s.name for s in parse_specs(text, track, all_names=names() if everything else ())]
    except (UsageError, ValueError, ImportError):
        return []
    return [name for name in asked if name not in done]


def render_benchmarks(reports: Sequence[tuple[str, Mapping[str, Any]]], *, title: str = "Benchmarks") -> str:
    """BENCHMARKS.md from existing reports: one section per report (machine noted).

    Parameters
    ----------
    reports : sequence of (source, report)
        ``source`` names where the report came from (its folder); ``report`` as
        :func:`load_report` returns it.

    Raises
    ------
    ValueError
        Naming the source, for a report that is not a mapping with a ``"runs"`` list.
    """
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# {title}\n",
        f"Generated {now} by `python -m bench benchmarks --from ... --write ...` from the "
        "`report.json` files listed below; every number is measured by `python -m bench compare`, "
        "none is typed by hand. Published figures come from `bench/published.py` (CNNs) and "
        "`classicvision.presets.PRESETS` (classic systems).\n",
    ]
    for source, rep in reports:
        if not isinstance(rep, Mapping) or not isinstance(rep.get("runs"), list):
            kind = type(rep).__name__ if not isinstance(rep, Mapping) else "an object without a \"runs\" list"
            raise ValueError(f"{source}: not a report (got {kind}; expected the JSON object of a report.json, "
                             "see bench.report.load_report)")
        ds = rep.get("dataset", {})
        env = rep.get("environment", {})
        cpu = env.get("cpu") or {}
        parts.append(f"\n## {ds.get('name')} ({source})\n")
        parts.append(_dataset_line(rep) + ".\n")
        if rep.get("command"):
            parts.append(f"Command: `{rep['command']}`\n")
        parts.append(
            f"Machine: {cpu.get('model')} ({cpu.get('usable', cpu.get('count'))} cores), "
            f"GPU: {env.get('gpu') or 'none'}; python {env.get('python')}, "
            + ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
            + ".\n"
        )
        if ds.get("name") == "cifar10":
            parts.append(f"{JPEG_NOTE}\n")
        parts += ["\n### Side by side\n", md_table(summary_rows(rep))]
        if latency_thread_counts(rep.get("runs", [])):
            parts.append(f"\n{LATENCY_NOTE}\n")
        failed = _failed_runs(rep)
        if failed:
            parts += ["\n### Failed runs\n", md_table(failed)]
        onnx = onnx_rows(rep)
        if onnx:
            parts += ["\n### ONNX export\n", md_table(onnx)]
        missing = unfinished_runs(rep)
        if missing:
            parts.append(f"\nAsked for but not in this report (the comparison was stopped before they "
                         f"finished): {', '.join(missing)}.\n")
        repro = _reproduction_table(rep)
        parts += ["\n### Reproduction\n",
                  md_table(repro) + f"\n{_metric_note(repro)}\n" if repro else "No published figure for these runs.\n"]
        if rep.get("robustness"):
            fig = Path(source) / rep["robustness"].get("figure", "robustness.png")
            parts.append("\n" + robustness_markdown(rep["robustness"], heading="###", figure=str(fig)))
    return "\n".join(parts)

