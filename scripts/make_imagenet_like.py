#!/usr/bin/env python
"""Write a procedurally generated ImageNet-like dataset of JPEGs, for scale tests.

Every class is a family of patterns with its own parameters: a two-colour
background gradient at a class angle, sinusoidal stripes of a class
frequency, orientation and colour, and a few shapes of a class kind (disc,
rectangle, triangle, ring or cross), size and colour. Each image draws its
own variation around them (angles, frequency, phase, colours, shape
positions and sizes, brightness), then Gaussian pixel noise; its longer side
is about ``--size`` (+-10%) and its aspect ratio between 3:4 and 4:3. So the
classes are learnable but not by one pixel, and the images cost what
ImageNet's do to decode and describe.

Layout (``--out OUT``), as ILSVRC::

    OUT/synsets.txt                          the wnids, one a line (label order)
    OUT/train/<wnid>/<wnid>_<k>.JPEG
    OUT/val/<wnid>/ILSVRC2010_val_<n>.JPEG   (default)
    OUT/val/ILSVRC2010_val_<n>.JPEG          (--flat-val, classes shuffled) and
    OUT/ILSVRC2010_validation_ground_truth.txt  one 1-based label a line, in file order

Wnids are ``n%08d`` numbers increasing with the class index. Everything is
deterministic given ``--seed``, whatever ``--jobs``. Read it with
:func:`classicvision.datasets.load_imagenet` or ``load_dataset("imagenet")``.
Generated data: never commit it.

Example::

    python scripts/make_imagenet_like.py --out /tmp/inet --classes 1000 --per-class 80 --val-per-class 10
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

JPEG_QUALITY = 90
SHAPES = ("disc", "rectangle", "triangle", "ring", "cross")
GT_NAME = "ILSVRC2010_validation_ground_truth.txt"


def wnid(c: int) -> str:
    """The wnid-like name of class ``c`` (increasing with ``c``)."""
    return f"n{1_000_000 + 7_919 * c:08d}"


def class_params(seed: int, c: int) -> dict:
    """The pattern family of class ``c``: colours (BGR, 0-255), angles, frequency, shapes."""
    rng = np.random.default_rng([seed, 0, c])
    return {
        "bg0": rng.uniform(20, 235, 3),
        "bg1": rng.uniform(20, 235, 3),
        "bg_angle": rng.uniform(0, np.pi),
        "stripe_color": rng.uniform(0, 255, 3),
        "stripe_angle": rng.uniform(0, np.pi),
        "stripe_freq": rng.uniform(2.0, 14.0),  # cycles across the image
        "stripe_amp": rng.uniform(0.15, 0.5),
        "shape": int(rng.integers(len(SHAPES))),
        "shape_color": rng.uniform(0, 255, 3),
        "shape_count": int(rng.integers(1, 6)),
        "shape_size": rng.uniform(0.08, 0.22),  # radius, as a share of the shorter side
        "shape_angle": rng.uniform(0, np.pi),
    }


def image_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(height, width): longer side ``size`` +-10%, aspect ratio between 3:4 and 4:3."""
    longer = int(round(size * rng.uniform(0.9, 1.1)))
    shorter = int(round(longer * rng.uniform(0.75, 1.0)))
    return (longer, shorter) if rng.random() < 0.5 else (shorter, longer)


def _jitter(color: np.ndarray, rng: np.random.Generator, spread: float = 18.0) -> tuple:
    return tuple(float(v) for v in np.clip(color + rng.uniform(-spread, spread, 3), 0, 255))


def _draw_shape(img: np.ndarray, kind: str, centre, radius: float, angle: float, color, width: int) -> None:
    cx, cy = centre
    if kind == "disc":
        cv2.circle(img, (cx, cy), int(radius), color, -1, cv2.LINE_AA)
        return
    if kind == "ring":
        cv2.circle(img, (cx, cy), int(radius), color, width, cv2.LINE_AA)
        return
    corners = {"rectangle": 4, "triangle": 3, "cross": 4}[kind]
    t = angle + np.arange(corners) * 2 * np.pi / corners
    pts = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1).round().astype(np.int32)
    if kind == "cross":
        cv2.line(img, tuple(pts[0]), tuple(pts[2]), color, width, cv2.LINE_AA)
        cv2.line(img, tuple(pts[1]), tuple(pts[3]), color, width, cv2.LINE_AA)
    else:
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)


def make_image(params: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image of the class ``params``, with its own variation drawn from ``rng``.

    Parameters
    ----------
    params : dict
        From :func:`class_params`.
    rng : numpy.random.Generator
        Draws the per-image variation.
    size : int
        The longer side is about this many pixels (+-10%).

    Returns
    -------
    (H, W, 3) ndarray of uint8
        BGR (OpenCV order, ready for ``cv2.imencode``).
    """
    h, w = image_size(rng, size)
    # The smooth part (gradient and stripes, at most 14 cycles across) is
    # computed at half resolution and enlarged: 4x fewer float operations.
    sh, sw = (h + 1) // 2, (w + 1) // 2
    y = np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, sw, dtype=np.float32)[None, :]
    a = params["bg_angle"] + rng.uniform(-0.3, 0.3)
    ramp = x * np.float32(np.cos(a)) + y * np.float32(np.sin(a))
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    bg0 = np.asarray(_jitter(params["bg0"], rng), np.float32)
    bg1 = np.asarray(_jitter(params["bg1"], rng), np.float32)
    small = bg0 + (bg1 - bg0) * ramp[:, :, None]
    s = params["stripe_angle"] + rng.uniform(-0.17, 0.17)
    freq = params["stripe_freq"] * rng.uniform(0.85, 1.15)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(np.float32(2 * np.pi * freq) * (x * np.float32(np.cos(s)) + y * np.float32(np.sin(s)))
                  + np.float32(phase))
    mix = (np.float32(params["stripe_amp"] * 0.5) * (wave + 1))[:, :, None]
    stripe = np.asarray(_jitter(params["stripe_color"], rng), np.float32)
    small = small * (1 - mix) + stripe * mix
    img = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    kind = SHAPES[params["shape"]]
    short = min(h, w)
    for _ in range(params["shape_count"]):
        radius = params["shape_size"] * short * rng.uniform(0.7, 1.3)
        centre = (int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.1, 0.9) * h))
        angle = params["shape_angle"] + rng.uniform(-0.5, 0.5)
        _draw_shape(img, kind, centre, radius, angle, _jitter(params["shape_color"], rng),
                    max(2, int(radius / 4)))
    img = cv2.convertScaleAbs(img, alpha=float(rng.uniform(0.85, 1.15)))
    # Gaussian noise: a window at a random place of a fixed bank of N(0, 1)
    # samples, scaled; drawing fresh samples would cost more than the rest.
    bank = _noise_bank(size)
    oy, ox = (int(rng.integers(bank.shape[k] - img.shape[k] + 1)) for k in (0, 1))
    window = bank[oy : oy + h, ox : ox + w]
    return cv2.addWeighted(img, 1.0, window, float(rng.uniform(3.0, 10.0)), 0.0, dtype=cv2.CV_8U)


_BANKS: dict[int, np.ndarray] = {}


def _noise_bank(size: int) -> np.ndarray:
    """(2L, 2L, 3) float32 standard normal samples, L the largest image side for ``size``.

    The same in every process (a fixed seed), so the output does not depend on ``--jobs``.
    """
    bank = _BANKS.get(size)
    if bank is None:
        side = 2 * (int(round(size * 1.1)) + 1)
        bank = np.random.default_rng(12345).standard_normal((side, side, 3), dtype=np.float32)
        _BANKS[size] = bank
    return bank


def _write(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".JPEG", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _class_job(job: tuple) -> int:
    """Write every image of one class: ``(out, seed, c, per_class, val_slots, size, flat)``."""
    cv2.setNumThreads(1)  # one process a core; OpenCV's own threads would only contend
    out, seed, c, per_class, val_slots, size, flat = job
    params = class_params(seed, c)
    name = wnid(c)
    train = out / "train" / name
    train.mkdir(parents=True, exist_ok=True)
    for k in range(per_class):
        _write(train / f"{name}_{k}.JPEG", make_image(params, np.random.default_rng([seed, 1, c, k]), size))
    val = out / "val" if flat else out / "val" / name
    val.mkdir(parents=True, exist_ok=True)
    for k, number in enumerate(val_slots):
        image = make_image(params, np.random.default_rng([seed, 2, c, k]), size)
        _write(val / f"ILSVRC2010_val_{number:08d}.JPEG", image)
    return per_class + len(val_slots)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (absent or empty)")
    parser.add_argument("--classes", type=_positive, default=1000, help="number of classes (1000)")
    parser.add_argument("--per-class", type=_count, default=10, help="training images per class (10)")
    parser.add_argument("--val-per-class", type=_count, default=2, help="validation images per class (2)")
    parser.add_argument("--size", type=_positive, default=300, help="longer side, about (300 px)")
    parser.add_argument("--seed", type=_count, default=0, help="random seed (0)")
    parser.add_argument("--flat-val", action="store_true",
                        help="flat val/ with a ground-truth file, as ILSVRC, instead of class folders")
    parser.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1,
                        help="worker processes (all cores); the output does not depend on it")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: --out {out} exists and is not an empty folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    n_val = args.classes * args.val_per_class
    # Validation numbers 1..n_val in a seeded order of the classes, as ILSVRC's are.
    labels = np.repeat(np.arange(args.classes), args.val_per_class)
    labels = labels[np.random.default_rng([args.seed, 3]).permutation(n_val)]
    slots = [[] for _ in range(args.classes)]
    for number, c in enumerate(labels, 1):
        slots[c].append(number)
    (out / "synsets.txt").write_text("".join(wnid(c) + "\n" for c in range(args.classes)))
    if args.flat_val:
        (out / GT_NAME).write_text("".join(f"{c + 1}\n" for c in labels))
    jobs = [(out, args.seed, c, args.per_class, slots[c], args.size, args.flat_val)
            for c in range(args.classes)]
    start = time.perf_counter()
    if args.jobs == 1:
        written = sum(map(_class_job, jobs))
    else:
        import multiprocessing

        with multiprocessing.Pool(min(args.jobs, len(jobs))) as pool:
            written = sum(pool.imap_unordered(_class_job, jobs))
    took = time.perf_counter() - start
    print(f"wrote {written} images ({args.classes} classes) to {out} in {took:.1f} s "
          f"({written / max(took, 1e-9):.0f} images/s, {args.jobs} process(es))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
