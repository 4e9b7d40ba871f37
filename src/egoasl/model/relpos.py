"""A relative-position global attention layer: our stand-in for the release's 1-layer XLNet.

The authors run one HuggingFace ``XLNetModel`` layer (bidirectional, no memory, no
segments) on the level-0 features before the downsampling branch. What that layer
computes, and what this module computes, is a post-LN transformer layer whose attention
score between query i and key j is

    score_ij = [(q_i + b_w) · k_j + (q_i + b_r) · R(i - j)] / sqrt(d)

with ``R(δ) = W_r · [sin(δ ω), cos(δ ω)]`` a projected sinusoid of the relative distance
(Transformer-XL), learnable per-head biases ``b_w`` (content) and ``b_r`` (position),
padded keys excluded, then ``LN(h + W_o · attn)`` and ``LN(a + W_2 GELU(W_1 a))``, both
with eps 1e-12. Dropout (``model.rel_dropout``, 0.1 in the release) sits where XLNet puts
it: on the input, on the position table, on the attention probabilities, after W_o, inside
and after the feed-forward and on the output.

Padded steps (``model.zero_padded_relpos``): by default a padded query attends to the valid
keys only and its output is zeroed. With ``zero_padded=False`` the layer does what XLNet
does there: every query may also attend to itself (XLNet's ``non_tgt_mask``), so a padded
query sees the valid keys and its own step, and the padded outputs are kept, to be read by
the first downsampling block. Valid outputs are the same either way.

Not carried over: XLNet's vocabulary embedding, mask embedding, segment embedding and
segment bias, none of which the release ever used (32.8 M dead parameters). The layer
keeps XLNet's trained parameter count (9.45 M at width 1024, inner 2048) and its
initialisation (N(0, 0.02) weights and relative biases, zero biases).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def relative_shift(full: Tensor) -> Tensor:
    """Turn scores against every relative distance into scores against every key.

    ``full`` is ``(B, H, T, 2T-1)`` where column c holds distance ``δ = T-1-c``; the result
    is ``(B, H, T, T)`` with entry (i, j) taken from distance ``i - j``, i.e. column
    ``T-1-i+j``: in the flat ``(B, H, T·(2T-1))`` layout that is index ``(T-1) + i·(2T-2) + j``.
    So the result is one strided view of ``full`` (no gather, no index tensor), and its
    backward writes the gradient into a single zero tensor.
    """
    B, H, T, R = full.shape
    if T == 1:
        return full
    full = full.contiguous()
    return full.as_strided((B, H, T, T), (H * T * R, T * R, R - 1, 1), full.storage_offset() + T - 1)


SCORE_ELEMENTS_PER_GROUP = 2**22
"""Position-score elements ``B·h·T·(2T-1)`` computed at once: heads go in groups of this size.

At the release size (B 2, T 1024) that is one head at a time; a group's tensors then stay
under glibc's 32 MB mmap limit, so they are recycled from step to step instead of being
mapped and page-faulted afresh, and the layer's transient memory is 1/16 of the full size."""


class RelPosGlobalLayer(nn.Module):
    """One bidirectional Transformer-XL style layer over all valid steps.

    ``forward(x, mask)`` takes ``x (B, C, T)`` and ``mask (B, 1, T)`` and returns
    ``(B, C, T)``, with zeros at padded steps when ``zero_padded`` (else XLNet's values there).
    """

    def __init__(self, width: int, n_head: int, inner: int, dropout: float, eps: float = 1e-12,
                 zero_padded: bool = True) -> None:
        super().__init__()
        self.zero_padded = zero_padded
        self.n_head = n_head
        self.head_dim = width // n_head
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.r = nn.Linear(width, width, bias=False)
        self.o = nn.Linear(width, width, bias=False)
        self.r_w_bias = nn.Parameter(torch.zeros(n_head, self.head_dim))
        self.r_r_bias = nn.Parameter(torch.zeros(n_head, self.head_dim))
        self.norm_attn = nn.LayerNorm(width, eps=eps)
        self.ff1 = nn.Linear(width, inner)
        self.ff2 = nn.Linear(inner, width)
        self.norm_ff = nn.LayerNorm(width, eps=eps)
        self.drop = nn.Dropout(dropout)
        for weight in (self.q.weight, self.k.weight, self.v.weight, self.r.weight, self.o.weight,
                       self.r_w_bias, self.r_r_bias, self.ff1.weight, self.ff2.weight):
            nn.init.normal_(weight, std=0.02)
        nn.init.zeros_(self.ff1.bias)
        nn.init.zeros_(self.ff2.bias)

    def _position_table(self, T: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Sinusoids of the distances T-1, T-2, ..., -(T-1): ``(2T-1, C)``, sin half then cos half."""
        width = self.n_head * self.head_dim
        dist = torch.arange(T - 1, -T, -1, device=device, dtype=torch.float32)  # (2T-1,)
        inv_freq = 1.0 / torch.pow(10000.0, torch.arange(0, width, 2, device=device, dtype=torch.float32) / width)
        angle = dist[:, None] * inv_freq[None, :]  # (2T-1, C/2)
        return torch.cat([angle.sin(), angle.cos()], dim=-1).to(dtype)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x: (B, C, T); mask: (B, 1, T) bool
        B, C, T = x.shape
        H, d = self.n_head, self.head_dim
        h = self.drop(x.transpose(1, 2))  # (B, T, C)
        pos = self.drop(self._position_table(T, x.device, h.dtype))  # (2T-1, C)
        scale = 1.0 / math.sqrt(d)
        q = self.q(h).view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
        k = self.k(h).view(B, T, H, d).permute(0, 2, 3, 1)  # (B, H, d, T)
        v = self.v(h).view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
        r = self.r(pos).view(2 * T - 1, H, d).permute(1, 2, 0)  # (H, d, 2T-1)
        q_content = (q + self.r_w_bias[:, None]) * scale
        q_position = (q + self.r_r_bias[:, None]) * scale
        key_mask = ~mask[:, :, None, :]  # (B, 1, 1, T), True at padded keys
        if not self.zero_padded:
            # XLNet lets every query attend to itself, a padded one included: (B, 1, T, T)
            key_mask = key_mask & ~torch.eye(T, dtype=torch.bool, device=x.device)
        # a few heads at a time: the (B, h, T, 2T-1) position scores of a group stay small, so
        # the transient memory of the layer (forward and backward) is a fraction of the full size
        group = max(1, SCORE_ELEMENTS_PER_GROUP // (B * T * (2 * T - 1)))
        heads = []
        for g in range(0, H, group):
            sl = slice(g, g + group)
            score = q_content[:, sl] @ k[:, sl]  # (B, h, T, T) content
            score += relative_shift(q_position[:, sl] @ r[sl])  # + position
            score.masked_fill_(key_mask, torch.finfo(score.dtype).min)
            heads.append(self.drop(score.softmax(dim=-1)) @ v[:, sl])  # (B, h, T, d)
        attn = torch.cat(heads, dim=1).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        a = self.norm_attn(h + self.drop(self.o(attn)))
        out = self.norm_ff(a + self.drop(self.ff2(self.drop(F.gelu(self.ff1(a))))))
        out = self.drop(out).transpose(1, 2)  # (B, C, T)
        return out * mask.to(out.dtype) if self.zero_padded else out
