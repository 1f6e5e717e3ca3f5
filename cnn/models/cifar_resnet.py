"""CIFAR ResNets of He et al. (2016): depth 6n+2, basic blocks, widths 16-32-64.

References
----------
K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2. https://doi.org/10.1109/CVPR.2016.90
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import CIFAR_DEFAULTS, register_model

__all__ = ["CifarResNet", "BasicBlock"]

_RECIPE = {"lr": 0.1, "weight_decay": 5e-4}


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or projection) shortcut.

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int
        Stride of the first conv (2 at the start of stages 2 and 3).
    shortcut : {"A", "B"}
        ``"A"``: parameter-free shortcut, the identity subsampled by 2 and padded
        with zero channels when the shape changes (the paper's CIFAR choice).
        ``"B"``: 1x1 conv + BN projection when the shape changes.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes
        self.proj: nn.Module | None = None
        if (stride != 1 or in_planes != planes) and shortcut == "B":
            self.proj = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad > 0:
            half = self.pad // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.pad - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs with ``6 n + 2`` layers.

    Parameters
    ----------
    depth : int
        20, 32, 44, 56, 110, ... (``(depth - 2) % 6 == 0``).
    num_classes : int
    in_chans : int
    shortcut : {"A", "B"}, default="A"
        Shortcut type when the shape changes (see :class:`BasicBlock`). The paper
        uses option A on CIFAR, which is the default here.

    Notes
    -----
    Conv weights use Kaiming-normal initialization (fan-out), BN starts at
    gamma=1, beta=0, as in the paper (no zero-init of the last BN of a block).
    """

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, shortcut: str = "A"):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 >= 8, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        layers = []
        in_planes = 16
        for i, planes in enumerate((16, 32, 64)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.num_features = 64
        self.head_hidden_size = self.num_features  # width of forward_head(x, pre_logits=True)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before global pooling, ``(N, 64, H/4, W/4)``."""
        return self.layers(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then the linear classifier unless ``pre_logits``."""
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _resnet(depth: int, num_classes: int, in_chans: int, **kwargs) -> CifarResNet:
    return CifarResNet(depth, num_classes=num_classes, in_chans=in_chans, **kwargs)


_PAPER = "He et al. 2016, Deep Residual Learning, https://doi.org/10.1109/CVPR.2016.90"


@register_model(config={**CIFAR_DEFAULTS, "paper": _PAPER}, recipe=_RECIPE)
def resnet20(num_classes: int = 10, in_chans: int = 3, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR (n=3, 0.27 M parameters)."""
    return _resnet(20, num_classes, in_chans, **kwargs)


@register_model(config={**CIFAR_DEFAULTS, "paper": _PAPER}, recipe=_RECIPE)
def resnet32(num_classes: int = 10, in_chans: int = 3, **kwargs) -> CifarResNet:
    """ResNet-32 for CIFAR (n=5)."""
    return _resnet(32, num_classes, in_chans, **kwargs)


@register_model(config={**CIFAR_DEFAULTS, "paper": _PAPER}, recipe=_RECIPE)
def resnet44(num_classes: int = 10, in_chans: int = 3, **kwargs) -> CifarResNet:
    """ResNet-44 for CIFAR (n=7)."""
    return _resnet(44, num_classes, in_chans, **kwargs)


@register_model(config={**CIFAR_DEFAULTS, "paper": _PAPER}, recipe=_RECIPE)
def resnet56(num_classes: int = 10, in_chans: int = 3, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR (n=9)."""
    return _resnet(56, num_classes, in_chans, **kwargs)


@register_model(config={**CIFAR_DEFAULTS, "paper": _PAPER}, recipe=_RECIPE)
def resnet110(num_classes: int = 10, in_chans: int = 3, **kwargs) -> CifarResNet:
    """ResNet-110 for CIFAR (n=18, 1.7 M parameters)."""
    return _resnet(110, num_classes, in_chans, **kwargs)
