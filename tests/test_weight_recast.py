"""``train.recast_weights``: autocast's weight copies are cast again in backward, giving the same gradients bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from egoasl.config import config_from_dict
from egoasl.engine import weight_recast
from egoasl.engine.precision import autocast_context
from egoasl.engine.weight_recast import cast_parameter, recast_weights_in_backward
from egoasl.model.detector import MQDetector

CPU = torch.device("cpu")


def _tiny(grad_checkpoint: bool = False) -> MQDetector:
    torch.manual_seed(0)
    cfg = config_from_dict({
        "model": {"num_classes": 4, "width": 32, "n_head": 4, "num_levels": 3, "rel_global_inner": 64,
                  "dropout": 0.0, "droppath": 0.0, "rel_dropout": 0.0, "grad_checkpoint": grad_checkpoint},
        "data": {"sources": [{"name": "a", "dim": 12, "proj_dim": 16}, {"name": "b", "dim": 8, "proj_dim": 16}],
                 "max_seq_len": 64},
    })
    return MQDetector(cfg).train()


def _gradients(model: MQDetector, amp: str, recast: bool) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 20, 64, generator=gen)
    masks = torch.ones(2, 64, dtype=torch.bool)
    masks[1, 50:] = False
    model.zero_grad(set_to_none=True)
    with autocast_context(amp, CPU, recast_weights=recast)():
        out = model(feats, masks)
    segments = [torch.tensor([[3.0, 20.0], [30.0, 41.0]])] * 2
    labels = [torch.tensor([1, 2])] * 2
    model.losses(out, segments, labels)["loss"].backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("grad_checkpoint", [False, True])
def test_bf16_gradients_are_bit_identical(grad_checkpoint):
    kept = _gradients(_tiny(grad_checkpoint), "bf16", recast=False)  # a fresh model each: the loss normaliser moves
    recast = _gradients(_tiny(grad_checkpoint), "bf16", recast=True)
    assert kept.keys() == recast.keys()
    for name in kept:
        assert torch.equal(kept[name], recast[name]), name


def test_the_weight_copies_are_not_kept():
    model = _tiny()
    with recast_weights_in_backward() as hooks, torch.autocast("cpu", torch.bfloat16):
        model(torch.randn(2, 20, 64), torch.ones(2, 64, dtype=torch.bool))
    weights = sum(p.numel() for name, p in model.named_parameters()
                  if p.dim() >= 2 and "sensitivity" not in name)  # every matmul / conv weight, in bf16
    # all but the few whose copies backward never needs: layers whose input takes no gradient (the source
    # projections, the rel-pos table's projection) and the rel-pos biases, added in float32
    assert 0.98 * 2 * weights < hooks.dropped_bytes < 2 * weights


def test_float32_has_nothing_to_recast():
    model = _tiny()
    with recast_weights_in_backward() as hooks:
        model(torch.randn(2, 20, 64), torch.ones(2, 64, dtype=torch.bool))
    assert hooks.dropped_bytes == 0


def test_cast_parameter_finds_casts_of_parameters_only():
    weight = torch.nn.Parameter(torch.randn(6, 4, 1))
    cast = weight.flatten(1).to(torch.bfloat16).t()  # a view of a cast of a view
    assert cast_parameter(cast) is weight
    assert cast_parameter(weight.to(torch.bfloat16) * 2) is None  # computed from a cast, not a cast
    assert cast_parameter(torch.randn(3, requires_grad=True).to(torch.bfloat16)) is None  # a leaf, not a parameter
    assert cast_parameter(torch.randn(3).to(torch.bfloat16)) is None  # no autograd history


def test_a_cast_that_does_not_recast_exactly_is_kept(monkeypatch):
    hooks = weight_recast._Recast()
    monkeypatch.setattr(weight_recast._Recast, "_recast",
                        staticmethod(lambda param, dtype, shape, stride, offset: torch.zeros(shape, dtype=dtype)))
    weight = torch.nn.Parameter(torch.randn(5, 3))
    cast = weight.to(torch.bfloat16)
    assert hooks.pack(cast) is cast and hooks.dropped_bytes == 0


def test_linear_gradient_through_the_hooks():
    weight = torch.nn.Parameter(torch.randn(8, 16))
    x = torch.randn(4, 16, requires_grad=True)
    with recast_weights_in_backward() as hooks, torch.autocast("cpu", torch.bfloat16):
        y = F.linear(x, weight)
    y.float().sum().backward()
    assert hooks.dropped_bytes == 8 * 16 * 2
    expected = torch.ones(4, 8, dtype=torch.bfloat16) @ weight.detach().to(torch.bfloat16)
    assert torch.equal(x.grad, expected.float())
