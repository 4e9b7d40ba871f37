"""Classification and regression heads, shared by all pyramid levels.

Both have a trunk of ``head_layers - 1`` x [masked conv k``head_kernel`` (no bias) ->
channel LN -> ReLU] and a final masked conv. The cls head's final bias starts at
``-log((1 - π) / π)`` (π = ``cls_prior``), so every sigmoid starts near π. The reg head
multiplies its two outputs by a learnable per-level scalar (init 1) and applies ReLU, so
offsets are ``>= 0``, in units of the level's stride.

The levels go through a head together: :func:`pack_levels` concatenates them along time
with ``kernel // 2`` padded steps between neighbours, which a masked conv reads as zeros,
exactly like the zero padding at a level's ends. So each conv runs once per forward on one
long sequence (its weight cast once under autocast, no tiny per-level calls), and the
outputs equal those of a per-level loop.

With ``mask_input=False`` (``model.mask_conv_inputs: false``, the release) the convolutions
read a level's padded steps as they are, as the release's per-level ``MaskedConV1D`` did;
the steps between levels are still read as zeros (each level's own zero padding), because
the trunk zeroes them again after every layer (:func:`level_span`).
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


def pack_levels(feats: list[Tensor], masks: list[Tensor], gap: int) -> tuple[Tensor, Tensor]:
    """Levels ``(B, C, T_l)`` with masks ``(B, 1, T_l)`` -> one ``(B, C, P)`` sequence and its mask.

    ``P = sum(T_l) + gap·(L - 1)``: ``gap`` padded (mask False, value 0) steps separate
    neighbouring levels. The result is channels-last (see :mod:`egoasl.model.blocks`).
    """
    B, C = feats[0].shape[:2]
    parts, mask_parts = [], []
    for level, (x, mask) in enumerate(zip(feats, masks)):
        if level and gap:
            parts.append(x.new_zeros(B, gap, C))
            mask_parts.append(mask.new_zeros(B, 1, gap))
        parts.append(x.transpose(1, 2))  # (B, T_l, C)
        mask_parts.append(mask)
    return torch.cat(parts, dim=1).transpose(1, 2), torch.cat(mask_parts, dim=2)


def level_span(lengths: list[int], gap: int, device: torch.device) -> Tensor:
    """``(1, 1, P)`` bool of a packed sequence: True on every level step (valid or padded), False in the gaps."""
    parts = []
    for level, length in enumerate(lengths):
        if level and gap:
            parts.append(torch.zeros(gap, dtype=torch.bool, device=device))
        parts.append(torch.ones(length, dtype=torch.bool, device=device))
    return torch.cat(parts)[None, None]


def unpack_levels(packed: Tensor, lengths: list[int], gap: int) -> list[Tensor]:
    """The per-level ``(B, T_l, C)`` views of a packed ``(B, C, P)`` tensor (inverse of :func:`pack_levels`)."""
    out, start = [], 0
    for length in lengths:
        out.append(packed[:, :, start : start + length].transpose(1, 2))
        start += length + gap
    return out


class _Trunk(nn.Module):
    """``num_layers`` x [masked conv (no bias) -> channel LN -> ReLU]; ``span`` zeroes the gaps after each."""

    def __init__(self, width: int, kernel: int, num_layers: int, mask_input: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv1d(width, width, kernel, bias=False, mask_input=mask_input) for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(ChannelLayerNorm(width) for _ in range(num_layers))

    def forward(self, x: Tensor, mask: Tensor, span: Tensor | None) -> Tensor:
        # x: (B, width, P); mask: (B, 1, P); span: (1, 1, P) or None
        for conv, norm in zip(self.convs, self.norms):
            x = torch.relu(norm(conv(x, mask)[0]))
            if span is not None:
                x = x * span.to(x.dtype)
        return x


def _span(feats: list[Tensor], gap: int, mask_input: bool) -> Tensor | None:
    """The level span of a packing, needed only when the convolutions read padded steps."""
    return None if mask_input else level_span([f.shape[-1] for f in feats], gap, feats[0].device)


class ClsHead(nn.Module):
    """Per-level class logits ``(B, T_l, K)``; zeros at padded steps."""

    def __init__(self, width: int, num_classes: int, kernel: int, num_layers: int, prior: float,
                 mask_input: bool = True) -> None:
        super().__init__()
        self.trunk = _Trunk(width, kernel, num_layers - 1, mask_input)
        self.out = MaskedConv1d(width, num_classes, kernel, mask_input=mask_input)
        nn.init.constant_(self.out.conv.bias, -math.log((1.0 - prior) / prior))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        # feats[l]: (B, width, T_l) -> logits[l]: (B, T_l, K)
        gap = self.out.kernel_size // 2
        x, mask = pack_levels(feats, masks, gap)  # (B, width, P), (B, 1, P)
        h = self.trunk(x, mask, _span(feats, gap, self.out.mask_input))
        return unpack_levels(self.out(h, mask)[0], [f.shape[-1] for f in feats], gap)


class RegHead(nn.Module):
    """Per-level offsets ``(B, T_l, 2)`` = ReLU(Scale_l(conv)), distances to start and end in strides."""

    def __init__(self, width: int, num_levels: int, kernel: int, num_layers: int, mask_input: bool = True) -> None:
        super().__init__()
        self.trunk = _Trunk(width, kernel, num_layers - 1, mask_input)
        self.out = MaskedConv1d(width, 2, kernel, mask_input=mask_input)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        # feats[l]: (B, width, T_l) -> offsets[l]: (B, T_l, 2)
        gap = self.out.kernel_size // 2
        x, mask = pack_levels(feats, masks, gap)  # (B, width, P), (B, 1, P)
        h = self.trunk(x, mask, _span(feats, gap, self.out.mask_input))
        raw = unpack_levels(self.out(h, mask)[0], [f.shape[-1] for f in feats], gap)
        return [torch.relu(scale(r)) for scale, r in zip(self.scales, raw)]
