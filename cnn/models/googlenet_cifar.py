"""GoogLeNet (Inception v1) adapted to 32x32 images.

The common CIFAR adaptation (as in kuangliu's ``pytorch-cifar``): a single 3x3
conv stem with 192 channels and no early down-sampling, then the nine Inception
modules of the paper (3a..5b) with two max-pools, global average pooling and
one linear layer.

References
----------
C. Szegedy et al., "Going Deeper with Convolutions", CVPR 2015,
https://doi.org/10.1109/CVPR.2015.7298594 ;
K. Liu, pytorch-cifar, https://github.com/kuangliu/pytorch-cifar
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import CIFAR_DEFAULTS, register_model

__all__ = ["Inception", "GoogLeNetCifar"]


def _cbr(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


class Inception(nn.Module):
    """Inception module: 1x1, 1x1->3x3, 1x1->3x3->3x3 and pool->1x1 branches.

    Parameters
    ----------
    c_in : int
    n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes : int
        Branch widths as in Table 1 of the paper.

    Notes
    -----
    The 5x5 branch is two stacked 3x3 convs (the same receptive field, fewer
    FLOPs), and every conv is followed by BN, as the CIFAR adaptation does.
    """

    def __init__(self, c_in, n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes):
        super().__init__()
        self.b1 = nn.Sequential(*_cbr(c_in, n1x1, 1))
        self.b2 = nn.Sequential(*_cbr(c_in, n3x3red, 1), *_cbr(n3x3red, n3x3, 3))
        self.b3 = nn.Sequential(*_cbr(c_in, n5x5red, 1), *_cbr(n5x5red, n5x5, 3), *_cbr(n5x5, n5x5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_cbr(c_in, pool_planes, 1))
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNetCifar(nn.Module):
    """GoogLeNet for 32x32 inputs (6.2 M parameters, no auxiliary classifiers).

    Parameters
    ----------
    num_classes : int
    in_chans : int
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(*_cbr(in_chans, 192, 3))
        pool = lambda: nn.MaxPool2d(3, 2, 1)  # noqa: E731
        self.blocks = nn.Sequential(
            Inception(192, 64, 96, 128, 16, 32, 32),  # 3a
            Inception(256, 128, 128, 192, 32, 96, 64),  # 3b
            pool(),
            Inception(480, 192, 96, 208, 16, 48, 64),  # 4a
            Inception(512, 160, 112, 224, 24, 64, 64),  # 4b
            Inception(512, 128, 128, 256, 24, 64, 64),  # 4c
            Inception(512, 112, 144, 288, 32, 64, 64),  # 4d
            Inception(528, 256, 160, 320, 32, 128, 128),  # 4e
            pool(),
            Inception(832, 256, 160, 320, 32, 128, 128),  # 5a
            Inception(832, 384, 192, 384, 48, 128, 128),  # 5b
        )
        self.num_features = 1024
        self.head_hidden_size = self.num_features  # width of forward_head(x, pre_logits=True)
        self.fc = nn.Linear(1024, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after Inception 5b, ``(N, 1024, H/4, W/4)``."""
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then the classifier unless ``pre_logits``."""
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    config={
        **CIFAR_DEFAULTS,
        "paper": "Szegedy et al. 2015, https://doi.org/10.1109/CVPR.2015.7298594",
    },
    recipe={"lr": 0.1},
)
def googlenet_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs) -> GoogLeNetCifar:
    """Inception v1 adapted to 32x32 images (3x3 stem, no early down-sampling)."""
    return GoogLeNetCifar(num_classes=num_classes, in_chans=in_chans, **kwargs)
