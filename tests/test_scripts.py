"""Tests of the helper scripts in scripts/ (run on tiny fake data)."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import classicvision.datasets  # noqa: F401  (the script imports it lazily; import cost belongs to collection)

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def photo_script():
    spec = importlib.util.spec_from_file_location("make_photo_folder", SCRIPTS / "make_photo_folder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fake_scene(tmp_path_factory):
    """A 15-Scene-like ImageFolder: train/test splits, 3 classes of 3 small gray images each."""
    root = tmp_path_factory.mktemp("scene") / "scene"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("bedroom", "coast", "forest"):
            (root / split / cls).mkdir(parents=True)
            for k in range(3):
                shape = (30, 24) if k == 2 else (24, 30)  # one portrait image per class
                image = rng.integers(40, 216, shape).astype(np.uint8)
                cv2.imwrite(str(root / split / cls / f"image_{split}{k}.png"), image)
    return root


def _run(script, source, out, *extra):
    argv = ["--source", str(source), "--out", str(out), "--n-train", "1", "--n-test", "2",
            "--min-side", "40", "--max-side", "48", *extra]
    return script.main(argv)


def test_photo_folder_sizes_colour_and_layout(photo_script, fake_scene, tmp_path, capsys):
    out = tmp_path / "photos"
    assert _run(photo_script, fake_scene, out) == 0
    assert "wrote 9 images" in capsys.readouterr().out
    files = sorted(out.rglob("*.jpg"))
    assert len(files) == 9
    for split, n in (("train", 1), ("test", 2)):
        assert sorted(p.name for p in (out / split).iterdir()) == ["bedroom", "coast", "forest"]
        for cls in ("bedroom", "coast", "forest"):
            assert len(list((out / split / cls).glob("*.jpg"))) == n
    hues = {}
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert bgr.ndim == 3 and bgr.shape[2] == 3
        h, w = bgr.shape[:2]
        longer, shorter = max(h, w), min(h, w)
        assert 40 <= longer <= 48 and shorter == round(longer * 3 / 4)  # 4:3
        if "2" in path.stem:  # the portrait sources stay portrait
            assert h > w
        mean = bgr.reshape(-1, 3).mean(axis=0)[::-1]  # RGB
        assert np.ptp(mean) > 8  # tinted: the channels differ, not a gray JPEG
        hues.setdefault(path.parent.name, []).append(mean / mean.sum())
    # one tint per class: images of a class are closer in colour than images of different classes
    centre = {c: np.mean(v, axis=0) for c, v in hues.items()}
    within = max(np.abs(x - centre[c]).max() for c, v in hues.items() for x in v)
    between = min(np.abs(centre[a] - centre[b]).max() for a in centre for b in centre if a < b)
    assert within < between
    # deterministic given the seed; another seed draws other sizes
    again = tmp_path / "again"
    assert _run(photo_script, fake_scene, again) == 0
    assert [p.read_bytes() for p in files] == [again.joinpath(p.relative_to(out)).read_bytes() for p in files]
    other = tmp_path / "other"
    assert _run(photo_script, fake_scene, other, "--seed", "1") == 0
    def sizes(folder):
        return sorted(cv2.imread(str(p)).shape for p in sorted(folder.rglob("*.jpg")))

    assert sizes(other) != sizes(out)


def test_photo_folder_flat_layout_and_errors(photo_script, fake_scene, tmp_path, capsys):
    out = tmp_path / "flat"
    assert _run(photo_script, fake_scene, out, "--flat") == 0
    assert sorted(p.name for p in out.iterdir()) == ["bedroom", "coast", "forest"]
    names = sorted(p.name for p in (out / "coast").iterdir())
    assert len(names) == 3 and sum(n.startswith("train_") for n in names) == 1
    assert all(n.startswith(("train_", "test_")) and n.endswith(".jpg") for n in names)
    capsys.readouterr()
    assert _run(photo_script, fake_scene, out) == 2  # not empty: refused, nothing overwritten
    assert f"output folder {out} is not empty" in capsys.readouterr().err
    assert _run(photo_script, tmp_path / "nowhere", tmp_path / "x") == 2
    assert "source dataset" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        photo_script.main(["--help"])
    assert "--n-train" in capsys.readouterr().out


@pytest.fixture(scope="module")
def imagenet_script():
    spec = importlib.util.spec_from_file_location("make_imagenet_like", SCRIPTS / "make_imagenet_like.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # --jobs 2 pickles its worker function by module name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_imagenet_like_layout_sizes_and_determinism(imagenet_script, tmp_path, capsys):
    from classicvision.datasets import load_imagenet

    def make(out, *extra):
        argv = ["--out", str(out), "--classes", "3", "--per-class", "2", "--val-per-class", "2",
                "--size", "40", "--jobs", "1", *extra]
        return imagenet_script.main(argv)

    out = tmp_path / "inet"
    assert make(out) == 0
    assert "wrote 12 images (3 classes)" in capsys.readouterr().out
    wnids = (out / "synsets.txt").read_text().split()
    assert wnids == sorted(wnids) and len(set(wnids)) == 3 and all(len(w) == 9 and w[0] == "n" for w in wnids)
    train = load_imagenet(out, "train", lazy=False)
    val = load_imagenet(out, "val", lazy=False)
    assert train.target_names == val.target_names == wnids
    assert np.bincount(train.target).tolist() == [2, 2] + [2] and np.bincount(val.target).tolist() == [2, 2, 2]
    assert all(f.endswith(".JPEG") for f in list(train.filenames) + list(val.filenames))
    for image in list(train.images) + list(val.images):
        h, w, c = image.shape
        assert c == 3 and 36 <= max(h, w) <= 44 and 0.74 <= min(h, w) / max(h, w) <= 1.0
    # flat val with the ILSVRC ground-truth file reads to the same labels per image
    flat = tmp_path / "flat"
    assert make(flat, "--flat-val") == 0
    assert (flat / "ILSVRC2010_validation_ground_truth.txt").is_file()
    flat_val = load_imagenet(flat, "val")
    assert sorted(flat_val.filenames) == [f"ILSVRC2010_val_{n:08d}.JPEG" for n in range(1, 7)]
    by_name = {f.split("/")[-1]: t for f, t in zip(val.filenames, val.target)}
    assert {f: by_name[f] for f in flat_val.filenames} == dict(zip(flat_val.filenames, flat_val.target))
    files = sorted(p.relative_to(out) for p in out.rglob("*.JPEG"))
    assert [(out / p).read_bytes() for p in files if p.parts[0] == "train"] == [
        (flat / p).read_bytes() for p in files if p.parts[0] == "train"
    ]
    # deterministic given the seed, whatever the number of processes; another seed differs
    again = tmp_path / "again"
    assert imagenet_script.main(["--out", str(again), "--classes", "3", "--per-class", "2",
                                 "--val-per-class", "2", "--size", "40", "--jobs", "2"]) == 0
    assert [(out / p).read_bytes() for p in files] == [(again / p).read_bytes() for p in files]
    other = tmp_path / "other"
    assert make(other, "--seed", "1") == 0
    assert (other / files[0]).read_bytes() != (out / files[0]).read_bytes()
    assert make(out) == 2  # refuses a folder that is not empty
    assert "not an empty folder" in capsys.readouterr().err
