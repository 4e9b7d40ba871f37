"""ASL: class-level Gaussian weights, instance branch, ASCL (spec section 4).

Points: T = 16, two levels (strides 1, 2). GT [8, 14] of class 2 (centre 11, length 6) is
assigned to level-0 points t = 10, 11, 12 and level-1 points t = 10, 12 (see test_assignment).
"""

from __future__ import annotations

import math

import pytest
import torch

from egoasl.config import ASLConfig
from egoasl.model.assignment import assign_batch
from egoasl.model.points import make_points
from egoasl.model.sensitivity import (
    InstanceSensitivityHead,
    SensitivityWeights,
    ascl_loss,
    class_gaussian_weights,
    combine_instance,
    instance_loss,
    normalize_positive,
    window_mean,
)

POINTS = make_points(16, 2, [(0, 4), (4, 100)])
K = 5
SEGS = [torch.tensor([[8.0, 14.0]])]
LABS = [torch.tensor([2])]
# positive point index -> (t, stride)
POS = {10: (10, 1), 11: (11, 1), 12: (12, 1), 16 + 5: (10, 2), 16 + 6: (12, 2)}


def _g(x: float, mu: float, sigma: float) -> float:
    return math.exp(-((x - mu) ** 2) / (2 * sigma**2))


def _weights(cfg: ASLConfig):
    module = SensitivityWeights(K, cfg)
    a = assign_batch(POINTS, SEGS, LABS, K, center_sample=True, radius=1.5)
    return module, module(POINTS, SEGS, LABS, a.gt_index)


@pytest.mark.parametrize("arg_norm", ["stride_len", "len"])
@pytest.mark.parametrize("loc_times_cls", [True, False])
def test_weights_at_init_match_the_gaussian_formula(arg_norm, loc_times_cls):
    _, (w_cls, w_loc) = _weights(ASLConfig(arg_norm=arg_norm, loc_times_cls=loc_times_cls))
    assert w_cls.shape == w_loc.shape == (1, 24)
    for i, (t, stride) in POS.items():
        x = (11.0 - t) / (6.0 * (stride if arg_norm == "stride_len" else 1))
        wc = _g(x, 0.0, 1.0)
        wl = 0.5 * (_g(x, 0.5, 1.0) + _g(x, -0.5, 1.0)) * (wc if loc_times_cls else 1.0)
        assert w_cls[0, i].item() == pytest.approx(wc, rel=1e-6)
        assert w_loc[0, i].item() == pytest.approx(wl, rel=1e-6)
    negatives = [i for i in range(24) if i not in POS]
    assert torch.all(w_cls[0, negatives] == 1) and torch.all(w_loc[0, negatives] == 1)


def test_weights_use_the_assigned_class_parameters():
    module = SensitivityWeights(K, ASLConfig(arg_norm="len", loc_times_cls=False))
    with torch.no_grad():
        module.mu_cls[2] = 0.3
        module.sigma_cls[2] = 0.5
        module.mu_loc_end[2] = -0.2
        module.sigma_loc_start[2] = 2.0
    a = assign_batch(POINTS, SEGS, LABS, K, center_sample=True, radius=1.5)
    w_cls, w_loc = module(POINTS, SEGS, LABS, a.gt_index)
    x = (11.0 - 12.0) / 6.0  # level-0 point t = 12
    assert w_cls[0, 12].item() == pytest.approx(_g(x, 0.3, 0.5), rel=1e-6)
    assert w_loc[0, 12].item() == pytest.approx(0.5 * (_g(x, 0.5, 2.0) + _g(x, -0.2, 1.0)), rel=1e-6)


def test_gradients_reach_mu_sigma_of_the_assigned_class_only():
    module, (w_cls, w_loc) = _weights(ASLConfig())
    # positives sit symmetrically around the centre: weigh them unevenly so d/dmu does not cancel
    ramp = torch.arange(24.0)
    ((w_cls + w_loc) * ramp).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert p.grad[2] != 0, name
        assert torch.all(p.grad[[0, 1, 3, 4]] == 0), name


@pytest.mark.parametrize("loc_times_cls", [True, False])
def test_class_gaussian_weights_pass_gradcheck(loc_times_cls):
    torch.manual_seed(0)
    x = torch.tensor([0.1, -0.3, 0.05, 0.4], dtype=torch.float64)
    cls = torch.tensor([0, 2, 2, 1])
    params = tuple(
        (torch.randn(3, dtype=torch.float64) * 0.3 + offset).requires_grad_()
        for offset in (0.0, 1.0, 0.5, 1.0, -0.5, 1.0)
    )

    def fn(*p):
        return class_gaussian_weights(x, cls, *p, loc_times_cls=loc_times_cls, sigma_min=0.0)

    assert torch.autograd.gradcheck(fn, params)


def test_sigma_min_floors_the_width():
    x = torch.tensor([0.5])
    cls = torch.tensor([0])
    tiny = torch.tensor([0.01])
    w_cls, _ = class_gaussian_weights(x, cls, torch.zeros(1), tiny, torch.zeros(1), torch.ones(1),
                                      torch.zeros(1), torch.ones(1), loc_times_cls=False, sigma_min=0.25)
    assert w_cls.item() == pytest.approx(_g(0.5, 0.0, 0.25))
    w_cls, _ = class_gaussian_weights(x, cls, torch.zeros(1), -tiny * 50, torch.zeros(1), torch.ones(1),
                                      torch.zeros(1), torch.ones(1), loc_times_cls=False, sigma_min=0.25)
    assert w_cls.item() == pytest.approx(_g(0.5, 0.0, 0.5))  # |sigma| is used


def test_normalize_positive_gives_mean_one_over_positives():
    w = torch.tensor([[0.5, 1.0, 0.25, 1.0]])
    pos = torch.tensor([[True, False, True, False]])
    out = normalize_positive(w, pos)
    torch.testing.assert_close(out, torch.tensor([[4 / 3, 1.0, 2 / 3, 1.0]]))


# ----------------------------------------------------------------------------- instance branch


def test_instance_head_outputs_sigmoids_per_level():
    head = InstanceSensitivityHead(8, 3)
    feats = [torch.randn(2, 8, 16), torch.randn(2, 8, 8)]
    masks = [torch.ones(2, 1, 16, dtype=torch.bool), torch.ones(2, 1, 8, dtype=torch.bool)]
    out = head(feats, masks)
    assert [o.shape for o in out] == [(2, 16, 2), (2, 8, 2)]
    assert all(((o > 0) & (o < 1)).all() for o in out)


def test_instance_loss_targets_are_detached_and_hand_computed():
    q = torch.tensor([[0.5, 0.5], [0.2, 0.9]], requires_grad=True)
    gt_logit = torch.tensor([0.0, math.log(3.0)], requires_grad=True)  # sigmoid: 0.5, 0.75
    pred = torch.tensor([[1.0, 1.0], [2.0, 2.0]], requires_grad=True)
    target = torch.tensor([[1.0, 3.0], [2.0, 2.0]])  # IoU 0.5 and 1.0
    loss = instance_loss(q, gt_logit, pred, target)
    expected = (0.5 - 0.5) ** 2 + (0.5 - 0.5) ** 2 + (0.2 - 0.75) ** 2 + (0.9 - 1.0) ** 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert q.grad is not None and gt_logit.grad is None and pred.grad is None


def test_combine_instance_modes_touch_positives_only():
    w = torch.tensor([[0.8, 1.0]])
    q = torch.tensor([[0.5, 0.3]], requires_grad=True)
    pos = torch.tensor([[True, False]])
    torch.testing.assert_close(combine_instance(w, q, pos, "product"), torch.tensor([[0.4, 1.0]]))
    torch.testing.assert_close(combine_instance(w, q, pos, "sum"), torch.tensor([[1.3, 1.0]]))
    assert not combine_instance(w, q, pos, "product").requires_grad  # q only learns from its MSE


# ----------------------------------------------------------------------------- ASCL


def test_window_mean_pools_valid_cells_inclusively():
    feats = torch.arange(8.0).view(1, 1, 8)
    b = torch.zeros(4, dtype=torch.long)
    lo = torch.tensor([2.0, 9.0, 2.2, -3.0])
    hi = torch.tensor([4.5, 12.0, 2.8, 0.4])
    out = window_mean(feats, torch.tensor([6]), b, lo, hi)
    # [2, 4.5] -> cells 2..4; beyond the 6 valid cells -> cell 5; no cell inside -> nearest (2);
    # [-3, 0.4] -> cell 0
    assert out[:, 0].tolist() == [3.0, 5.0, 2.0, 0.0]


@pytest.mark.parametrize("labels, positives", [([1, 1], 3), ([1, 2], 1)])
def test_ascl_with_identical_features_is_minus_log_positive_share(labels, positives):
    feats = torch.ones(1, 4, 32, requires_grad=True)
    masks = torch.ones(1, 32, dtype=torch.bool)
    segs = [torch.tensor([[4.0, 10.0], [16.0, 26.0]])]
    loss = ascl_loss(feats, masks, 1, segs, [torch.tensor(labels)], theta=0.2, gap=1.0, tau=0.07)
    # 2 GTs -> 4 anchors + 2 outer views; uniform softmax over the 5 other views of each anchor
    assert loss.item() == pytest.approx(-4 * math.log(positives / 5), rel=1e-5)
    loss.backward()
    assert feats.grad is not None


def test_ascl_pulls_same_class_views_together():
    torch.manual_seed(0)
    masks = torch.ones(1, 32, dtype=torch.bool)
    segs = [torch.tensor([[4.0, 10.0], [16.0, 26.0]])]
    labels = [torch.tensor([1, 1])]
    feats = torch.randn(1, 8, 32)
    aligned = feats.clone()
    aligned[:, :, 4:11] = 1.0
    aligned[:, :, 16:27] = 1.0  # both instances look alike, background does not
    random = ascl_loss(feats, masks, 1, segs, labels, theta=0.2, gap=1.0, tau=0.07)
    together = ascl_loss(aligned, masks, 1, segs, labels, theta=0.2, gap=1.0, tau=0.07)
    assert together < random


def test_ascl_without_ground_truth_is_zero_with_a_graph():
    feats = torch.randn(2, 4, 16, requires_grad=True)
    loss = ascl_loss(feats, torch.ones(2, 16, dtype=torch.bool), 2, [torch.zeros(0, 2)] * 2,
                     [torch.zeros(0, dtype=torch.long)] * 2, theta=0.2, gap=1.0, tau=0.07)
    assert loss.item() == 0.0
    loss.backward()
