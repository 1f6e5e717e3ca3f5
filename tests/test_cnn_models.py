"""Tests of the CNN model registry and of every registered architecture.

The zoo test builds every registered model, checks its ``forward_features`` /
``forward_head`` interface at the small ``test_input_size`` and runs forward and
backward on a batch of 2 at the model's native input size (224 for most ImageNet
networks, 299 for Inception v3, 380 for EfficientNet-B4); the models added with the
timm families (``REDUCED``) and EfficientNet-B5..B7 (``HEAVY``) run forward and
backward at their ``test_input_size``. Lighter checks (one input channel) use the smallest
input the configuration declares (``test_input_size``).
"""

import numpy as np
import pytest
import torch
from torch import nn

from cnn.models import (
    DEFAULT_CONFIG,
    DEFAULT_RECIPE,
    create_model,
    get_model_config,
    get_model_recipe,
    list_models,
    register_model,
)
from cnn.models.fastnet import FastNet
from cnn.models.imagenet import adapt_first_conv

REQUIRED = (
    ["vgg_bn_drop", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "googlenet_cifar", "fastnet",
     "small_convnet", "alexnet", "vgg19", "googlenet", "inception_v3", "resnet18", "resnet50", "resnext50_32x4d",
     "densenet161", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0"]
    + [f"efficientnet_b{i}" for i in range(8)]
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


OWN = ["vgg_bn_drop", "resnet20", "resnet110", "googlenet_cifar", "fastnet", "small_convnet"]

#: Models added with the timm families (issue 15): tested at their reduced ``test_input_size`` (64x64; 75x75
#: for Inception-v4), as timm's own tests shrink the heavy networks, to keep this file within its time budget.
REDUCED = ["inception_v4", "seresnext50_32x4d", "xception71", "dpn107", "darknet53", "resnext152_vd_32x4d",
           "resnet152d", "resnet50d", "ghostnet_100", "mobilenetv3_small_100", "densenet121", "vgg13_bn",
           "vgg16_bn"]


#: The heaviest networks at their native size (EfficientNet-B5..B7: 456-600 px, 50-100 s each for one
#: forward and backward on 2 cores) also run at their ``test_input_size``: the suite's time budget (issue 15);
#: their native sizes are checked by ``test_configs_native_input_sizes``, and B0-B4 run at theirs.
HEAVY = ["efficientnet_b5", "efficientnet_b6", "efficientnet_b7"]


def _test_size(name):
    cfg = get_model_config(name)
    return cfg["test_input_size"] or cfg["input_size"]


def _native_size(name):
    cfg = get_model_config(name)
    return cfg["input_size"] or cfg["test_input_size"]  # small_convnet takes any size


def test_required_models_registered():
    names = list_models()
    assert names == sorted(names)
    missing = set(REQUIRED) - set(names)
    assert not missing


def test_list_models_pattern():
    assert list_models("resnet[0-9]*") == sorted(
        ["resnet18", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet50",
         "resnet50d", "resnet152d"]  # the last two: timm's ResNet-D (issue 15)
    )
    assert list_models("efficientnet_b*") == [f"efficientnet_b{i}" for i in range(8)]
    assert list_models("no_such_*") == []


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="unknown model 'resnet21'.*resnet20"):
        create_model("resnet21", 10)
    with pytest.raises(ValueError, match="unknown model"):
        get_model_config("efficientnet_b9")


def test_duplicate_registration_raises():
    def resnet20(num_classes=10, in_chans=3):  # same name as a registered model
        return nn.Linear(1, 1)

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet20)
    assert create_model("resnet20", 10).__class__.__name__ == "CifarResNet"


@pytest.mark.parametrize("num_classes,in_chans", [(0, 3), (2.5, 3), (10, 0)])
def test_bad_create_arguments(num_classes, in_chans):
    with pytest.raises(ValueError, match="num_classes|in_chans"):
        create_model("resnet20", num_classes, in_chans=in_chans)


def test_configs_native_input_sizes():
    # Tan & Le 2019: resolutions grow with the compound coefficient, from 224 (B0) to 600 (B7)
    sizes = [get_model_config(n)["input_size"] for n in list_models("efficientnet_b*")]
    assert sizes[0] == 224 and sizes[-1] == 600
    assert all(a < b for a, b in zip(sizes, sizes[1:]))
    assert get_model_config("inception_v3")["input_size"] == 299
    for name in ["resnet20", "vgg_bn_drop", "googlenet_cifar", "fastnet"]:
        assert get_model_config(name)["input_size"] == 32
    assert get_model_config("small_convnet")["input_size"] is None
    cfg = get_model_config("fastnet")
    cfg["input_size"] = -1  # a copy: the registry is unchanged
    assert get_model_config("fastnet")["input_size"] == 32
    recipe = get_model_recipe("fastnet")
    recipe["lr"] = -1  # a copy too
    assert get_model_recipe("fastnet")["lr"] > 0


def test_config_holds_facts_and_recipe_the_training_defaults():
    facts, recipe = set(DEFAULT_CONFIG), set(DEFAULT_RECIPE)
    assert not facts & recipe
    assert {"lr", "lr_batch_size", "momentum", "weight_decay", "label_smoothing", "bias_lr_scale"} == recipe
    for name in list_models():
        assert set(get_model_config(name)) == facts and set(get_model_recipe(name)) == recipe
    assert get_model_recipe("resnet50") == {**DEFAULT_RECIPE, "lr_batch_size": 256, "weight_decay": 1e-4}

    def toy(num_classes, in_chans=3):
        return nn.Linear(in_chans, num_classes)

    with pytest.raises(ValueError, match=r"unknown config keys for 'toy': \['lr'\]"):
        register_model(toy, config={"lr": 0.1})  # a recipe key is no fact about the architecture
    with pytest.raises(ValueError, match=r"unknown recipe keys for 'toy': \['input_size'\]"):
        register_model(toy, recipe={"input_size": 32})
    assert "toy" not in list_models()
    with pytest.raises(ValueError, match="unknown model"):
        get_model_recipe("resnet9000")


def test_reduced_models_registered():
    assert set(REDUCED) <= set(list_models())


def _check_feature_interface(model, size):
    """``forward_head(forward_features(x)) == model(x)`` in eval mode; pre-logits ``(N, head_hidden_size)``."""
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4 and feats.shape[:2] == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(feats), model(x))
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    size = _test_size(name) if name in REDUCED or name in HEAVY else _native_size(name)
    model = create_model(name, num_classes=5)
    _check_feature_interface(model, _test_size(name))
    model.train()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params
    no_grad = [n for n, p in params if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for _, p in params)
    assert any(p.grad.abs().sum() > 0 for _, p in params)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "densenet161", "inception_v3", "small_convnet",
                                  "fastnet", "googlenet_cifar"])
def test_in_chans_one(name):
    model = create_model(name, num_classes=3, in_chans=1).eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    size = _test_size(name)
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 3)


@pytest.mark.parametrize("name", OWN)
def test_forward_features_and_head(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4).eval()
    size = _test_size(name)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4 and feats.shape[0] == 2
        torch.testing.assert_close(model.forward_head(feats), model(x))
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.num_features)


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_depth_and_option_a(depth):
    model = create_model(f"resnet{depth}", 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # 6n+2 weighted layers: every conv is 3x3 (option A shortcuts have no weights) + the FC
    assert len(convs) + len(linears) == depth
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs][-1] == 64


def test_cifar_resnet_option_b_has_projections():
    a = create_model("resnet20", 10)
    b = create_model("resnet20", 10, shortcut="B")
    n_proj = sum(1 for m in b.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))
    assert n_proj == 2  # at the starts of stages 2 and 3
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", 10, shortcut="C")


def test_option_a_shortcut_is_zero_padded_identity():
    from cnn.models.cifar_resnet import BasicBlock

    block = BasicBlock(16, 32, stride=2, shortcut="A")
    x = torch.randn(2, 16, 8, 8)
    s = block._shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    torch.testing.assert_close(s[:, 8:24], x[:, :, ::2, ::2])
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


def test_vgg_bn_drop_layout():
    model = create_model("vgg_bn_drop", 10)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    drops = [m.p for m in model.features if isinstance(m, nn.Dropout)]
    assert drops == [0.3, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 5
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(512, 512), (512, 512), (512, 10)]


def test_fastnet_whitening_decorrelates_patches():
    torch.manual_seed(0)
    # correlated synthetic images: smooth noise
    x = torch.nn.functional.avg_pool2d(torch.randn(64, 3, 34, 34), 3, stride=1)
    net = FastNet(num_classes=10)
    net.init_whitening(x, eps=1e-8)
    assert not net.whiten.weight.requires_grad
    w = net.whiten.weight
    half = w.shape[0] // 2
    torch.testing.assert_close(w[half:], -w[:half])
    out = torch.nn.functional.conv2d(x, w[:half])  # no bias
    flat = out.permute(0, 2, 3, 1).reshape(-1, half).double()
    cov = flat.T @ flat / flat.shape[0]
    torch.testing.assert_close(cov, torch.eye(half, dtype=torch.float64), atol=1e-3, rtol=1e-3)


def test_fastnet_architecture():
    net = create_model("fastnet", 10)
    assert net.whiten.out_channels == 24 and net.whiten.kernel_size == (2, 2)
    widths = [g.conv2.out_channels for g in net.groups]
    assert widths == [64, 256, 256]
    assert all(not m.weight.requires_grad for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert get_model_recipe("fastnet")["label_smoothing"] == 0.2
    # logits are scaled by 1/9
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        net.eval()
        f = net.forward_head(net.forward_features(x), pre_logits=True)
        torch.testing.assert_close(net(x), net.fc(f) / 9)


def test_adapt_first_conv_keeps_geometry():
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    model = adapt_first_conv(torchvision.models.resnet18(weights=None), 1)
    assert model.conv1.in_channels == 1
    for attr in ("out_channels", "kernel_size", "stride", "padding"):
        assert getattr(model.conv1, attr) == getattr(ref.conv1, attr)
    with pytest.raises(ValueError, match="no Conv2d"):
        adapt_first_conv(nn.Linear(3, 3), 1)


def test_googlenet_has_no_aux_heads():
    for name in ("googlenet", "inception_v3"):
        model = create_model(name, 7)
        assert getattr(model, "aux_logits", False) is False
        model.train()
        size = _test_size(name)
        out = model(torch.randn(2, 3, size, size))
        assert isinstance(out, torch.Tensor) and out.shape == (2, 7)


def test_parameter_counts_match_paper():
    # He et al. 2016, Table 6: ResNet-20 0.27 M, ResNet-110 1.7 M parameters
    n20 = sum(p.numel() for p in create_model("resnet20", 10).parameters())
    n110 = sum(p.numel() for p in create_model("resnet110", 10).parameters())
    assert round(n20 / 1e6, 2) == 0.27
    assert round(n110 / 1e6, 1) == 1.7
    assert np.isclose(sum(p.numel() for p in create_model("fastnet", 10).parameters()), 1.97e6, rtol=0.01)


# ------------------------------------------------------- input sizes, pretrained
def test_input_size_bounds_in_configs():
    cfg = get_model_config("small_convnet")
    assert cfg["input_size"] is None and cfg["max_input_size"] == 64 and cfg["min_input_size"] == 2
    assert get_model_config("inception_v3")["min_input_size"] == 75
    # every model runs a training-mode batch of 2 at its smallest declared input
    for name in ["small_convnet", "fastnet", "vgg_bn_drop", "resnet20"]:
        size = get_model_config(name)["min_input_size"]
        out = create_model(name, 3).train()(torch.randn(2, 3, size, size))
        assert out.shape == (2, 3)


def test_check_input_size_names_model_and_minimum():
    from cnn.models import check_input_size

    check_input_size("small_convnet", 2)
    with pytest.raises(
        ValueError, match=r"1x1 is too small for model 'small_convnet'.*smallest supported input is 2x2",
    ):
        check_input_size("small_convnet", 1)
    with pytest.raises(ValueError, match="'vgg_bn_drop'.*32x32"):
        check_input_size("vgg_bn_drop", 16)


def _tv_state(name):
    torch.manual_seed(1)
    return create_model(name, 1000).state_dict()


def test_pretrained_imagenet_reads_the_hub_cache_never_downloads(tmp_path, monkeypatch):
    from cnn.models import imagenet_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = "shufflenet_v2_x1_0"
    path, url = imagenet_weights_file(name)
    assert path == tmp_path / "hub" / "checkpoints" / "shufflenetv2_x1-5666bf0f80.pth"
    assert url.startswith("https://") and url.endswith(path.name)
    with pytest.raises(FileNotFoundError, match=f"{path.name}.*missing.*{url}"):
        create_model(name, 5, pretrained="imagenet")
    assert not path.exists()  # nothing was downloaded
    path.parent.mkdir(parents=True)
    state = _tv_state(name)
    torch.save(state, path)
    model = create_model(name, 5, pretrained="imagenet")
    rep = model.pretrained_report
    assert rep["file"] == str(path)
    assert set(rep["skipped"]) == {"fc.weight", "fc.bias"} and rep["reasons"]["fc.weight"] == "head"
    assert len(rep["loaded"]) == len(state) - 2
    torch.testing.assert_close(model.conv1[0].weight, state["conv1.0.weight"])
    assert model.fc.out_features == 5
    # one input channel: the first convolution is re-initialised too
    gray = create_model(name, 5, in_chans=1, pretrained="imagenet")
    assert "conv1.0.weight" in gray.pretrained_report["skipped"]
    assert gray.pretrained_report["reasons"]["conv1.0.weight"].startswith("shape")


def test_pretrained_imagenet_on_a_model_without_weights_lists_those_with():
    with pytest.raises(ValueError, match=r"'small_convnet' has no pretrained ImageNet weights.*resnet18"):
        create_model("small_convnet", 3, pretrained="imagenet")
    with pytest.raises(ValueError, match="'resnet20' has no pretrained"):
        create_model("resnet20", 3, pretrained="imagenet")


def test_pretrained_file_loads_matching_layers(tmp_path):
    torch.manual_seed(0)
    src = create_model("resnet20", 10)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    model = create_model("resnet20", 4, in_chans=1, pretrained=path)
    rep = model.pretrained_report
    assert set(rep["skipped"]) == {"stem.0.weight", "fc.weight", "fc.bias"}
    torch.testing.assert_close(model.layers[8].conv2.weight, src.layers[8].conv2.weight)
    assert not torch.equal(model.fc.weight[:4], src.fc.weight[:4])
    # a state dict under "state_dict", and weights of another architecture
    torch.save({"state_dict": src.state_dict()}, tmp_path / "nested.pt")
    assert create_model("resnet20", 4, pretrained=tmp_path / "nested.pt").pretrained_report["loaded"]
    with pytest.raises(ValueError, match="w.pth matches model 'small_convnet'|no layer of .*w.pth"):
        create_model("small_convnet", 4, pretrained=path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        create_model("resnet20", 4, pretrained=tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("executed",))


def test_pretrained_file_with_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Evil()}, path)
    with pytest.raises(ValueError, match="refusing to load .*evil.pt"):
        create_model("resnet20", 4, pretrained=path)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt holds no state dict"):
        create_model("resnet20", 4, pretrained=tmp_path / "list.pt")


def test_densenet_checkpoint_keys_are_renamed():
    from cnn.models._registry import _DENSENET_KEY

    key = "features.denseblock1.denselayer1.norm.1.weight"
    assert _DENSENET_KEY.sub(r"\1\2", key) == "features.denseblock1.denselayer1.norm1.weight"
    assert _DENSENET_KEY.sub(r"\1\2", "features.conv0.weight") == "features.conv0.weight"
