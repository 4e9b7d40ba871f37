"""Building blocks of the MQ detector: masked convs, norms, attention, PE, points, rel-pos layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from egoasl.model.blocks import (
    AffineDropPath,
    ChannelAttention,
    ChannelLayerNorm,
    MaskedConv1d,
    MaskedMHCA,
    TransformerBlock,
    drop_path,
    masked_max_pool,
    sinusoid_table,
)
from egoasl.model.points import make_points
from egoasl.model.relpos import RelPosGlobalLayer, relative_shift

torch.manual_seed(0)


def _mask(lengths: list[int], T: int) -> torch.Tensor:
    """(B, 1, T) bool mask, True on the first ``lengths[b]`` steps."""
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]


# ----------------------------------------------------------------------------- masked conv


def test_masked_conv_zeroes_padded_outputs_and_ignores_padded_inputs():
    conv = MaskedConv1d(3, 4, 3)
    nn.init.normal_(conv.conv.bias)
    x = torch.randn(2, 3, 8)
    mask = _mask([5, 8], 8)
    out, out_mask = conv(x, mask)
    assert out.shape == (2, 4, 8) and torch.equal(out_mask, mask)
    assert torch.all(out[0, :, 5:] == 0)
    # garbage at padded steps does not reach valid outputs (not even at the boundary)
    x2 = x.clone()
    x2[0, :, 5:] = 1e3
    out2, _ = conv(x2, mask)
    torch.testing.assert_close(out2, out)
    # equals an unmasked conv on the valid part alone (zero padding at the clip end)
    ref = nn.functional.conv1d(x[:1, :, :5], conv.conv.weight, conv.conv.bias, padding=1)
    torch.testing.assert_close(out[:1, :, :5], ref)


def test_masked_conv_stride_two_downsamples_mask_by_nearest():
    conv = MaskedConv1d(2, 2, 3, stride=2)
    x = torch.randn(1, 2, 8)
    mask = _mask([5], 8)
    out, out_mask = conv(x, mask)
    assert out.shape == (1, 2, 4)
    # out_mask[i] = mask[2 i]: steps 0, 2, 4 valid, 6 not
    assert out_mask[0, 0].tolist() == [True, True, True, False]
    assert torch.all(out[0, :, 3] == 0)


def test_masked_conv_rejects_even_kernels():
    with pytest.raises(ValueError):
        MaskedConv1d(2, 2, 4)


# ----------------------------------------------------------------------------- norm, pooling, PE


def test_channel_layer_norm_normalises_over_channels_only():
    norm = ChannelLayerNorm(5)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(5.0))
        norm.bias.fill_(0.5)
    x = torch.randn(2, 5, 7)
    mu = x.mean(1, keepdim=True)
    var = ((x - mu) ** 2).mean(1, keepdim=True)
    ref = (x - mu) / torch.sqrt(var + 1e-5) * torch.arange(5.0)[None, :, None] + 0.5
    torch.testing.assert_close(norm(x), ref)


def test_masked_max_pool_never_reads_padded_steps():
    x = -torch.ones(1, 1, 8)  # all negative: a zero at a padded step would win a plain max-pool
    x[0, 0, 5:] = 0.0
    mask = _mask([5], 8)
    out, out_mask = masked_max_pool(x, mask)
    assert out_mask[0, 0].tolist() == [True, True, True, False]
    assert out[0, 0].tolist() == [-1.0, -1.0, -1.0, 0.0]


def test_sinusoid_table_matches_formula():
    pe = sinusoid_table(6, 4)  # (C, T)
    assert pe.shape == (4, 6)
    t = 3
    expected = [math.sin(t), math.cos(t), math.sin(t / 100.0), math.cos(t / 100.0)]
    torch.testing.assert_close(pe[:, t], torch.tensor(expected))
    # a longer table extends a shorter one (position encoding never depends on the clip length)
    torch.testing.assert_close(sinusoid_table(10, 4)[:, :6], pe)


# ----------------------------------------------------------------------------- drop path / layer scale


def test_affine_drop_path_scales_and_drops_whole_samples():
    layer = AffineDropPath(3, drop_prob=0.5)
    assert torch.allclose(layer.scale, torch.full((1, 3, 1), 1e-4))
    x = torch.ones(64, 3, 4)
    layer.eval()
    torch.testing.assert_close(layer(x), x * 1e-4)
    layer.train()
    out = layer(x)
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] != 0
    # every sample is either fully dropped or fully kept and rescaled by 1 / keep_prob
    assert torch.all(per_sample[kept] == 2e-4) and torch.all(per_sample[~kept] == 0)
    assert 0 < kept.sum() < 64
    torch.testing.assert_close(drop_path(x, 0.5, training=False), x)


# ----------------------------------------------------------------------------- attention


def test_masked_mhca_global_ignores_padded_keys_and_downsamples():
    attn = MaskedMHCA(8, 2, stride=2).eval()
    x = torch.randn(1, 8, 16)
    mask = _mask([10], 16)
    out, out_mask = attn(x, mask)
    assert out.shape == (1, 8, 8)
    assert out_mask[0, 0].tolist() == [True] * 5 + [False] * 3
    assert torch.all(out[0, :, 5:] == 0)
    x2 = x.clone()
    x2[..., 10:] = torch.randn(1, 8, 6) * 100
    out2, _ = attn(x2, mask)
    torch.testing.assert_close(out2, out)


def test_masked_mhca_local_window_only_sees_neighbours():
    """With window 3 a query sees only its neighbours: outputs far from a change do not move."""
    attn = MaskedMHCA(8, 2, window=3).eval()
    x = torch.randn(1, 8, 20)
    mask = _mask([20], 20)
    out, _ = attn(x, mask)
    x2 = x.clone()
    x2[..., 15:] += 5.0
    out2, _ = attn(x2, mask)
    # step 15 reaches the q/k/v convs (k3) of steps >= 14 and the attention of queries >= 13
    torch.testing.assert_close(out2[..., :13], out[..., :13])
    assert not torch.allclose(out2[..., 13], out[..., 13])
    glob = MaskedMHCA(8, 2).eval()
    glob.load_state_dict(attn.state_dict())
    g1, _ = glob(x, mask)
    g2, _ = glob(x2, mask)
    assert not torch.allclose(g1[..., :5], g2[..., :5])


def test_masked_mhca_local_window_with_no_valid_key_gives_zero_not_nan():
    attn = MaskedMHCA(4, 1, window=3).eval()
    out, _ = attn(torch.randn(1, 4, 12), _mask([2], 12))
    assert torch.isfinite(out).all()


def test_channel_attention_matches_released_formula():
    ca = ChannelAttention(8, 2)
    u = torch.randn(2, 5, 8)  # (B, T, C)
    out = ca(u)
    q, k, v = ca.qkv(u).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)  # each (B, H, T, d)
    attn = ((k * 4**-0.5).transpose(-1, -2) @ v).softmax(-1)  # (B, H, d, d)
    ref = (attn @ q.transpose(-1, -2)).transpose(-1, -2).transpose(1, 2).reshape(2, 5, 8)
    torch.testing.assert_close(out, ca.proj(ref))


def test_channel_attention_mask_removes_padded_steps_from_the_channel_sums():
    ca = ChannelAttention(8, 2)
    u = torch.randn(1, 6, 8)
    keep = torch.tensor([True, True, True, True, False, False])[None, :, None]
    short = ca(u[:, :4])
    masked = ca(u * keep + 50 * ~keep, keep)
    torch.testing.assert_close(masked[:, :4], short)


# ----------------------------------------------------------------------------- transformer blocks


def _block(**kw) -> TransformerBlock:
    args = dict(width=16, n_head=2, stride=1, window=-1, dropout=0.0, droppath=0.1,
                channel_attention=True, t_c_alpha=0.8, masked_channel_attention=False)
    args.update(kw)
    block = TransformerBlock(**args).eval()
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("bias") or "scale" in name:
                p.normal_(0.0, 0.3)
    return block


def test_stem_block_release_fusion_formula():
    block = _block()
    x = torch.randn(2, 16, 8)
    mask = _mask([8, 5], 8)
    out, out_mask = block(x, mask)
    u = block.ln1(x)
    m = mask.to(x.dtype)
    a, _ = block.attn(u, mask)
    y = x * m + block.drop_path_attn(a)
    y = y + block.drop_path_mlp(block.mlp(block.ln2(y)) * m)
    z = block.channel(u, x, mask)
    torch.testing.assert_close(out, 0.8 * y + 0.2 * z)
    assert torch.equal(out_mask, mask)
    # as released: the channel path ignores the mask, so padded steps leak into valid outputs
    x2 = x.clone()
    x2[1, :, 5:] = 10.0 * torch.randn(16, 3)  # not a constant: LN1 removes constants
    out2, _ = block(x2, mask)
    assert not torch.allclose(out2[1, :, :5], out[1, :, :5])


def test_stem_block_masked_channel_attention_is_padding_invariant():
    block = _block(masked_channel_attention=True)
    x = torch.randn(1, 16, 8)
    mask = _mask([5], 8)
    out, _ = block(x, mask)
    x2 = x.clone()
    x2[..., 5:] = 100.0 * torch.randn(16, 3)
    out2, _ = block(x2, mask)
    torch.testing.assert_close(out2, out)
    assert torch.all(out[..., 5:] == 0)
    # the same clip without the padded tail gives the same valid outputs
    short, _ = block(x[..., :5], _mask([5], 5))
    torch.testing.assert_close(out[..., :5], short)


def test_downsampling_block_has_no_channel_path_and_halves_length():
    block = _block(stride=2)
    assert block.channel is None
    x = torch.randn(1, 16, 8)
    out, out_mask = block(x, _mask([8], 8))
    assert out.shape == (1, 16, 4) and out_mask.shape == (1, 1, 4)


def test_block_without_droppath_has_no_layer_scale():
    block = TransformerBlock(16, 2, stride=1, window=-1, dropout=0.0, droppath=0.0,
                             channel_attention=False, t_c_alpha=0.8, masked_channel_attention=False)
    assert not any(isinstance(m, AffineDropPath) for m in block.modules())


# ----------------------------------------------------------------------------- relative-position layer


def test_relative_shift_indexes_by_query_minus_key_distance():
    T = 5
    dist = torch.arange(T - 1, -T, -1, dtype=torch.float32)  # column c holds distance T-1-c
    full = dist.expand(2, 3, T, 2 * T - 1)  # (B, H, T, 2T-1)
    shifted = relative_shift(full.contiguous())
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    assert torch.equal(shifted[0, 0], (i - j).float())
    assert relative_shift(torch.ones(1, 1, 1, 1)).shape == (1, 1, 1, 1)


def test_rel_pos_layer_reference_computation():
    torch.manual_seed(1)
    layer = RelPosGlobalLayer(8, 2, inner=16, dropout=0.0).eval()
    B, T, C, H, D = 1, 4, 8, 2, 4
    x = torch.randn(B, C, T)
    mask = _mask([3], T)
    out = layer(x, mask)
    # slow reference: explicit loops over (i, j) with the relative distance i - j
    h = x.transpose(1, 2)[0]  # (T, C)
    q = (h @ layer.q.weight.T).view(T, H, D)
    k = (h @ layer.k.weight.T).view(T, H, D)
    v = (h @ layer.v.weight.T).view(T, H, D)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, C, 2.0) / C)
    score = torch.full((H, T, T), -float("inf"))
    for i in range(T):
        for j in range(3):
            d = torch.tensor(float(i - j))
            r = torch.cat([torch.sin(d * inv_freq), torch.cos(d * inv_freq)]) @ layer.r.weight.T
            r = r.view(H, D)
            score[:, i, j] = ((q[i] + layer.r_w_bias) * k[j]).sum(-1) + ((q[i] + layer.r_r_bias) * r).sum(-1)
    prob = (score / math.sqrt(D)).softmax(-1)
    attn = torch.einsum("hij,jhd->ihd", prob, v).reshape(T, C) @ layer.o.weight.T
    a = layer.norm_attn(attn + h)
    ff = layer.norm_ff(a + layer.ff2(nn.functional.gelu(layer.ff1(a))))
    ref = ff.T[None] * mask
    torch.testing.assert_close(out, ref)


def test_rel_pos_layer_is_padding_invariant():
    layer = RelPosGlobalLayer(8, 2, inner=16, dropout=0.1).eval()
    x = torch.randn(1, 8, 6)
    out = layer(x, _mask([6], 6))
    x2 = torch.cat([x, 100 * torch.randn(1, 8, 4)], dim=-1)
    out2 = layer(x2, _mask([6], 10))
    torch.testing.assert_close(out2[..., :6], out)
    assert torch.all(out2[..., 6:] == 0)


# ----------------------------------------------------------------------------- points


def test_points_per_level_without_half_stride_offset():
    pts = make_points(8, 3, [(0, 4), (2, 8), (4, 10000)])
    assert pts.shape == (8 + 4 + 2, 4)
    assert pts[:8, 0].tolist() == list(range(8))
    assert pts[8:12].tolist() == [[0, 2, 8, 2], [2, 2, 8, 2], [4, 2, 8, 2], [6, 2, 8, 2]]
    assert pts[12:].tolist() == [[0, 4, 10000, 4], [4, 4, 10000, 4]]
