"""Video-text fusion of the NLQ grounder: video queries attend to the query's text tokens.

``model.fusion: late`` (default): one :class:`TextFusion` (``model.fusion_layers`` x
:class:`CrossModalLayer`) is applied to every pyramid level with the same weights (spec
section 8.2, the [REC] cross-attention variant; S4's AdaAttN is not implemented).

``model.fusion: early``: :class:`StemTextFusion`, one :class:`CrossModalLayer` after each stem
block, at full temporal resolution and before any downsampling (as GroundNLQ and OSGNet inject
the query into their stem), so every pyramid level is built from query-aware features; there is
no per-level fusion then. The cost: the video part of the model depends on the query, so a clip
is encoded once per query (late fusion could share the video pyramid between a clip's queries).

A layer is pre-LN::

    x = (x + DropPath(CrossAttention(LN_v x, LN_t W))) · m
    x = (x + DropPath(FFN(LN x))) · m

with ``x (B, width, T_l)`` a level's video features, ``m`` its mask and ``W (B, width, L)``
the text token matrix. Padded text tokens are never attended: their scores are replaced by
the dtype's lowest value (softmax weight exactly 0) and their values by zeros, so what a
padded token holds cannot change any output. Every video step is a separate query and the
FFN is point-wise, so padded video steps cannot change valid ones either; their outputs are
zero. A query whose text has no valid token receives a zero attention output (not NaN).
Residual branches are not LayerScaled (the text must condition the video from the start).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from egoasl.model.blocks import ChannelLayerNorm, DropPath, PointwiseConv1d


class CrossAttention(nn.Module):
    """Multi-head attention, queries from video ``(B, C, T)``, keys and values from text ``(B, C, L)``."""

    def __init__(self, width: int, n_head: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0) -> None:
        super().__init__()
        self.n_head = n_head
        self.head_dim = width // n_head
        self.query = PointwiseConv1d(width, width)
        self.key = PointwiseConv1d(width, width)
        self.value = PointwiseConv1d(width, width)
        self.proj = PointwiseConv1d(width, width)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj_drop = nn.Dropout(proj_dropout)

    def _heads(self, x: Tensor) -> Tensor:
        # (B, C, N) -> (B, H, N, d)
        B, _, N = x.shape
        return x.view(B, self.n_head, self.head_dim, N).transpose(2, 3)

    def forward(self, x: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        # x: (B, C, T); text: (B, C, L); text_mask: (B, L) bool -> (B, C, T)
        q = self._heads(self.query(x))  # (B, H, T, d)
        k = self._heads(self.key(text))  # (B, H, L, d)
        v = self._heads(self.value(text))  # (B, H, L, d)
        keys = text_mask[:, None, None, :]  # (B, 1, 1, L)
        score = (q / math.sqrt(self.head_dim)) @ k.transpose(-2, -1)  # (B, H, T, L)
        score = score.masked_fill(~keys, torch.finfo(score.dtype).min)
        attn = self.attn_drop(score.softmax(dim=-1))
        out = attn @ v.masked_fill(~text_mask[:, None, :, None], 0.0)  # (B, H, T, d)
        B, H, T, d = out.shape
        return self.proj_drop(self.proj(out.transpose(2, 3).reshape(B, H * d, T)))


class CrossModalLayer(nn.Module):
    """Pre-LN cross-attention residual block with a point-wise FFN (see the module docstring)."""

    def __init__(self, width: int, n_head: int, dropout: float, droppath: float) -> None:
        super().__init__()
        self.video_norm = ChannelLayerNorm(width)
        self.text_norm = ChannelLayerNorm(width)
        self.attn = CrossAttention(width, n_head, proj_dropout=dropout)
        self.ffn_norm = ChannelLayerNorm(width)
        self.ffn = nn.Sequential(
            PointwiseConv1d(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
            PointwiseConv1d(4 * width, width), nn.Dropout(dropout),
        )
        self.drop_path = DropPath(droppath)

    def forward(self, x: Tensor, mask: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        # x: (B, C, T); mask: (B, 1, T); text: (B, C, L); text_mask: (B, L) -> (B, C, T)
        m = mask.to(x.dtype)
        x = (x + self.drop_path(self.attn(self.video_norm(x), self.text_norm(text), text_mask))) * m
        return (x + self.drop_path(self.ffn(self.ffn_norm(x)))) * m


class TextFusion(nn.Module):
    """``num_layers`` cross-modal layers; one instance serves every pyramid level."""

    def __init__(self, width: int, n_head: int, num_layers: int, dropout: float, droppath: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossModalLayer(width, n_head, dropout, droppath) for _ in range(num_layers))

    def forward(self, x: Tensor, mask: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        """One level: ``x (B, width, T_l)``, ``mask (B, 1, T_l)``, ``text (B, width, L)``, ``text_mask (B, L)``."""
        for layer in self.layers:
            x = layer(x, mask, text, text_mask)
        return x


class StemTextFusion(nn.Module):
    """Early fusion: ``num_stem`` cross-modal layers, layer ``i`` applied after stem block ``i``."""

    def __init__(self, width: int, n_head: int, num_stem: int, dropout: float, droppath: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossModalLayer(width, n_head, dropout, droppath) for _ in range(num_stem))

    def forward(self, i: int, x: Tensor, mask: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        """After stem block ``i``: ``x (B, width, T)``, ``mask (B, 1, T)``, ``text (B, width, L)``, ``text_mask (B, L)``."""
        return self.layers[i](x, mask, text, text_mask)
