"""Tests of cnn.data, cnn.engine and cnn.CNNClassifier (CPU, one thread, small data)."""

import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline

import cnn.classifier as classifier_module
from classicvision.base import to_gray
from classicvision.datasets import load_digits_images
from cnn import CNNClassifier, get_model_config
from cnn.data import DeviceData, channel_stats, images_to_tensor, random_crop, random_flip
from cnn.engine import evaluate, load_checkpoint, save_checkpoint, train_one_epoch, training_settings

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def digits():
    tr = load_digits_images(split="train")
    te = load_digits_images(split="test")
    return tr.images, tr.target, te.images, te.target


@pytest.fixture(scope="module")
def small(digits):
    """300 training digits, for quick fits."""
    X, y = digits[0][:300], digits[1][:300]
    return X, y


def _quick(**kw):
    params = dict(epochs=2, batch_size=64, flip=False, random_state=0, num_threads=1)
    params.update(kw)
    return CNNClassifier(**params)


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, _, _ = digits
    return CNNClassifier(model="small_convnet", flip=False, random_state=0, num_threads=1).fit(X, y)


# ----------------------------------------------------------------------- data
def test_images_to_tensor_channels_and_dtype():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)
    t3 = images_to_tensor(rgb, size=10, in_chans=3)
    assert t3.dtype == torch.uint8 and t3.shape == (4, 3, 10, 10)
    t1 = images_to_tensor(list(rgb[:, :, :10]), size=10, in_chans=1)
    ref = np.rint(np.stack([to_gray(im) for im in rgb[:, :, :10]]) * 255)
    assert np.abs(t1[:, 0].numpy().astype(int) - ref).max() <= 1
    gray = rng.integers(0, 256, (2, 6, 6), dtype=np.uint8)
    g3 = images_to_tensor(gray, size=6, in_chans=3)
    assert (g3 == torch.from_numpy(gray)[:, None]).all()
    rgba = np.concatenate([rgb, np.full((4, 10, 12, 1), 7, np.uint8)], -1)[:, :, :10]
    expected = torch.from_numpy(np.ascontiguousarray(rgb[:, :, :10])).permute(0, 3, 1, 2)
    assert torch.equal(images_to_tensor(rgba, size=10, in_chans=3), expected)


def test_images_to_tensor_resize_and_mixed_sizes():
    const = [np.full((8, 8), 200, np.uint8), np.full((20, 13, 3), 50, np.uint8), np.full((8, 8), 9, np.uint8)]
    t = images_to_tensor(const, size=16, in_chans=3)
    assert t.shape == (3, 3, 16, 16)
    # resizing keeps constant images constant, and the order of the input
    assert (t[0] == 200).all() and (t[1] == 50).all() and (t[2] == 9).all()
    floats = [np.full((5, 5), 0.5, np.float32)]
    assert (images_to_tensor(floats, size=5, in_chans=1) == 128).all()


def test_images_to_tensor_bad_image_is_named():
    images = [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 2), np.uint8)]
    with pytest.raises(ValueError, match="image 1 .*b.png.* 2 channels"):
        images_to_tensor(images, size=8, in_chans=1, filenames=["a.png", "b.png"])
    with pytest.raises(ValueError, match="empty"):
        images_to_tensor(np.zeros((0, 8, 8), np.uint8), size=8, in_chans=1)


def test_channel_stats_matches_numpy():
    x = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8)
    mean, std = channel_stats(x, chunk=3)
    a = x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, a.mean((0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(std, a.std((0, 2, 3)), rtol=1e-8)


def test_random_crop_is_a_translation_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 6, 7)
    out = random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(16):  # every output image is one 6x7 window of its padded input
        windows = [padded[i, :, dy:dy + 6, dx:dx + 7] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert torch.equal(random_crop(x, 0, g), x)
    # not all images get the same shift
    assert len({out[i].sum().item() - x[i].sum().item() for i in range(16)}) > 1


def test_random_flip_flips_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 3, 5)
    out = random_flip(x, g)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(2)) for i in range(400)])
    kept = torch.tensor([torch.equal(out[i], x[i]) for i in range(400)])
    assert (flipped | kept).all()
    assert 150 < int(flipped.sum()) < 250


def test_device_data_batches_cover_everything_once():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    data = DeviceData(x, torch.arange(10), [0.0], [1 / 255], "cpu")
    got = [(xb, yb) for xb, yb in data.batches(4, shuffle=True, generator=torch.Generator().manual_seed(1))]
    assert [len(yb) for _, yb in got] == [4, 4, 2]
    labels = torch.cat([yb for _, yb in got])
    assert sorted(labels.tolist()) == list(range(10))
    # images stay paired with their labels; normalization (x/255 - 0)/(1/255) = x
    for xb, yb in got:
        assert torch.equal(xb[:, 0, 0, 0], yb.float())
    assert len(list(data.batches(4, drop_last=True))) == data.num_batches(4, drop_last=True) == 2


# --------------------------------------------------------------------- engine
def test_engine_train_and_evaluate_weighted():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    xs = torch.randn(10, 1, 2, 2)
    ys = (xs.sum((1, 2, 3)) > 0).long()
    batches = [(xs[:7], ys[:7]), (xs[7:], ys[7:])]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = train_one_epoch(model, batches, opt)
    assert stats["n"] == 10 and 0 <= stats["accuracy"] <= 1 and stats["images_per_second"] > 0
    ev = evaluate(model, batches)
    with torch.no_grad():
        logits = model(xs)
    # sample-weighted, so equal to the metrics over the whole set at once
    assert ev["n"] == 10
    assert ev["accuracy"] == pytest.approx((logits.argmax(1) == ys).float().mean().item())
    assert ev["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, ys).item(), rel=1e-5)


def test_training_settings_are_restored_even_on_error():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    rng = torch.get_rng_state()
    with training_settings("cpu", 3) as gen:
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        first = torch.rand(2)
        assert torch.equal(torch.rand(2, generator=gen), torch.rand(2, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(RuntimeError, match="boom"), training_settings("cpu", 3):
        assert torch.equal(torch.rand(2), first)  # the same seed gives the same global stream
        raise RuntimeError("boom")
    after = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark)
    assert after == before and torch.equal(torch.get_rng_state(), rng)


def test_save_checkpoint_is_atomic_and_safe(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"a": torch.ones(3), "epoch": 2, "names": ["x", "y"]})
    assert os.listdir(path.parent) == ["last.pt"]
    state = load_checkpoint(path)
    assert state["epoch"] == 2 and torch.equal(state["a"], torch.ones(3))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable torch checkpoint|refusing"):
        load_checkpoint(tmp_path / "junk.pt")


# ----------------------------------------------------------------- classifier
def test_digits_accuracy(fitted, digits):
    _, _, Xte, yte = digits
    assert fitted.score(Xte, yte) >= 0.95
    assert fitted.input_size_ == 8 and fitted.in_chans_ == 1
    assert len(fitted.history_) == 10
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]
    assert set(fitted.history_[0]) >= {"epoch", "loss", "accuracy", "images_per_second", "seconds"}
    assert fitted.fit_seconds_ > 0 and fitted.compile_seconds_ == 0
    assert fitted.n_params_ == sum(p.numel() for p in fitted.model_.parameters())
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))


def test_predict_proba_properties(fitted, digits):
    Xte = digits[2][:50]
    p = fitted.predict_proba(Xte)
    assert p.shape == (50, 10) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-9)
    np.testing.assert_array_equal(fitted.predict(Xte), fitted.classes_[p.argmax(1)])
    d = fitted.decision_function(Xte)
    np.testing.assert_array_equal(d.argmax(1), p.argmax(1))
    # a list of images gives the same result as the stacked array
    np.testing.assert_allclose(fitted.predict_proba(list(Xte)), p, rtol=1e-6, atol=1e-9)


def test_flip_tta_averages_mirror_images(small):
    X, y = small
    clf = _quick(flip=True, tta=True).fit(X, y)
    p = clf.predict_proba(X[:20])
    p_mirror = clf.predict_proba(X[:20, :, ::-1].copy())
    np.testing.assert_allclose(p, p_mirror, rtol=1e-5, atol=1e-7)
    clf.set_params(tta=False)
    assert not np.allclose(clf.predict_proba(X[:20]), clf.predict_proba(X[:20, :, ::-1].copy()))


def test_save_load_identical_predictions(fitted, digits, tmp_path):
    Xte = digits[2]
    path = tmp_path / "model.pt"
    fitted.save(path)
    loaded = CNNClassifier.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(Xte), fitted.predict_proba(Xte))
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.get_params() == {**fitted.get_params(), "device": "cpu"}
    assert loaded.history_ == fitted.history_
    blob = torch.load(path, weights_only=True)
    assert set(blob["config"]) >= {"params", "classes", "mean", "std", "model", "num_classes", "in_chans",
                                   "input_size"}


class _Evil:
    ran = []

    def __reduce__(self):
        return (_Evil.ran.append, ("executed",))


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "cnn.CNNClassifier", "config": _Evil(), "state_dict": {}}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        CNNClassifier.load(path)
    assert _Evil.ran == []
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not written by CNNClassifier.save"):
        CNNClassifier.load(other)


def test_string_labels_and_rgb_resize(small):
    X, y = small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    rgb = np.repeat(X[..., None], 3, axis=-1)
    clf = _quick(model="resnet20", epochs=1).fit(rgb, names[y])
    assert clf.input_size_ == 32 and clf.in_chans_ == 3
    np.testing.assert_array_equal(clf.classes_, np.sort(names))
    pred = clf.predict(rgb[:10])
    assert set(pred) <= set(names)
    # gray images are replicated to 3 channels for an RGB-trained net
    np.testing.assert_allclose(clf.predict_proba(X[:10]), clf.predict_proba(rgb[:10]), rtol=1e-6, atol=1e-9)


def test_same_seed_same_weights_and_different_seed_differs(small):
    X, y = small
    a = _quick(random_state=3).fit(X, y)
    b = _quick(random_state=3).fit(X, y)
    c = _quick(random_state=4).fit(X, y)
    sa, sb, sc = a.model_.state_dict(), b.model_.state_dict(), c.model_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_fit_is_idempotent_and_params_unchanged(small):
    X, y = small
    clf = _quick()
    before = clf.get_params()
    clf.fit(X, y)
    first = clf.model_.state_dict()
    first = {k: v.clone() for k, v in first.items()}
    clf.fit(X, y)
    assert clf.get_params() == before
    assert all(torch.equal(first[k], v) for k, v in clf.model_.state_dict().items())


def test_resume_gives_identical_weights(small, tmp_path, monkeypatch):
    X, y = small
    kw = dict(epochs=3, random_state=7)
    full = _quick(**kw).fit(X, y)

    calls = {"n": 0}
    real = classifier_module.train_one_epoch

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash in epoch 3")
        return real(*args, **kwargs)

    monkeypatch.setattr(classifier_module, "train_one_epoch", crashing)
    with pytest.raises(KeyboardInterrupt):
        _quick(checkpoint_dir=tmp_path, **kw).fit(X, y)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    monkeypatch.setattr(classifier_module, "train_one_epoch", real)

    resumed = _quick(checkpoint_dir=tmp_path, resume=True, **kw).fit(X, y)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    sf, sr = full.model_.state_dict(), resumed.model_.state_dict()
    assert all(torch.equal(sf[k], sr[k]) for k in sf)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]
    # a checkpoint from other settings is refused rather than silently mixed
    with pytest.raises(ValueError, match="cannot resume"):
        _quick(checkpoint_dir=tmp_path, resume=True, epochs=4, random_state=7).fit(X, y)


def test_compile_warmup_has_no_side_effects(small, monkeypatch):
    # torch.compile on CPU takes minutes here; an identity stand-in checks that the
    # warm-up step is timed apart and leaves weights, BN statistics and RNG untouched.
    X, y = small
    plain = _quick(model="small_convnet", epochs=1, batch_size=100).fit(X[:200], y[:200])
    monkeypatch.setattr(torch, "compile", lambda m, **kw: m)
    comp = _quick(model="small_convnet", epochs=1, batch_size=100, compile=True).fit(X[:200], y[:200])
    assert comp.compile_seconds_ > 0
    sp, sc = plain.model_.state_dict(), comp.model_.state_dict()
    assert all(torch.equal(sp[k], sc[k]) for k in sp)


def test_cpu_bf16_autocast_and_channels_last(small):
    X, y = small
    X, y = X[:100], y[:100]  # bf16 is emulated on CPUs without AMX: 300 images took 70 s on 2 cores
    clf = _quick(model="fastnet", amp=True, channels_last=True, epochs=1, batch_size=50).fit(X, y)
    assert clf._amp_dtype_ is torch.bfloat16
    p = clf.predict_proba(X[:16])
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    assert not clf.model_.whiten.weight.requires_grad  # whitening initialised and frozen


def test_verbose_prints_one_line_per_epoch(small, capsys):
    X, y = small
    _quick(verbose=1).fit(X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 2
    assert "epoch 2/2" in lines[1] and "img/s" in lines[1] and "ETA" in lines[1]


def test_clone_get_set_params_and_pickle(fitted, digits):
    params = fitted.get_params()
    c = clone(fitted)
    assert c.get_params() == params and not hasattr(c, "model_")
    c.set_params(epochs=3, model="resnet20")
    assert c.epochs == 3 and c.model == "resnet20" and fitted.epochs == 10
    restored = pickle.loads(pickle.dumps(fitted))
    Xte = digits[2][:40]
    np.testing.assert_array_equal(restored.predict_proba(Xte), fitted.predict_proba(Xte))


def test_in_pipeline_cross_val_and_grid_search(small):
    X, y = small
    pipe = Pipeline([("cnn", _quick(epochs=1))])
    scores = cross_val_score(pipe, X, y, cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    gs = GridSearchCV(_quick(epochs=1), {"lr": [0.05, 0.2]}, cv=2).fit(X, y)
    assert gs.best_params_["lr"] in (0.05, 0.2)
    assert gs.best_estimator_.predict(X[:5]).shape == (5,)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(epochs=0), "epochs"),
        (dict(schedule="linear"), "schedule"),
        (dict(in_chans=2), "in_chans"),
        (dict(amp="yes"), "amp"),
    ],
)
def test_invalid_params(small, kwargs, match):
    X, y = small
    with pytest.raises(ValueError, match=match):
        _quick(**kwargs).fit(X, y)


def test_bad_inputs(small):
    X, y = small
    with pytest.raises(ValueError, match="300 images, 299 labels"):
        _quick().fit(X, y[:-1])
    with pytest.raises(ValueError, match="unknown model 'resnet21'.*resnet20"):
        _quick(model="resnet21").fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        _quick().fit(X[:5], np.zeros(5))
    with pytest.raises(ValueError, match="y must be 1-D"):
        _quick().fit(X, y[:, None])
    with pytest.raises(ValueError, match="device"):
        _quick(device="tpu").fit(X, y)
    bad = list(X[:4]) + [np.zeros((8, 8, 2), np.uint8)]
    with pytest.raises(ValueError, match="image 4"):
        _quick().fit(bad, y[:5])
    with pytest.raises(TypeError, match="images"):
        _quick().fit("images.png", y[:1])


def test_schedules_warmup_then_decay():
    from cnn.classifier import _lr_lambda

    for name in ("onecycle", "cosine", "step"):
        f = _lr_lambda(name, total=100, warmup=10)
        vals = np.array([f(s) for s in range(100)])
        assert vals[0] == pytest.approx(0.1) and vals[10] == pytest.approx(1.0)
        assert np.all(np.diff(vals[:11]) > 0)
        assert np.all(np.diff(vals[10:]) <= 1e-12)
        assert vals[-1] < 0.05


@pytest.mark.datasets
def test_real_cifar10_jpegs_end_to_end(shared_datasets):
    """50 training JPEGs per class from the real archive: RGB order, sizes and a short fit."""
    import tarfile

    import cv2

    per_class, images, labels = 50, [], []
    counts: dict = {}
    with tarfile.open(shared_datasets / "cifar10.tar.gz", "r:gz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if not (m.isfile() and m.name.endswith(".jpg") and len(parts) >= 3 and parts[-3] == "train"):
                continue
            cls = parts[-2]
            if counts.get(cls, 0) >= per_class:
                if len(counts) == 10 and all(v >= per_class for v in counts.values()):
                    break
                continue
            counts[cls] = counts.get(cls, 0) + 1
            buf = np.frombuffer(tf.extractfile(m).read(), np.uint8)
            images.append(cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            labels.append(cls)
    assert len(set(labels)) == 10
    clf = _quick(model="resnet20", epochs=1, batch_size=100).fit(images, labels)
    assert clf.input_size_ == 32 and clf.in_chans_ == 3 and len(clf.classes_) == 10
    # the statistics match the CIFAR-10 means the registry carries (R > G > B)
    np.testing.assert_allclose(clf.mean_, get_model_config("resnet20")["mean"], atol=0.03)
    p = clf.predict_proba(images[:20])
    assert np.isfinite(p).all() and p.shape == (20, 10)


# ------------------------------------------------- photo folders: sizes, memory
def _photos(n=6, h=40, w=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    return list(X), np.arange(n) % 2


def test_images_to_tensor_converts_chunk_by_chunk(monkeypatch):
    import cnn.data as data_module

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (30, 20, 3), dtype=np.uint8) for _ in range(7)]
    images += [rng.random((30, 20)).astype(np.float32)]  # a float gray one in the same size group
    ref = images_to_tensor(images, size=12, in_chans=3, chunk_bytes=1 << 30)
    seen = []
    real = data_module._resize_batch

    def spy(x, size, **kw):
        seen.append(tuple(x.shape))
        return real(x, size, **kw)

    monkeypatch.setattr(data_module, "_resize_batch", spy)
    per_image = 4 * 3 * (30 * 20 + 12 * 12)
    out = images_to_tensor(images, size=12, in_chans=3, chunk_bytes=3 * per_image)
    assert torch.equal(out, ref)  # same result, never more than 3 images' float copy at once
    assert max(s[0] for s in seen) == 3 and sum(s[0] for s in seen) == 8
    seen.clear()
    stacked = np.stack(images[:7])
    assert torch.equal(images_to_tensor(stacked, size=12, in_chans=3, chunk_bytes=2 * per_image), ref[:7])
    assert max(s[0] for s in seen) == 2


def test_native_input_size_is_capped_and_overridable(capsys):
    X, y = _photos(4, 100, 80)
    clf = _quick(epochs=1, batch_size=2, verbose=1).fit(X, y)
    assert clf.input_size_ == 64  # median longer side 100, capped at small_convnet's max_input_size
    assert "median longer side is 100, capped" in capsys.readouterr().out
    assert _quick(epochs=1, batch_size=2, input_size=12).fit(X, y).input_size_ == 12
    assert _quick(epochs=1, batch_size=2).fit([im[:20, :16] for im in X], y).input_size_ == 20


def test_too_small_images_name_size_model_and_minimum():
    X = [np.full((1, 1, 3), v, np.uint8) for v in (0, 50, 100, 200)]
    with pytest.raises(
        ValueError, match=r"1x1 is too small for model 'small_convnet'.*smallest supported input is 2x2",
    ):
        _quick().fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"16x16 is too small for model 'vgg_bn_drop'.*32x32"):
        _quick(model="vgg_bn_drop", input_size=16).fit(X, [0, 1, 0, 1])


def test_parse_bytes():
    from cnn.classifier import parse_bytes

    assert parse_bytes(1000) == 1000
    assert parse_bytes("4GiB") == 4 * 2**30 == parse_bytes("4 g")
    assert parse_bytes("1.5MB") == 1_500_000
    for bad in ("lots", "4 parsecs", "-1GB", 0):
        with pytest.raises(ValueError, match="memory_limit"):
            parse_bytes(bad)


def _fake_measure(base, per_image, calls):
    def fake(net, make_batch, sizes, stop_above=None, **kw):
        out = {}
        for b in sizes:
            xb, yb = make_batch(b)  # the probe batches have the network's input shape
            assert xb.shape[0] == b and xb.dtype == torch.float32
            calls.append(b)
            out[b] = base + per_image * b
            if stop_above is not None and out[b] > stop_above:
                break
        return out

    return fake


def test_memory_limit_too_small_fails_before_training(monkeypatch):
    from cnn.classifier import MemoryPlanError

    X, y = _photos(6, 16, 16)

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(classifier_module, "train_one_epoch", no_training)
    # the training tensor alone (6 x 3 x 16 x 16 bytes) is over the limit: nothing is measured
    with pytest.raises(MemoryPlanError, match="input_size 16.*memory_limit.*batch_size 4"):
        _quick(batch_size=4, memory_limit=1000).fit(X, y)
    # the data fit, but not one step at batch size 2 (the minimum with batch norm)
    calls = []
    monkeypatch.setattr(classifier_module, "measure_train_step_memory", _fake_measure(10**6, 10**6, calls))
    with pytest.raises(MemoryError, match=r"input_size 16: training with batch size 2 .*"
                                          r"Lower input_size, lower batch_size or raise memory_limit") as info:
        _quick(batch_size=4, memory_limit="2MiB").fit(X, y)
    assert isinstance(info.value, ValueError) and calls == [2]


def test_memory_limit_picks_the_largest_batch_that_fits(monkeypatch):
    X, y = _photos(16, 16, 16)
    calls = []
    monkeypatch.setattr(classifier_module, "measure_train_step_memory", _fake_measure(10**6, 10**5, calls))
    data_bytes = 16 * 3 * 16 * 16 + 16 * 8
    generous = _quick(batch_size=8, memory_limit="1GiB", epochs=1).fit(X, y)
    assert generous.batch_size_ == 8 and calls == [2, 8]
    plan = generous.memory_plan_
    assert plan["per_image_bytes"] == 10**5 and plan["base_bytes"] == 10**6
    assert plan["data_bytes"] == data_bytes and plan["limit_bytes"] == 2**30 and plan["batch_size"] == 8
    # a planned fit trains exactly as an unplanned one with the same batch size
    plain = _quick(batch_size=8, epochs=1).fit(X, y)
    assert plain.memory_plan_ is None and plain.batch_size_ == 8
    sg, sp = generous.model_.state_dict(), plain.model_.state_dict()
    assert all(torch.equal(sg[k], sp[k]) for k in sg)
    middling = _quick(batch_size=8, memory_limit=10**6 + 5 * 10**5 + data_bytes + 10, epochs=1).fit(X, y)
    assert middling.batch_size_ == 5 == middling.memory_plan_["batch_size"]
    assert len(middling.history_) == 1


def test_memory_plan_real_measurement_is_plausible(capsys):
    X, y = _photos(8, 24, 24)
    clf = _quick(batch_size=8, memory_limit="64GiB", epochs=1, verbose=1).fit(X, y)
    plan = clf.memory_plan_
    assert set(plan["measured"]) == {2, 8}
    # the first conv's output alone is 32 x 24 x 24 float32 per image, and several are kept for backward
    assert 32 * 24 * 24 * 4 * 3 <= plan["per_image_bytes"] <= 2**30
    n_param_bytes = 4 * sum(p.numel() for p in clf.model_.parameters())
    assert plan["base_bytes"] + 2 * plan["per_image_bytes"] >= 3 * n_param_bytes
    assert clf.batch_size_ == 8
    assert "memory plan at input_size 24" in capsys.readouterr().out
    # the probe runs on a copy: same weights as without planning
    plain = _quick(batch_size=8, epochs=1).fit(X, y)
    assert all(torch.equal(v, plain.model_.state_dict()[k]) for k, v in clf.model_.state_dict().items())


# ------------------------------------------------------------- hardening
def test_binary_decision_function_is_one_column(small):
    X, y = small
    keep = y < 2
    clf = _quick(epochs=1).fit(X[keep][:60], y[keep][:60])
    d = clf.decision_function(X[:20])
    assert d.shape == (20,)
    logits = clf._logits(X[:20]).numpy()
    np.testing.assert_allclose(d, logits[:, 1] - logits[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[(d > 0).astype(int)], clf.predict(X[:20]))


@pytest.fixture(scope="module")
def saved_small(small, tmp_path_factory):
    X, y = small
    path = tmp_path_factory.mktemp("saved") / "m.pt"
    _quick(epochs=1).fit(X[:100], y[:100]).save(path)
    return path


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda c: c.pop("mean"), "lacks the key 'mean'"),
        (lambda c: c.update(input_size=20000), "'input_size' is 20000, outside"),
        (lambda c: c.update(num_classes=10**7), "'num_classes' is 10000000, outside"),
        (lambda c: c.update(num_classes=7, classes=list(range(7))), "'num_classes' is 7 but no classifier weight"),
        (lambda c: c.update(in_chans=3, mean=[0.5] * 3, std=[0.2] * 3), "'in_chans' is 3 but the first conv"),
        (lambda c: c.update(std=[0.0]), "'std' must be 1 finite"),
        (lambda c: c.update(model="no_such_net"), "'model' is 'no_such_net'"),
    ],
)
def test_load_refuses_bad_configs_before_building(saved_small, tmp_path, monkeypatch, change, match):
    blob = torch.load(saved_small, weights_only=True)
    change(blob["config"])
    bad = tmp_path / "bad.pt"
    torch.save(blob, bad)

    def no_build(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(classifier_module, "create_model", no_build)
    with pytest.raises(ValueError, match=f"bad.pt.*{match}"):
        CNNClassifier.load(bad)


def test_save_mode_follows_umask(fitted, tmp_path):
    old = os.umask(0o022)
    try:
        fitted.save(tmp_path / "a.pt")
        os.umask(0o027)
        fitted.save(tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o640


def test_save_on_a_full_disk_leaves_no_file(fitted, tmp_path):
    import resource
    import signal

    # a file size limit makes writes fail (EFBIG) as a full disk does (ENOSPC)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
    try:
        with pytest.raises(OSError, match="cannot write .*full.pt"):
            fitted.save(tmp_path / "full.pt")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert os.listdir(tmp_path) == []


def test_save_error_from_torch_becomes_oserror(fitted, tmp_path, monkeypatch):
    import cnn.engine as engine_module

    def failing(obj, fh):
        fh.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(engine_module.torch, "save", failing)
    with pytest.raises(OSError, match="cannot write .*m.pt"):
        fitted.save(tmp_path / "m.pt")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------- pretrained
@pytest.fixture(scope="module")
def source_weights(small, tmp_path_factory):
    """A small_convnet trained (1 epoch) on 8x8 digits 0-4, saved."""
    X, y = small
    keep = y < 5
    path = tmp_path_factory.mktemp("src") / "src.pt"
    _quick(epochs=1).fit(X[keep], y[keep]).save(path)
    return path


def test_pretrained_file_fit_reports_and_normalizes(small, source_weights, capsys):
    X, y = small
    keep = y >= 5
    clf = _quick(epochs=1, pretrained=source_weights, verbose=1).fit(X[keep], y[keep])
    rep = clf.pretrained_report_
    assert set(rep["skipped"]) == {"fc.weight", "fc.bias"} and rep["file"] == str(source_weights)
    assert len(rep["loaded"]) == len(clf.model_.state_dict()) - 2
    src = torch.load(source_weights, weights_only=True)
    assert clf.mean_ == src["config"]["mean"] and clf.in_chans_ == 1  # the source's normalization
    out = capsys.readouterr().out
    assert f"loaded {len(rep['loaded'])} tensors" in out and "fc.weight: head" in out
    assert _quick(epochs=1).fit(X[:50], y[:50]).pretrained_report_ is None


def test_freeze_backbone_trains_only_the_head(small, source_weights):
    X, y = small
    keep = y >= 5
    src = torch.load(source_weights, weights_only=True)["state_dict"]
    probe = _quick(epochs=1, pretrained=source_weights, freeze="backbone").fit(X[keep], y[keep])
    state = probe.model_.state_dict()
    backbone = [k for k in state if not k.startswith("fc.")]
    assert all(torch.equal(state[k], src[k]) for k in backbone)  # weights and BN statistics kept
    assert all(p.requires_grad == n.startswith("fc.") for n, p in probe.model_.named_parameters())
    # fine-tuning with a zero backbone learning rate moves no backbone weight, a normal one does
    still = _quick(epochs=1, pretrained=source_weights, backbone_lr_scale=0.0).fit(X[keep], y[keep])
    tuned = _quick(epochs=1, pretrained=source_weights).fit(X[keep], y[keep])
    w = "features.0.weight"
    assert torch.equal(still.model_.state_dict()[w], src[w])
    assert not torch.equal(tuned.model_.state_dict()[w], src[w])
    with pytest.raises(ValueError, match="freeze.*'backbone'.*'none'|freeze.*'none'.*'backbone'"):
        _quick(freeze="all").fit(X[:20], y[:20])


def test_pretrained_imagenet_on_own_nets_says_so(small, tmp_path, monkeypatch):
    X, y = small
    with pytest.raises(ValueError, match="'small_convnet' has no pretrained ImageNet weights.*resnet18"):
        _quick(pretrained="imagenet").fit(X[:20], y[:20])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*hub.*checkpoints.*resnet18-.*pth"):
        _quick(model="resnet18", pretrained="imagenet").fit(X[:20], y[:20])


# ------------------------------------------- augmentations, optimizers, curves
def _weights(clf):
    return [p.detach().clone() for p in clf.model_.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_augment_strings_train_reproducibly_and_keep_bool_meanings(small):
    X, y = small
    a = _quick(epochs=1, augment="cutout+mixup").fit(X, y)
    b = _quick(epochs=1, augment="cutout+mixup").fit(X, y)
    assert _same(_weights(a), _weights(b))
    assert 0 <= a.history_[0]["accuracy"] <= 1 and np.isfinite(a.history_[0]["loss"])
    # "crop" is True (crop and flip), "none" is False: the same weights as the booleans
    assert _same(_weights(_quick(epochs=1, augment="crop").fit(X, y)), _weights(_quick(epochs=1).fit(X, y)))
    off = _weights(_quick(epochs=1, augment=False).fit(X, y))
    assert _same(_weights(_quick(epochs=1, augment="none").fit(X, y)), off)
    assert not _same(_weights(_quick(epochs=1, augment="none+cutmix").fit(X, y)), off)


def test_unknown_augmentation_fails_at_fit_listing_the_valid_ones(small):
    X, y = small
    clf = _quick(augment="cutout+mixupp")  # the constructor does not validate (scikit-learn's convention)
    with pytest.raises(ValueError, match="unknown augmentation 'mixupp'.*cutout, random_erasing.*cutmix"):
        clf.fit(X, y)


def test_soft_targets_with_label_smoothing_and_every_augmentation(small):
    X, y = small
    clf = _quick(epochs=1, augment="autoaugment+randaugment+random_erasing+gridmask+hide_and_seek+cutmix",
                 label_smoothing=0.1).fit(X[:128], y[:128])
    assert np.isfinite(clf.history_[0]["loss"]) and clf.predict(X[:3]).shape == (3,)


@pytest.mark.parametrize("opt", ["adam", "adamw"])
def test_adam_and_adamw_train_with_sensible_groups(small, opt):
    X, y = small
    clf = _quick(epochs=1, optimizer=opt).fit(X, y)
    assert np.isfinite(clf.history_[0]["loss"])
    assert not _same(_weights(clf), _weights(_quick(epochs=1).fit(X, y)))
    net = clf.model_
    built = clf._make_optimizer(net, 1e-3, 0.9, 0.01, bias_scale=64.0)
    assert type(built).__name__ == {"adam": "Adam", "adamw": "AdamW"}[opt]
    decays = {p.ndim > 1: g["weight_decay"] for g in built.param_groups for p in g["params"]}
    assert decays[False] == 0.0 and decays[True] == 0.01  # no decay on biases / norms
    assert {g["lr"] for g in built.param_groups} == {1e-3}  # the SGD-only bias lr scale is not applied
    assert clf._optimizer_defaults(clf.model_recipe_) == (0.9, {"adam": 0.0, "adamw": 0.01}[opt])


def test_adam_default_lr_is_the_books(small, monkeypatch):
    X, y = small
    seen = {}
    real = CNNClassifier._make_optimizer

    def spy(self, net, lr, *args, **kwargs):
        seen["lr"] = lr
        return real(self, net, lr, *args, **kwargs)

    monkeypatch.setattr(CNNClassifier, "_make_optimizer", spy)
    _quick(epochs=1, optimizer="adam", batch_size=32).fit(X[:64], y[:64])
    assert seen["lr"] == 1e-3
    _quick(epochs=1, optimizer="sgd", batch_size=32).fit(X[:64], y[:64])
    recipe = classifier_module.get_model_recipe("small_convnet")
    assert seen["lr"] == pytest.approx(recipe["lr"] * 32 / recipe["lr_batch_size"])


@pytest.mark.parametrize("kwargs,match", [
    (dict(optimizer="rmsprop"), r"'optimizer' parameter.*'adam'"),
    (dict(schedule="linear"), r"'schedule' parameter.*'cosine'"),
])
def test_unknown_optimizer_and_schedule_list_the_supported(small, kwargs, match):
    X, y = small
    with pytest.raises(ValueError, match=match):
        _quick(**kwargs).fit(X, y)


def test_validation_data_records_curves_without_changing_training(small, digits, tmp_path):
    X, y = small
    Xte, yte = digits[2][:100], digits[3][:100]
    plain = _quick(epochs=3).fit(X, y)
    clf = _quick(epochs=3, eval_every=2).fit(X, y, validation_data=(Xte, yte))
    assert _same(_weights(plain), _weights(clf))  # evaluation draws no random numbers
    evaluated = [h["epoch"] for h in clf.history_ if "test_loss" in h]
    assert evaluated == [2, 3]  # every 2 epochs and the last
    last = clf.history_[-1]
    assert {"loss", "accuracy", "test_loss", "test_error"} <= set(last)
    probs = clf.predict_proba(Xte)
    assert last["test_error"] == pytest.approx(1 - clf.set_params(tta=False).score(Xte, yte))
    assert last["test_loss"] > 0 and probs.shape == (100, 10)
    assert clf.eval_seconds_ > 0
    clf.save(tmp_path / "m.pt")
    assert CNNClassifier.load(tmp_path / "m.pt").history_ == clf.history_
    every = _quick(epochs=2).fit(X, y, validation_data=(Xte, yte))
    assert all("test_error" in h for h in every.history_)


def test_validation_data_errors(small):
    X, y = small
    with pytest.raises(ValueError, match="eval_every=2 needs validation_data"):
        _quick(eval_every=2).fit(X, y)
    with pytest.raises(ValueError, match="absent from the training labels: 42$"):
        _quick().fit(X, y, validation_data=(X[:3], [1, 2, 42]))
    with pytest.raises(ValueError, match="absent from the training labels: 'cat'"):
        _quick().fit(X, y, validation_data=(X[:2], ["cat", "cat"]))
    with pytest.raises(ValueError, match="validation_data: .*image 1"):
        _quick().fit(X, y, validation_data=([X[0], np.zeros((8, 8, 2), np.uint8)], y[:2]))
    with pytest.raises(ValueError, match="pair"):
        _quick().fit(X, y, validation_data=X[:3])
    with pytest.raises(ValueError, match="3 images"):
        _quick().fit(X, y, validation_data=(X[:3], y[:2]))
