"""The NLQ grounder end to end on a tiny config: shapes, losses, gradients, bf16, padding."""

from __future__ import annotations

import pytest
import torch

from egoasl.config import Config, config_from_dict, load_config
from egoasl.config_loader import deep_merge
from egoasl.errors import EgoaslError
from egoasl.model.detector import DetectorOutput
from egoasl.model.fusion import CrossModalLayer
from egoasl.model.grounder import GrounderOutput, NLQGrounder
from egoasl.model.param_groups import param_groups

B, T, C_IN, D_TEXT, L, W = 4, 64, 6 + 10, 12, 6, 32
LEVEL_LENGTHS = [64, 32, 16, 8]


def tiny_cfg(**sections) -> Config:
    """Width 32, 4 heads, 4 levels, one class, two sources, 12-d text; ``sections`` deep-merged over it."""
    tree = {
        "data": {"task": "nlq", "text_dim": D_TEXT, "resize": False, "sources": [
            {"name": "a", "dim": 6, "proj_dim": 8},
            {"name": "b", "dim": 10, "proj_dim": 16},
        ]},
        "model": {
            "num_classes": 1, "width": W, "n_head": 4, "embd_layers": 2, "stem_layers": 1, "num_levels": 4,
            "rel_global_layer": False, "masked_channel_attention": True, "text_layers": 2, "fusion_layers": 2,
            "dropout": 0.0, "droppath": 0.1, "center_sample_radius": 3.0,
            "regression_ranges": [[0, 4], [4, 8], [8, 16], [16, 10000]],
        },
        "asl": {"arg_norm": "len", "al_weight": 0.0},
        "loss": {"focal_alpha": 0.5, "label_smoothing": 0.2, "nce_weight": 5.0, "init_loss_norm": 10.0},
    }
    return config_from_dict(deep_merge(tree, sections))


def batch(seed: int = 0) -> dict:
    """Four queries, one window each, whose lengths fall into levels 0, 1, 2 and 3; clip 1 is
    valid on 50 steps and query 2 has 4 of its 6 tokens."""
    gen = torch.Generator().manual_seed(seed)
    masks = torch.ones(B, T, dtype=torch.bool)
    masks[1, 50:] = False
    text_masks = torch.ones(B, L, dtype=torch.bool)
    text_masks[2, 4:] = False
    return {
        "feats": torch.randn(B, C_IN, T, generator=gen) * masks[:, None],
        "masks": masks,
        "text": torch.randn(B, L, D_TEXT, generator=gen) * text_masks[..., None],
        "text_masks": text_masks,
        "segments": [torch.tensor([[10.0, 13.0]]), torch.tensor([[20.0, 30.0]]),
                     torch.tensor([[5.0, 30.0]]), torch.tensor([[4.0, 60.0]])],
        "labels": [torch.zeros(1, dtype=torch.long) for _ in range(B)],
    }


def forward(model: NLQGrounder, b: dict) -> GrounderOutput:
    return model(b["feats"], b["masks"], b["text"], b["text_masks"])


def test_forward_shapes():
    torch.manual_seed(0)
    model = NLQGrounder(tiny_cfg()).eval()
    out = forward(model, batch())
    assert isinstance(out, GrounderOutput) and isinstance(out, DetectorOutput)
    assert [x.shape for x in out.cls_logits] == [(B, n, 1) for n in LEVEL_LENGTHS]
    assert [x.shape for x in out.offsets] == [(B, n, 2) for n in LEVEL_LENGTHS]
    assert [x.shape for x in out.masks] == [(B, n) for n in LEVEL_LENGTHS]
    assert [x.shape for x in out.feats] == [(B, W, n) for n in LEVEL_LENGTHS]
    assert out.points.shape == (sum(LEVEL_LENGTHS), 4)
    assert out.text_feats.shape == (B, W, L) and torch.equal(out.text_masks, batch()["text_masks"])
    assert [int(m[1].sum()) for m in out.masks] == [50, 25, 13, 7]
    assert all((x >= 0).all() for x in out.offsets)
    # the cls prior: every logit starts near -log(99)
    assert abs(torch.sigmoid(torch.cat([x[0] for x in out.cls_logits])).mean().item() - 0.01) < 0.01


def test_text_conditions_the_scores_and_fusion_weights_are_shared():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = NLQGrounder(cfg).eval()
    b = batch()
    with torch.no_grad():
        ref = forward(model, b)
        b2 = dict(b, text=b["text"].clone())
        b2["text"][0] = torch.randn(L, D_TEXT)
        other = forward(model, b2)
    for level in range(len(LEVEL_LENGTHS)):
        assert not torch.allclose(other.cls_logits[level][0], ref.cls_logits[level][0])
        assert torch.equal(other.cls_logits[level][1:], ref.cls_logits[level][1:])
    assert sum(isinstance(m, CrossModalLayer) for m in model.modules()) == cfg.model.fusion_layers


def test_padding_of_video_and_text_does_not_change_valid_outputs():
    torch.manual_seed(0)
    model = NLQGrounder(tiny_cfg()).eval()
    b = batch()
    noisy = dict(b, feats=b["feats"].clone(), text=b["text"].clone())
    noisy["feats"][1, :, 50:] = 100.0 * torch.randn(C_IN, T - 50)
    noisy["text"][2, 4:] = 100.0 * torch.randn(L - 4, D_TEXT)
    with torch.no_grad():
        ref, out = forward(model, b), forward(model, noisy)
    for x, y, m in zip(ref.cls_logits, out.cls_logits, ref.masks):
        torch.testing.assert_close(x[m], y[m], rtol=1e-5, atol=1e-5)
    for x, y, m in zip(ref.offsets, out.offsets, ref.masks):
        torch.testing.assert_close(x[m], y[m], rtol=1e-5, atol=1e-5)
    # padding every clip to twice the length (as a longer max_seq_len would) changes nothing valid
    longer = dict(b, feats=torch.nn.functional.pad(b["feats"], (0, T)), masks=torch.nn.functional.pad(b["masks"], (0, T)))
    with torch.no_grad():
        out = forward(model, longer)
    for x, y, m in zip(ref.cls_logits, out.cls_logits, ref.masks):
        torch.testing.assert_close(x[m], y[:, : x.shape[1]][m], rtol=1e-5, atol=1e-5)


def test_losses_finite_weighted_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = NLQGrounder(cfg).train()
    b = batch()
    losses = model.losses(forward(model, b), b["segments"], b["labels"])
    assert set(losses) == {"loss", "cls", "reg", "nce", "loss_norm"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["nce"] > 0 and losses["reg"] > 0 and losses["cls"] > 0
    expected = losses["cls"] + losses["reg"] + 5.0 * losses["nce"]
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero
    groups = param_groups(model, 0.05, cfg.asl.wd_on_gauss)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {k: v.shape for k, v in model.sensitivity_parameters().items()} == {
        k: (1,) for k in ("mu_cls", "sigma_cls", "mu_loc_start", "sigma_loc_start", "mu_loc_end", "sigma_loc_end")
    }


def test_nce_weight_zero_drops_the_term():
    torch.manual_seed(0)
    model = NLQGrounder(tiny_cfg(loss={"nce_weight": 0.0})).train()
    b = batch()
    losses = model.losses(forward(model, b), b["segments"], b["labels"])
    assert "nce" not in losses
    assert losses["loss"].item() == pytest.approx((losses["cls"] + losses["reg"]).item(), rel=1e-6)


def test_query_without_window_in_the_crop():
    torch.manual_seed(0)
    model = NLQGrounder(tiny_cfg()).train()
    b = batch()
    b["segments"][3] = torch.zeros(0, 2)
    b["labels"][3] = torch.zeros(0, dtype=torch.long)
    losses = model.losses(forward(model, b), b["segments"], b["labels"])
    assert torch.isfinite(losses["loss"])


def test_bf16_autocast_is_finite():
    torch.manual_seed(0)
    model = NLQGrounder(tiny_cfg()).train()
    b = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = forward(model, b)
    losses = model.losses(out, b["segments"], b["labels"])
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_config_errors():
    with pytest.raises(EgoaslError, match="model.num_classes"):
        NLQGrounder(tiny_cfg(model={"num_classes": 3}))
    with pytest.raises(EgoaslError, match="asl.ascl_weight"):
        NLQGrounder(tiny_cfg(asl={"ascl_weight": 0.1}))
    model = NLQGrounder(tiny_cfg())
    b = batch()
    with pytest.raises(EgoaslError, match="4 clips but 3 queries"):
        model(b["feats"], b["masks"], b["text"][:3], b["text_masks"][:3])
    with pytest.raises(EgoaslError, match=r"\(B, L, 12\)"):
        model(b["feats"], b["masks"], b["text"][..., :5], b["text_masks"])


def test_presets_build_with_the_documented_sizes():
    full = load_config("nlq/asl")
    assert [(s.name, s.dim, s.proj_dim, s.layout) for s in full.data.sources] == [
        ("egovlp", 256, 256, "clip"), ("internvideo", 1024, 512, "clip"), ("clip_vit_b16", 512, 256, "clip")]
    assert (full.model.width, full.model.n_head, full.model.num_levels, full.model.attn_window) == (512, 16, 6, 9)
    assert (full.train.batch_size, full.train.lr, full.test.top_k, full.test.voting_thresh) == (16, 1e-3, 5, 0.95)
    demo = load_config("demo/nlq")
    assert [(s.name, s.dim, s.layout) for s in demo.data.sources] == [
        ("egovlp", 24, "clip"), ("slowfast", 48, "video"), ("omnivore", 32, "video")]
    assert demo.data.text_dim == 32 and demo.data.max_seq_len >= 200 * 1.875  # the longest demo clip
    for cfg in (full, demo):
        model = NLQGrounder(cfg)
        assert cfg.data.max_seq_len % model.length_multiple == 0 and not cfg.data.resize
    torch.manual_seed(0)
    model = NLQGrounder(demo).eval()
    T = demo.data.max_seq_len
    with torch.no_grad():
        out = model(torch.randn(1, 104, T), torch.ones(1, T, dtype=torch.bool), torch.randn(1, 9, 32),
                    torch.ones(1, 9, dtype=torch.bool))
    assert [x.shape[1] for x in out.cls_logits] == [T // 2**level for level in range(demo.model.num_levels)]
