"""The class Gaussians' own optimisation settings (asl.gauss_lr_mult, asl.wd_on_gauss) and their spread."""

from __future__ import annotations

import math

import pytest
import torch

from egoasl.config import config_from_dict
from egoasl.config_loader import deep_merge
from egoasl.engine.schedule import lr_at, set_lr
from egoasl.engine.train import make_optimizer
from egoasl.errors import EgoaslError
from egoasl.model.detector import MQDetector
from egoasl.model.sensitivity import GAUSSIAN_NAMES, gaussian_spread

CPU = torch.device("cpu")


def tiny_cfg(**sections):
    tree = {
        "data": {"sources": [{"name": "a", "dim": 4, "proj_dim": 8}]},
        "model": {"num_classes": 4, "width": 16, "n_head": 2, "embd_layers": 1, "stem_layers": 1, "num_levels": 3,
                  "rel_global_inner": 32, "regression_ranges": [[0, 4], [2, 8], [4, 10000]]},
        "train": {"lr": 1e-3, "weight_decay": 0.05},
    }
    return config_from_dict(deep_merge(tree, sections))


def gauss_ids(model: MQDetector) -> set[int]:
    return {id(p) for p in model.sensitivity.parameters()}


@pytest.mark.parametrize("mult, wd_on_gauss", [(1.0, True), (1.0, False), (20.0, True), (20.0, False)])
def test_param_groups_carry_the_gaussians_lr_multiplier_and_weight_decay(mult, wd_on_gauss):
    cfg = tiny_cfg(asl={"gauss_lr_mult": mult, "wd_on_gauss": wd_on_gauss})
    model = MQDetector(cfg)
    groups = make_optimizer(model, cfg, CPU).param_groups
    gauss = gauss_ids(model)
    owner = {id(p): g for g in groups for p in g["params"]}
    assert len(owner) == len(list(model.parameters()))  # every parameter exactly once
    for pid in gauss:
        assert owner[pid]["lr_mult"] == mult
        assert owner[pid]["weight_decay"] == (0.05 if wd_on_gauss else 0.0)
    others = [g for g in groups if not any(id(p) in gauss for p in g["params"])]
    assert all(g["lr_mult"] == 1.0 for g in others)
    # the Gaussians have a group of their own exactly when their learning rate differs
    assert len(groups) == (3 if mult != 1.0 else 2)


def test_schedule_keeps_the_multiplier_through_warmup_and_cosine():
    cfg = tiny_cfg(asl={"gauss_lr_mult": 20.0})
    model = MQDetector(cfg)
    optimizer = make_optimizer(model, cfg, CPU)
    gauss = gauss_ids(model)
    warmup, total = 5, 20
    for step in (0, 2, 4, 5, 12, 19):  # warm-up, its end, cosine, the last step
        lr = lr_at(step, 1e-3, warmup, total, 1e-8)
        set_lr(optimizer, lr)
        for group in optimizer.param_groups:
            expected = 20.0 * lr if any(id(p) in gauss for p in group["params"]) else lr
            assert group["lr"] == pytest.approx(expected, rel=1e-12)
    # a resumed optimizer keeps the multiplier (it is part of the saved groups)
    fresh = make_optimizer(MQDetector(tiny_cfg()), tiny_cfg(), CPU)
    assert len(fresh.param_groups) == 2
    again = make_optimizer(model, cfg, CPU)
    again.load_state_dict(optimizer.state_dict())
    set_lr(again, 1e-4)
    assert sorted(g["lr"] for g in again.param_groups) == pytest.approx([1e-4, 1e-4, 2e-3])


def test_first_adam_step_moves_the_gaussians_by_the_multiplied_learning_rate():
    torch.manual_seed(0)
    moved = {}
    for mult in (1.0, 10.0):
        cfg = tiny_cfg(asl={"gauss_lr_mult": mult, "wd_on_gauss": False})
        torch.manual_seed(0)
        model = MQDetector(cfg).train()
        optimizer = make_optimizer(model, cfg, CPU)
        set_lr(optimizer, 1e-3)
        feats, masks = torch.randn(1, 4, 32), torch.ones(1, 32, dtype=torch.bool)
        before = model.sensitivity.mu_cls.detach().clone()
        model.losses(model(feats, masks), [torch.tensor([[4.0, 12.0]])], [torch.tensor([1])])["loss"].backward()
        optimizer.step()
        moved[mult] = (model.sensitivity.mu_cls.detach() - before)[1].abs().item()
    # Adam's first step moves a parameter by about lr, whatever its gradient's size
    assert moved[1.0] == pytest.approx(1e-3, rel=1e-2)
    assert moved[10.0] == pytest.approx(1e-2, rel=1e-2)


def test_gauss_lr_mult_must_be_positive():
    with pytest.raises(EgoaslError, match=r"asl\.gauss_lr_mult: expected a positive multiplier, got 0"):
        tiny_cfg(asl={"gauss_lr_mult": 0.0})


def test_gaussian_spread_across_classes():
    model = MQDetector(tiny_cfg())
    initial = gaussian_spread(model)
    assert set(initial) == {f"{n}_{s}" for n in GAUSSIAN_NAMES for s in ("std", "mean", "shift")}
    assert all(initial[f"{n}_std"] == 0 and initial[f"{n}_shift"] == 0 for n in GAUSSIAN_NAMES)
    assert initial["mu_loc_start_mean"] == 0.5 and initial["sigma_cls_mean"] == 1.0
    with torch.no_grad():
        model.sensitivity.mu_cls.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
        model.sensitivity.sigma_loc_end.copy_(torch.tensor([1.0, 1.0, 0.5, 1.0]))
    spread = gaussian_spread(model)
    assert spread["mu_cls_std"] == pytest.approx(math.sqrt(1.25))  # population std of 0, 1, 2, 3
    assert spread["mu_cls_mean"] == pytest.approx(1.5) and spread["mu_cls_shift"] == pytest.approx(3.0)
    assert spread["sigma_loc_end_shift"] == pytest.approx(0.5)
    assert spread["sigma_loc_end_std"] == pytest.approx(math.sqrt(3 * 0.125**2 + 0.375**2) / 2)
    assert gaussian_spread(MQDetector(tiny_cfg(asl={"class_gaussians": False}))) == {}
