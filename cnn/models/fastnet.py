"""``fastnet``: a small, fast network for the CIFAR-10 time-to-accuracy race.

Modelled on airbench94 (Keller Jordan, 2024): a frozen 2x2 patch-whitening conv,
three conv groups of widths 64 / 256 / 256, each ``conv -> max-pool -> BN -> GELU
-> conv -> BN -> GELU``, a final max-pool, a bias-free linear layer and a fixed
output scale of 1/9.

References
----------
K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", 2024,
https://arxiv.org/abs/2404.00498 ; code: https://github.com/KellerJordan/cifar10-airbench
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import CIFAR_DEFAULTS, register_model

__all__ = ["FastNet", "FastBatchNorm", "FastConvGroup"]


class FastBatchNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed (untrained) scale of 1, a trained shift, fast momentum.

    Parameters
    ----------
    num_features : int
    momentum : float
        airbench's convention: weight of the *old* running value (0.6), i.e.
        PyTorch ``momentum = 1 - momentum``.
    eps : float
    """

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12):
        super().__init__(num_features, eps=eps, momentum=1.0 - momentum)
        self.weight.requires_grad_(False)


class _Conv(nn.Conv2d):
    """3x3 'same' conv without bias whose first ``in_channels`` filters start as identities."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        nn.init.dirac_(w[: min(w.size(0), w.size(1))])


class FastConvGroup(nn.Module):
    """``conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU``."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float = 0.6):
        super().__init__()
        self.conv1 = _Conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FastBatchNorm(c_out, bn_momentum)
        self.conv2 = _Conv(c_out, c_out)
        self.norm2 = FastBatchNorm(c_out, bn_momentum)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    """airbench94-style network (about 2 M parameters).

    Parameters
    ----------
    num_classes : int
    in_chans : int
    widths : tuple of 3 int, default=(64, 256, 256)
    scale : float, default=1/9
        Fixed multiplier of the logits.
    bn_momentum : float, default=0.6
        airbench convention (weight of the old running value).

    Notes
    -----
    The first layer is a 2x2 conv with ``2 * in_chans * 4`` filters and a bias.
    :meth:`init_whitening` sets its filters to the ZCA-like eigenbasis of the
    training set's 2x2 patches (and their negatives) and freezes them, as
    airbench does; without that call it is an ordinary trainable conv.
    Departures from airbench94: the whitening bias stays trainable for the whole
    run (airbench freezes it after 3 epochs), and the final pool is a global max
    pool so that inputs other than 32x32 work (identical at 32x32).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple = (64, 256, 256),
        scale: float = 1.0 / 9.0,
        bn_momentum: float = 0.6,
    ):
        super().__init__()
        k = 2
        self.whiten = nn.Conv2d(in_chans, 2 * in_chans * k * k, k, padding=0, bias=True)
        self.act = nn.GELU()
        c = self.whiten.out_channels
        groups = []
        for w in widths:
            groups.append(FastConvGroup(c, w, bn_momentum))
            c = w
        self.groups = nn.Sequential(*groups)
        self.num_features = c
        self.head_hidden_size = self.num_features  # width of forward_head(x, pre_logits=True)
        self.fc = nn.Linear(c, num_classes, bias=False)
        self.scale = float(scale)

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the first conv to whiten 2x2 patches of ``images`` and freeze it.

        Parameters
        ----------
        images : (N, C, H, W) float tensor
            Normalized training images (airbench uses 5000).
        eps : float
            Added to the eigenvalues before the inverse square root.
        """
        w = self.whiten.weight
        c, kh, kw = w.shape[1:]
        x = images.to(device=w.device, dtype=torch.float32)
        patches = x.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
        cov = patches.T @ patches / patches.shape[0]
        evals, evecs = torch.linalg.eigh(cov.double())
        evals, evecs = evals.flip(0).float(), evecs.flip(1).float()
        filt = (evecs.T / torch.sqrt(evals.clamp_min(0) + eps)[:, None]).reshape(-1, c, kh, kw)
        w.copy_(torch.cat([filt, -filt]).to(w.dtype))
        w.requires_grad_(False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the third group, ``(N, 256, H/8, W/8)`` (about)."""
        return self.groups(self.act(self.whiten(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global max pooling, then the scaled linear classifier unless ``pre_logits``."""
        x = torch.flatten(F.adaptive_max_pool2d(x, 1), 1)
        return x if pre_logits else self.fc(x) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# airbench94's hyper-parameters, converted from its summed loss and "per 1024
# examples" decoupled units to PyTorch SGD with a mean loss at batch size 1024:
# lr = 11.5 / (1 + 1 / (1 - 0.85)) = 1.5; lr * weight_decay = 0.0153 / 7.67 = 2.0e-3.
@register_model(
    config={
        **CIFAR_DEFAULTS,
        "min_input_size": 9,  # 2x2 whitening conv, then three 2x2 max-pools
        "paper": "Jordan 2024, airbench94, https://arxiv.org/abs/2404.00498",
    },
    recipe={
        "lr": 1.5,
        "lr_batch_size": 1024,
        "momentum": 0.85,
        "weight_decay": 1.33e-3,
        "label_smoothing": 0.2,
        "bias_lr_scale": 64.0,
    },
)
def fastnet(num_classes: int = 10, in_chans: int = 3, **kwargs) -> FastNet:
    """airbench94-style fast CIFAR network (whitening conv, 64/256/256, GELU)."""
    return FastNet(num_classes=num_classes, in_chans=in_chans, **kwargs)
