import math

import pytest
import torch
from torch import nn

from egoasl.engine.ema import ModelEMA
from egoasl.engine.schedule import lr_at


def test_warmup_then_cosine():
    kw = dict(base_lr=1e-3, warmup_steps=10, total_steps=30, eta_min=0.0)
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert lr_at(9, **kw) == pytest.approx(1e-3)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    assert lr_at(20, **kw) == pytest.approx(0.5e-3)
    assert lr_at(30, **kw) == pytest.approx(0.0)
    assert lr_at(25, **kw) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 0.75)))
    assert lr_at(5, base_lr=1.0, warmup_steps=0, total_steps=10, eta_min=0.1) == pytest.approx(0.55)


def test_ema_update_formula():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 1.2))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_evaluation_schedule():
    from egoasl.engine.train import evaluation_due

    due = [e for e in range(1, 41) if evaluation_due(e, 40, start=20, every=10)]
    assert due == [20, 30, 40]
    assert [e for e in range(1, 8) if evaluation_due(e, 7, start=2, every=3)] == [2, 5, 7]  # the last epoch too
    assert not any(evaluation_due(e, 5, start=-1, every=1) for e in range(1, 6))
    assert [e for e in range(1, 4) if evaluation_due(e, 3, start=0, every=1)] == [1, 2, 3]
