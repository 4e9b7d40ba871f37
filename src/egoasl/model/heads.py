"""Classification and regression heads, shared by all pyramid levels.

Both have a trunk of ``head_layers - 1`` x [masked conv k``head_kernel`` (no bias) ->
channel LN -> ReLU] and a final masked conv. The cls head's final bias starts at
``-log((1 - π) / π)`` (π = ``cls_prior``), so every sigmoid starts near π. The reg head
multiplies its two outputs by a learnable per-level scalar (init 1) and applies ReLU, so
offsets are ``>= 0``, in units of the level's stride.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from egoasl.model.blocks import ChannelLayerNorm, MaskedConv1d


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level in the reg head)."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class _Trunk(nn.Module):
    """``num_layers`` x [masked conv (no bias) -> channel LN -> ReLU]."""

    def __init__(self, width: int, kernel: int, num_layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(MaskedConv1d(width, width, kernel, bias=False) for _ in range(num_layers))
        self.norms = nn.ModuleList(ChannelLayerNorm(width) for _ in range(num_layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, width, T_l); mask: (B, 1, T_l)
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu(norm(conv(x, mask)[0]))
        return x


class ClsHead(nn.Module):
    """Per-level class logits ``(B, T_l, K)``; zeros at padded steps."""

    def __init__(self, width: int, num_classes: int, kernel: int, num_layers: int, prior: float) -> None:
        super().__init__()
        self.trunk = _Trunk(width, kernel, num_layers - 1)
        self.out = MaskedConv1d(width, num_classes, kernel)
        nn.init.constant_(self.out.conv.bias, -math.log((1.0 - prior) / prior))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        # feats[l]: (B, width, T_l) -> logits[l]: (B, T_l, K)
        return [self.out(self.trunk(x, m), m)[0].transpose(1, 2) for x, m in zip(feats, masks)]


class RegHead(nn.Module):
    """Per-level offsets ``(B, T_l, 2)`` = ReLU(Scale_l(conv)), distances to start and end in strides."""

    def __init__(self, width: int, num_levels: int, kernel: int, num_layers: int) -> None:
        super().__init__()
        self.trunk = _Trunk(width, kernel, num_layers - 1)
        self.out = MaskedConv1d(width, 2, kernel)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        # feats[l]: (B, width, T_l) -> offsets[l]: (B, T_l, 2)
        return [
            torch.relu(scale(self.out(self.trunk(x, m), m)[0])).transpose(1, 2)
            for scale, x, m in zip(self.scales, feats, masks)
        ]
