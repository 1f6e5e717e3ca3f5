"""Fuzzing the image decoders and the archive loaders with Hypothesis.

Property: whatever the bytes, :func:`decode_image` returns a ``uint8`` image
and :func:`load_image_folder` a Bunch of ``uint8`` images, or they raise a
``ValueError`` whose message names the file; never another exception type,
never a hang. Every test is derandomized (the same examples on every run) and
bounded, about a minute in all on two busy cores.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import signal
import struct
import tarfile
import warnings
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classicvision.datasets import decode_image, load_image_folder

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NAME = "fuzzed-file.img"


@contextlib.contextmanager
def _no_hang(seconds: float = 20.0):
    """Fail an example that takes longer than ``seconds`` (checked between bytecodes)."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows
        yield
        return

    def _timeout(signum, frame):
        raise AssertionError(f"no answer within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_decode(data: bytes, **kwargs) -> np.ndarray | None:
    with _no_hang(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's header readers warn about corrupt EXIF
        try:
            image = decode_image(data, NAME, **kwargs)
        except ValueError as exc:
            assert NAME in str(exc), f"error does not name the file: {exc}"
            return None
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    assert image.flags.c_contiguous and image.size > 0
    return image


def _encode(ext: str, shape) -> bytes:
    img = np.random.default_rng(len(shape) + len(ext)).integers(0, 256, size=shape, dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


VALID = {
    "png_rgb": _encode(".png", (9, 7, 3)),
    "png_gray": _encode(".png", (5, 11)),
    "jpeg_rgb": _encode(".jpg", (16, 12, 3)),
    "jpeg_gray": _encode(".jpg", (8, 8)),
}
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xc0", b"GIF89a", b"BM",
         b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P6\n", b"P5 1 1 255\n"]


# --------------------------------------------------------------------------- decoders
@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=2048))
def test_random_bytes(prefix, body):
    _check_decode(prefix + body)


@FUZZ
@given(
    which=st.sampled_from(sorted(VALID)),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=4),
)
def test_truncated_and_corrupted_png_and_jpeg(which, cut, flips):
    data = bytearray(VALID[which][: int(len(VALID[which]) * cut)])
    for where, value in flips:
        if data:
            data[int(where * len(data))] = value
    _check_decode(bytes(data))


def _png(width: int, height: int, depth: int, color: int, idat: bytes, good_crc: bool) -> bytes:
    def chunk(kind, payload, crc_ok=True):
        crc = zlib.crc32(kind + payload) ^ (0 if crc_ok else 1)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr, good_crc) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@FUZZ
@given(
    width=st.one_of(st.integers(1, 300), st.integers(1, 2**31 - 1)),
    height=st.one_of(st.integers(1, 300), st.integers(1, 2**31 - 1)),
    mode=st.sampled_from([(1, 0), (8, 0), (16, 0), (8, 2), (16, 2), (8, 3), (8, 4), (8, 6), (16, 6)]),
    idat=st.one_of(st.just(zlib.compress(bytes(4096))), st.binary(max_size=256)),
    good_crc=st.booleans(),
)
def test_huge_declared_png_sizes(width, height, mode, idat, good_crc):
    data = _png(width, height, mode[0], mode[1], idat, good_crc)
    limit = 1 << 16  # keeps every decode attempt small; the refusal must come first
    image = _check_decode(data, max_pixels=limit)
    if width * height > limit:
        assert image is None
        with pytest.raises(ValueError, match=rf"{NAME}: image of {width}x{height} .* exceeds the limit"):
            decode_image(data, NAME, max_pixels=limit)
    if width * height > 89_478_485:  # the module default refuses it from the header too
        with pytest.raises(ValueError, match="exceeds the limit of 89,478,485"):
            decode_image(data, NAME)


@FUZZ
@given(width=st.integers(0, 65535), height=st.integers(0, 65535), cut=st.floats(0.2, 1.0))
def test_huge_declared_jpeg_sizes(width, height, cut):
    data = bytearray(VALID["jpeg_rgb"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    image = _check_decode(bytes(data[: int(len(data) * cut)]), max_pixels=1 << 16)
    if width * height > 1 << 16:
        assert image is None


# --------------------------------------------------------------------------- loaders
def _valid_tar(fmt=tarfile.USTAR_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for i, (cls, key) in enumerate([("cat", "png_rgb"), ("cat", "jpeg_rgb"), ("dog", "png_rgb")]):
            info = tarfile.TarInfo(f"top/{cls}/{i}.{'png' if key.startswith('png') else 'jpg'}")
            info.size, info.mtime = len(VALID[key]), 1_600_000_000
            tf.addfile(info, io.BytesIO(VALID[key]))
    return out.getvalue()


TAR = _valid_tar()
N_HEADERS = 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _check_load(path, **kwargs):
    with _no_hang(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on_error="skip" warns about what it left out
        try:
            data = load_image_folder(path, cache=False, n_jobs=1, **kwargs)
        except ValueError as exc:
            assert str(path) in str(exc), f"error does not name the archive: {exc}"
            return None
    images = data.images if isinstance(data.images, list) else list(data.images)
    assert len(images) == len(data.target) == len(data.filenames) > 0
    assert all(im.dtype == np.uint8 for im in images)
    return data


def test_the_unfuzzed_archive_loads(workdir):
    path = workdir / "plain.tar"
    path.write_bytes(TAR)
    assert len(_check_load(path).images) == 3


@FUZZ
@given(
    header=st.integers(0, N_HEADERS - 1),
    offset=st.integers(0, 511),
    junk=st.binary(min_size=1, max_size=64),
    fix_checksum=st.booleans(),
    compress=st.booleans(),
    on_error=st.sampled_from(["raise", "skip"]),
)
def test_random_tar_headers(workdir, header, offset, junk, fix_checksum, compress, on_error):
    data = bytearray(TAR)
    # Member headers sit at 0, then after each member's padded data.
    starts, pos = [], 0
    while len(starts) < N_HEADERS:
        starts.append(pos)
        size = int(TAR[pos + 124 : pos + 136].split(b"\0")[0] or b"0", 8)
        pos += 512 + -(-size // 512) * 512
    start = starts[header]
    data[start + offset : start + offset + len(junk)] = junk[: 512 - offset]
    if fix_checksum:  # so that the fast reader believes the garbled fields
        block = data[start : start + 512]
        block[148:156] = b" " * 8
        data[start + 148 : start + 156] = b"%06o\0 " % (sum(block) & 0o777777)
    payload = gzip.compress(bytes(data), mtime=0) if compress else bytes(data)
    path = workdir / ("fuzz.tar.gz" if compress else "fuzz.tar")
    path.write_bytes(payload)
    _check_load(path, on_error=on_error)


COMPRESSED = {
    "gz": gzip.compress(TAR, mtime=0),
    "bz2": bz2.compress(TAR),
    "xz": lzma.compress(TAR),
    "pax.gz": gzip.compress(_valid_tar(tarfile.PAX_FORMAT), mtime=0),  # read by the tarfile fallback
}


@FUZZ
@given(kind=st.sampled_from(sorted(COMPRESSED)), cut=st.floats(0.0, 1.0, exclude_max=True),
       split=st.sampled_from([None, "top"]))
def test_truncated_compressed_tar(workdir, kind, cut, split):
    path = workdir / f"cut.tar.{kind}"
    path.write_bytes(COMPRESSED[kind][: int(len(COMPRESSED[kind]) * cut)])
    assert _check_load(path, split=split) is None  # every cut loses at least the stream's trailer


@FUZZ
@given(body=st.binary(max_size=1500), compress=st.booleans())
def test_random_archive_bytes(workdir, body, compress):
    path = workdir / "random.tar"
    path.write_bytes(gzip.compress(body, mtime=0) if compress else body)
    _check_load(path)
