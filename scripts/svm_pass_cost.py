"""The cost of one pass of the averaged-SGD linear SVMs, per image, at a given width and class count.

Issue 14: at ILSVRC scale (1,000 classes, the 69,632-D ``nec2010`` imagenet features)
scikit-learn's ``SGDClassifier`` (``LinearSVM(solver="asgd")``) updates one class after
another, one row at a time; ``LinearSVM(solver="minibatch-asgd")`` takes ``batch_size``
rows per step for every class at once. This script times one pass of each on random
float32 rows (the cost of a pass does not depend on the values) and prints the seconds
per image per pass, and for ``SGDClassifier`` the nanoseconds per row x feature x class.

``SGDClassifier`` is timed on ``--sgd-rows`` rows and ``--sgd-classes`` classes only (a
full pass at 1,000 classes takes minutes per thousand rows) and its cost per row x
feature x class scaled to the asked class count; the mini-batch solver is timed on
``--rows`` rows (its second pass: the first includes the step-size calibration).

Usage::

    PYTHONPATH=. python scripts/svm_pass_cost.py                    # 1,000 classes x 69,632-D
    PYTHONPATH=. python scripts/svm_pass_cost.py --features 12800 --classes 10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2048, help="rows of the mini-batch pass (default 2048)")
    p.add_argument("--features", type=int, default=69_632, help="feature width (default 69,632)")
    p.add_argument("--classes", type=int, default=1000, help="classes (default 1,000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="torch threads / SGDClassifier n_jobs (default 2)")
    p.add_argument("--sgd-rows", type=int, default=512, help="rows of the SGDClassifier pass (default 512)")
    p.add_argument("--sgd-classes", type=int, default=10, help="classes of the SGDClassifier pass (default 10)")
    args = p.parse_args(argv)

    from sklearn.linear_model import SGDClassifier

    from classicvision.kernels import LinearSVM

    rng = np.random.RandomState(0)
    X = rng.randn(args.rows, args.features).astype(np.float32)
    y = np.arange(args.rows) % args.classes
    mb = LinearSVM(C=1.0, solver="minibatch-asgd", n_passes=2, batch_size=args.batch_size,
                   block_rows=args.rows, n_threads=args.threads, random_state=0).fit(X, y)
    mb_s = mb.pass_seconds_[-1] / args.rows
    Xs = X[: args.sgd_rows]
    ys = np.arange(len(Xs)) % args.sgd_classes
    sgd = SGDClassifier(loss="squared_hinge", alpha=1e-4, average=True, max_iter=1, tol=None,
                        learning_rate="invscaling", eta0=1e-4, n_jobs=args.threads, random_state=0)
    t0 = time.perf_counter()
    sgd.partial_fit(Xs, ys, classes=np.arange(args.sgd_classes))
    sgd_ns = (time.perf_counter() - t0) / (len(Xs) * args.features * args.sgd_classes) * 1e9
    print(json.dumps({
        "features": args.features, "classes": args.classes, "threads": args.threads,
        "minibatch_asgd_ms_per_image_per_pass": round(1e3 * mb_s, 2),
        "sgdclassifier_ns_per_row_feature_class": round(sgd_ns, 2),
        "sgdclassifier_ms_per_image_per_pass": round(sgd_ns * args.features * args.classes / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
