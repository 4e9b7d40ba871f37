"""The release-behaviour switches pinned on padded inputs, from the release's semantics.

Each switch's default is egoasl's padding-blind fix; ``configs/mq/release.yaml`` sets the
value that reproduces the authors' code. Expectations are worked by hand (small integer
examples) or computed by a slow, explicit reference of what the release does, in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from egoasl.config import Config, config_from_dict, load_config
from egoasl.config_loader import deep_merge
from egoasl.model.blocks import ChannelBlock, ChannelLayerNorm, MaskedConv1d, masked_max_pool
from egoasl.model.detector import MQDetector
from egoasl.model.heads import ClsHead
from egoasl.model.losses import al_loss
from egoasl.model.param_groups import param_groups
from egoasl.model.relpos import RelPosGlobalLayer

RELEASE = {
    "model": {"mask_conv_inputs": False, "masked_skip_pool": False, "zero_padded_relpos": False},
    "asl": {"al_valid_only": False},
    "loss": {"norm_update_in_eval": True},
    "train": {"decay_channel_ln": True},
}
K, C_IN = 4, 6


def tiny_cfg(*trees: dict) -> Config:
    """Width 16, 2 heads, 4 levels, 4 classes, two sources, no dropout; ``trees`` deep-merged over it."""
    tree = {
        "data": {"sources": [{"name": "a", "dim": 4, "proj_dim": 8}, {"name": "b", "dim": 2, "proj_dim": 8}]},
        "model": {
            "num_classes": K, "width": 16, "n_head": 2, "embd_layers": 2, "stem_layers": 1, "num_levels": 4,
            "rel_global_inner": 32, "dropout": 0.0, "droppath": 0.0, "rel_dropout": 0.0,
            "regression_ranges": [[0, 4], [2, 8], [4, 16], [8, 10000]],
        },
    }
    for extra in trees:
        tree = deep_merge(tree, extra)
    return config_from_dict(tree)


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Float64, eval mode, random norm biases: at init they are zero, so padded steps hold ReLU(0) = 0
    and nothing could leak from them; a trained model's padded steps hold ReLU(LN bias) != 0."""
    gen = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (ChannelLayerNorm, nn.LayerNorm)):
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen, dtype=torch.float64))
    return model


def padded_batch(T: int = 32, valid: int = 21, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip with ``valid`` of ``T`` steps (padded features are zeros, as the collate writes them)."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, C_IN, T, generator=gen, dtype=torch.float64)
    masks = torch.arange(T)[None] < valid
    return feats * masks[:, None], masks


# ----------------------------------------------------------------------------- (a) conv inputs


def test_release_conv_reads_the_padded_tail_at_the_last_valid_step():
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]], dtype=torch.float64)
    mask = torch.tensor([[[True, True, True, False, False]]])
    for mask_input, expected in ((True, [3.0, 6.0, 5.0, 0.0, 0.0]), (False, [3.0, 6.0, 9.0, 0.0, 0.0])):
        conv = MaskedConv1d(1, 1, 3, bias=False, mask_input=mask_input).double()
        nn.init.ones_(conv.conv.weight)
        out, out_mask = conv(x, mask)
        assert out[0, 0].tolist() == expected  # 2 + 3 + (the padded 4 in the release)
        assert torch.equal(out_mask, mask)


def test_release_heads_equal_a_per_level_loop_that_reads_padded_steps():
    """Packed levels (egoasl) with unmasked inputs = the release's per-level MaskedConv1D head."""
    torch.manual_seed(0)
    head = ClsHead(8, K, 3, 3, 0.01, mask_input=False).double()
    for norm in head.trunk.norms:
        nn.init.normal_(norm.bias)
    lengths, valid = [16, 8, 4], [11, 6, 3]
    feats = [torch.randn(1, 8, n, dtype=torch.float64) for n in lengths]
    masks = [(torch.arange(n) < v)[None, None] for n, v in zip(lengths, valid)]
    packed = head(feats, masks)
    for f, m, out in zip(feats, masks, packed):
        x = f
        for conv, norm in zip(head.trunk.convs, head.trunk.norms):
            x = torch.relu(norm(F.conv1d(x, conv.conv.weight, padding=1) * m))  # output masked, input not
        ref = ((F.conv1d(x, head.out.conv.weight, head.out.conv.bias, padding=1)) * m).transpose(1, 2)
        torch.testing.assert_close(out, ref)
    # with masked inputs the padded steps are never read, so the last valid step differs
    masked = ClsHead(8, K, 3, 3, 0.01).double()
    masked.load_state_dict(head.state_dict())
    assert not torch.allclose(masked(feats, masks)[0][0, 10], packed[0][0, 10])


# ----------------------------------------------------------------------------- (b) skip pool


def test_release_skip_pool_takes_the_max_over_padded_steps():
    x = torch.tensor([[[-4.0, -7.0, 2.0, 9.0, 3.0, 0.0]]], dtype=torch.float64)
    mask = torch.tensor([[[True, True, True, False, False, False]]])
    out, out_mask = masked_max_pool(x, mask)
    assert out[0, 0].tolist() == [-4.0, 2.0, 0.0]  # windows [pad, -4, -7], [-7, 2, (9)], padded output
    out, out_mask = masked_max_pool(x, mask, valid_only=False)
    assert out[0, 0].tolist() == [-4.0, 9.0, 0.0]  # the padded 9 wins the middle window
    assert out_mask[0, 0].tolist() == [True, True, False]
    # = the release's nn.MaxPool1d(3, 2, 1) skip, multiplied by the downsampled mask
    y = torch.randn(2, 5, 16, dtype=torch.float64)
    m = (torch.arange(16) < torch.tensor([[11], [16]]))[:, None]
    ref = F.max_pool1d(y, 3, 2, 1) * m[:, :, ::2]
    torch.testing.assert_close(masked_max_pool(y, m, valid_only=False)[0], ref)


# ----------------------------------------------------------------------------- (c) rel-pos layer


def xlnet_reference(layer: RelPosGlobalLayer, x: torch.Tensor, valid: int) -> torch.Tensor:
    """Slow Transformer-XL layer with XLNet's content mask: query i sees the valid keys and itself;
    nothing is zeroed afterwards. ``x (1, C, T)`` -> ``(1, C, T)``."""
    _, C, T = x.shape
    H, D = layer.n_head, layer.head_dim
    h = x[0].T  # (T, C)
    q = (h @ layer.q.weight.T).view(T, H, D)
    k = (h @ layer.k.weight.T).view(T, H, D)
    v = (h @ layer.v.weight.T).view(T, H, D)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, C, 2.0, dtype=torch.float64) / C)
    score = torch.full((H, T, T), -math.inf, dtype=torch.float64)
    for i in range(T):
        for j in sorted(set(range(valid)) | {i}):
            d = torch.tensor(float(i - j), dtype=torch.float64)
            r = (torch.cat([torch.sin(d * inv_freq), torch.cos(d * inv_freq)]) @ layer.r.weight.T).view(H, D)
            score[:, i, j] = ((q[i] + layer.r_w_bias) * k[j]).sum(-1) + ((q[i] + layer.r_r_bias) * r).sum(-1)
    prob = (score / math.sqrt(D)).softmax(-1)
    attn = torch.einsum("hij,jhd->ihd", prob, v).reshape(T, C) @ layer.o.weight.T
    a = layer.norm_attn(attn + h)
    return layer.norm_ff(a + layer.ff2(F.gelu(layer.ff1(a)))).T[None]


def test_release_rel_pos_layer_keeps_xlnet_padded_outputs():
    torch.manual_seed(3)
    T, valid = 7, 4
    release = RelPosGlobalLayer(8, 2, inner=16, dropout=0.0, zero_padded=False).double().eval()
    default = RelPosGlobalLayer(8, 2, inner=16, dropout=0.0).double().eval()
    default.load_state_dict(release.state_dict())
    x = torch.randn(1, 8, T, dtype=torch.float64)
    mask = (torch.arange(T) < valid)[None, None]
    out = release(x, mask)
    torch.testing.assert_close(out, xlnet_reference(release, x, valid))
    assert (out[..., valid:].abs().sum(dim=1) > 0).all()  # padded outputs kept (and read by the branch)
    fixed = default(x, mask)
    torch.testing.assert_close(fixed[..., :valid], out[..., :valid])  # valid outputs do not change
    assert torch.all(fixed[..., valid:] == 0)


# ----------------------------------------------------------------------------- (d) al_loss


def test_release_al_loss_lets_uniform_padded_softmax_into_the_max():
    log7 = math.log(7.0)
    logits = torch.tensor([[[log7, 0.0, 0.0, 0.0],  # softmax 0.7, 0.1, 0.1, 0.1
                            [0.0, log7, 0.0, 0.0],  # softmax 0.1, 0.7, 0.1, 0.1
                            [5.0, -3.0, 2.0, 8.0]]], dtype=torch.float64, requires_grad=True)  # padded
    valid = torch.tensor([[True, True, False]])
    video = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # valid points only: P = (0.7, 0.7, 0.1, 0.1); the release: the padded point's 1/4 raises the last two
    expected_default = -(math.log(0.7) + math.log(0.3) + 2 * math.log(0.9))
    expected_release = -(math.log(0.7) + math.log(0.3) + 2 * math.log(0.75))
    assert al_loss(logits, valid, video).item() == pytest.approx(expected_default, rel=1e-6)
    loss = al_loss(logits, valid, video, valid_only=False)
    assert loss.item() == pytest.approx(expected_release, rel=1e-6)
    loss.backward()
    # the -1e7 overwrite cuts the padded logits out of the graph; the valid ones get the gradient
    assert torch.all(logits.grad[0, 2] == 0) and logits.grad[0, :2].abs().sum() > 0


# ----------------------------------------------------------------------------- whole model


def test_switches_change_nothing_on_an_unpadded_clip():
    feats, _ = padded_batch(T=32, valid=32)
    masks = torch.ones(1, 32, dtype=torch.bool)
    default = trained_looking(MQDetector(tiny_cfg()))
    release = trained_looking(MQDetector(tiny_cfg(RELEASE)))
    release.load_state_dict(default.state_dict())
    a, b = default(feats, masks), release(feats, masks)
    for x, y in zip(a.cls_logits + a.offsets, b.cls_logits + b.offsets):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    segments, labels = [torch.tensor([[4.0, 12.0]])], [torch.tensor([2])]
    la, lb = default.losses(a, segments, labels), release.losses(b, segments, labels)
    # al before the normaliser (which the release also moves in eval mode)
    assert (la["al"] * la["loss_norm"]).item() == pytest.approx((lb["al"] * lb["loss_norm"]).item(), rel=1e-6)


def _padded_step_gradient(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the training loss at the padded steps of the first embedding layer's output,
    and the level-0 logits at the valid steps."""
    model = trained_looking(MQDetector(cfg))
    feats, masks = padded_batch()
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["x"] = output

    model.backbone.embd_norm[0].register_forward_hook(keep)
    out = model(feats, masks)
    model.losses(out, [torch.tensor([[3.0, 9.0], [12.0, 20.0]])], [torch.tensor([0, 3])])["loss"].backward()
    return kept["x"].grad[0, :, ~masks[0]], out.cls_logits[0][0, masks[0]].detach()


def test_padded_steps_leak_gradient_with_the_release_values_only():
    """Defaults (+ the masked channel attention) make the network padding-blind: no gradient reaches a
    padded step. The release values let the padded ReLU(LN bias) values into the valid outputs."""
    blind = {"model": {"masked_channel_attention": True}}
    grad_default, logits_default = _padded_step_gradient(tiny_cfg(blind))
    grad_release, logits_release = _padded_step_gradient(tiny_cfg(blind, RELEASE))
    assert torch.all(grad_default == 0)
    assert grad_release.abs().sum() > 0
    assert not torch.allclose(logits_default, logits_release)


def test_default_model_is_padding_invariant_and_the_release_model_is_not():
    feats, _ = padded_batch(T=32, valid=24)
    short, long_masks = feats[..., :24], torch.arange(32)[None] < 24
    noise = torch.randn(1, C_IN, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    padded = torch.cat([short, 50 * noise], dim=-1)  # whatever the padded input holds
    blind = {"model": {"masked_channel_attention": True}}
    for trees, invariant in (((blind,), True), ((blind, RELEASE), False)):
        model = trained_looking(MQDetector(tiny_cfg(*trees)))
        a = model(short, torch.ones(1, 24, dtype=torch.bool)).cls_logits
        b = model(padded, long_masks).cls_logits
        same = all(torch.allclose(x[0], y[0, : x.shape[1]], rtol=1e-10, atol=1e-10) for x, y in zip(a, b))
        assert same == invariant


# ----------------------------------------------------------------------------- (e) loss normaliser


@pytest.mark.parametrize("update_in_eval", [False, True])
def test_loss_normaliser_in_eval_mode(update_in_eval):
    model = MQDetector(tiny_cfg({"loss": {"norm_update_in_eval": update_in_eval}})).eval()
    feats, masks = padded_batch()
    out = model(feats.float(), masks)
    _, pos, norm = model.loss_terms(out, [torch.tensor([[3.0, 9.0], [12.0, 20.0]])], [torch.tensor([0, 3])])
    num_pos = int(pos.sum())
    assert num_pos > 0
    expected = 0.9 * 100.0 + 0.1 * num_pos if update_in_eval else 100.0
    assert norm.item() == pytest.approx(expected) and model.loss_norm.value.item() == pytest.approx(expected)


# ----------------------------------------------------------------------------- (f) channel LN decay


@pytest.mark.parametrize("decay_channel_ln", [False, True])
def test_channel_block_layer_norm_weight_decay(decay_channel_ln):
    model = MQDetector(tiny_cfg())
    decay, no_decay = param_groups(model, 0.05, True, decay_channel_ln=decay_channel_ln)
    in_decay = {id(p) for p in decay["params"]}
    blocks = [m for m in model.modules() if isinstance(m, ChannelBlock)]
    assert blocks
    for block in blocks:
        assert (id(block.norm.weight) in in_decay) == decay_channel_ln
        assert id(block.norm.bias) not in in_decay
    # the other LayerNorms (the rel-pos layer's) are never decayed, as in the release
    rel = model.backbone.rel_layer
    assert id(rel.norm_attn.weight) not in in_decay and id(rel.norm_ff.weight) not in in_decay
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# ----------------------------------------------------------------------------- presets


def test_release_presets_carry_the_release_values_and_the_defaults_the_fixes():
    default = Config()
    switches = [(s, k) for s, keys in RELEASE.items() for k in keys]
    for name in ("release", "baseline_1", "baseline_5", "report", "egovlp"):
        cfg = load_config(f"mq/{name}")
        for section, key in switches:
            assert getattr(getattr(cfg, section), key) == RELEASE[section][key], (name, key)
            assert getattr(getattr(default, section), key) != RELEASE[section][key], key
    demo = load_config("demo/mq")
    assert all(getattr(getattr(demo, s), k) == getattr(getattr(default, s), k) for s, k in switches)
