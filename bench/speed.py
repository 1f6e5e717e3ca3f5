"""Feature-extraction and encoding speed against the reference implementations.

``python -m bench speed [--json FILE] [--n-images N] [--repeat R] [--threads T]``
(or ``python -m bench.speed ...``) times, side by side in one process on the same
images, with the same thread count for OpenCV and for numpy's BLAS / OpenMP (and
torch when it is installed):

=======================  =================================  =============================================
key                      ours                               reference
=======================  =================================  =============================================
``dense_sift_vs_opencv`` ``DenseSIFT(sizes=(16,), step=8)`` ``cv2.SIFT.compute`` on the same grid of
                                                            keypoints (``size = 16 / 6``, ``angle = 0``:
                                                            OpenCV's 4x4 bins of ``1.5 * size`` px then
                                                            cover the same 16 px support)
``hog_vs_skimage``       ``HOG(output="vector")``           ``skimage.feature.hog``, same parameters
``lbp_vs_skimage``       ``LBP(P=8, R=1, grid=(4, 4))``     ``skimage.feature.local_binary_pattern``
                                                            (``'nri_uniform'``) + ``np.histogram`` per cell
``fisher_vs_sklearn``    ``FisherVector.transform``         ``GaussianMixture.predict_proba`` based
                                                            encoding (:mod:`bench._speed_fisher`)
=======================  =================================  =============================================

Each ratio is reference seconds / our seconds (> 1: we are faster), from the best
of ``--repeat`` runs over the whole image set, on process CPU time by default with
one thread (steady on a shared machine) or wall-clock time (``--clock wall``, the
default with several threads); each row also records the other clock. The images are deterministic:
random 256 x 256 grayscale crops of the pictures bundled with scikit-image, and,
when ``../shared/datasets/cifar10.tar.gz`` exists, the first CIFAR-10 test images
(32 x 32) for a small-image row in ``details``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np

__all__ = ["get_args_parser", "main", "make_images", "run_speed"]

_SKIMAGE_PICTURES = (
    "camera", "astronaut", "coins", "coffee", "chelsea", "clock", "horse", "moon",
    "page", "text", "rocket", "grass", "gravel", "brick", "cell", "immunohistochemistry",
    "hubble_deep_field", "colorwheel",
)
_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10.tar.gz"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Command-line options of ``python -m bench speed``."""
    p = argparse.ArgumentParser(
        prog="python -m bench speed",
        description="Time our extractors / Fisher encoder against OpenCV, scikit-image, scikit-learn.",
        add_help=add_help,
    )
    p.add_argument("--json", metavar="FILE", help="write the ratios and details as JSON here")
    p.add_argument("--n-images", type=int, default=50, help="256x256 test images (default 50)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs; the best is kept (default 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for OpenCV, BLAS/OpenMP and torch (default 1)")
    p.add_argument("--size", type=int, default=256, help="side of the test images (default 256)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="timer for the ratios: process CPU time (default with --threads 1) "
                        "or wall clock (default otherwise); the other is kept in details")
    p.add_argument("--no-cifar", action="store_true", help="skip the CIFAR-10 (32x32) row")
    p.add_argument("--cifar-path", default=str(_CIFAR), help="cifar10.tar.gz in ImageFolder layout")
    return p


def _set_threads(n: int) -> dict:
    """Use ``n`` threads in OpenCV, BLAS/OpenMP (threadpoolctl) and torch."""
    cv2.setNumThreads(n)
    info = {"opencv": n}
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
        info["blas_openmp"] = n
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        info["blas_openmp"] = None
    try:
        import torch

        torch.set_num_threads(n)
        info["torch"] = n
    except ImportError:  # pragma: no cover
        info["torch"] = None
    return info


def make_images(n: int, size: int = 256, seed: int = 0) -> list:
    """``n`` deterministic ``size x size`` uint8 grayscale crops of skimage's pictures."""
    import skimage.data

    from classicvision.base import check_image

    pictures = []
    for name in _SKIMAGE_PICTURES:
        try:
            img = check_image(getattr(skimage.data, name)())
        except Exception:  # a picture that needs downloading: skip it
            continue
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        short = min(img.shape)
        if short < size:
            f = size / short
            img = cv2.resize(img, (int(np.ceil(img.shape[1] * f)), int(np.ceil(img.shape[0] * f))))
        pictures.append(img)
    if not pictures:
        raise RuntimeError("no scikit-image picture could be loaded")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = pictures[i % len(pictures)]
        y = int(rng.integers(0, img.shape[0] - size + 1))
        x = int(rng.integers(0, img.shape[1] - size + 1))
        crop = img[y : y + size, x : x + size]
        if (i // len(pictures)) % 2:
            crop = crop[:, ::-1]
        out.append(np.ascontiguousarray(crop))
    return out


def load_cifar_images(path, n: int) -> list:
    """The first ``n`` JPEGs of the CIFAR-10 archive (ImageFolder layout), as gray."""
    out = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                continue
            data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
            img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
            if img is not None:
                out.append(img)
            if len(out) >= n:
                break
    return out


_CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_LAST = {}


def _best(fn, repeat: int, clock: str | None = None) -> float:
    """Best of ``repeat`` runs on the selected clock (both clocks are recorded)."""
    clock = clock or _LAST.get("clock", "wall")
    best = {"wall": np.inf, "cpu": np.inf}
    for _ in range(repeat):
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        fn()
        best["wall"] = min(best["wall"], time.perf_counter() - t_wall)
        best["cpu"] = min(best["cpu"], time.process_time() - t_cpu)
    _LAST.setdefault("both", []).append({k: float(v) for k, v in best.items()})
    return float(best[clock])


def _dense_sift_pair(images, repeat, size=16, step=8):
    from classicvision.features import DenseSIFT

    est = DenseSIFT(sizes=(size,), step=step).fit(images[:1])
    sets = est.transform(images)
    sift = cv2.SIFT_create()
    kps = []
    for img, s in zip(images, sets):
        h, w = img.shape[:2]
        kps.append([
            cv2.KeyPoint(float(x * w - 0.5), float(y * h - 0.5), size / 6.0, 0.0)
            for x, y in s.positions
        ])

    def ref():
        return [sift.compute(img, k)[1] for img, k in zip(images, kps)]

    ours_s = _best(lambda: est.transform(images), repeat)
    ref_s = _best(ref, repeat)
    # agreement (different smoothing / windowing, so a correlation, not equality)
    ref_desc = ref()
    corr = [
        np.corrcoef(a, b)[0, 1]
        for s, r in zip(sets, ref_desc)
        for a, b in zip(s.descriptors, r)
        if a.any() and b.any()
    ]
    n_desc = int(sum(len(s) for s in sets))
    return ours_s, ref_s, {"descriptors": n_desc, "mean_correlation": float(np.mean(corr))}, sets


def _hog_pair(images, repeat):
    from skimage.feature import hog as sk_hog

    from classicvision.features import HOG

    est = HOG(output="vector").fit(images[:1])
    kw = dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
    ours_s = _best(lambda: est.transform(images), repeat)
    ref_s = _best(lambda: [sk_hog(im, **kw) for im in images], repeat)
    diff = float(np.abs(est.transform(images) - np.stack([sk_hog(im, **kw) for im in images])).max())
    return ours_s, ref_s, {"max_abs_diff": diff}


def _lbp_reference(image, grid=(4, 4)):
    from skimage.feature import local_binary_pattern

    codes = local_binary_pattern(image, 8, 1, "nri_uniform")
    ey = np.round(np.linspace(0, image.shape[0], grid[0] + 1)).astype(int)
    ex = np.round(np.linspace(0, image.shape[1], grid[1] + 1)).astype(int)
    out = []
    for i in range(grid[0]):
        for j in range(grid[1]):
            h, _ = np.histogram(codes[ey[i] : ey[i + 1], ex[j] : ex[j + 1]], bins=59, range=(0, 59))
            out.append(h / max(h.sum(), 1))
    return np.concatenate(out)


def _lbp_pair(images, repeat):
    from classicvision.features import LBP

    est = LBP(P=8, R=1, method="uniform", grid=(4, 4)).fit(images[:1])
    ours_s = _best(lambda: est.transform(images), repeat)
    ref_s = _best(lambda: [_lbp_reference(im) for im in images], repeat)
    diff = float(np.abs(est.transform(images) - np.stack([_lbp_reference(im) for im in images])).max())
    return ours_s, ref_s, {"max_abs_diff": diff}


def _fisher_pair(sets, repeat):
    try:
        from bench._speed_fisher import time_fisher
    except ImportError as exc:
        return None, None, {"error": f"bench._speed_fisher unavailable: {exc}"}
    try:
        ours_s, ref_s = time_fisher(sets, repeat=repeat)
    except Exception as exc:  # record, keep the other rows
        return None, None, {"error": f"{type(exc).__name__}: {exc}"}
    return float(ours_s), float(ref_s), {"n_images": len(sets), "clock": "wall (bench._speed_fisher)"}


def _row(ours_s, ref_s, extra) -> dict:
    ratio = None if not ours_s or ref_s is None else ref_s / ours_s
    row = {"ours_s": ours_s, "reference_s": ref_s, "ratio": ratio, **extra}
    both = _LAST.pop("both", [])
    if len(both) == 2:  # the other clock too, for the record
        other = "wall" if _LAST.get("clock") == "cpu" else "cpu"
        o, r = both[0][other], both[1][other]
        row[f"{other}_clock"] = {"ours_s": o, "reference_s": r, "ratio": r / o if o else None}
    return row


def run_speed(n_images=50, repeat=3, threads=1, size=256, cifar_path=None, clock=None) -> dict:
    """Run every comparison; return the result dictionary written by ``--json``.

    ``clock``: ``'cpu'`` (process CPU time; the default with one thread, steadier
    on a shared machine) or ``'wall'`` (the default with several threads, where
    CPU time would add the threads up).
    """
    clock = clock or ("cpu" if threads == 1 else "wall")
    _LAST.clear()
    _LAST["clock"] = clock
    thread_info = _set_threads(threads)
    images = make_images(n_images, size)
    details = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "threads": thread_info,
        "images": {"natural": f"{len(images)} x {size}x{size} gray (skimage.data crops)"},
        "repeat": repeat,
        "clock": clock,
        "opencv": cv2.__version__,
    }
    import skimage
    import sklearn

    details["versions"] = {"numpy": np.__version__, "scikit-image": skimage.__version__,
                           "scikit-learn": sklearn.__version__, "opencv": cv2.__version__}
    o, r, extra, sets = _dense_sift_pair(images, repeat)
    details["dense_sift_vs_opencv"] = _row(o, r, extra)
    o, r, extra = _hog_pair(images, repeat)
    details["hog_vs_skimage"] = _row(o, r, extra)
    o, r, extra = _lbp_pair(images, repeat)
    details["lbp_vs_skimage"] = _row(o, r, extra)
    o, r, extra = _fisher_pair(sets, repeat)
    details["fisher_vs_sklearn"] = _row(o, r, extra)
    if cifar_path and Path(cifar_path).exists():
        small = load_cifar_images(cifar_path, n_images * 4)
        if small:
            details["images"]["cifar"] = f"{len(small)} x 32x32 gray (CIFAR-10, first in archive)"
            o, r, extra, _ = _dense_sift_pair(small, repeat)
            details["cifar32_dense_sift_vs_opencv"] = _row(o, r, extra)
            o, r, extra = _hog_pair(small, repeat)
            details["cifar32_hog_vs_skimage"] = _row(o, r, extra)
            o, r, extra = _lbp_pair(small, repeat)
            details["cifar32_lbp_vs_skimage"] = _row(o, r, extra)
    keys = ("dense_sift_vs_opencv", "hog_vs_skimage", "lbp_vs_skimage", "fisher_vs_sklearn")
    result = {k: details[k]["ratio"] for k in keys}
    result["details"] = details
    return result


def _format_table(result: dict) -> str:
    lines = [f"{'name':32s} {'ours s':>10s} {'reference s':>12s} {'ratio':>8s}"]
    for name, row in result["details"].items():
        if not isinstance(row, dict) or "ratio" not in row:
            continue
        fmt = lambda v, w, p: f"{v:{w}.{p}f}" if v is not None else f"{'n/a':>{w}s}"  # noqa: E731
        line = f"{name:32s} {fmt(row['ours_s'], 10, 4)} {fmt(row['reference_s'], 12, 4)} {fmt(row['ratio'], 8, 2)}"
        if row.get("error"):
            line += f"  ({row['error']})"
        lines.append(line)
    th = result["details"]["threads"]
    lines.append(f"threads: OpenCV={th['opencv']} BLAS/OpenMP={th['blas_openmp']} torch={th['torch']}; "
                 f"best of {result['details']['repeat']} runs, {result['details']['clock']} clock; "
                 "ratio = reference / ours")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of ``python -m bench speed``; returns the exit status."""
    args = get_args_parser().parse_args(argv)
    if args.n_images < 1 or args.repeat < 1 or args.threads < 1:
        print("--n-images, --repeat and --threads must be >= 1", file=sys.stderr)
        return 2
    result = run_speed(
        n_images=args.n_images, repeat=args.repeat, threads=args.threads, size=args.size,
        cifar_path=None if args.no_cifar else args.cifar_path, clock=args.clock,
    )
    print(_format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
