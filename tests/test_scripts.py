"""Tests of the helper scripts in scripts/ (run on tiny fake data)."""

import importlib.util
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
