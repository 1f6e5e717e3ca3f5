"""Lazy (decode-on-access) image datasets and the ImageNet layout, on tiny synthetic data."""

import os
import pickle
import tarfile

import cv2
import numpy as np
import pytest

from classicvision.datasets import LazyImages, _lazy, load_dataset, load_image_folder, load_imagenet
from classicvision.features._common import resize_max_side

CLASSES = ("cat", "dog", "owl")


def _image(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """train/test splits, 3 classes, 4 colour images each of varying sizes (PNG and JPEG)."""
    root = tmp_path_factory.mktemp("lazy") / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True)
            for k in range(4):
                ext = ".png" if k % 2 else ".jpg"
                cv2.imwrite(str(root / split / cls / f"{k}{ext}"), _image(rng, (10 + k, 12 + 2 * k, 3)))
    return root


@pytest.fixture(scope="module")
def plain_tar(folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("tar") / "data.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(folder, arcname="data")
    return path


def _same(bunch_a, bunch_b):
    assert list(bunch_a.filenames) == list(bunch_b.filenames)
    np.testing.assert_array_equal(bunch_a.target, bunch_b.target)
    assert bunch_a.target_names == bunch_b.target_names
    assert len(bunch_a.images) == len(bunch_b.images)
    for a, b in zip(bunch_a.images, bunch_b.images):
        assert a.dtype == np.uint8 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("which", ["folder", "tar"])
def test_lazy_equals_eager(which, folder, plain_tar):
    path = folder if which == "folder" else plain_tar
    for split in ("train", "test"):
        lazy = load_image_folder(path, split, lazy=True)
        assert isinstance(lazy.images, LazyImages)
        _same(lazy, load_image_folder(path, split, cache=False))
    # per-class draws: the same with the same seed, train_index / test_index included
    kw = dict(train_per_class=2, test_per_class=1, random_state=3, cache=False)
    lazy = load_image_folder(path / "train" if which == "folder" else path, None if which == "folder"
                             else "train", lazy=True, **kw)
    eager = load_image_folder(path / "train" if which == "folder" else path, None if which == "folder"
                              else "train", **kw)
    _same(lazy, eager)
    for key in ("train_index", "test_index"):
        if key in eager:
            np.testing.assert_array_equal(lazy[key], eager[key])


def test_tar_long_names_and_hard_links(tmp_path):
    """pax long names and hard links read by offset like the eager loader reads them."""
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    long_cls = "c" * 120  # > 100 characters: a pax header
    for cls in ("a", long_cls):
        (src / cls).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(src / cls / f"{k}.png"), _image(rng, (6, 7, 3)))
    os.link(src / "a" / "0.png", src / "a" / "2.png")
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(src, arcname="root")
    with tarfile.open(path) as tf:
        assert any(m.islnk() for m in tf.getmembers())
    lazy = load_image_folder(path, lazy=True)
    _same(lazy, load_image_folder(path, cache=False))
    assert len(lazy.images) == 5


def test_indexing_and_slicing(folder):
    images = load_image_folder(folder, "train", lazy=True).images
    names = images.filenames
    assert isinstance(names, list) and names[0] == "train/cat/0.jpg"
    assert images[1:4].filenames == names[1:4]
    assert images[::-1].filenames == names[::-1]
    assert images[[5, 0]].filenames == [names[5], names[0]]
    assert images[np.array([2, -1])].filenames == [names[2], names[-1]]
    mask = np.zeros(len(images), bool)
    mask[[1, 3]] = True
    assert images[mask].filenames == [names[1], names[3]]
    assert len(images[[]]) == 0
    np.testing.assert_array_equal(images[-1], images[len(images) - 1])
    np.testing.assert_array_equal(images[[4, 7]][1], images[7])
    assert sum(1 for _ in images) == len(images) == 12
    with pytest.raises(IndexError, match="out of range"):
        images[12]
    with pytest.raises(IndexError, match="out of range"):
        images[[0, 99]]
    with pytest.raises(IndexError, match="mask"):
        images[np.ones(3, bool)]
    with pytest.raises(TypeError, match="indices"):
        images[1.5]


def _sums(images):
    return [int(im.sum()) for im in images]


def _child(images, queue):
    queue.put(_sums(images))


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_worker_processes_open_the_archive_themselves(plain_tar):
    import multiprocessing

    images = load_image_folder(plain_tar, "train", lazy=True).images
    expected = _sums(images)  # the parent now holds an open handle
    ctx = multiprocessing.get_context("fork")
    parts = [images[k::3] for k in range(3)]
    with ctx.Pool(2) as pool:  # slices travel pickled: paths and offsets
        got = pool.map(_sums, parts)
    assert got == [expected[k::3] for k in range(3)]
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(images, queue))  # inherited by fork, not pickled
    proc.start()
    assert queue.get(timeout=30) == expected
    proc.join(timeout=30)
    assert proc.exitcode == 0


def test_array_conversion_refused(folder):
    images = load_image_folder(folder, "train", lazy=True).images
    with pytest.raises(TypeError, match="index it"):
        np.asarray(images)
    with pytest.raises(TypeError, match="decodes images on access"):
        np.array(images[:2])


@pytest.mark.parametrize("which", ["folder", "tar"])
def test_pickle_round_trip_is_small(which, folder, plain_tar):
    images = load_image_folder(folder if which == "folder" else plain_tar, "train", lazy=True).images
    images[0]  # an open archive handle must not travel
    blob = pickle.dumps(images)
    pixels = sum(im.nbytes for im in images)
    assert len(blob) < 1500 + 60 * len(images) < pixels
    back = pickle.loads(blob)
    assert back.filenames == images.filenames and back.fingerprint() == images.fingerprint()
    for a, b in zip(back, images):
        np.testing.assert_array_equal(a, b)
    images.close()
    np.testing.assert_array_equal(images[3], back[3])  # reopened on access after close()


def test_max_side(folder):
    bunch = load_image_folder(folder, "train", cache=False)
    lazy = load_image_folder(folder, "train", lazy=True, max_side=8).images
    assert lazy.max_side == 8 and lazy.with_max_side(None).max_side is None
    for full, small in zip(bunch.images, lazy):
        assert max(small.shape[:2]) == 8
        np.testing.assert_array_equal(small, resize_max_side(full, 8))
    np.testing.assert_array_equal(lazy.with_max_side(None)[2], bunch.images[2])
    eager_small = load_image_folder(folder, "train", max_side=8, cache=False).images
    for a, b in zip(eager_small, lazy):
        np.testing.assert_array_equal(a, b)
    assert lazy.fingerprint() != lazy.with_max_side(9).fingerprint()
    with pytest.raises(ValueError, match="max_side"):
        lazy.with_max_side(0)


def test_fingerprint_follows_the_files(tmp_path):
    root = tmp_path / "fp"
    rng = np.random.default_rng(2)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(root / cls / f"{k}.png"), _image(rng, (5, 5, 3)))
    first = load_image_folder(root, lazy=True).images
    assert first.fingerprint() == load_image_folder(root, lazy=True).images.fingerprint()
    assert first[:3].fingerprint() != first.fingerprint()
    target = root / "dog" / "1.png"
    cv2.imwrite(str(target), _image(rng, (6, 5, 3)))
    os.utime(target, ns=(1, 1))  # also a new modification time
    again = load_image_folder(root, lazy=True).images
    assert again.fingerprint() != first.fingerprint()
    with pytest.raises(ValueError, match="changed since it was listed"):
        first[3]  # the old listing does not decode what its fingerprint does not describe
    assert again[3].shape == (6, 5, 3)


def test_compressed_archive_refused(folder, tmp_path):
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname="data")
    with pytest.raises(ValueError, match=r"compressed archive.*cannot be read by offset.*plain \.tar"):
        load_image_folder(path, "train", lazy=True)
    assert len(load_image_folder(path, "train", cache=False).images) == 12  # eagerly it reads


def test_decode_error_names_the_file(tmp_path):
    root = tmp_path / "bad"
    rng = np.random.default_rng(3)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        cv2.imwrite(str(root / cls / "0.png"), _image(rng, (4, 4, 3)))
    (root / "b" / "broken.png").write_bytes(b"not an image")
    lazy = load_image_folder(root, lazy=True).images  # listing does not decode
    with pytest.raises(ValueError, match=r"b[/\\]broken\.png.*not a readable image"):
        lazy[2]
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(root, arcname="bad")
    lazy = load_image_folder(path, lazy=True).images
    with pytest.raises(ValueError, match=r"bad/b/broken\.png \(in .*bad\.tar\)"):
        lazy[2]
    with pytest.raises(ValueError, match="on_error='skip'"):
        load_image_folder(root, lazy=True, on_error="skip")
    with pytest.raises(ValueError, match="max_member_bytes"):
        load_image_folder(path, lazy=True, max_member_bytes=10)


def test_listing_decodes_nothing(tmp_path, monkeypatch):
    root = tmp_path / "many"
    img = cv2.imencode(".png", np.zeros((3, 3, 3), np.uint8))[1].tobytes()
    for c in range(4):
        (root / f"c{c}").mkdir(parents=True)
        for k in range(150):
            (root / f"c{c}" / f"{k:03d}.png").write_bytes(img)

    def boom(*args, **kwargs):
        raise AssertionError("decoded at construction")

    monkeypatch.setattr(_lazy, "decode_image", boom)
    bunch = load_image_folder(root, lazy=True, train_per_class=100, test_per_class=20)
    assert len(bunch.images) == 480 and len(bunch.train_index) == 400
    images = LazyImages(bunch.filenames, root=root, max_side=2)
    assert len(images[::2]) == 240 and images.fingerprint()
    with pytest.raises(AssertionError, match="decoded at construction"):
        images[0]  # only access decodes


def test_grayscale_and_rgb(tmp_path):
    root = tmp_path / "gray"
    rng = np.random.default_rng(4)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(root / cls / f"{k}.png"), _image(rng, (5, 6)))
    lazy = load_image_folder(root, lazy=True)
    _same(lazy, load_image_folder(root, cache=False))  # all gray: (H, W) both ways
    assert lazy.images[0].shape == (5, 6)
    cv2.imwrite(str(root / "b" / "2.png"), _image(rng, (5, 6, 3)))  # now mixed
    eager = load_image_folder(root, cache=False)
    _same(load_image_folder(root, lazy=True, rgb=True), eager)
    assert LazyImages(["a/0.png"], root=root, rgb=True)[0].shape == (5, 6, 3)


def test_lazy_images_from_sources(folder, plain_tar):
    with tarfile.open(plain_tar) as tf:
        member = tf.getmember("data/train/dog/1.png")
        spot = (plain_tar, member.offset_data, member.size, member.name)
    images = LazyImages([folder / "train" / "dog" / "1.png", spot])
    assert images.filenames == [str(folder / "train" / "dog" / "1.png"), "data/train/dog/1.png"]
    np.testing.assert_array_equal(images[0], images[1])
    assert "LazyImages(2 images" in repr(images)
    with pytest.raises(FileNotFoundError, match="image file not found"):
        LazyImages(["nope.png"], root=folder)
    with pytest.raises(ValueError, match="beyond the end"):
        LazyImages([(plain_tar, 0, 10**9)])
    with pytest.raises(TypeError, match="sequence"):
        LazyImages("one.png")


# -- the ImageNet layout ---------------------------------------------------------

WNIDS = ("n00000003", "n00000001", "n00000002")  # a synset file order that is not sorted


def _jpeg(path, rng, shape=(8, 9, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), _image(rng, shape))


@pytest.fixture()
def imagenet(tmp_path):
    root = tmp_path / "inet"
    rng = np.random.default_rng(5)
    for w in WNIDS:
        for k in range(3):
            _jpeg(root / "train" / w / f"{w}_{k}.JPEG", rng)
    return root


def _flat_val(root, labels, rng):
    for n in range(1, len(labels) + 1):
        _jpeg(root / "val" / f"ILSVRC2010_val_{n:08d}.JPEG", rng)
    (root / "ILSVRC2010_validation_ground_truth.txt").write_text("".join(f"{v}\n" for v in labels))


def test_imagenet_train_and_class_folder_val(imagenet):
    rng = np.random.default_rng(6)
    for w in WNIDS:
        _jpeg(imagenet / "val" / w / f"v_{w}.JPEG", rng)
    train = load_imagenet(imagenet)
    assert isinstance(train.images, LazyImages) and len(train.images) == 9
    assert train.target_names == sorted(WNIDS)
    assert train.filenames[0] == "n00000001/n00000001_0.JPEG" and train.target[0] == 0
    val = load_dataset("imagenet", imagenet, split="test")
    assert val.split == "val" and list(val.target) == [0, 1, 2]
    assert [f.split("/")[0] for f in val.filenames] == sorted(WNIDS)
    eager = load_imagenet(imagenet, "val", lazy=False)
    _same(val, eager)
    few = load_imagenet(imagenet, "train", train_per_class=2, random_state=1)
    assert np.bincount(few.target).tolist() == [2, 2, 2]
    assert list(few.filenames) == list(load_imagenet(imagenet, train_per_class=2, random_state=1).filenames)
    small = load_imagenet(imagenet, max_side=4, lazy=False)
    assert all(max(im.shape[:2]) == 4 for im in small.images)


def test_imagenet_flat_val_with_ground_truth_and_synsets(imagenet):
    rng = np.random.default_rng(7)
    (imagenet / "synsets.txt").write_text("".join(f"{w} some words\n" for w in WNIDS))
    _flat_val(imagenet, [2, 3, 1, 1, 2], rng)
    val = load_imagenet(imagenet, "val")
    assert val.target_names == list(WNIDS)
    assert list(val.target) == [1, 2, 0, 0, 1]
    assert val.filenames[0] == "ILSVRC2010_val_00000001.JPEG"
    train = load_imagenet(imagenet, "train")  # the same class order for both splits
    assert train.target_names == list(WNIDS)
    assert {f.split("/")[0] for f, t in zip(train.filenames, train.target) if t == 0} == {WNIDS[0]}
    sub = load_imagenet(imagenet, "val", test_per_class=1)
    assert sorted(sub.target) == [0, 1, 2]
    # an explicit ground-truth file and synset list override the ones found
    gt = imagenet / "other_gt.txt"
    gt.write_text("1\n1\n1\n1\n1\n")
    val = load_imagenet(imagenet, "val", ground_truth=gt, synsets=["n00000002", "n00000001", "n00000003"])
    assert list(val.target) == [0] * 5 and val.target_names[0] == "n00000002"


def test_imagenet_errors(imagenet):
    rng = np.random.default_rng(8)
    _flat_val(imagenet, [1, 2, 4], rng)
    gt = imagenet / "ILSVRC2010_validation_ground_truth.txt"
    with pytest.raises(ValueError, match=r"ground_truth\.txt, line 3: label 4 is out of range 1\.\.3"):
        load_imagenet(imagenet, "val")
    gt.write_text("1\n2\n")
    with pytest.raises(ValueError, match=r"has 2 labels but .*val holds 3 images"):
        load_imagenet(imagenet, "val")
    gt.write_text("1\ntwo\n3\n")
    with pytest.raises(ValueError, match=r"line 2: 'two' is not an integer"):
        load_imagenet(imagenet, "val")
    gt.unlink()
    with pytest.raises(ValueError, match="no ground-truth file was found"):
        load_imagenet(imagenet, "val")
    (imagenet / "synsets.txt").write_text("n00000001\nn00000002\nn00000001\n")
    with pytest.raises(ValueError, match=r"synsets\.txt, line 3: synset 'n00000001' repeats line 1"):
        load_imagenet(imagenet, "train")
    (imagenet / "synsets.txt").write_text("n00000001\nn00000002\n")
    with pytest.raises(ValueError, match=r"\['n00000003'\] of .*train are not in .*synsets\.txt"):
        load_imagenet(imagenet, "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        load_imagenet(imagenet, "test")
    with pytest.raises(FileNotFoundError, match="ground-truth file not found"):
        load_imagenet(imagenet, "val", ground_truth=imagenet / "missing.txt")
    with pytest.raises(ValueError, match="on_error='skip'"):
        load_imagenet(imagenet, on_error="skip")
    with pytest.raises(FileNotFoundError, match="ImageNet root folder not found"):
        load_imagenet(imagenet / "nowhere")
