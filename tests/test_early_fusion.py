"""``model.fusion``: early fusion (text in every stem block) next to the default late fusion."""

from __future__ import annotations

import pytest
import torch
from test_grounder import C_IN, D_TEXT, LEVEL_LENGTHS, L, T, batch, forward, tiny_cfg

from egoasl.model.fusion import CrossModalLayer, StemTextFusion, TextFusion
from egoasl.model.grounder import NLQGrounder


def early_cfg(**model):
    return tiny_cfg(model={"fusion": "early", "stem_layers": 2, **model})


def test_early_fusion_replaces_the_level_fusion_by_one_layer_per_stem_block():
    late = NLQGrounder(tiny_cfg())
    early = NLQGrounder(early_cfg())
    assert isinstance(late.fusion, TextFusion) and not hasattr(late, "stem_fusion")
    assert isinstance(early.stem_fusion, StemTextFusion) and not hasattr(early, "fusion")
    assert sum(isinstance(m, CrossModalLayer) for m in early.modules()) == 2  # stem_layers


@pytest.mark.parametrize("fusion", ["late", "early"])
def test_padded_text_tokens_never_change_the_output(fusion):
    torch.manual_seed(0)
    model = NLQGrounder(tiny_cfg(model={"fusion": fusion})).eval()
    b = batch()
    noisy = dict(b, text=b["text"].clone())
    noisy["text"][2, 4:] = 100.0 * torch.randn(L - 4, D_TEXT)
    # the same queries with three more padded tokens each, holding garbage
    wider = dict(b, text=torch.cat([b["text"], 50.0 * torch.randn(len(b["masks"]), 3, D_TEXT)], dim=1),
                 text_masks=torch.nn.functional.pad(b["text_masks"], (0, 3)))
    with torch.no_grad():
        ref = forward(model, b)
        outs = [forward(model, noisy), forward(model, wider)]
    for out in outs:
        for x, y, m in zip(ref.cls_logits, out.cls_logits, ref.masks):
            torch.testing.assert_close(x[m], y[m], rtol=1e-5, atol=1e-5)
        for x, y, m in zip(ref.offsets, out.offsets, ref.masks):
            torch.testing.assert_close(x[m], y[m], rtol=1e-5, atol=1e-5)


def test_early_fusion_makes_every_level_query_aware_and_keeps_queries_apart():
    torch.manual_seed(0)
    model = NLQGrounder(early_cfg()).eval()
    b = batch()
    other = dict(b, text=b["text"].clone())
    other["text"][0] = torch.randn(L, D_TEXT)
    with torch.no_grad():
        ref, out = forward(model, b), forward(model, other)
    for level in range(len(LEVEL_LENGTHS)):
        assert not torch.allclose(out.feats[level][0], ref.feats[level][0])
        assert torch.equal(out.cls_logits[level][1:], ref.cls_logits[level][1:])


def test_early_fusion_padded_video_steps_do_not_change_valid_outputs():
    torch.manual_seed(0)
    model = NLQGrounder(early_cfg()).eval()
    b = batch()
    noisy = dict(b, feats=b["feats"].clone())
    noisy["feats"][1, :, 50:] = 100.0 * torch.randn(C_IN, T - 50)
    with torch.no_grad():
        ref, out = forward(model, b), forward(model, noisy)
    for x, y, m in zip(ref.cls_logits, out.cls_logits, ref.masks):
        torch.testing.assert_close(x[m], y[m], rtol=1e-5, atol=1e-5)


def test_early_fusion_trains_every_parameter():
    torch.manual_seed(0)
    model = NLQGrounder(early_cfg()).train()
    b = batch()
    losses = model.losses(forward(model, b), b["segments"], b["labels"])
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]


def test_early_fusion_trains_and_predicts_through_the_trainer(tiny_data, tmp_path):
    from test_nlq_task import tiny_cfg as task_cfg

    from egoasl.engine.nlq_task import NLQTask
    from egoasl.engine.train import train

    cfg = task_cfg(tiny_data, model={"fusion": "early"}, train={"epochs": 1, "warmup_epochs": 0, "eval_start_epoch": 1})
    summary = train(cfg, NLQTask(cfg), tmp_path / "run", progress=False)
    assert 0.0 <= summary.last_metrics["R1@0.3"] <= 100.0
    assert (tmp_path / "run" / "predictions" / "val_submission.json").is_file()
