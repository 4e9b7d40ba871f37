"""The NLQ text encoder and the video-text fusion: shapes and what padding may (not) change."""

from __future__ import annotations

import pytest
import torch

from egoasl.errors import EgoaslError
from egoasl.model.fusion import TextFusion
from egoasl.model.text import TextEncoder

B, L, D, W, T = 2, 7, 12, 32, 16


def encoder(layers: int = 2) -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(D, W, n_head=4, num_layers=layers, dropout=0.0, droppath=0.0).eval()


def fusion(layers: int = 2) -> TextFusion:
    torch.manual_seed(1)
    return TextFusion(W, n_head=4, num_layers=layers, dropout=0.0, droppath=0.0).eval()


def text_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Query 0 has 7 tokens, query 1 has 4 (3 padded)."""
    gen = torch.Generator().manual_seed(2)
    text = torch.randn(B, L, D, generator=gen)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 4:] = False
    return text, mask


def video_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Clip 0 is valid everywhere, clip 1 on its first 10 steps."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, W, T, generator=gen)
    mask = torch.ones(B, 1, T, dtype=torch.bool)
    mask[1, :, 10:] = False
    return x * mask, mask


def test_encoder_shapes_and_zero_padding():
    text, mask = text_batch()
    out, out_mask = encoder()(text, mask)
    assert out.shape == (B, W, L) and out.dtype == torch.float32
    assert torch.equal(out_mask, mask)
    assert (out[1, :, 4:] == 0).all() and (out[1, :, :4] != 0).any()
    assert torch.isfinite(out).all()
    # without layers: projection + position table only
    out0, _ = encoder(layers=0)(text, mask)
    assert out0.shape == (B, W, L) and (out0[1, :, 4:] == 0).all()


def test_encoder_rejects_wrong_inputs():
    text, mask = text_batch()
    with pytest.raises(EgoaslError, match=r"\(B, L, 12\)"):
        encoder()(text[..., :5], mask)
    with pytest.raises(EgoaslError, match="bool text mask"):
        encoder()(text, mask.float())


def test_padded_tokens_never_reach_the_fused_output():
    enc, fuse = encoder(), fusion()
    text, mask = text_batch()
    x, vmask = video_batch()
    with torch.no_grad():
        w, wm = enc(text, mask)
        ref = fuse(x, vmask, w, wm)
        # garbage (even NaN and inf) in the raw padded tokens
        garbage = text.clone()
        garbage[1, 4:] = torch.tensor([float("nan"), float("inf"), -1e30]).repeat(D)[: 3 * D].view(3, D)
        w2, _ = enc(garbage, mask)
        assert torch.equal(w2, w)
        assert torch.equal(fuse(x, vmask, w2, wm), ref)
        # the fusion's own key mask: huge values in the padded columns of the token matrix
        w3 = w.clone()
        w3[1, :, 4:] = 1e4 * torch.randn(W, 3)
        assert torch.equal(fuse(x, vmask, w3, wm), ref)
        # the valid tokens do condition the output (so the checks above can fail)
        w4 = w.clone()
        w4[1, :, 0] += 1.0
        changed = fuse(x, vmask, w4, wm)
    assert not torch.equal(changed[1], ref[1]) and torch.equal(changed[0], ref[0])


def test_padded_video_steps_do_not_change_valid_outputs():
    enc, fuse = encoder(), fusion()
    text, mask = text_batch()
    x, vmask = video_batch()
    with torch.no_grad():
        w, wm = enc(text, mask)
        ref = fuse(x, vmask, w, wm)
        noisy = x.clone()
        noisy[1, :, 10:] = 1e3 * torch.randn(W, T - 10)
        out = fuse(noisy, vmask, w, wm)
    assert torch.equal(out[:, :, :10], ref[:, :, :10]) and torch.equal(out[0], ref[0])
    assert (out[1, :, 10:] == 0).all() and (ref[1, :, 10:] == 0).all()


def test_query_without_valid_tokens_gives_finite_output():
    fuse = fusion()
    x, vmask = video_batch()
    w = torch.randn(B, W, L)
    empty = torch.zeros(B, L, dtype=torch.bool)
    with torch.no_grad():
        out = fuse(x, vmask, w, empty)
        # with no token to attend to, a layer is "x + FFN(x)": the text has no say at all
        other = fuse(x, vmask, torch.randn(B, W, L), empty)
    assert torch.isfinite(out).all() and torch.equal(out, other)


def test_fusion_is_differentiable_in_video_and_text():
    enc, fuse = encoder().train(), fusion().train()
    text, mask = text_batch()
    x, vmask = video_batch()
    x.requires_grad_(True)
    w, wm = enc(text, mask)
    fuse(x, vmask, w, wm).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[1, :, :10].abs().sum() > 0
    assert (x.grad[1, :, 10:] == 0).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
    assert all(p.grad is not None for p in fuse.parameters())
