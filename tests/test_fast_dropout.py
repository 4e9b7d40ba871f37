"""``model.dropout_sampler: fast``: the same function as ``nn.Dropout``, with a cheaper mask.

The reference is dropout's definition in float64: every element is either 0 or ``x / (1 - p)``,
the gradient is the upstream gradient times the same ``keep / (1 - p)``, and an element is
dropped with probability p, independently of its position.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from egoasl.config import config_from_dict
from egoasl.model.detector import MQDetector
from egoasl.model.dropout import FastDropout, drop_threshold, fast_dropout, keep_scale, use_fast_dropout
from egoasl.model.grounder import NLQGrounder


def test_threshold_gives_p_to_a_sixteenth_of_a_lane():
    for p in (0.1, 0.25, 0.5, 0.9, 1e-4):
        assert abs((drop_threshold(p) + 32768) / 65536 - p) <= 0.5 / 65536
    assert drop_threshold(0.5) == 0
    assert drop_threshold(0.1) == 6554 - 32768


def test_output_and_gradient_are_dropout_in_float64():
    torch.manual_seed(0)
    p = 0.1
    x = (torch.rand(4, 64, 300, dtype=torch.float64) + 0.5).requires_grad_()  # no zeros: kept <=> output != 0
    out = fast_dropout(x, p)
    keep = out != 0
    torch.testing.assert_close(out, torch.where(keep, x / (1 - p), 0.0), rtol=0, atol=1e-15)
    grad = torch.randn_like(x)
    out.backward(grad)
    torch.testing.assert_close(x.grad, torch.where(keep, grad / (1 - p), 0.0), rtol=0, atol=1e-15)


@pytest.mark.parametrize("p, dtype", [(0.1, torch.float32), (0.5, torch.float32), (0.1, torch.bfloat16)])
def test_drop_rate_is_p_in_every_lane_and_position(p, dtype):
    torch.manual_seed(1)
    n = 1 << 22
    dropped = keep_scale(torch.empty(n, dtype=dtype), p) == 0
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(dropped.double().mean().item() - p) < 5 * sigma
    # each of the four 16-bit lanes of a 64-bit draw (plain random_() would never set the top lane's sign bit)
    lane_sigma = (p * (1 - p) / (n // 4)) ** 0.5
    for rate in dropped.view(-1, 4).double().mean(0).tolist():
        assert abs(rate - p) < 5 * lane_sigma
    # neighbours are independent: P(both dropped) = p^2
    both = (dropped[:-1] & dropped[1:]).double().mean().item()
    assert abs(both - p * p) < 5 * (p * p * (1 - p * p) / n) ** 0.5


def test_mask_follows_the_input_memory_order():
    torch.manual_seed(2)
    x = torch.randn(2, 500, 96).transpose(1, 2)  # (B, C, T) stored channels-last
    keep = keep_scale(x, 0.1)
    assert keep.shape == x.shape and keep.stride() == x.stride()
    assert keep.unique().tolist() == pytest.approx([0.0, 1 / 0.9])
    out = fast_dropout(x.requires_grad_(), 0.1)
    assert out.stride() == x.stride()
    out.sum().backward()
    assert x.grad.stride() == x.stride()
    # a non-dense view (every other step) gets a dense mask of its shape
    strided = torch.randn(2, 96, 1000)[:, :, ::2]
    assert keep_scale(strided, 0.1).shape == strided.shape


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_any_size_and_dtype(dtype):
    torch.manual_seed(5)
    for n in (1, 2, 3, 5, 4099):  # not always whole 64-bit words of lanes
        mask = keep_scale(torch.empty(n, dtype=dtype), 0.25)
        assert mask.shape == (n,) and mask.dtype == dtype
        assert set(mask.tolist()) <= {0.0, (torch.tensor(4 / 3, dtype=dtype)).item()}
    big = keep_scale(torch.empty(40_003, dtype=dtype), 0.25)
    assert abs((big == 0).double().mean().item() - 0.25) < 0.02


def test_eval_mode_and_p_zero_are_identity_and_p_one_drops_all():
    x = torch.randn(3, 8, 10)
    module = FastDropout(0.3).eval()
    assert module(x) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def test_bf16_autocast_keeps_the_dtype():
    x = torch.randn(2, 16, 64, dtype=torch.bfloat16, requires_grad=True)
    out = fast_dropout(x, 0.2)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16


def _tiny(task: str, sampler: str) -> dict:
    model = {"num_classes": 4 if task == "mq" else 1, "width": 32, "n_head": 4, "num_levels": 3,
             "rel_global_inner": 64, "dropout_sampler": sampler}
    data = {"sources": [{"name": "a", "dim": 12, "proj_dim": 16}, {"name": "b", "dim": 8, "proj_dim": 16}],
            "max_seq_len": 64}
    if task == "nlq":
        data["text_dim"] = 24
    return {"model": model, "data": data}


@pytest.mark.parametrize("task, model_class", [("mq", MQDetector), ("nlq", NLQGrounder)])
def test_switch_swaps_every_dropout_and_keeps_the_state_dict(task, model_class):
    torch.manual_seed(3)
    plain = model_class(config_from_dict(_tiny(task, "torch")))
    torch.manual_seed(3)
    fast = model_class(config_from_dict(_tiny(task, "fast")))
    dropouts = [m for m in plain.modules() if type(m) is nn.Dropout]
    assert dropouts and not any(type(m) is nn.Dropout for m in fast.modules())
    assert sum(isinstance(m, FastDropout) for m in fast.modules()) == len(dropouts)
    assert plain.state_dict().keys() == fast.state_dict().keys()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, fast.state_dict()[key]), key


def test_models_agree_in_eval_and_train_with_fast_dropout():
    cfg = config_from_dict(_tiny("mq", "torch"))
    torch.manual_seed(4)
    model = MQDetector(cfg).double()
    feats = torch.randn(2, 20, 64, dtype=torch.float64)
    masks = torch.ones(2, 64, dtype=torch.bool)
    model.eval()
    with torch.no_grad():
        before = model(feats, masks).cls_logits
    assert use_fast_dropout(model) > 0
    with torch.no_grad():
        after = model(feats, masks).cls_logits
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    model.train()
    out = model(feats, masks)
    segments = [torch.tensor([[3.0, 20.0]], dtype=torch.float64)] * 2
    labels = [torch.tensor([1])] * 2
    loss = model.losses(out, segments, labels)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
