"""The matmul / channels-last implementations of the model's layers against straightforward references.

Every reference below is the obvious formulation (``F.conv1d`` on a (B, C, T) tensor,
an explicit masked softmax, a per-level loop, ``F.max_pool1d``), computed in float64.
The fast layers must agree to 1e-10 in outputs and gradients, with padded clips and with
inputs in either memory layout.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from egoasl.config import config_from_dict
from egoasl.model import relpos
from egoasl.model.blocks import (
    ChannelLayerNorm,
    MaskedConv1d,
    MaskedMHCA,
    PointwiseConv1d,
    local_attention,
    masked_max_pool,
)
from egoasl.model.detector import MQDetector
from egoasl.model.heads import ClsHead, RegHead
from egoasl.model.relpos import RelPosGlobalLayer, relative_shift

TOL = {"rtol": 0.0, "atol": 1e-10}


def _mask(lengths: list[int], T: int) -> Tensor:
    """(B, 1, T) bool mask, True on the first ``lengths[b]`` steps."""
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None])[:, None, :]


def _channels_last(x: Tensor) -> Tensor:
    """The same (B, C, T) values stored as a contiguous (B, T, C) tensor."""
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def _randomise(module: torch.nn.Module) -> None:
    """Non-trivial values for every parameter (biases and norm affines are 0/1 at init)."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


def _grads(out: Tensor, inputs: list[Tensor]) -> list[Tensor]:
    weight = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    return list(torch.autograd.grad((out * weight).sum(), inputs))


# ----------------------------------------------------------------------------- convolutions


def _reference_masked_conv(conv: MaskedConv1d, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The release's formulation with our padding policy: mask the input, F.conv1d, mask the output."""
    c = conv.conv
    out = F.conv1d(x * mask, c.weight, c.bias, stride=c.stride, padding=c.padding, groups=c.groups)
    out_mask = mask[:, :, :: c.stride[0]]
    return out * out_mask, out_mask


@pytest.mark.parametrize(
    "c_in, c_out, kernel, stride, groups, bias",
    [
        (6, 5, 1, 1, 1, True),  # input projections
        (6, 5, 3, 1, 1, False),  # embedding / head trunk convs
        (6, 4, 3, 1, 1, True),  # head output convs
        (6, 6, 3, 1, 6, False),  # q/k/v depthwise, stride 1
        (6, 6, 3, 2, 6, False),  # q/k/v depthwise, stride 2
        (5, 7, 5, 1, 1, True),  # a wider kernel
        (5, 5, 5, 2, 5, True),
        (6, 4, 3, 2, 2, True),  # grouped
        (6, 4, 1, 2, 2, False),
    ],
)
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_masked_conv_equals_conv1d_reference(c_in, c_out, kernel, stride, groups, bias, layout):
    torch.manual_seed(0)
    conv = MaskedConv1d(c_in, c_out, kernel, stride=stride, groups=groups, bias=bias).double()
    _randomise(conv)
    T = 11
    x = torch.randn(3, c_in, T, dtype=torch.float64)
    x = (_channels_last(x) if layout == "channels_last" else x).requires_grad_()
    mask = _mask([11, 7, 1], T)
    out, out_mask = conv(x, mask)
    ref, ref_mask = _reference_masked_conv(conv, x, mask)
    assert torch.equal(out_mask, ref_mask)
    torch.testing.assert_close(out, ref, **TOL)
    params = [x, *conv.parameters()]
    for got, want in zip(_grads(out, params), _grads(ref, params)):
        torch.testing.assert_close(got, want, **TOL)


def test_masked_conv_keeps_a_channels_last_input_channels_last():
    for groups, stride in [(1, 1), (8, 1), (8, 2)]:
        conv = MaskedConv1d(8, 8, 3, stride=stride, groups=groups)
        out, _ = conv(_channels_last(torch.randn(2, 8, 10)), _mask([10, 6], 10))
        assert out.transpose(1, 2).is_contiguous()


def test_pointwise_conv_is_a_1x1_conv1d():
    torch.manual_seed(0)
    conv = PointwiseConv1d(5, 3).double()
    assert isinstance(conv, torch.nn.Conv1d) and conv.weight.shape == (3, 5, 1)
    x = _channels_last(torch.randn(2, 5, 9, dtype=torch.float64)).requires_grad_()
    out = conv(x)
    ref = F.conv1d(x, conv.weight, conv.bias)
    torch.testing.assert_close(out, ref, **TOL)
    assert out.transpose(1, 2).is_contiguous()
    params = [x, conv.weight, conv.bias]
    for got, want in zip(_grads(out, params), _grads(ref, params)):
        torch.testing.assert_close(got, want, **TOL)


# ----------------------------------------------------------------------------- pooling


def test_masked_max_pool_equals_max_pool1d_reference():
    x = _channels_last(torch.randn(2, 4, 9, dtype=torch.float64)).requires_grad_()
    mask = _mask([9, 4], 9)
    out, out_mask = masked_max_pool(x, mask)
    ref = F.max_pool1d(x.masked_fill(~mask, float("-inf")), 3, stride=2, padding=1)
    ref = ref.masked_fill(~out_mask, 0.0)
    torch.testing.assert_close(out, ref, **TOL)
    for got, want in zip(_grads(out, [x]), _grads(ref, [x])):
        torch.testing.assert_close(got, want, **TOL)


# ----------------------------------------------------------------------------- attention


def _reference_mhca(attn: MaskedMHCA, x: Tensor, mask: Tensor) -> Tensor:
    """MHCA as the release wrote it: conv1d everywhere, explicit scores, masked_fill + softmax."""

    def branch(conv: MaskedConv1d, norm: ChannelLayerNorm, proj: torch.nn.Conv1d) -> Tensor:
        h, _ = _reference_masked_conv(conv, x, mask)
        return F.conv1d(norm(h), proj.weight, proj.bias)

    q, k, v = (branch(attn.query_conv, attn.query_norm, attn.query), branch(attn.key_conv, attn.key_norm, attn.key),
               branch(attn.value_conv, attn.value_norm, attn.value))
    kv_mask = mask[:, :, :: attn.query_conv.stride]
    B, C, T = q.shape
    H, d = attn.n_head, attn.head_dim
    q, k, v = (t.view(B, H, d, T).transpose(2, 3) for t in (q, k, v))  # (B, H, T, d)
    score = (q / math.sqrt(d)) @ k.transpose(-2, -1)
    allowed = kv_mask[:, :, None, :]
    if attn.window > 0:
        idx = torch.arange(T)
        allowed = allowed & ((idx[:, None] - idx[None, :]).abs() <= attn.window // 2)
    score = score.masked_fill(~allowed, torch.finfo(score.dtype).min)
    out = score.softmax(-1) @ (v * kv_mask[:, :, :, None])
    out = out.transpose(2, 3).reshape(B, C, T)
    return F.conv1d(out, attn.proj.weight, attn.proj.bias) * kv_mask


@pytest.mark.parametrize("stride, window", [(1, -1), (2, -1), (1, 3), (2, 5), (1, 9), (2, 9)])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_masked_mhca_equals_explicit_softmax_reference(stride, window, layout):
    torch.manual_seed(0)
    attn = MaskedMHCA(8, 2, stride=stride, window=window).double().eval()
    _randomise(attn)
    T = 12
    x = torch.randn(3, 8, T, dtype=torch.float64)
    x = (_channels_last(x) if layout == "channels_last" else x).requires_grad_()
    mask = _mask([12, 7, 2], T)
    out, out_mask = attn(x, mask)
    ref = _reference_mhca(attn, x, mask)
    assert torch.equal(out_mask, mask[:, :, ::stride])
    torch.testing.assert_close(out, ref, **TOL)
    params = [x, *attn.parameters()]
    for got, want in zip(_grads(out, params), _grads(ref, params)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("block", [32, 8, 5])
def test_local_attention_equals_full_attention_with_a_band_mask(block):
    """The blocked fast path against the band-masked full attention (T x T), float64, with one
    block, several and a partial last one, padded keys, queries whose window holds no valid
    key, and gradients."""
    torch.manual_seed(1)
    B, H, T, d, radius = 2, 3, 20, 4, 4
    q, k, v = (torch.randn(B, H, T, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    key_mask = torch.ones(B, T, dtype=torch.bool)
    key_mask[1, 9:] = False  # query 19 of clip 1 has no valid key within 4 steps
    out = local_attention(q, k, v * key_mask[:, None, :, None], key_mask, radius, block=block)
    idx = torch.arange(T)
    allowed = key_mask[:, None, None, :] & ((idx[:, None] - idx[None, :]).abs() <= radius)
    score = (q / math.sqrt(d)) @ k.transpose(-2, -1)
    ref = score.masked_fill(~allowed, torch.finfo(score.dtype).min).softmax(-1) @ (v * key_mask[:, None, :, None])
    # queries 13-19 of clip 1 (padded, zeroed by MaskedMHCA) have no valid key in their window: the
    # full path spreads their weight over all keys, the blocked one outputs zeros
    some_key = allowed.any(dim=-1)[..., None]  # (B, 1, T, 1)
    assert int((~some_key).sum()) == 7
    torch.testing.assert_close(out * some_key, ref * some_key, **TOL)
    assert torch.equal(out[1, :, 13:], torch.zeros(H, 7, d, dtype=torch.float64))
    params = [q, k, v]
    for got, want in zip(_grads(out * some_key, params), _grads(ref * some_key, params)):
        torch.testing.assert_close(got, want, **TOL)


def test_relative_shift_gradient_matches_a_gather_reference():
    B, H, T = 2, 3, 5
    full = torch.randn(B, H, T, 2 * T - 1, dtype=torch.float64, requires_grad=True)
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    ref = full[:, :, i, T - 1 - i + j]  # (B, H, T, T): column T-1-i+j of row i
    out = relative_shift(full)
    torch.testing.assert_close(out, ref, **TOL)
    for got, want in zip(_grads(out, [full]), _grads(ref, [full])):
        torch.testing.assert_close(got, want, **TOL)


def test_rel_pos_layer_gives_the_same_result_one_head_at_a_time(monkeypatch):
    torch.manual_seed(0)
    layer = RelPosGlobalLayer(12, 3, inner=16, dropout=0.0).double()
    _randomise(layer)
    x = _channels_last(torch.randn(2, 12, 7, dtype=torch.float64)).requires_grad_()
    mask = _mask([7, 4], 7)
    params = [x, *layer.parameters()]
    whole = layer(x, mask)
    whole_grads = _grads(whole, params)
    monkeypatch.setattr(relpos, "SCORE_ELEMENTS_PER_GROUP", 1)  # one head per group
    grouped = layer(x, mask)
    torch.testing.assert_close(grouped, whole, **TOL)
    for got, want in zip(_grads(grouped, params), whole_grads):
        torch.testing.assert_close(got, want, **TOL)


# ----------------------------------------------------------------------------- heads and the whole pyramid


def _level_inputs(width: int, lengths: list[int], valid: list[list[int]]) -> tuple[list[Tensor], list[Tensor]]:
    feats = [_channels_last(torch.randn(len(valid[0]), width, t, dtype=torch.float64)).requires_grad_() for t in lengths]
    masks = [_mask(v, t) for v, t in zip(valid, lengths)]
    return feats, masks


def test_heads_on_packed_levels_equal_a_per_level_loop():
    torch.manual_seed(0)
    cls_head = ClsHead(16, 5, 3, 3, 0.01).double()
    reg_head = RegHead(16, 4, 3, 3).double()
    _randomise(cls_head)
    _randomise(reg_head)
    feats, masks = _level_inputs(16, [16, 8, 4, 2], [[16, 9], [8, 5], [4, 3], [2, 2]])

    def trunk(head, x: Tensor, m: Tensor) -> Tensor:
        for conv, norm in zip(head.trunk.convs, head.trunk.norms):
            x = torch.relu(norm(_reference_masked_conv(conv, x, m)[0]))
        return _reference_masked_conv(head.out, x, m)[0]

    ref_cls = [trunk(cls_head, x, m).transpose(1, 2) for x, m in zip(feats, masks)]
    ref_reg = [torch.relu(s(trunk(reg_head, x, m))).transpose(1, 2) for s, x, m in zip(reg_head.scales, feats, masks)]
    got_cls, got_reg = cls_head(feats, masks), reg_head(feats, masks)
    for got, want in zip(got_cls + got_reg, ref_cls + ref_reg):
        torch.testing.assert_close(got, want, **TOL)
    params = [*feats, *cls_head.parameters(), *reg_head.parameters()]
    got_grads = _grads(torch.cat([torch.cat(got_cls, 1), torch.cat(got_reg, 1)], -1), params)
    ref_grads = _grads(torch.cat([torch.cat(ref_cls, 1), torch.cat(ref_reg, 1)], -1), params)
    for got, want in zip(got_grads, ref_grads):
        torch.testing.assert_close(got, want, **TOL)


def test_pyramid_features_stay_channels_last_from_a_channels_first_input():
    """Only the input is channels-first: every level comes out as a (B, T, C)-contiguous view."""
    cfg = config_from_dict({
        "data": {"sources": [{"name": "a", "dim": 6, "proj_dim": 8}, {"name": "b", "dim": 10, "proj_dim": 8}]},
        "model": {"num_classes": 3, "width": 16, "n_head": 2, "num_levels": 4, "rel_global_inner": 32,
                  "regression_ranges": [[0, 4], [2, 8], [4, 16], [8, 10000]]},
    })
    model = MQDetector(cfg).eval()
    feats = torch.randn(2, 16, 64)  # contiguous (B, C, T), as collated
    masks = torch.arange(64)[None, :] < torch.tensor([64, 40])[:, None]
    levels, _ = model.pyramid(feats, masks)
    assert all(x.transpose(1, 2).is_contiguous() for x in levels)


def test_grad_checkpoint_gives_the_plain_loss_and_gradients_with_dropout_on():
    """Checkpointed blocks recompute in backward with the same dropout / drop-path draws."""
    tree = {
        "data": {"sources": [{"name": "a", "dim": 6, "proj_dim": 8}, {"name": "b", "dim": 10, "proj_dim": 8}]},
        "model": {"num_classes": 3, "width": 16, "n_head": 2, "num_levels": 3, "rel_global_inner": 32,
                  "dropout": 0.1, "droppath": 0.1, "rel_dropout": 0.1,
                  "regression_ranges": [[0, 4], [2, 8], [4, 10000]]},
    }
    plain = MQDetector(config_from_dict(tree)).double().train()
    tree["model"]["grad_checkpoint"] = True
    checkpointed = MQDetector(config_from_dict(tree)).double().train()
    checkpointed.load_state_dict(plain.state_dict())
    feats = torch.randn(2, 16, 32, dtype=torch.float64)
    masks = torch.arange(32)[None, :] < torch.tensor([32, 20])[:, None]
    segments, labels = [torch.tensor([[2.0, 9.0]]), torch.tensor([[1.0, 6.0]])], [torch.tensor([1]), torch.tensor([2])]
    results = []
    for model in (plain, checkpointed):
        torch.manual_seed(3)
        loss = model.losses(model(feats, masks), segments, labels)["loss"]
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0], **TOL)
    for got, want in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(got, want, **TOL)
