"""Building blocks of the MQ detector, all working on ``(x, mask)`` pairs.

Conventions: features are ``(B, C, T)``, masks ``(B, 1, T)`` bool, True on valid steps.

Padding policy (a deliberate fix over the release, the default): every masked convolution
zeroes its *input* at padded steps as well as its output (``model.mask_conv_inputs``), and
the stride-2 skip path max-pools over valid steps only (``model.masked_skip_pool``). So a
valid output never reads a padded step through a kernel's border. The release
(ActionFormer's ``MaskedConv1D``, ``nn.MaxPool1d``) masked the output only, which let the
``ReLU(LN bias)`` values sitting at padded steps enter the convolution and the skip's max at
the last valid step; both switches set to false compute exactly that (``mq/release``). The
values stored at padded steps themselves are the release's either way.

The one remaining leak is the released channel attention (``masked_channel_attention:
false``, the default): it sums over every time step, padded ones included, exactly as the
authors' code does. ``masked_channel_attention: true`` makes the whole network
padding-invariant.

Memory layout (for speed; the maths does not depend on it): a feature tensor is logically
``(B, C, T)``, but the backbone and the heads keep it *channels-last*, as the transposed
view of a contiguous ``(B, T, C)`` tensor. 1x1 convolutions are matmuls over the channels
of the ``(B, T, C)`` view (``F.linear``); k-tap convolutions run on the ``(B, C, 1, T)``
view, which is channels-last too, so oneDNN reads and writes that layout directly;
LayerNorm normalises the contiguous last axis; attention reads its heads as strided views
and runs in ``F.scaled_dot_product_attention`` (flash kernel, no ``T x T`` matrix kept for
backward); element-wise operations keep the layout. So no layer transposes or copies its
input or output. A tensor in any other layout gives the same results (its first matmul
copies it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a matmul or convolution on ``x`` runs in: autocast's where it is on for x's device."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class PointwiseConv1d(nn.Conv1d):
    """A 1x1 ``nn.Conv1d`` (same parameters, state dict and init) computed as ``F.linear``.

    ``forward`` maps ``(B, C_in, T)`` to ``(B, C_out, T)`` through the ``(B, T, C)`` view, so a
    channels-last input gives a channels-last output without a copy.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C_in, T) -> (B, T, C_in) @ W^T -> (B, C_out, T)
        # flatten(1), a view, rather than [:, :, 0]: its backward is a view too, not a zero-filled copy
        return F.linear(x.transpose(1, 2), self.weight.flatten(1), self.bias).transpose(1, 2)


class MaskedConv1d(nn.Module):
    """1D convolution on ``(x, mask)``: padded steps are read as zeros and written as zeros.

    Odd kernels only, padding ``k // 2``. With stride s the output mask is the input mask
    sampled at steps ``0, s, 2s, ...`` (nearest), so output i is centred on input ``s·i``.
    The bias is initialised to zero.

    ``mask_input=False`` is the release's ``MaskedConv1D``: the input is read as it is, padded
    steps included (kernel 1 is the same either way).

    Kernel 1 (not grouped) is one matmul over the channels of the ``(B, T, C)`` view, and
    masking its output is enough, as no step reads a neighbour. Other kernels are
    ``F.conv2d`` on the channels-last ``(B, C, 1, T)`` view (module docstring). At the release
    size (B 2, T 1024, 1024 -> 1024 channels, k 3, bf16) that is as fast as one matmul over
    the unfolded ``(B, T, 3C)`` windows (forward + backward 107 vs 104 ms), keeps a third of
    the activations for backward (the input, not its unfolding) and beats three shifted
    matmuls (which also round bf16 partial sums). The parameters live in ``self.conv``, an
    ``nn.Conv1d``, so the state dict is that of a plain convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True, mask_input: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"MaskedConv1d needs an odd kernel size, got {kernel_size}")
        self.kernel_size = kernel_size
        self.stride = stride
        self.mask_input = mask_input
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=kernel_size // 2, groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # x: (B, C_in, T); mask: (B, 1, T) bool -> (B, C_out, T'), (B, 1, T') with T' = ceil(T / stride)
        out_mask = mask[:, :, :: self.stride]
        if self.kernel_size > 1 and self.mask_input:
            x = x * mask.to(x.dtype)
        out = self.convolve(x)
        return out * out_mask.to(out.dtype), out_mask

    def convolve(self, x: Tensor) -> Tensor:
        """The plain convolution (zero padding at both ends, no masking): ``(B, C_in, T) -> (B, C_out, T')``."""
        k, s = self.kernel_size, self.stride
        weight, bias = self.conv.weight, self.conv.bias  # (C_out, C_in / groups, k), (C_out,)
        if k == 1 and self.conv.groups == 1:
            h = x.transpose(1, 2)  # (B, T, C_in)
            return F.linear(h[:, ::s] if s > 1 else h, weight.flatten(1), bias).transpose(1, 2)
        # x[:, :, None] is (B, C_in, 1, T), channels-last when x is: the convolution keeps that layout
        out = F.conv2d(x[:, :, None, :], weight[:, :, None, :], bias, stride=(1, s), padding=(0, k // 2),
                       groups=self.conv.groups)
        return out.squeeze(2)  # (B, C_out, T'); a view whose backward is a view (out[:, :, 0]'s zero-fills a copy)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, T)`` tensor (eps 1e-5, per-channel affine)."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        # (B, C, T) -> (B, T, C) -> normalise over C -> (B, C, T)
        out = F.layer_norm(x.transpose(1, 2), (x.shape[1],), self.weight, self.bias, self.eps)
        return out.transpose(1, 2)


def masked_max_pool(x: Tensor, mask: Tensor, valid_only: bool = True) -> tuple[Tensor, Tensor]:
    """Max-pool, kernel 3, stride 2, padding 1; zeros at padded outputs.

    ``valid_only`` pools over valid steps only; otherwise over every step, padded ones
    included (the release's ``nn.MaxPool1d`` skip, ``model.masked_skip_pool: false``).
    """
    # x: (B, C, T) -> (B, C, T // 2); pooled over T of the (B, 1, T, C) view, keeping x's layout
    filled = torch.where(mask, x, float("-inf")) if valid_only else x
    out = F.max_pool2d(filled.transpose(1, 2)[:, None], kernel_size=(3, 1), stride=(2, 1), padding=(1, 0))
    out = out.squeeze(1).transpose(1, 2)  # (B, C, T // 2)
    out_mask = mask[:, :, ::2]  # (B, 1, T // 2)
    return torch.where(out_mask, out, 0.0), out_mask


def sinusoid_table(length: int, channels: int, device: torch.device | str | None = None) -> Tensor:
    """The standard sin/cos absolute position table, shape ``(C, T)``, float32.

    Channel ``2i`` holds ``sin(t / 10000^(2i/C))`` and channel ``2i+1`` the matching cosine.
    Column t never depends on ``length``, so clips of any length share the encoding (the
    release interpolated a stored 1024-long table for longer inputs; for T <= 1024 the two agree).
    """
    pos = torch.arange(length, dtype=torch.float32, device=device)[None, :]  # (1, T)
    dims = torch.arange(channels, device=device)
    freq = torch.pow(10000.0, -(2 * (dims // 2)).float() / channels)[:, None]  # (C, 1)
    angle = pos * freq  # (C, T)
    return torch.where((dims % 2 == 0)[:, None], torch.sin(angle), torch.cos(angle))


def drop_path(x: Tensor, drop_prob: float, training: bool) -> Tensor:
    """Stochastic depth: drop the whole residual branch of a sample with probability p."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    sample_mask = torch.floor(keep + torch.rand(shape, dtype=x.dtype, device=x.device))
    return x / keep * sample_mask


class DropPath(nn.Module):
    """Stochastic depth without a scale (the release's channel path)."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)


class AffineDropPath(nn.Module):
    """LayerScale (per-channel scale, initialised to 1e-4) followed by stochastic depth.

    As in ActionFormer, a block uses it only when ``droppath > 0``; with ``droppath = 0``
    its residual branches are added unscaled.
    """

    def __init__(self, num_channels: int, drop_prob: float, init_scale: float = 1e-4) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, num_channels, 1), init_scale))
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, T)
        return drop_path(self.scale * x, self.drop_prob, self.training)


class MaskedMHCA(nn.Module):
    """Multi-head conv-attention (ActionFormer's MHCA) with global or local attention.

    q, k and v each come from a depthwise masked conv (k3, stride 1 or 2, no bias), a
    channel LayerNorm and a 1x1 conv. Padded keys never receive weight. ``window > 0``
    restricts query i to keys ``|i - j| <= window // 2`` (a band on the full score matrix,
    exact). A query with no valid key gets a zero output, not NaN.

    The attention itself is ``F.scaled_dot_product_attention`` with an additive mask: 0 on
    allowed keys, the dtype's lowest value elsewhere. That is the release's masked softmax
    (a disallowed key's weight is exactly 0), and a query with no allowed key spreads its
    weight over keys whose values are zeroed, hence the zero output.

    ``mask_input=False`` (the release) lets the q/k/v convolutions read the padded steps of
    their input as they are; by default they read zeros there.
    """

    def __init__(self, width: int, n_head: int, stride: int = 1, window: int = -1,
                 attn_dropout: float = 0.0, proj_dropout: float = 0.0, mask_input: bool = True) -> None:
        super().__init__()
        self.mask_input = mask_input
        self.n_head = n_head
        self.head_dim = width // n_head
        self.window = window
        self.attn_dropout = attn_dropout
        self.query_conv = MaskedConv1d(width, width, 3, stride=stride, groups=width, bias=False)
        self.key_conv = MaskedConv1d(width, width, 3, stride=stride, groups=width, bias=False)
        self.value_conv = MaskedConv1d(width, width, 3, stride=stride, groups=width, bias=False)
        self.query_norm = ChannelLayerNorm(width)
        self.key_norm = ChannelLayerNorm(width)
        self.value_norm = ChannelLayerNorm(width)
        self.query = PointwiseConv1d(width, width)
        self.key = PointwiseConv1d(width, width)
        self.value = PointwiseConv1d(width, width)
        self.proj = PointwiseConv1d(width, width)
        self.proj_drop = nn.Dropout(proj_dropout)

    def _heads(self, x: Tensor) -> Tensor:
        # (B, C, T) -> (B, H, T, d), a view of channels-last memory
        B, _, T = x.shape
        return x.transpose(1, 2).reshape(B, T, self.n_head, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # x: (B, C, T); mask: (B, 1, T) -> out (B, C, T'), out_mask (B, 1, T') with T' = T / stride
        # q, k, v read the padded steps as zeros (mask_input); their own padded outputs are left as they
        # are: padded queries are zeroed at the end, padded keys get no weight and padded values are zeroed
        if self.mask_input:
            x = x * mask.to(x.dtype)
        x = x.to(compute_dtype(x))  # cast once for the three convolutions
        q, k, v = self.query_conv.convolve(x), self.key_conv.convolve(x), self.value_conv.convolve(x)  # (B, C, T')
        q_mask = kv_mask = mask[:, :, :: self.query_conv.stride]  # (B, 1, T')
        q = self._heads(self.query(self.query_norm(q)))  # (B, H, T', d)
        k = self._heads(self.key(self.key_norm(k)))  # (B, H, T', d)
        v = self.value(self.value_norm(v))
        v = self._heads(v * kv_mask.to(v.dtype))  # (B, H, T', d), zero at padded keys
        dropout_p = self.attn_dropout if self.training else 0.0
        if 0 < self.window // 2 < kv_mask.shape[-1] // 2:
            out = local_attention(q, k, v, kv_mask[:, 0], self.window // 2, dropout_p)  # (B, H, T', d)
        else:
            allowed = kv_mask[:, :, None, :]  # (B, 1, 1, T') keys
            if self.window > 0:
                idx = torch.arange(kv_mask.shape[-1], device=x.device)
                band = (idx[:, None] - idx[None, :]).abs() <= self.window // 2  # (T', T')
                allowed = allowed & band
            lowest = torch.finfo(q.dtype).min
            bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, lowest)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)  # (B, H, T', d)
        B, H, T_out, d = out.shape
        out = out.transpose(1, 2).reshape(B, T_out, H * d).transpose(1, 2)  # (B, C, T')
        out = self.proj_drop(self.proj(out)) * q_mask.to(out.dtype)
        return out, q_mask


def local_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, radius: int, dropout_p: float = 0.0,
                    block: int = 32) -> Tensor:
    """Softmax attention of query i over keys ``|i - j| <= radius`` that ``key_mask`` allows.

    The same function as full attention with a band mask (``MaskedMHCA``'s global path), at
    ``T x (block + 2 radius)`` instead of ``T x T`` cost: the queries are cut into blocks of
    ``block`` steps, and each block attends, with one matrix product, to the keys from ``radius``
    before its first query to ``radius`` after its last; a band mask inside the block keeps each
    query to its own window. Scores and softmax run in float32 (float64 for float64 inputs). A
    query with no allowed key (only padded queries, which the caller zeroes) gets a zero output.
    ``MaskedMHCA`` takes this path when ``0 < radius < T // 2``.

    Args:
        q, k, v: ``(B, H, T, d)``; v zero at padded keys.
        key_mask: ``(B, T)`` bool, True at valid keys.
        radius: ``window // 2``.
        dropout_p: dropout on the attention weights (training).
        block: queries per block.
    """
    B, H, T, d = q.shape
    num_blocks = -(-T // block)
    tail = num_blocks * block - T
    span = block + 2 * radius
    dtype = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 inputs
    with torch.autocast(q.device.type, enabled=False):
        q_blocks = F.pad(q.to(dtype) * d**-0.5, (0, 0, 0, tail)).view(B, H, num_blocks, block, d)
        k_spans = F.pad(k.to(dtype), (0, 0, radius, radius + tail)).unfold(2, span, block)  # (B, H, n, d, span)
        v_spans = F.pad(v.to(dtype), (0, 0, radius, radius + tail)).unfold(2, span, block)  # (B, H, n, d, span)
        scores = q_blocks @ k_spans  # (B, H, n, block, span)
        offset = torch.arange(span, device=q.device)[None, :] - torch.arange(block, device=q.device)[:, None]
        band = (offset >= 0) & (offset <= 2 * radius)  # (block, span): key c of the span is in query a's window
        valid = F.pad(key_mask, (radius, radius + tail), value=False).unfold(1, span, block)  # (B, n, span)
        allowed = band & valid[:, None, :, None, :]  # (B, 1, n, block, span)
        weights = scores.masked_fill(~allowed, torch.finfo(dtype).min).softmax(dim=-1)
        weights = F.dropout(weights, dropout_p, training=dropout_p > 0)
        out = (weights @ v_spans.transpose(-1, -2)) * allowed.any(dim=-1, keepdim=True)  # (B, H, n, block, d)
    return out.reshape(B, H, num_blocks * block, d)[:, :, :T].to(v.dtype)


class ChannelAttention(nn.Module):
    """The release's channel attention on ``(B, T, C)``: a d x d attention map per head.

    ``q, k, v = split(Linear(u))`` (no bias), ``A = softmax_lastdim((k / sqrt(d))^T v)`` sums
    over time, ``out = proj((A q^T)^T)``. With ``mask`` (B, T, 1) the padded steps are
    zeroed before the sums, so they do not contribute.
    """

    def __init__(self, width: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.head_dim = width // n_head
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, u: Tensor, mask: Tensor | None = None) -> Tensor:
        # u: (B, T, C); mask: (B, T, 1) bool or None
        if mask is not None:
            u = u * mask.to(u.dtype)
        B, T, C = u.shape
        qkv = self.qkv(u).reshape(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, d); unbind: its backward stacks, where three selects would zero-fill three copies
        attn = ((k / math.sqrt(self.head_dim)).transpose(-1, -2) @ v).softmax(dim=-1)  # (B, H, d, d)
        out = (attn @ q.transpose(-1, -2)).transpose(-1, -2)  # (B, H, T, d)
        return self.proj(out.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class ChannelBlock(nn.Module):
    """Channel-attention path of a stem block: attention + MLP, each with a residual.

    Released (``masked=False``): the residual base is ``u = LN1(x)`` and no mask is used.
    Masked variant: the residual base is ``x``, padded steps are excluded from the channel
    sums, and both updates are zeroed at padded steps.
    """

    def __init__(self, width: int, n_head: int, droppath: float, masked: bool) -> None:
        super().__init__()
        self.masked = masked
        self.attn = ChannelAttention(width, n_head)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop_path = DropPath(droppath)

    def forward(self, u: Tensor, x: Tensor, mask: Tensor) -> Tensor:
        # u = LN1(x), x: (B, C, T); mask: (B, 1, T) -> (B, C, T)
        u_t = u.transpose(1, 2)  # (B, T, C)
        if not self.masked:
            z = u_t + self.drop_path(self.attn(u_t))
            z = z + self.drop_path(self.mlp(self.norm(z)))
            return z.transpose(1, 2)
        m = mask.transpose(1, 2)  # (B, T, 1)
        mf = m.to(u.dtype)
        z = x.transpose(1, 2) + self.drop_path(self.attn(u_t, m) * mf)
        z = z + self.drop_path(self.mlp(self.norm(z)) * mf)
        return z.transpose(1, 2)


class TransformerBlock(nn.Module):
    """Pre-LN conv-attention block; stride 1 (stem) or 2 (downsampling).

    Temporal path: ``y = skip(x)·m + LS(MHCA(LN1 x))``, ``y = y + LS(MLP(LN2 y)·m)``, where
    skip is identity (stride 1) or a max-pool (stride 2; over valid steps only with
    ``masked_skip_pool``, over all steps in the release). ``mask_conv_inputs`` goes to the
    attention's q/k/v convolutions (:class:`MaskedMHCA`). A stride-1 block with
    ``channel_attention`` adds the channel path on the same ``LN1 x`` and returns
    ``α·y + (1-α)·z`` (not re-masked in the release variant, masked in the masked variant).
    Stride-2 blocks have no channel path (the release built one and never used it).
    """

    def __init__(self, width: int, n_head: int, stride: int, window: int, dropout: float, droppath: float,
                 channel_attention: bool, t_c_alpha: float, masked_channel_attention: bool,
                 mask_conv_inputs: bool = True, masked_skip_pool: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"TransformerBlock stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.masked_skip_pool = masked_skip_pool
        self.alpha = t_c_alpha
        self.ln1 = ChannelLayerNorm(width)
        self.ln2 = ChannelLayerNorm(width)
        self.attn = MaskedMHCA(width, n_head, stride=stride, window=window, proj_dropout=dropout,
                               mask_input=mask_conv_inputs)
        self.mlp = nn.Sequential(
            PointwiseConv1d(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
            PointwiseConv1d(4 * width, width), nn.Dropout(dropout),
        )
        if droppath > 0:
            self.drop_path_attn: nn.Module = AffineDropPath(width, droppath)
            self.drop_path_mlp: nn.Module = AffineDropPath(width, droppath)
        else:
            self.drop_path_attn = nn.Identity()
            self.drop_path_mlp = nn.Identity()
        self.channel = (
            ChannelBlock(width, n_head, droppath, masked=masked_channel_attention)
            if stride == 1 and channel_attention else None
        )

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # x: (B, C, T); mask: (B, 1, T) -> (B, C, T / stride), (B, 1, T / stride)
        u = self.ln1(x)
        a, out_mask = self.attn(u, mask)
        m = out_mask.to(a.dtype)
        skip = x if self.stride == 1 else masked_max_pool(x, mask, self.masked_skip_pool)[0]
        y = skip * m + self.drop_path_attn(a)
        y = y + self.drop_path_mlp(self.mlp(self.ln2(y)) * m)
        if self.channel is None:
            return y, out_mask
        z = self.channel(u, x, mask)
        out = self.alpha * y + (1.0 - self.alpha) * z
        if self.channel.masked:
            out = out * m
        return out, out_mask
