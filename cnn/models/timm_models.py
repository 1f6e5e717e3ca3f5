"""ImageNet families torchvision does not build, through timm (untrained: ``pretrained=False``).

timm (PyTorch Image Models, R. Wightman) is the maintained library for these
architectures; each builder calls ``timm.create_model(name, pretrained=False,
num_classes=..., in_chans=...)`` (timm builds the first convolution for
``in_chans`` itself) or, for ResNeXt152_vd, timm's public ``ResNet`` class. timm is
imported when a model is built, not when the registry is imported.

Every model here has timm's ``forward_features(x)`` (the last feature map),
``forward_head(x, pre_logits=False)``, ``num_features`` (channels of that map)
and ``head_hidden_size`` (width of ``forward_head(x, pre_logits=True)``).
Weights are never downloaded: ``pretrained="imagenet"`` reads timm's weights
from the local Hugging Face hub cache (``timm_weights`` names the hub
repository), and a weights file path works as for every registered model (see
:func:`cnn.models.read_pretrained`).

The configurations (``input_size``, ``mean``, ``std``) are those of timm's
default pretrained configuration of each model (``timm.models.get_pretrained_cfg``),
written here so that listing the registry does not import timm;
``tests/test_cnn_zoo.py`` checks them against timm.

==========================  ==============================  =====================================
project name                PaddleClas / paper name         timm model, departures
==========================  ==============================  =====================================
``inception_v4``            InceptionV4                     ``inception_v4``
``seresnext50_32x4d``       SE_ResNeXt50_32x4d              ``seresnext50_32x4d`` (timm's ResNet
                                                            layout: SE after the 3rd conv of each
                                                            bottleneck, reduction 16)
``xception71``              Xception71                      ``xception71`` (the aligned Xception
                                                            of DeepLab v3+, as PaddleClas)
``dpn107``                  DPN107                          ``dpn107``
``darknet53``               DarkNet53                       ``darknet53`` (timm's CSPNet code
                                                            without the cross-stage split)
``resnext152_vd_32x4d``     ResNeXt152_vd_32x4d             timm ``ResNet`` class with layers
                                                            (3, 8, 36, 3), 32x4d grouped
                                                            bottlenecks, deep stem, average-pool
                                                            shortcuts: the same design; timm has
                                                            no weights for it
``resnet152d``              ResNet152_vd                    ``resnet152d`` (ResNet-D: the vd
                                                            tweaks, plain bottlenecks, no groups)
``resnet50d``               ResNet50_vd                     ``resnet50d``
``ghostnet_100``            GhostNet_x1_0                   ``ghostnet_100``
``mobilenetv3_small_100``   MobileNetV3_small_x1_0          ``mobilenetv3_small_100``
==========================  ==============================  =====================================

References
----------
R. Wightman, PyTorch Image Models, https://github.com/huggingface/pytorch-image-models ;
PaddleClas model zoo, https://github.com/PaddlePaddle/PaddleClas ;
the paper of each family is in its configuration's ``paper`` field.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ._registry import register_model

__all__: list[str] = []

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_INCEPTION_MEAN = (0.5, 0.5, 0.5)
_INCEPTION_STD = (0.5, 0.5, 0.5)
#: The usual ImageNet SGD recipe (He et al. 2016: 0.1 at a batch of 256, weight decay 1e-4).
_RECIPE = {"lr": 0.1, "lr_batch_size": 256, "weight_decay": 1e-4}


def _cfg(hub_id: str | None, paper: str, **kw: Any) -> dict[str, Any]:
    return {
        "input_size": 224,
        "test_input_size": 64,
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
        "family": "imagenet",
        "source": "timm",
        "timm_weights": hub_id,
        "paper": paper,
        **kw,
    }


def _timm(name: str, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, ...)``: never reaches the network."""
    import timm  # lazy: importing the registry does not import timm

    if "pretrained" in kwargs or "pretrained_cfg_overlay" in kwargs:
        raise ValueError(
            "pass pretrained weights through cnn.models.create_model(..., pretrained=...), "
            "not as a timm keyword (timm's hub download is never used here)"
        )
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


_INCV4 = "Szegedy et al. 2017, Inception-v4, Inception-ResNet, AAAI, https://arxiv.org/abs/1602.07261"
_SENET = "Hu et al. 2018, Squeeze-and-Excitation Networks, CVPR, https://arxiv.org/abs/1709.01507"
_XCEPTION = ("Chollet 2017, Xception, CVPR, https://arxiv.org/abs/1610.02357 ; aligned Xception: "
             "Chen et al. 2018, DeepLab v3+, https://arxiv.org/abs/1802.02611")
_DPN = "Chen et al. 2017, Dual Path Networks, NeurIPS, https://arxiv.org/abs/1707.01629"
_DARKNET = "Redmon & Farhadi 2018, YOLOv3, https://arxiv.org/abs/1804.02767"
_RESNET_D = ("He et al. 2019, Bag of Tricks (ResNet-D / vd), CVPR, https://arxiv.org/abs/1812.01187 ; "
             "Xie et al. 2017, ResNeXt, https://doi.org/10.1109/CVPR.2017.634")
_GHOST = "Han et al. 2020, GhostNet, CVPR, https://arxiv.org/abs/1911.11907"
_MBV3 = "Howard et al. 2019, Searching for MobileNetV3, ICCV, https://doi.org/10.1109/ICCV.2019.00140"


@register_model(
    config=_cfg("timm/inception_v4.tf_in1k", _INCV4, input_size=299, test_input_size=75, min_input_size=75,
                mean=_INCEPTION_MEAN, std=_INCEPTION_STD),
    recipe=_RECIPE,
)
def inception_v4(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Inception-v4 (timm ``inception_v4``; 299x299 input, 42.7 M parameters at 1000 classes)."""
    return _timm("inception_v4", num_classes, in_chans, **kwargs)


@register_model(config=_cfg("timm/seresnext50_32x4d.racm_in1k", _SENET), recipe=_RECIPE)
def seresnext50_32x4d(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """SE-ResNeXt-50 32x4d (timm ``seresnext50_32x4d``)."""
    return _timm("seresnext50_32x4d", num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("timm/xception71.tf_in1k", _XCEPTION, input_size=299,
                mean=_INCEPTION_MEAN, std=_INCEPTION_STD),
    recipe={**_RECIPE, "lr": 0.045, "weight_decay": 1e-5},
)
def xception71(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Aligned Xception-71 (timm ``xception71``; 299x299 input)."""
    return _timm("xception71", num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("timm/dpn107.mx_in1k", _DPN,
                mean=(124 / 255, 117 / 255, 104 / 255), std=(1 / (0.0167 * 255),) * 3),
    recipe=_RECIPE,
)
def dpn107(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Dual Path Network 107 (timm ``dpn107``; the MXNet weights' normalization)."""
    return _timm("dpn107", num_classes, in_chans, **kwargs)


@register_model(config=_cfg("timm/darknet53.c2ns_in1k", _DARKNET, input_size=256),
                recipe=_RECIPE)
def darknet53(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """DarkNet-53, the YOLOv3 backbone (timm ``darknet53``; 256x256 input)."""
    return _timm("darknet53", num_classes, in_chans, **kwargs)


@register_model(config=_cfg(None, _RESNET_D), recipe=_RECIPE)
def resnext152_vd_32x4d(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """ResNeXt-152-D 32x4d, PaddleClas' ResNeXt152_vd_32x4d, from timm's ``ResNet`` class.

    Bottleneck stages of (3, 8, 36, 3) blocks with 32 groups of width 4, the
    3x3-3x3-3x3 deep stem (32, 32, 64 channels) and average-pool down-sampling
    shortcuts ("vd", He et al. 2019). timm has this design under no name and
    no weights for it: train it, or pass a weights file with timm's key names.
    """
    from timm.models.resnet import Bottleneck, ResNet

    if "pretrained" in kwargs:
        raise ValueError("pass pretrained weights through cnn.models.create_model(..., pretrained=...)")
    params = {"block": Bottleneck, "layers": (3, 8, 36, 3), "cardinality": 32, "base_width": 4,
              "stem_width": 32, "stem_type": "deep", "avg_down": True, **kwargs}
    return ResNet(num_classes=num_classes, in_chans=in_chans, **params)


@register_model(config=_cfg("timm/resnet152d.ra2_in1k", _RESNET_D, input_size=256),
                recipe=_RECIPE)
def resnet152d(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """ResNet-152-D (ResNet152_vd; timm ``resnet152d``; 256x256 input)."""
    return _timm("resnet152d", num_classes, in_chans, **kwargs)


@register_model(config=_cfg("timm/resnet50d.ra2_in1k", _RESNET_D), recipe=_RECIPE)
def resnet50d(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """ResNet-50-D (ResNet50_vd; timm ``resnet50d``)."""
    return _timm("resnet50d", num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("timm/ghostnet_100.in1k", _GHOST),
    recipe={**_RECIPE, "lr": 0.4, "lr_batch_size": 1024, "weight_decay": 4e-5},
)
def ghostnet_100(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """GhostNet 1.0x (timm ``ghostnet_100``)."""
    return _timm("ghostnet_100", num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("timm/mobilenetv3_small_100.lamb_in1k", _MBV3),
    recipe={**_RECIPE, "lr": 0.064, "weight_decay": 1e-5},
)
def mobilenetv3_small_100(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """MobileNetV3-small 1.0x (timm ``mobilenetv3_small_100``)."""
    return _timm("mobilenetv3_small_100", num_classes, in_chans, **kwargs)
