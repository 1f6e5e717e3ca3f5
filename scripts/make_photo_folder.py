#!/usr/bin/env python
"""Build a folder of large colour "photos" from 15-Scene, for benchmarking.

The benchmark datasets are small (CIFAR-10: 32x32) or scene-sized gray images
(15-Scene: about 250x300). This script makes the case the presets' size bounds
and colour modes are for: photo-sized colour JPEGs. Every selected 15-Scene image
is enlarged to a random size between ``--min-side`` and ``--max-side`` pixels on
its longer side (4:3, in the source image's orientation: 500x375 to 800x600 by
default), tinted with a colour of its class (mixed into the gray image, with mild
per-image jitter of hue, strength and brightness) and written as JPEG quality 90.

Layout (``--out OUT``)::

    OUT/train/<class>/<name>.jpg   OUT/test/<class>/<name>.jpg      (default)
    OUT/<class>/train_<name>.jpg   OUT/<class>/test_<name>.jpg      (--flat)

Both load with :func:`classicvision.datasets.load_image_folder` (the flat one
without a fixed split). Everything is deterministic given ``--seed``. The output
is a derivative of the dataset: never commit it.

Example::

    python scripts/make_photo_folder.py --out /tmp/photos15
    python -m bench compare --dataset folder --root /tmp/photos15 --pipelines lazebnik_spm
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scene15.tar.gz"
JPEG_QUALITY = 90
TINT_SATURATION = 0.65  # of the class colours (HSV, value 1)
TINT_STRENGTH = (0.30, 0.45)  # share of the tinted image in the mix, per image
HUE_JITTER = 0.02  # per image, as a fraction of the hue circle
GAIN_JITTER = (0.92, 1.08)  # per-image brightness factor
_LUMA = np.array([0.299, 0.587, 0.114])


def class_colors(n_classes: int) -> np.ndarray:
    """(n_classes, 3) RGB class colours in ``[0, 1]``: hues evenly spaced around the circle."""
    return np.array([colorsys.hsv_to_rgb(k / n_classes, TINT_SATURATION, 1.0) for k in range(n_classes)])


def photo_size(shape: Sequence[int], longer: int) -> tuple[int, int]:
    """``(height, width)`` of a 4:3 photo with this longer side, in the orientation of ``shape``."""
    shorter = int(round(longer * 3 / 4))
    return (longer, shorter) if shape[0] > shape[1] else (shorter, longer)


def make_photo(gray: np.ndarray, color: Sequence[float], size: tuple[int, int],
               rng: np.random.Generator) -> np.ndarray:
    """One tinted, resized colour photo.

    Parameters
    ----------
    gray : (H, W) or (H, W, 3) ndarray of uint8
        Source image (colour is converted to gray first).
    color : (3,) sequence of float
        The class colour, RGB in ``[0, 1]``.
    size : (int, int)
        Output ``(height, width)``.
    rng : numpy.random.Generator
        Draws the per-image jitter.

    Returns
    -------
    (height, width, 3) ndarray of uint8
        RGB.
    """
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    h, w = size
    enlarge = h * w >= gray.shape[0] * gray.shape[1]
    img = cv2.resize(gray, (w, h), interpolation=cv2.INTER_CUBIC if enlarge else cv2.INTER_AREA)
    g = img.astype(np.float64)[:, :, None] / 255.0
    hue, sat, val = colorsys.rgb_to_hsv(*color)
    hue = (hue + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    tint = np.array(colorsys.hsv_to_rgb(hue, sat, val))
    tint /= tint @ _LUMA  # keep the gray image's brightness
    alpha = rng.uniform(*TINT_STRENGTH)
    gain = rng.uniform(*GAIN_JITTER)
    out = ((1 - alpha) * g + alpha * g * tint) * gain
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def _load(source: Path, split: str, n_train: int, n_test: int, seed: int):
    from classicvision.datasets import load_image_folder

    return load_image_folder(source, split=split, train_per_class=n_train, test_per_class=n_test,
                             random_state=seed, cache=False)


def build(source: Path, out: Path, *, n_train: int = 40, n_test: int = 40, seed: int = 0,
          min_side: int = 500, max_side: int = 800, flat: bool = False) -> int:
    """Write the photo folder; return the number of images written.

    Parameters
    ----------
    source : Path
        ImageFolder folder or archive (``<split>/<class>/<file>``, or
        ``<class>/<file>`` to split per class).
    out : Path
        Output folder; must be empty or absent.
    n_train, n_test : int
        Images per class drawn from the source's train and test splits.
    seed : int
        Seeds the draws, the sizes and the jitter.
    min_side, max_side : int
        Range of the longer side in pixels (the shorter is 3/4 of it).
    flat : bool
        ``OUT/<class>/<split>_<name>.jpg`` instead of ``OUT/<split>/<class>/<name>.jpg``.

    Raises
    ------
    ValueError
        For a bad argument or a non-empty ``out``, naming it.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"--n-train and --n-test must be at least 1, got {n_train} and {n_test}")
    if not 4 <= min_side <= max_side:
        raise ValueError(f"need 4 <= --min-side <= --max-side, got {min_side} and {max_side}")
    if not Path(source).exists():
        raise ValueError(f"source dataset {source} not found; pass --source PATH")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder {out} is not empty; choose another --out")
    rng = np.random.default_rng(seed)
    written = 0
    colors = None
    for split in ("train", "test"):
        data = _load(source, split, n_train, n_test, seed)
        if colors is None:
            names = list(data.target_names)
            colors = class_colors(len(names))
        order = np.argsort(np.asarray(data.filenames, dtype=str), kind="stable")
        for i in order:
            cls = names[int(data.target[i])]
            image = data.images[i]
            size = photo_size(image.shape, int(rng.integers(min_side, max_side + 1)))
            photo = make_photo(image, colors[int(data.target[i])], size, rng)
            stem = Path(str(data.filenames[i])).stem
            path = out / cls / f"{split}_{stem}.jpg" if flat else out / split / cls / f"{stem}.jpg"
            if path.exists():
                raise ValueError(f"two source images map to {path}; their file names collide")
            path.parent.mkdir(parents=True, exist_ok=True)
            ok = cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise OSError(f"could not write {path}")
            written += 1
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make_photo_folder.py",
        description="Build a folder of tinted, enlarged colour JPEG 'photos' (default 500x375 to "
                    "800x600 px, 15 classes) from 15-Scene, for benchmarking the presets on "
                    "photo-sized colour images. Never commit the output.",
        epilog="example: python scripts/make_photo_folder.py --out /tmp/photos15 "
               "(40 + 40 images per class: 1,200 JPEGs)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (absent or empty)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"ImageFolder folder or archive to draw from (default: {DEFAULT_SOURCE})")
    parser.add_argument("--n-train", type=int, default=40, help="training images per class (default 40)")
    parser.add_argument("--n-test", type=int, default=40, help="test images per class (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws, sizes and tints (default 0)")
    parser.add_argument("--min-side", type=int, default=500,
                        help="smallest longer side in px (default 500: 500x375)")
    parser.add_argument("--max-side", type=int, default=800,
                        help="largest longer side in px (default 800: 800x600)")
    parser.add_argument("--flat", action="store_true",
                        help="write OUT/<class>/<split>_<name>.jpg (no split folders)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        n = build(args.source, args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                  min_side=args.min_side, max_side=args.max_side, flat=args.flat)
    except ValueError as exc:
        print(f"make_photo_folder.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
