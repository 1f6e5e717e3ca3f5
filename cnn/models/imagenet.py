"""ImageNet architectures built through torchvision, untrained (``weights=None``).

Each configuration names the torchvision model (``torchvision_weights``) whose
ImageNet weights ``create_model(name, ..., pretrained="imagenet")`` loads from the
torch hub cache, and the smallest input the network accepts (``min_input_size``).
Each builder passes ``num_classes`` to the torchvision constructor and, when
``in_chans != 3``, replaces the first convolution by one with ``in_chans`` input
channels (same kernel, stride, padding and width). Auxiliary classifiers of
GoogLeNet and Inception v3 are off, so ``forward`` always returns one tensor of
logits. The default configurations carry each network's native input size.

References
----------
torchvision model zoo, https://pytorch.org/vision/stable/models.html ;
the paper of each family is in its configuration's ``paper`` field.
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from ._registry import register_model

__all__ = ["adapt_first_conv"]

_IMAGENET = {
    "input_size": 224,
    "test_input_size": 64,
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "family": "imagenet",
}
#: The usual ImageNet SGD recipe (He et al. 2016: 0.1 at a batch of 256, weight decay 1e-4).
_IMAGENET_RECIPE = {"lr": 0.1, "lr_batch_size": 256, "weight_decay": 1e-4}


def adapt_first_conv(model: nn.Module, in_chans: int) -> nn.Module:
    """Replace the first ``Conv2d`` of ``model`` by one taking ``in_chans`` channels.

    Parameters
    ----------
    model : torch.nn.Module
    in_chans : int

    Returns
    -------
    torch.nn.Module
        ``model`` itself, modified in place.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_chans:
                return model
            new = nn.Conv2d(
                in_chans,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.groups if module.groups == 1 else in_chans,
                module.bias is not None,
                module.padding_mode,
            )
            parent = model
            *path, last = name.split(".")
            for p in path:
                parent = getattr(parent, p)
            setattr(parent, last, new)
            return model
    raise ValueError(f"{type(model).__name__} has no Conv2d layer to adapt to {in_chans} channels")


def _tv(fn, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    model = fn(weights=None, num_classes=num_classes, **kwargs)
    return adapt_first_conv(model, in_chans)


def _cfg(tv_name: str, paper: str, **kw) -> dict:
    return {**_IMAGENET, "paper": paper, "torchvision_weights": tv_name, **kw}


def _recipe(**kw) -> dict:
    return {**_IMAGENET_RECIPE, **kw}


_ALEX = "Krizhevsky et al. 2012, https://doi.org/10.1145/3065386"
_VGG = "Simonyan & Zisserman 2015, https://arxiv.org/abs/1409.1556"
_RES = "He et al. 2016, https://doi.org/10.1109/CVPR.2016.90"
_RX = "Xie et al. 2017, https://doi.org/10.1109/CVPR.2017.634"
_EFF = "Tan & Le 2019, https://arxiv.org/abs/1905.11946"


@register_model(config=_cfg("alexnet", _ALEX, min_input_size=63), recipe=_recipe(lr=0.01, weight_decay=5e-4))
def alexnet(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """AlexNet (torchvision's single-tower variant)."""
    return _tv(tvm.alexnet, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("vgg11_bn", _VGG, test_input_size=32, min_input_size=32), recipe=_recipe(lr=0.01, weight_decay=5e-4)
)
def vgg11_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """VGG-11 with batch norm."""
    return _tv(tvm.vgg11_bn, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("vgg19", _VGG, test_input_size=32, min_input_size=32), recipe=_recipe(lr=0.01, weight_decay=5e-4)
)
def vgg19(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """VGG-19 (configuration E, no batch norm)."""
    return _tv(tvm.vgg19, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("googlenet", "Szegedy et al. 2015, https://doi.org/10.1109/CVPR.2015.7298594", min_input_size=15),
    recipe=_IMAGENET_RECIPE,
)
def googlenet(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """GoogLeNet / Inception v1 (with BN, as torchvision builds it), no auxiliary heads."""
    kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    return _tv(tvm.googlenet, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg(
        "inception_v3",
        "Szegedy et al. 2016, https://doi.org/10.1109/CVPR.2016.308",
        input_size=299,
        test_input_size=75,
        min_input_size=75,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    ),
    recipe=_IMAGENET_RECIPE,
)
def inception_v3(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """Inception v3 (299x299 input; the smallest it accepts is 75x75), no auxiliary head."""
    kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    return _tv(tvm.inception_v3, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("resnet18", _RES), recipe=_IMAGENET_RECIPE)
def resnet18(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-18 (ImageNet)."""
    return _tv(tvm.resnet18, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("resnet50", _RES), recipe=_IMAGENET_RECIPE)
def resnet50(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNet-50 (ImageNet, bottleneck blocks)."""
    return _tv(tvm.resnet50, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("resnext50_32x4d", _RX), recipe=_IMAGENET_RECIPE)
def resnext50_32x4d(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ResNeXt-50 32x4d."""
    return _tv(tvm.resnext50_32x4d, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("densenet161", "Huang et al. 2017, https://doi.org/10.1109/CVPR.2017.243", min_input_size=29),
    recipe=_IMAGENET_RECIPE,
)
def densenet161(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """DenseNet-161 (growth rate 48)."""
    return _tv(tvm.densenet161, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("mobilenet_v2", "Sandler et al. 2018, https://doi.org/10.1109/CVPR.2018.00474"),
    recipe=_recipe(lr=0.045, weight_decay=4e-5),
)
def mobilenet_v2(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """MobileNet v2 (width 1.0)."""
    return _tv(tvm.mobilenet_v2, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("mobilenet_v3_large", "Howard et al. 2019, https://doi.org/10.1109/ICCV.2019.00140"),
    recipe=_recipe(lr=0.064, weight_decay=1e-5),
)
def mobilenet_v3_large(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """MobileNet v3 large."""
    return _tv(tvm.mobilenet_v3_large, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("shufflenet_v2_x1_0", "Ma et al. 2018, https://doi.org/10.1007/978-3-030-01264-9_8"),
    recipe=_recipe(lr=0.5, lr_batch_size=1024, weight_decay=4e-5),
)
def shufflenet_v2_x1_0(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """ShuffleNet v2, 1.0x width."""
    return _tv(tvm.shufflenet_v2_x1_0, num_classes, in_chans, **kwargs)


# EfficientNet B0..B7 at their native resolutions (Tan & Le 2019, Table 1 / torchvision).
_EFF_RECIPE = _recipe(lr=0.256, lr_batch_size=4096, weight_decay=1e-5)

@register_model(config=_cfg("efficientnet_b0", _EFF, input_size=224), recipe=_EFF_RECIPE)
def efficientnet_b0(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B0 (native input 224x224)."""
    return _tv(tvm.efficientnet_b0, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("efficientnet_b1", _EFF, input_size=240), recipe=_EFF_RECIPE)
def efficientnet_b1(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B1 (native input 240x240)."""
    return _tv(tvm.efficientnet_b1, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("efficientnet_b2", _EFF, input_size=260), recipe=_EFF_RECIPE)
def efficientnet_b2(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B2 (native input 260x260)."""
    return _tv(tvm.efficientnet_b2, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("efficientnet_b3", _EFF, input_size=300), recipe=_EFF_RECIPE)
def efficientnet_b3(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B3 (native input 300x300)."""
    return _tv(tvm.efficientnet_b3, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("efficientnet_b4", _EFF, input_size=380), recipe=_EFF_RECIPE)
def efficientnet_b4(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B4 (native input 380x380)."""
    return _tv(tvm.efficientnet_b4, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("efficientnet_b5", _EFF, input_size=456), recipe=_EFF_RECIPE)
def efficientnet_b5(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B5 (native input 456x456)."""
    return _tv(tvm.efficientnet_b5, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("efficientnet_b6", _EFF, input_size=528), recipe=_EFF_RECIPE)
def efficientnet_b6(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B6 (native input 528x528)."""
    return _tv(tvm.efficientnet_b6, num_classes, in_chans, **kwargs)


@register_model(config=_cfg("efficientnet_b7", _EFF, input_size=600), recipe=_EFF_RECIPE)
def efficientnet_b7(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """EfficientNet-B7 (native input 600x600)."""
    return _tv(tvm.efficientnet_b7, num_classes, in_chans, **kwargs)
