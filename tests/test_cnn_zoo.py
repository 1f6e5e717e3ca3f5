"""Tests of the timm families and of the torchvision feature interface (issue 15).

The forward/backward pass of every model is in test_cnn_models.py; here: the
configurations against timm's, ResNeXt152_vd's layout, ``pretrained="imagenet"``
from the Hugging Face hub cache (a fake cache this test writes; nothing is
downloaded), ``.safetensors`` files, and the state-dict compatibility of the
torchvision adapters.
"""

import pickle
import socket

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from cnn import CNNClassifier
from cnn.models import (
    create_model,
    get_model_config,
    head_parameter_names,
    imagenet_weights_file,
    list_models,
    load_matching_weights,
    models_with_pretrained_weights,
)
from cnn.models.imagenet import with_feature_interface

pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: project name -> timm model name (the same here: the project follows timm's names for them)
TIMM = {n: n for n in ["inception_v4", "seresnext50_32x4d", "xception71", "dpn107", "darknet53", "resnet152d",
                       "resnet50d", "ghostnet_100", "mobilenetv3_small_100"]}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_timm_configs_match_timm_pretrained_cfgs():
    timm = pytest.importorskip("timm")
    for name, timm_name in TIMM.items():
        assert timm_name in timm.list_models(timm_name)
        ours, theirs = get_model_config(name), timm.models.get_pretrained_cfg(timm_name)
        assert ours["source"] == "timm" and ours["family"] == "imagenet"
        assert ours["input_size"] == theirs.input_size[-1], name
        np.testing.assert_allclose(ours["mean"], theirs.mean, err_msg=name)
        np.testing.assert_allclose(ours["std"], theirs.std, err_msg=name)
        assert ours["timm_weights"] == theirs.hf_hub_id, name
        assert ours["paper"]
    assert get_model_config("resnext152_vd_32x4d")["timm_weights"] is None
    assert set(TIMM) <= set(models_with_pretrained_weights())
    assert "resnext152_vd_32x4d" not in models_with_pretrained_weights()
    for name in ("resnet18", "densenet121", "vgg16_bn"):
        assert get_model_config(name)["source"] == "torchvision"
    assert get_model_config("resnet20")["source"] == "classicvision"


def test_resnext152_vd_layout():
    model = create_model("resnext152_vd_32x4d", 10)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(s) for s in stages] == [3, 8, 36, 3]  # 152 = 3 * 50 + 2
    assert {b.conv2.groups for s in stages for b in s} == {32}
    assert model.layer1[0].conv2.out_channels == 128  # 32 groups x width 4
    stem = [m for m in model.conv1.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in stem] == [(32, (3, 3)), (32, (3, 3)), (64, (3, 3))]
    assert isinstance(model.layer2[0].downsample[0], nn.AvgPool2d)  # "d": pool, then 1x1 conv
    plain = create_model("resnet152d", 10)
    assert {b.conv2.groups for s in [plain.layer1, plain.layer4] for b in s} == {1}
    assert model.fc.out_features == 10 and model.num_features == model.head_hidden_size == 2048


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", "ghostnet_100"])
def test_timm_model_one_channel_and_pre_logits_width(name):
    model = create_model(name, 3, in_chans=1).eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    with torch.no_grad():
        x = torch.randn(2, 1, 32, 32)
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        assert model(x).shape == (2, 3)
    # MobileNetV3 and GhostNet: a 1x1 conv after the pooling widens the features (timm's head_hidden_size)
    assert pre.shape == (2, model.head_hidden_size) and model.head_hidden_size > model.num_features


def test_timm_keyword_pretrained_is_refused():
    with pytest.raises(ValueError, match="create_model.*pretrained"):
        create_model("resnet50d", 3, pretrained_cfg_overlay={"file": "x"})


def _fake_hub_cache(root, repo, state, fname="model.safetensors"):
    from safetensors.torch import save_file

    folder = root / ("models--" + repo.replace("/", "--"))
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / fname))
    return snap / fname


def test_pretrained_imagenet_timm_from_the_hub_cache(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    name = "mobilenetv3_small_100"
    repo = get_model_config(name)["timm_weights"]
    path, url = imagenet_weights_file(name)
    assert path == tmp_path / "hub" / "models--timm--mobilenetv3_small_100.lamb_in1k"
    assert url == f"https://huggingface.co/{repo}/resolve/main/model.safetensors"
    with pytest.raises(FileNotFoundError, match=f"{repo}.*not in the local hub cache.*{url}.*pretrained="):
        create_model(name, 5, pretrained="imagenet")
    assert not path.exists()  # nothing was downloaded
    torch.manual_seed(1)
    state = create_model(name, 1000).state_dict()
    file = _fake_hub_cache(tmp_path / "hub", repo, state)
    assert imagenet_weights_file(name) == (file, url)
    model = create_model(name, 5, pretrained="imagenet")
    rep = model.pretrained_report
    assert rep["file"] == str(file)
    assert set(rep["skipped"]) == {"classifier.weight", "classifier.bias"}
    assert rep["reasons"]["classifier.weight"] == "head" and len(rep["loaded"]) == len(state) - 2
    torch.testing.assert_close(model.conv_stem.weight, state["conv_stem.weight"])
    # the classifier takes the file's normalization (timm's ImageNet statistics)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    clf = CNNClassifier(model=name, pretrained="imagenet", epochs=1, input_size=32, batch_size=4,
                        freeze="backbone", random_state=0).fit(images, np.arange(8) % 2)
    assert clf.mean_ == pytest.approx(list(get_model_config(name)["mean"]))
    assert clf.predict(images[:3]).shape == (3,)


def test_pretrained_safetensors_and_bin_files(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = create_model("resnet50d", 10)
    file = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(file))
    model = create_model("resnet50d", 4, pretrained=file)
    assert set(model.pretrained_report["skipped"]) == {"fc.weight", "fc.bias"}
    torch.testing.assert_close(model.layer4[2].conv3.weight, src.layer4[2].conv3.weight)
    torch.save(src.state_dict(), tmp_path / "pytorch_model.bin")
    assert create_model("resnet50d", 4, pretrained=tmp_path / "pytorch_model.bin").pretrained_report["loaded"]
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors is not a readable safetensors file"):
        create_model("resnet50d", 4, pretrained=tmp_path / "bad.safetensors")


@pytest.mark.parametrize("name,builder", [("resnet18", torchvision.models.resnet18),
                                          ("densenet121", torchvision.models.densenet121),
                                          ("mobilenet_v3_large", torchvision.models.mobilenet_v3_large)])
def test_torchvision_adapter_keeps_state_dict_keys(name, builder):
    ours = create_model(name, 10)
    theirs = builder(weights=None, num_classes=10)
    assert isinstance(ours, type(theirs)) and type(ours) is not type(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())  # strict: torchvision's own weights load unchanged
    theirs.eval(), ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    rep = load_matching_weights(create_model(name, 3), theirs.state_dict())
    assert set(rep["skipped"]) == set(head_parameter_names(ours)) and len(rep["skipped"]) == 2


def test_adapter_pickles_and_refuses_unknown_classes():
    model = create_model("shufflenet_v2_x1_0", 4).eval()
    back = pickle.loads(pickle.dumps(model))
    assert type(back) is type(model) and back.head_hidden_size == model.head_hidden_size == 1024
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back.forward_head(back.forward_features(x)), model(x))
    assert with_feature_interface(model) is model  # idempotent
    with pytest.raises(TypeError, match="no forward_features/forward_head adapter for .*Linear"):
        with_feature_interface(nn.Linear(2, 2))


def test_saved_classifier_of_an_adapted_model_loads(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8) % 2
    clf = CNNClassifier(model="resnet18", epochs=1, input_size=32, batch_size=4, random_state=0).fit(images, y)
    path = tmp_path / "r18.pt"
    clf.save(path)
    back = CNNClassifier.load(path, device="cpu")
    np.testing.assert_allclose(back.predict_proba(images), clf.predict_proba(images), rtol=1e-5, atol=1e-6)
    assert hasattr(back.model_, "forward_features")


def test_sources_are_consistent():
    for name in list_models():
        cfg = get_model_config(name)
        assert cfg["source"] in {"classicvision", "torchvision", "timm"}, name
        assert (cfg["source"] == "torchvision") == bool(cfg["torchvision_weights"]), name
        assert not (cfg["torchvision_weights"] and cfg["timm_weights"]), name  # one source per model


def test_head_of_a_timm_model_is_its_classifier():
    # DPN's classifier is a 1x1 convolution, not a Linear layer
    model = create_model("dpn107", 7)
    assert head_parameter_names(model) == ["classifier.weight", "classifier.bias"]
    assert model.classifier.out_channels == 7
    assert head_parameter_names(create_model("ghostnet_100", 3)) == ["classifier.weight", "classifier.bias"]
    assert head_parameter_names(create_model("resnet20", 3)) == ["fc.weight", "fc.bias"]
