"""bench: run the classic pipelines and the CNNs side by side, and report.

Commands (``python -m bench COMMAND --help`` for the options):

``compare``     fit and score presets and CNNs on one dataset; writes ``report.json``,
                ``report.md``, ``report.html`` and figures, resumable
``list``        datasets, presets and CNN models
``predict``     top-k classes of images with a model saved by ``compare --save-models``
``speed``       speed benchmarks (:mod:`bench.speed`)
``benchmarks``  run the CIFAR-10 / 15-Scene comparisons and write BENCHMARKS.md

The modules are importable as a library: :func:`bench.compare.run_compare`,
:func:`bench.runners.run_classic`, :func:`bench.runners.run_cnn`,
:func:`bench.report.write_reports`, :func:`bench.models_io.load_skops`.
"""

from bench.cli import get_args_parser, main

__all__ = ["get_args_parser", "main"]
