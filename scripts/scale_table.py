"""The scaling table of streamed ``compare`` runs: time per image and peak memory by size.

Reads the ``report.json`` of each ``compare --stream`` output folder given (one run each
for the same preset on growing datasets, e.g. the ImageNet-like folders of
``make_imagenet_like.py``) and prints a markdown table: images, the features step's
milliseconds per image (fit on the training images, then both splits written to the
stores), the classifier's out-of-core fit per training image (and per pass, for averaged
SGD, when the report has its pass times), the whole run per image,
the run's peak RSS, top-1 and top-5; then each column's largest over smallest value, the
figure the scaling claim is about (within 1.15: flat).

    python scripts/scale_table.py /tmp/scale5k /tmp/scale20k /tmp/scale80k

Only what the reports hold is used: nothing here is measured or typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _row(folder: Path, name: str | None) -> dict:
    report = json.loads((folder / "report.json").read_text())
    runs = [r for r in report["runs"] if r.get("status") == "ok" and (name is None or r["name"] == name)]
    if not runs:
        raise SystemExit(f"{folder}/report.json: no finished run{'' if name is None else ' named ' + name}")
    run = runs[0]
    t = run["timings"]
    ntr, nte = report["dataset"]["n_train"], report["dataset"]["n_test"]
    n = ntr + nte
    features = t["features_fit_seconds"] + t["features_test_seconds"]
    total = run["fit_seconds"] + run["predict_seconds"]
    return {"folder": str(folder), "run": run["name"], "train": ntr, "test": nte,
            "classes": len(report["dataset"]["classes"]),
            "features_ms": 1e3 * features / n, "svm_ms": 1e3 * t["classifier_fit_seconds"] / ntr,
            "pass_ms": (1e3 * sum(t["classifier_pass_seconds"]) / len(t["classifier_pass_seconds"]) / ntr
                        if t.get("classifier_pass_seconds") else None),
            "total_ms": 1e3 * total / n, "rss_gib": run["max_rss_bytes"] / 2**30,
            "top1": 100 * run["top1"], "top5": 100 * run["top5"], "total_s": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="compare --out folders, smallest first")
    parser.add_argument("--run", default=None, help="the run's name in each report (default: the first ok run)")
    args = parser.parse_args(argv)
    rows = [_row(f, args.run) for f in args.folders]
    print("| train images | test images | classes | features ms/image | SVM fit ms/train image "
          "| SVM ms/train image/pass | run ms/image | run s | peak RSS GiB | top-1 % | top-5 % |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        per_pass = "n/a" if r["pass_ms"] is None else f"{r['pass_ms']:.2f}"
        print(f"| {r['train']:,} | {r['test']:,} | {r['classes']} | {r['features_ms']:.2f} | {r['svm_ms']:.2f} "
              f"| {per_pass} | {r['total_ms']:.2f} | {r['total_s']:.0f} | {r['rss_gib']:.2f} | {r['top1']:.2f} "
              f"| {r['top5']:.2f} |")
    if len(rows) > 1:
        ratio = {k: max(r[k] for r in rows) / min(r[k] for r in rows)
                 for k in ("features_ms", "svm_ms", "total_ms", "rss_gib")}
        print(f"\nlargest / smallest: features {ratio['features_ms']:.3f}, SVM fit {ratio['svm_ms']:.3f}, "
              f"run {ratio['total_ms']:.3f} (per image); peak RSS {ratio['rss_gib']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
