"""Command line of ``python -m bench``: ``compare``, ``list``, ``predict``, ``speed``, ``benchmarks``,
``cache``, ``robustness``.

``get_args_parser()`` returns the reusable parser (as torchvision's reference scripts
do); ``main(argv)`` runs a subcommand and returns its exit code. ``compare --config
FILE.yaml`` reads defaults from a YAML mapping (option names with ``-`` or ``_``);
flags given on the command line override them, and the resolved options are stored in
``report.json`` (``options``). ``speed`` is dispatched to ``bench.speed.main(argv)``,
imported only when asked for.

Each command imports what it needs inside its function, on purpose: ``python -m bench
--help`` and ``list`` stay quick, and only ``compare``, ``predict`` and the benchmarks
pay for scikit-learn, the extractors and torch.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["get_args_parser", "main", "CIFAR_MODELS"]

DATASET_CHOICES = ("digits", "cifar10", "cifar100", "scene15", "caltech101", "imagenet", "folder")

#: The CNNs of the CIFAR literature the benchmarks run (those the registry has).
CIFAR_MODELS = ("fastnet", "small_convnet", "vgg_bn_drop", "resnet20", "resnet32", "resnet44", "resnet56",
                "resnet110", "googlenet_cifar")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, or a usage error naming the text."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _memory(text: str) -> str:
    from bench.isolation import parse_memory

    try:
        parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


#: The options of ``compare``: (flags, add_argument keywords). One table builds the
#: parser and lets ``--config`` turn a YAML mapping into the same flags, so a value
#: from a file passes the same checks as one typed on the command line.
COMPARE_OPTIONS: tuple[tuple[tuple[str, ...], dict], ...] = (
    (("--config",), dict(metavar="YAML", help="YAML file of option defaults; flags override it")),
    (("--dataset",), dict(default="digits", choices=DATASET_CHOICES,
                          help="dataset (default: digits); presets use their settings for it, or their "
                               "small-image settings when the images are small (bench list); "
                               "NAME:dataset=none keeps the paper's")),
    (("--root",), dict(default=None, metavar="PATH",
                       help="dataset path (archive or folder); cifar10/scene15 default to $CLASSICVISION_DATA, "
                            "else ../shared/datasets next to the repository")),
    (("--pipelines",), dict(default=None, metavar="NAMES",
                            help="classic presets, comma separated, 'all' or 'none'; overrides as NAME:key=value "
                                 "(default: hog_svm on digits, else chosen for the images and printed)")),
    (("--cnn",), dict(default=None, metavar="NAMES",
                      help="CNN models, comma separated, 'all' or 'none'; overrides as NAME:key=value, e.g. "
                           "resnet18:pretrained=imagenet or small_convnet:input_size=48 (default: small_convnet on "
                           "digits, else chosen for the images and printed)")),
    (("--out",), dict(default=None, metavar="DIR",
                      help="output folder (default: runs/<dataset>-<UTC time>/); re-running with the same folder "
                           "resumes and keeps the runs finished there")),
    (("--fresh",), dict(action="store_true",
                        help="start the --out folder's report over (the old report.json is kept aside, renamed)")),
    (("--train-per-class",), dict(type=positive_int, default=None, metavar="N", help="training images per class")),
    (("--test-per-class",), dict(type=positive_int, default=None, metavar="N",
                                 help="test images per class: up to N (all the rest when a class has fewer)")),
    (("--splits",), dict(type=positive_int, default=1, metavar="K",
                         help="repeat every run over K random per-class splits (seeds S..S+K-1) and report "
                              "mean +- std (needs --train-per-class; default: 1)")),
    (("--seed",), dict(type=int, default=0, metavar="S", help="seed for subsets, pipelines and CNNs (default: 0)")),
    (("--limit",), dict(type=positive_int, default=None, metavar="N",
                        help="cap train and test images at N each (stratified, seeded) for quick checks")),
    (("--max-pixels",), dict(type=positive_int, default=None, metavar="N",
                             help="largest image decoded, in pixels (default: classicvision.datasets."
                                  "MAX_IMAGE_PIXELS, 89,478,485); a larger one is refused as a possible "
                                  "decompression bomb")),
    (("--epochs",), dict(type=positive_int, default=None, metavar="E", help="CNN epochs (default: the classifier's)")),
    (("--memory-limit",), dict(type=_memory, default=None, metavar="SIZE",
                               help="resident memory one run may use, e.g. 8GiB or 0.5 (of the available memory); "
                                    "a run past it is stopped and recorded as failed; CNNs choose a batch size "
                                    "that fits (default: 80%% of the memory available at start)")),
    (("--no-cache",), dict(action="store_true", help="do not read or write the features cache")),
    (("--save-models",), dict(action="store_true", help="write fitted models to OUT/models/")),
    (("--no-latency",), dict(action="store_true",
                             help="do not time one image on 1 and min(4, cores) threads (about a second per run)")),
    (("--export-onnx",), dict(action="store_true",
                              help="export every CNN to OUT/models/NAME.onnx and record its size, ONNX Runtime "
                                   "top-1, agreement with PyTorch and latency")),
    (("--robustness",), dict(action="store_true",
                             help="then score the saved models on disturbed test images (python -m bench robustness "
                                  "OUT with its defaults; needs --save-models)")),
    (("--stream",), dict(action="store_true",
                         help="memory that does not grow with the dataset: images decoded on access from a folder "
                              "or plain .tar, classic features written to OUT/stores/ block by block (resumable), "
                              "classifiers fitted out of core (the Newton solver reading the stores block by block)")),
    (("--scheduler",), dict(default=None, metavar="ADDRESS",
                            help="run the classic extraction and encoding on this Dask cluster (tcp://HOST:PORT); "
                                 "its workers must see the dataset (and OUT) at the same paths")),
    (("--dask-workers",), dict(type=positive_int, default=None, metavar="N",
                               help="start a local Dask cluster of N worker processes for the classic extraction "
                                    "and encoding")),
    (("--n-jobs",), dict(type=int, default=None, metavar="N", help="n_jobs for the classic pipelines")),
    (("--device",), dict(default="auto", choices=("auto", "cpu", "cuda"), help="CNN device (default: auto)")),
    (("--quiet",), dict(action="store_true", help="no progress lines on stderr")),
)


def _add_compare_args(p: argparse.ArgumentParser) -> None:
    for flags, kw in COMPARE_OPTIONS:
        p.add_argument(*flags, **kw)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The ``python -m bench`` parser, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", add_help=add_help,
        description="Run the classic pipelines and the CNNs side by side, and report.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    cmp_ = sub.add_parser(
        "compare", help="fit and score presets and CNNs on one dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit each classic preset and CNN on the train split, score it on the test split, and "
                    "write report.json / report.md / report.html and figures to --out.",
        epilog="examples:\n"
               "  python -m bench compare                      # digits, hog_svm vs small_convnet\n"
               "  python -m bench compare --limit 200 --epochs 2\n"
               "  python -m bench compare --dataset scene15 --pipelines lazebnik_spm,hog_svm:svm__C=1 --cnn none\n"
               "  python -m bench compare --dataset cifar10 --pipelines all --cnn resnet20,fastnet --out runs/c10",
    )
    _add_compare_args(cmp_)

    sub.add_parser("list", help="list datasets, presets and CNN models")

    pr = sub.add_parser("predict", help="top-k classes of images with a saved model")
    pr.add_argument("model", help="a model file from compare --save-models (.skops or CNN weights)")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    pr.add_argument("--top-k", type=positive_int, default=5, help="classes shown per image (default: 5)")

    sp = sub.add_parser("speed", help="speed benchmarks (bench.speed)", add_help=False)
    sp.add_argument("speed_args", nargs=argparse.REMAINDER)

    bm = sub.add_parser("benchmarks", help="run CIFAR-10 and 15-Scene comparisons and/or write BENCHMARKS.md")
    bm.add_argument("--from", dest="from_dirs", nargs="+", metavar="DIR", default=None,
                    help="render existing report folders (or report.json files) only; no run")
    bm.add_argument("--write", default="BENCHMARKS.md", metavar="FILE", help="Markdown file to write (default: BENCHMARKS.md)")
    bm.add_argument("--out", default="runs/benchmarks", metavar="DIR", help="where the runs go (default: runs/benchmarks)")
    bm.add_argument("--datasets", default="cifar10,scene15", metavar="NAMES", help="datasets to run (default: cifar10,scene15)")
    bm.add_argument("--root", default=None, metavar="PATH", help="dataset root (see compare --root)")
    bm.add_argument("--epochs", type=positive_int, default=None, metavar="E", help="CNN epochs")
    bm.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    bm.add_argument("--n-jobs", type=int, default=None)
    ca = sub.add_parser(
        "cache", help="list or clear the features cache",
        description="The features cache (extracted and encoded features of the classic pipelines, "
                    "$CLASSICVISION_CACHE or ~/.cache/classicvision/bench) is never evicted on its own: "
                    "'cache list' shows its entries, 'cache clear' removes some or all of them.",
    )
    ca.add_argument("action", nargs="?", default="list", choices=("list", "clear"))
    ca.add_argument("keys", nargs="*", metavar="KEY", help="clear: entries whose key starts with KEY")
    ca.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                    help="clear: entries not modified for DAYS days")
    ca.add_argument("--all", action="store_true", help="clear: every entry")
    ca.add_argument("--datasets", action="store_true",
                    help="clear: also the decoded datasets (classicvision.datasets.clear_cache)")
    # delayed like the commands' own modules: its option list names the disturbances
    # (numpy and OpenCV, about 0.5 s), which only a parser needs
    from bench.robustness import add_parser as add_robustness_parser

    add_robustness_parser(sub)
    return parser


def _cmd_cache(args: argparse.Namespace, out=None) -> int:
    import time

    from bench.cache import FeatureCache
    from bench.isolation import format_bytes

    out = out or sys.stdout
    cache = FeatureCache()
    if args.action == "list":
        if args.keys or args.all or args.older_than is not None or args.datasets:
            print("error: cache list takes no KEY, --all, --older-than or --datasets", file=sys.stderr)
            return 2
        entries = cache.entries()
        print(f"features cache: {cache.root} ({len(entries)} entries, {format_bytes(sum(e['bytes'] for e in entries))})",
              file=out)
        if entries:
            print(f"  {'key':<12}  {'size':>9}  {'age':>6}  {'preset':<22} {'train x features':<18} {'test':>6}",
                  file=out)
        for e in entries:
            meta = e["meta"] or {}
            age = f"{(time.time() - e['modified']) / 86400:.1f}d"
            shape = f"{meta.get('n_train', '?')}x{meta.get('n_features', '?')}"
            preset = "(incomplete)" if e["partial"] else str(meta.get("preset", "?"))
            print(f"  {e['key'][:12]:<12}  {format_bytes(e['bytes']):>9}  {age:>6}  {preset:<22} {shape:<18} "
                  f"{meta.get('n_test', '?'):>6}", file=out)
        return 0
    if not (args.keys or args.all or args.older_than is not None or args.datasets):
        print("error: cache clear needs KEY..., --older-than DAYS, --all or --datasets", file=sys.stderr)
        return 2
    try:
        removed = cache.remove(keys=args.keys, older_than_days=args.older_than, everything=args.all)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"removed {len(removed)} features cache entries ({format_bytes(sum(e['bytes'] for e in removed))}) "
          f"from {cache.root}", file=out)
    if args.datasets:
        from classicvision.datasets import clear_cache

        print(f"removed {clear_cache()} decoded datasets", file=out)
    return 0


def _config_argv(path: Path) -> list[str]:
    """The ``compare`` flags a ``--config`` YAML file stands for.

    Raises
    ------
    ValueError
        The file cannot be read, is not YAML (tags such as ``!!python/...`` are refused:
        only plain values are read), is not a mapping, or names an unknown option.
    """
    import yaml

    if not path.is_file():
        raise ValueError(f"--config: file not found: {path}")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"--config {path}: not a plain YAML file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values")
    options = {flags[0][2:].replace("-", "_"): (flags[0], kw) for flags, kw in COMPARE_OPTIONS}
    argv: list[str] = []
    for key, value in cfg.items():
        dest = str(key).replace("-", "_")
        if dest not in options or dest == "config":
            raise ValueError(f"--config {path}: unknown option {key!r}")
        flag, kw = options[dest]
        if kw.get("action") == "store_true":
            if not isinstance(value, bool):
                raise ValueError(f"--config {path}: {key} must be true or false, got {value!r}")
            argv += [flag] if value else []
            continue
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        if isinstance(value, (dict, bool)):
            raise ValueError(f"--config {path}: {key} must be a plain value, got {value!r}")
        argv.append(f"{flag}={value}")
    return argv


def _apply_config(argv: list[str], parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; for ``compare --config FILE`` the file's options come
    first, as if typed before the command line's own flags (which win), and go through
    the same checks."""
    args = parser.parse_args(argv)
    if args.command != "compare" or not args.config:
        return args
    try:
        extra = _config_argv(Path(args.config))
    except ValueError as exc:
        parser.error(str(exc))
    return parser.parse_args(["compare", *extra, *argv[1:]])


def _cmd_list(out=None) -> int:
    out = out or sys.stdout
    rc = 0
    print("Datasets:", file=out)
    try:
        from classicvision.datasets import DATASETS

        items = DATASETS.items() if isinstance(DATASETS, dict) else ((d, "") for d in DATASETS)
        for name, desc in items:
            print(f"  {name:<12} {desc}", file=out)
    except Exception as exc:
        print(f"  (unavailable: {type(exc).__name__}: {exc})", file=out)
        rc = 1
    print("\nPresets:", file=out)
    try:
        from classicvision.presets import PRESETS

        for name, meta in PRESETS.items():
            meta = meta if isinstance(meta, dict) else {}
            print(f"  {name:<16} {meta.get('description', '')}", file=out)
            if meta.get("citation"):
                print(f"  {'':<16} {meta['citation']}", file=out)
            if meta.get("datasets"):
                print(f"  {'':<16} settings for: {', '.join(meta['datasets'])} (applied by compare --dataset)",
                      file=out)
    except Exception as exc:
        print(f"  (unavailable: {type(exc).__name__}: {exc})", file=out)
        rc = 1
    print("\nCNN models:", file=out)
    try:
        from cnn import list_models

        names = list(list_models())
        for i in range(0, len(names), 4):
            print("  " + "  ".join(f"{n:<22}" for n in names[i:i + 4]).rstrip(), file=out)
    except Exception as exc:
        print(f"  (unavailable: {type(exc).__name__}: {exc})", file=out)
        rc = 1
    return rc


def _cmd_benchmarks(args: argparse.Namespace) -> int:
    from bench.report import load_report, render_benchmarks

    if args.from_dirs:
        dirs = [Path(d) for d in args.from_dirs]
    else:
        from cnn import list_models

        available = set(list_models())
        cifar = ",".join(m for m in CIFAR_MODELS if m in available) or "none"
        dirs = []
        for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            out = Path(args.out) / ds
            argv = ["compare", "--dataset", ds, "--pipelines", "all", "--cnn", cifar if ds == "cifar10" else "none",
                    "--out", str(out), "--device", args.device]
            if args.root:
                argv += ["--root", args.root]
            if args.epochs:
                argv += ["--epochs", str(args.epochs)]
            if args.n_jobs is not None:
                argv += ["--n-jobs", str(args.n_jobs)]
            rc = main(argv)
            if rc == 2:
                return rc
            dirs.append(out)
    try:
        reports = [(str(d), load_report(d)) for d in dirs]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render_benchmarks(reports)
    Path(args.write).write_text(text, encoding="utf-8")
    print(f"wrote {args.write} from {len(reports)} report(s)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "speed":
        import importlib

        try:
            speed = importlib.import_module("bench.speed")
        except ImportError as exc:
            print(f"error: bench.speed is not available ({exc})", file=sys.stderr)
            return 2
        return int(speed.main(argv[1:]) or 0)
    parser = get_args_parser()
    args = _apply_config(argv, parser)
    if args.command == "list":
        return _cmd_list()
    if args.command == "predict":
        from bench.predict import predict_main

        return predict_main(args.model, args.images, top_k=args.top_k)
    if args.command == "benchmarks":
        return _cmd_benchmarks(args)
    if args.command == "cache":
        return _cmd_cache(args)
    if args.command == "robustness":
        from bench.robustness import cmd as robustness_cmd

        return robustness_cmd(args)
    if args.command == "compare":
        from bench.compare import DatasetError, UsageError, run_compare
        from bench.progress import Progress

        progress = Progress(None if args.quiet else sys.stderr)
        command = "python -m bench " + shlex.join(argv)
        # SIGTERM (a scheduler's or kill's stop) ends a comparison as Ctrl-C does: the
        # running run is stopped and the finished ones are kept
        previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
        try:
            report, rc = run_compare(args, command=command, progress=progress)
            if args.robustness and report.get("out"):  # compare has released its lock by now
                from bench.robustness import run_robustness

                try:
                    run_robustness(report["out"], seed=args.seed, device=args.device, progress=progress)
                except (UsageError, DatasetError, ValueError) as exc:
                    print(f"error: robustness: {exc}", file=sys.stderr)
                    rc = rc or 1
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted: finished runs are in report.json; re-run with the same --out to resume",
                  file=sys.stderr)
            return 130
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        _print_summary(report)
        return rc
    parser.error(f"unknown command {args.command!r}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _main_thread() -> bool:
    """Signal handlers can only be installed from the main thread."""
    return threading.current_thread() is threading.main_thread()


def _print_summary(report: dict) -> None:
    from bench.report import md_table, summary_rows

    print(md_table(summary_rows(report)))
    if report.get("out"):
        print(f"report: {report['out']}/report.md, {report['out']}/report.html")
