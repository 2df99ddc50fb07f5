"""Candidate operations of the cell search spaces (chapters DARTS, NASNet, ENAS, PNAS).

Every op maps ``(B, C, H, W)`` to ``(B, C, H/stride, W/stride)`` and follows the
papers' conventions: ReLU → conv → BatchNorm order, separable convolutions applied
twice with no BN/ReLU between depthwise and pointwise (NASNet App. A.4, DARTS
§3.1.1), ``affine=False`` BatchNorm inside supernets so that architecture weights
cannot be rescaled away by BN parameters (DARTS, see nas-pitfalls §2a.4).

``OPS.get(name)(C, stride, affine)`` builds an op; ``OPS.names()`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasedu.registry import Registry

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("operation")


def drop_path(x: torch.Tensor, drop_prob: float, training: bool = True) -> torch.Tensor:
    """Drop whole paths per sample (FractalNet's DropPath, NASNet's ScheduledDropPath).

    Each sample's tensor is zeroed with probability ``drop_prob`` and the survivors
    are scaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged. Unlike the
    official DARTS code this is out of place, so autograd never sees a mutated input.
    """
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
    if not training or drop_prob == 0.0:
        return x
    if drop_prob == 1.0:
        return torch.zeros_like(x)
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(
        keep
    )
    return x * mask / keep


class ReLUConvBN(nn.Sequential):
    """ReLU → conv → BN, the basic NASNet/DARTS unit."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False
            ),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """Dilated depthwise-separable conv: ReLU → depthwise (dilated) → 1×1 → BN."""

    def __init__(
        self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in,
                C_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=C_in,
                bias=False,
            ),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Separable conv applied twice (NASNet App. A.4): the first one carries the stride."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


class Identity(nn.Module):
    """The skip connection; drop-path is never applied to it (DARTS ``model.py``)."""

    def forward(self, x):
        return x


class Zero(nn.Module):
    """The ``none`` op: an edge that carries nothing (zeros of the output shape)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve H and W with two offset stride-2 1×1 convs, concatenated (skip when strided)."""

    def __init__(self, C_in, C_out, affine=True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        # The offset path sees the odd pixels; pad so odd sizes give matching shapes.
        shifted = nn.functional.pad(
            x[:, :, 1:, 1:], (0, x.shape[3] % 2, 0, x.shape[2] % 2)
        )
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Pool(nn.Sequential):
    """A pooling op. In supernets (``affine=False``) it is followed by a non-affine BN,
    as DARTS' search model does, so that pooled outputs are on the scale of conv outputs."""

    def __init__(self, kind, C, kernel_size, stride, affine=True):
        pad = kernel_size // 2
        pool = (
            nn.AvgPool2d(kernel_size, stride, pad, count_include_pad=False)
            if kind == "avg"
            else nn.MaxPool2d(kernel_size, stride, pad)
        )
        layers = [pool] if affine else [pool, nn.BatchNorm2d(C, affine=False)]
        super().__init__(*layers)


class FactorizedConv(nn.Sequential):
    """ReLU → 1×k conv → k×1 conv → BN (NASNet's "1×7 then 7×1" and "1×3 then 3×1")."""

    def __init__(self, C, k, stride, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C, C, (1, k), stride=(1, stride), padding=(0, k // 2), bias=False
            ),
            nn.Conv2d(
                C, C, (k, 1), stride=(stride, 1), padding=(k // 2, 0), bias=False
            ),
            nn.BatchNorm2d(C, affine=affine),
        )


OPS.register("none", lambda C, stride, affine: Zero(stride))
OPS.register(
    "skip_connect",
    lambda C, stride, affine: (
        Identity() if stride == 1 else FactorizedReduce(C, C, affine)
    ),
)
OPS.register(
    "avg_pool_3x3", lambda C, stride, affine: Pool("avg", C, 3, stride, affine)
)
for _k in (3, 5, 7):
    OPS.register(
        f"max_pool_{_k}x{_k}",
        lambda C, stride, affine, k=_k: Pool("max", C, k, stride, affine),
    )
    OPS.register(
        f"sep_conv_{_k}x{_k}",
        lambda C, stride, affine, k=_k: SepConv(C, C, k, stride, k // 2, affine),
    )
OPS.register(
    "dil_conv_3x3", lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine)
)
OPS.register(
    "dil_conv_5x5", lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine)
)
OPS.register(
    "conv_1x1", lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine)
)
OPS.register(
    "conv_3x3", lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine)
)
# DARTS' names for NASNet's "1×3 then 3×1" and "1×7 then 7×1" convolutions.
OPS.register(
    "conv_3x1_1x3", lambda C, stride, affine: FactorizedConv(C, 3, stride, affine)
)
OPS.register(
    "conv_7x1_1x7", lambda C, stride, affine: FactorizedConv(C, 7, stride, affine)
)

#: The eight candidates of the DARTS/SNAS search space (DARTS §3.1.1), in the official order.
DARTS_PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: NASNet's 13 operations (NASNet §3), in the DARTS naming.
NASNET_PRIMITIVES = (
    "skip_connect",
    "conv_3x1_1x3",
    "conv_7x1_1x7",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)
#: PNAS's 8 operations (PNAS §3.1; consistent with the PNASNet-5 cell in TF-Slim).
PNAS_PRIMITIVES = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "conv_7x1_1x7",
    "skip_connect",
    "avg_pool_3x3",
    "max_pool_3x3",
    "dil_conv_3x3",
)
#: ENAS's micro-space operations (ENAS README: sep3x3, sep5x5, avg pool, max pool, identity).
ENAS_PRIMITIVES = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "skip_connect",
)


def build(name: str, C: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build the op ``name`` on ``C`` channels; unknown names list the valid ones."""
    return OPS.get(name)(C, stride, affine)
