"""The NLQ text encoder: query token features -> a token matrix of the model's width.

``text (B, L, text_dim)`` with ``mask (B, L)`` (True on real tokens) goes through

1. a masked 1x1 projection ``text_dim -> width`` (spec section 8.2: "1x1 conv 768 -> 512");
2. the sinusoidal position table / sqrt(width) added at real tokens (the video backbone's scaling);
3. ``model.text_layers`` stride-1 transformer blocks of :mod:`egoasl.model.blocks` with global
   masked self-attention and no channel attention.

The output is the token matrix ``W (B, width, L)`` (zero at padded tokens) and its mask.
Padded tokens are replaced by zeros before anything reads them, so whatever a padded
position holds (even NaN) never reaches a real token or the fusion.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from egoasl.errors import EgoaslError
from egoasl.model.blocks import MaskedConv1d, TransformerBlock, sinusoid_table


class TextEncoder(nn.Module):
    """Projection + position encoding + masked global self-attention blocks over query tokens."""

    def __init__(self, text_dim: int, width: int, n_head: int, num_layers: int, dropout: float, droppath: float) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.width = width
        self.proj = MaskedConv1d(text_dim, width, 1)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, n_head, stride=1, window=-1, dropout=dropout, droppath=droppath,
                             channel_attention=False, t_c_alpha=1.0, masked_channel_attention=True)
            for _ in range(num_layers)
        )

    def forward(self, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``text (B, L, text_dim)``, ``mask (B, L)`` bool -> ``W (B, width, L)``, ``mask (B, L)``."""
        if text.dim() != 3 or text.shape[-1] != self.text_dim:
            raise EgoaslError(
                f"model input: expected text features of shape (B, L, {self.text_dim}) (data.text_dim), "
                f"got {tuple(text.shape)}"
            )
        if mask.shape != text.shape[:2] or mask.dtype != torch.bool:
            raise EgoaslError(
                f"model input: expected a bool text mask of shape {tuple(text.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
            )
        x = text.masked_fill(~mask[..., None], 0.0).transpose(1, 2)  # (B, text_dim, L)
        m = mask[:, None, :]  # (B, 1, L)
        x, m = self.proj(x, m)  # (B, width, L)
        pe = sinusoid_table(x.shape[-1], self.width, device=x.device).to(x.dtype)  # (width, L)
        x = x + pe[None] / math.sqrt(self.width) * m.to(x.dtype)
        for block in self.blocks:
            x, m = block(x, m)
        return x, m[:, 0]

