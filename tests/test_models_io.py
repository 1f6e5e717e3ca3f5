"""Saved model files: the skops allowlist, file modes and write errors, and ``bench predict``
with untrusted sidecars and odd file names."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
import zipfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from bench import models_io
from bench.models_io import UntrustedModelError, dump_skops, load_model, load_skops, save_model
from bench.predict import SidecarError, load_for_predict, predict_main, read_sidecar
from classicvision.datasets import load_digits_images
from classicvision.presets import PRESETS, make_preset

# small settings: every preset fits in well under a second on 100 digits of 48x48
TINY = {
    "hog_svm": dict(n_components=30),
    "lbp_svm": dict(),
    "lazebnik_spm": dict(n_words=8),
    "scspm": dict(n_words=8, features__encoder__max_iter=10),
    "llc": dict(n_words=8, sizes=(16,)),
    "fisher": dict(n_components=2, pca=8, sizes=(16,)),
    "vlad": dict(n_words=4, pca=8, sizes=(16,)),
    "coates_kmeans": dict(n_words=8, step=4, C=0.1),
    "coates_soft_threshold": dict(n_words=8, step=4, C=0.1),
    "nec2010": dict(n_words=4, pca=8, sizes=(16,)),
    "cnn_features_svm": dict(model="small_convnet", epochs=1, image_size=16, device="cpu"),
}


@pytest.fixture(scope="module")
def digits():
    b = load_digits_images()
    return b.images[:100], b.target[:100], [str(n) for n in b.target_names]


@pytest.fixture(scope="module")
def digits48(digits):
    images, y, _ = digits
    return np.stack([cv2.resize(im, (48, 48), interpolation=cv2.INTER_LINEAR) for im in images]), y


@pytest.fixture(scope="module")
def hog_model(digits):
    images, y, _ = digits
    return make_preset("hog_svm", image_size=16, n_components=20, random_state=0).fit(images, y)


def _rewrite_schema(src: Path, dest: Path, edit) -> None:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    schema = json.loads(members["schema.json"])
    edit(schema)
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(dest, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def _replace_class(schema, module: str, cls: str, new_module: str, new_cls: str) -> int:
    """Rename every node of ``module.cls`` in a skops schema; returns how many."""
    count = 0
    if isinstance(schema, dict):
        if schema.get("__module__") == module and schema.get("__class__") == cls:
            schema["__module__"], schema["__class__"] = new_module, new_cls
            count += 1
        for v in schema.values():
            count += _replace_class(v, module, cls, new_module, new_cls)
    elif isinstance(schema, list):
        for v in schema:
            count += _replace_class(v, module, cls, new_module, new_cls)
    return count


# --------------------------------------------------------------------------- skops allowlist
@pytest.mark.parametrize("module, cls", [("bench.cache", "FeatureCache"),
                                         ("classicvision.metrics", "ClassificationReport")])
def test_project_class_that_is_not_an_estimator_is_refused(hog_model, tmp_path, module, cls):
    good = tmp_path / "hog.skops"
    dump_skops(hog_model, good)
    bad = tmp_path / "doctored.skops"

    def edit(schema):  # the HOG step becomes one of our non-estimator classes
        assert _replace_class(schema, "classicvision.features._hog", "HOG", module, cls) == 1

    _rewrite_schema(good, bad, edit)
    with pytest.raises(UntrustedModelError) as info:
        load_skops(bad)
    msg = str(info.value)
    assert str(bad) in msg and f"{module}.{cls}" in msg
    assert "classicvision.features._hog.HOG" not in msg  # only the offending type is named
    assert load_skops(good).steps[0][0] == "features"  # the untouched file still loads


def test_trusted_types_are_the_estimator_classes():
    names = models_io.trusted_estimator_types()
    assert "classicvision.features._hog.HOG" in names
    assert "classicvision.kernels._linear.LinearSVM" in names
    assert "classicvision.augment.MirrorAugmented" in names
    assert "classicvision.preprocessing.ChunkedStandardScaler" in names
    assert not any(n.startswith(("bench.", "cnn.")) for n in names)  # a classic load never imports torch
    assert "cnn.features.CNNFeatures" in models_io.trusted_estimator_types(cnn=True)
    assert "classicvision.metrics.ClassificationReport" not in names
    assert "classicvision.features.hog" not in names  # functions of __all__ are not classes


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_skops(name, digits48, tmp_path):
    X, y = digits48
    seeded = {} if name == "lbp_svm" else {"random_state": 0}
    pipe = make_preset(name, **seeded, **TINY[name]).fit(X, y)
    path = tmp_path / f"{name}.skops"
    dump_skops(pipe, path)
    again = load_skops(path)
    np.testing.assert_allclose(again.decision_function(X[:5]), pipe.decision_function(X[:5]), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("variant", [dict(mirror=True), dict(dataset="cifar10")])
def test_mirror_and_cifar_presets_round_trip_through_skops(variant, digits48, tmp_path):
    X, y = digits48
    X = X[:, 8:40, 8:40]  # 32x32
    pipe = make_preset("coates_kmeans", random_state=0, **TINY["coates_kmeans"], **variant).fit(X, y)
    path = tmp_path / "coates.skops"
    dump_skops(pipe, path)
    np.testing.assert_allclose(load_skops(path).decision_function(X[:5]), pipe.decision_function(X[:5]),
                               rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- writing model files
class _FakeCNN:
    """Stands in for a CNNClassifier: ``save`` writes as ``cnn.engine.save_checkpoint`` does
    (a :func:`tempfile.mkstemp` file, mode 0600, moved into place), without importing torch."""

    def save(self, path):
        import tempfile

        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"PK\x03\x04 weights")
        os.replace(tmp, path)


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_saved_model_files_get_the_usual_mode(hog_model, tmp_path, umask):
    skops_path = save_model(hog_model, tmp_path, "hog", "classic")
    cnn_path = save_model(_FakeCNN(), tmp_path, "net", "cnn")
    assert stat.S_IMODE(skops_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(cnn_path.stat().st_mode) == 0o644
    os.umask(0o027)
    assert stat.S_IMODE(save_model(_FakeCNN(), tmp_path, "net2", "cnn").stat().st_mode) == 0o640
    assert stat.S_IMODE(save_model(hog_model, tmp_path, "hog2", "classic").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hog.skops", "hog2.skops", "net.pt", "net2.pt"]


def test_full_disk_while_saving_a_classic_model(hog_model, tmp_path, monkeypatch):
    def full(path, data):
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(models_io, "_write_file", full)
    with pytest.raises(OSError, match="no space left on device") as info:
        save_model(hog_model, tmp_path / "models", "hog", "classic")
    assert str(tmp_path / "models" / "hog.skops") in str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert list((tmp_path / "models").iterdir()) == []  # no partial file


def test_full_disk_while_saving_a_cnn_keeps_the_previous_file(tmp_path):
    previous = save_model(_FakeCNN(), tmp_path, "net", "cnn")
    before = previous.read_bytes()

    class FullDisk:
        def save(self, path):  # what torch.save reports when the disk fills up
            Path(path).write_bytes(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    with pytest.raises(OSError, match=r"no space left on device\?") as info:
        save_model(FullDisk(), tmp_path, "net", "cnn")
    assert str(previous) in str(info.value) and "inline_container" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]
    assert previous.read_bytes() == before


def test_a_model_that_cannot_be_serialized_is_not_reported_as_a_disk_error(tmp_path):
    class Unsaveable:
        def save(self, path):
            raise TypeError("save() supports class labels of type str, int, float or bool only")

    with pytest.raises(TypeError, match="class labels"):
        save_model(Unsaveable(), tmp_path, "net", "cnn")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- predict and sidecars
@pytest.fixture
def saved(hog_model, digits, tmp_path):
    """A saved hog_svm model with the sidecar bench writes, and one digit image."""
    from bench.models_io import write_sidecar

    images, _, names = digits
    path = save_model(hog_model, tmp_path, "hog", "classic")
    write_sidecar(path, SimpleNamespace(name="hog", track="classic", base="hog_svm"),
                   SimpleNamespace(images=images, target_names=names))
    img = tmp_path / "digit.png"
    cv2.imwrite(str(img), images[0])
    return path, path.with_suffix(".json"), img


def test_the_sidecar_bench_writes_is_valid(saved):
    path, side, _ = saved
    model, track, info = load_for_predict(path)
    assert track == "classic" and info["image_shape"] == (8, 8) and info["color"] is False
    assert info["target_names"] == [str(d) for d in range(10)]


def _edit_sidecar(side: Path, **changes):
    info = json.loads(side.read_text())
    for k, v in changes.items():
        if v is KeyError:
            del info[k]
        else:
            info[k] = v
    side.write_text(json.dumps(info))


@pytest.mark.parametrize("changes, what", [
    (dict(image_shape=[30000, 30000]), "side outside 1..8192"),
    (dict(image_shape=[8]), "list of 2 or 3 ints"),
    (dict(image_shape=[8, 8.5]), "list of 2 or 3 ints"),
    (dict(image_shape=[True, 8]), "list of 2 or 3 ints"),
    (dict(image_shape="8x8"), "list of 2 or 3 ints"),
    (dict(image_shape=[0, 8]), "side outside"),
    (dict(image_shape=[8, 8, 2]), "2 channels"),
    (dict(image_shape=[8, 8, 1], color=True), "color is true"),
    (dict(target_names=["0", "1"]), "2 target_names for a model of 10 classes"),
    (dict(target_names=list(range(10))), "target_names must be a list of str"),
    (dict(target_names="0123456789"), "target_names must be a list of str"),
    (dict(color="yes"), "color must be"),
    (dict(max_value=70000), "max_value"),
    (dict(max_value="255"), "max_value"),
    (dict(dtype="object"), "dtype"),
    (dict(track="cnn"), "track is 'cnn' but the model file is a classic model"),
    (dict(name=["hog"]), "name must be a str"),
    (dict(image_shape=KeyError), "missing field"),
    (dict(target_names=KeyError, max_value=KeyError), "missing field"),
])
def test_invalid_sidecar_fields_are_refused(saved, changes, what):
    path, side, _ = saved
    _edit_sidecar(side, **changes)
    with pytest.raises(SidecarError, match=re.escape(what)) as info:
        load_for_predict(path)
    assert str(side) in str(info.value)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2, 3]", b'"hog"', b"\xff\xfe{}", b""])
def test_broken_sidecar_json_names_the_file(saved, content, capsys):
    path, side, img = saved
    side.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_sidecar(side)
    assert str(side) in str(info.value)
    assert predict_main(str(path), [str(img)]) == 2
    err = capsys.readouterr().err
    assert str(side) in err and "cannot load model" in err


def test_oversized_image_shape_stops_predict_before_resizing(saved, capsys, monkeypatch):
    path, side, img = saved
    _edit_sidecar(side, image_shape=[30000, 30000])
    monkeypatch.setattr(cv2, "resize", lambda *a, **k: pytest.fail("resized with an untrusted size"))
    assert predict_main(str(path), [str(img)]) == 2
    assert "image_shape" in capsys.readouterr().err


def test_predict_prints_non_utf8_file_names(saved):
    path, _, img = saved
    odd = img.with_name(os.fsdecode(b"digit-\xff.png"))
    img.rename(odd)
    missing = img.with_name(os.fsdecode(b"gone-\xfe.png"))
    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8")  # strict, like a UTF-8 terminal
    err = io.TextIOWrapper(err_b, encoding="utf-8")
    rc = predict_main(str(path), [str(odd), str(missing)], top_k=2, out=out, err=err)
    out.flush()
    err.flush()
    assert rc == 1
    text, errors = out_b.getvalue().decode(), err_b.getvalue().decode()
    assert "digit-\\xff.png" in text and text.count("rank") == 1
    assert "gone-\\xfe.png" in errors
    # an ASCII stream gets escapes for non-ASCII (valid UTF-8) names too
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    accented = odd.rename(odd.with_name("chiffre-\u00e9.png"))
    assert predict_main(str(path), [str(accented)], out=ascii_out) == 0


def test_model_path_missing_or_a_folder(tmp_path, capsys):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nope.skops")
    assert predict_main(str(tmp_path), ["x.png"]) == 2
    err = capsys.readouterr().err
    assert f"cannot load model {tmp_path}" in err and "is a folder" in err
    assert predict_main(str(tmp_path / "nope.pt"), ["x.png"]) == 2
    assert "not found" in capsys.readouterr().err
