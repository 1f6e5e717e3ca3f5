"""``vgg_bn_drop``: the 16-layer VGG with batch norm and dropout of the PaddlePaddle book.

References
----------
PaddlePaddle book, chapter 3 "Image Classification", ``vgg_bn_drop``
(https://github.com/PaddlePaddle/book/tree/develop/03.image_classification);
K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, https://arxiv.org/abs/1409.1556 ;
S. Zagoruyko, "92.45% on CIFAR-10 in Torch" (2015), the BN + dropout recipe the book follows.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import CIFAR_DEFAULTS, register_model

__all__ = ["VGGBNDrop"]

# (channels, number of convs, dropout after each conv); the last conv of a group has none.
_GROUPS = (
    (64, 2, (0.3, 0.0)),
    (128, 2, (0.4, 0.0)),
    (256, 3, (0.4, 0.4, 0.0)),
    (512, 3, (0.4, 0.4, 0.0)),
    (512, 3, (0.4, 0.4, 0.0)),
)


class VGGBNDrop(nn.Module):
    """VGG-16 style network for 32x32 images with BN after every conv and dropout.

    Five conv groups (64x2, 128x2, 256x3, 512x3, 512x3) of 3x3 conv + BN + ReLU with
    dropout 0.3 / 0.4 inside the groups, 2x2 max-pool after each group, then
    dropout 0.5, FC 512, BN, ReLU, dropout 0.5, FC 512, FC ``num_classes``.

    Parameters
    ----------
    num_classes : int
    in_chans : int

    Notes
    -----
    As in the book, the second 512-unit FC layer has no activation (``act=None``)
    and feeds the classifier directly; the softmax is left to the loss. With a
    32x32 input the five pools leave a 1x1x512 map; other input sizes are
    average-pooled to 1x1 before the head.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_chans
        for c_out, n, drops in _GROUPS:
            for i in range(n):
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
                if drops[i] > 0:
                    layers.append(nn.Dropout(drops[i]))
                c_in = c_out
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 512
        self.head_hidden_size = self.num_features  # width of forward_head(x, pre_logits=True)
        self.pre_logits = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(512, 512, bias=False),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(512, 512),
        )
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the last pool, ``(N, 512, H/32, W/32)``."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool to a vector, the two FC-512 layers, then the classifier unless ``pre_logits``."""
        x = self.pre_logits(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    config={
        **CIFAR_DEFAULTS,
        "min_input_size": 32,  # five 2x2 max-pools
        "paper": "PaddlePaddle book ch. 3; Simonyan & Zisserman 2015, https://arxiv.org/abs/1409.1556",
    },
    recipe={"lr": 0.05},
)
def vgg_bn_drop(num_classes: int = 10, in_chans: int = 3, **kwargs) -> VGGBNDrop:
    """The PaddlePaddle book's VGG-16 with BN and dropout for CIFAR (15 M parameters)."""
    return VGGBNDrop(num_classes=num_classes, in_chans=in_chans, **kwargs)
