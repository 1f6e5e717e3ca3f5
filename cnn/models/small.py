"""``small_convnet``: a small ConvNet for tiny images such as the 8x8 digits.

It is the "first CNN" of ``python -m bench compare``: five 3x3 conv-BN-ReLU layers,
one 2x2 max-pool, global average pooling and a linear classifier. It takes any
input from 2x2 up (its configured ``input_size`` is ``None``: the training images'
own size, so 8x8 digits are not up-sampled), capped at ``max_input_size`` = 64 so
that a folder of photos is not trained at full resolution (the five convolutions
keep 32-128 channels at full or half resolution: at 600x600 one image's
activations alone take hundreds of MB).
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model

__all__ = ["SmallConvNet"]


def _cbr(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallConvNet(nn.Module):
    """conv32 -> conv32 -> pool -> conv64 -> conv64 -> conv128 -> GAP -> dropout -> FC.

    Parameters
    ----------
    num_classes : int
    in_chans : int
    width : int, default=32
        Channels of the first layers (then 2x and 4x).
    drop_rate : float, default=0.2
        Dropout before the classifier.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 32, drop_rate: float = 0.2):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_cbr(in_chans, w),
            *_cbr(w, w),
            nn.MaxPool2d(2),
            *_cbr(w, 2 * w),
            *_cbr(2 * w, 2 * w),
            *_cbr(2 * w, 4 * w),
        )
        self.num_features = 4 * w
        self.head_hidden_size = self.num_features  # width of forward_head(x, pre_logits=True)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, 4 * width, H/2, W/2)``."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, dropout, then the classifier unless ``pre_logits``."""
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model(
    config={
        "input_size": None,
        "max_input_size": 64,
        "min_input_size": 2,  # the 2x2 max-pool
        "test_input_size": 8,
        "mean": (0.5,),
        "std": (0.25,),
        "family": "small",
        "paper": "",
    },
    recipe={"lr": 0.1, "lr_batch_size": 128, "weight_decay": 5e-4, "label_smoothing": 0.1},
)
def small_convnet(num_classes: int = 10, in_chans: int = 3, **kwargs) -> SmallConvNet:
    """Small five-conv network for tiny images (8x8 digits and up), ~0.15 M parameters."""
    return SmallConvNet(num_classes=num_classes, in_chans=in_chans, **kwargs)
