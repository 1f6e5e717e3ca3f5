"""ImageNet architectures built through torchvision, untrained (``weights=None``).

Each configuration names the torchvision model (``torchvision_weights``) whose
ImageNet weights ``create_model(name, ..., pretrained="imagenet")`` loads from the
torch hub cache, and the smallest input the network accepts (``min_input_size``).
Each builder passes ``num_classes`` to the torchvision constructor and, when
``in_chans != 3``, replaces the first convolution by one with ``in_chans`` input
channels (same kernel, stride, padding and width). Auxiliary classifiers of
GoogLeNet and Inception v3 are off, so ``forward`` always returns one tensor of
logits. The default configurations carry each network's native input size.

Every network built here is an instance of a thin subclass of its torchvision
class (:class:`ResNet` of ``torchvision.models.ResNet``, ...) that adds timm's
interface and nothing else: ``forward_features(x)`` (the last feature map,
``(N, num_features, h, w)``), ``forward_head(x, pre_logits=False)`` (pooling,
the hidden layers of the classifier, then the last linear layer unless
``pre_logits``), ``num_features`` and ``head_hidden_size`` (the width of
``forward_head(x, pre_logits=True)``: 4096 for AlexNet and VGG, 1280 for
MobileNet v3 large, ``num_features`` elsewhere). No module is added, renamed or
wrapped, so the state-dict keys are torchvision's: torchvision's weights, the
files ``CNNClassifier.save`` wrote before and :func:`load_matching_weights` load
as they did, and ``forward`` is torchvision's own.

References
----------
torchvision model zoo, https://pytorch.org/vision/stable/models.html ;
the paper of each family is in its configuration's ``paper`` field; the
``forward_features`` / ``forward_head`` interface is timm's (R. Wightman,
https://github.com/huggingface/pytorch-image-models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from ._registry import register_model

__all__ = ["adapt_first_conv", "with_feature_interface"]

_IMAGENET = {
    "input_size": 224,
    "test_input_size": 64,
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "family": "imagenet",
    "source": "torchvision",
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


def _mlp_head(classifier: nn.Sequential, x: torch.Tensor, pre_logits: bool) -> torch.Tensor:
    """Run ``classifier`` on pooled features, stopping before its last dropouts + linear if ``pre_logits``."""
    layers = list(classifier)
    k = len(layers) - 1  # the last Linear
    while k > 0 and isinstance(layers[k - 1], nn.Dropout):
        k -= 1
    for layer in layers[:k]:
        x = layer(x)
    if pre_logits:
        return x
    for layer in layers[k:]:
        x = layer(x)
    return x


def _last_conv_channels(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class AlexNet(tvm.AlexNet):
    """torchvision's AlexNet with ``forward_features`` / ``forward_head`` (pre-logits: fc7, 4096)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv layers' last map, ``(N, 256, h, w)``."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Adaptive pool, flatten, the FC layers; the last one unless ``pre_logits`` ((N, 4096))."""
        return _mlp_head(self.classifier, torch.flatten(self.avgpool(x), 1), pre_logits)


class VGG(tvm.VGG):
    """torchvision's VGG with ``forward_features`` / ``forward_head`` (pre-logits: fc7, 4096)."""

    forward_features = AlexNet.forward_features
    forward_head = AlexNet.forward_head


class GoogLeNet(tvm.GoogLeNet):
    """torchvision's GoogLeNet with ``forward_features`` / ``forward_head`` (no auxiliary heads)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Inception 5b's map, ``(N, 1024, h, w)``."""
        x = self._transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4d(self.inception4c(self.inception4b(self.inception4a(x))))
        x = self.maxpool4(self.inception4e(x))
        return self.inception5b(self.inception5a(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then dropout and the classifier unless ``pre_logits``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(self.dropout(x))


class Inception3(tvm.Inception3):
    """torchvision's Inception v3 with ``forward_features`` / ``forward_head`` (no auxiliary head)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed 7c's map, ``(N, 2048, h, w)``."""
        x = self._transform_input(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then dropout and the classifier unless ``pre_logits``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(self.dropout(x))


class ResNet(tvm.ResNet):
    """torchvision's ResNet / ResNeXt with ``forward_features`` / ``forward_head``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``layer4``'s map, ``(N, fc.in_features, h, w)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the classifier unless ``pre_logits``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)


class DenseNet(tvm.DenseNet):
    """torchvision's DenseNet with ``forward_features`` / ``forward_head``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last dense block after its batch norm and ReLU, ``(N, classifier.in_features, h, w)``."""
        return F.relu(self.features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the classifier unless ``pre_logits``."""
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.classifier(x)


class MobileNetV2(tvm.MobileNetV2):
    """torchvision's MobileNet v2 with ``forward_features`` / ``forward_head``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last 1x1 conv's map, ``(N, 1280, h, w)``."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then dropout and the classifier unless ``pre_logits``."""
        return _mlp_head(self.classifier, torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), pre_logits)


class MobileNetV3(tvm.MobileNetV3):
    """torchvision's MobileNet v3 with ``forward_features`` / ``forward_head`` (pre-logits: the 1280-unit FC)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last 1x1 conv's map, ``(N, 960, h, w)`` for the large model."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, the hidden FC + hardswish, then dropout and the classifier unless ``pre_logits``."""
        return _mlp_head(self.classifier, torch.flatten(self.avgpool(x), 1), pre_logits)


class ShuffleNetV2(tvm.ShuffleNetV2):
    """torchvision's ShuffleNet v2 with ``forward_features`` / ``forward_head``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``conv5``'s map, ``(N, 1024, h, w)``."""
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool (a mean, as torchvision), then the classifier unless ``pre_logits``."""
        x = x.mean([2, 3])
        return x if pre_logits else self.fc(x)


class EfficientNet(tvm.EfficientNet):
    """torchvision's EfficientNet with ``forward_features`` / ``forward_head``."""

    forward_features = MobileNetV3.forward_features

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then dropout and the classifier unless ``pre_logits``."""
        return _mlp_head(self.classifier, torch.flatten(self.avgpool(x), 1), pre_logits)


_ADAPTERS: dict[type, type] = {
    cls.__mro__[1]: cls
    for cls in (AlexNet, VGG, GoogLeNet, Inception3, ResNet, DenseNet, MobileNetV2, MobileNetV3, ShuffleNetV2,
                EfficientNet)
}


def with_feature_interface(model: nn.Module) -> nn.Module:
    """Give a torchvision classification network ``forward_features`` / ``forward_head``.

    The instance's class becomes the subclass of its torchvision class defined
    in this module (methods only: no parameter, buffer or submodule changes,
    so ``state_dict`` keys and ``forward`` stay torchvision's), and it gets
    ``num_features`` (channels of ``forward_features``' map) and
    ``head_hidden_size`` (width of ``forward_head(x, pre_logits=True)``, the
    input of the last linear layer), as timm's models have.

    Parameters
    ----------
    model : torch.nn.Module
        An instance of one of torchvision's AlexNet, VGG, GoogLeNet,
        Inception3, ResNet, DenseNet, MobileNetV2, MobileNetV3, ShuffleNetV2
        or EfficientNet classes.

    Returns
    -------
    torch.nn.Module
        ``model`` itself, modified in place.

    Raises
    ------
    TypeError
        For any other class.
    """
    cls = type(model)
    if cls in _ADAPTERS.values():
        return model
    if cls not in _ADAPTERS:
        raise TypeError(
            f"no forward_features/forward_head adapter for {cls.__module__}.{cls.__name__}; adapters exist for "
            f"{sorted(c.__name__ for c in _ADAPTERS)}"
        )
    model.__class__ = _ADAPTERS[cls]
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    model.head_hidden_size = int(last.in_features)
    if isinstance(model, DenseNet):
        model.num_features = int(model.classifier.in_features)
    elif isinstance(model, (ResNet, GoogLeNet, Inception3, ShuffleNetV2)):
        model.num_features = int(model.fc.in_features)
    else:
        model.num_features = int(_last_conv_channels(model.features))
    return model


def _tv(fn, num_classes: int, in_chans: int, **kwargs) -> nn.Module:
    model = fn(weights=None, num_classes=num_classes, **kwargs)
    return with_feature_interface(adapt_first_conv(model, in_chans))


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
    config=_cfg("vgg13_bn", _VGG, test_input_size=32, min_input_size=32), recipe=_recipe(lr=0.01, weight_decay=5e-4)
)
def vgg13_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """VGG-13 (configuration B) with batch norm."""
    return _tv(tvm.vgg13_bn, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("vgg16_bn", _VGG, test_input_size=32, min_input_size=32), recipe=_recipe(lr=0.01, weight_decay=5e-4)
)
def vgg16_bn(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """VGG-16 (configuration D) with batch norm."""
    return _tv(tvm.vgg16_bn, num_classes, in_chans, **kwargs)


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


_DENSE = "Huang et al. 2017, https://doi.org/10.1109/CVPR.2017.243"


@register_model(config=_cfg("densenet121", _DENSE, min_input_size=29), recipe=_IMAGENET_RECIPE)
def densenet121(num_classes: int = 1000, in_chans: int = 3, **kwargs) -> nn.Module:
    """DenseNet-121 (growth rate 32)."""
    return _tv(tvm.densenet121, num_classes, in_chans, **kwargs)


@register_model(
    config=_cfg("densenet161", _DENSE, min_input_size=29),
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
