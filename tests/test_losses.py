"""Base losses on hand-worked numbers: focal, 1D DIoU, al_loss, and the loss normaliser buffer."""

from __future__ import annotations

import math

import pytest
import torch

from egoasl.model.losses import LossNormalizer, al_loss, diou_loss_1d, iou_1d, sigmoid_focal_loss, smooth_targets


def test_focal_loss_two_elements_against_the_formula():
    logits = torch.tensor([0.0, 2.0])
    targets = torch.tensor([1.0, 0.0])
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    # element 1: p = 0.5, y = 1: CE = ln 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25
    e1 = 0.25 * 0.25 * math.log(2.0)
    # element 2: p = sigmoid(2), y = 0: CE = ln(1 + e^2), (1 - p_t)^2 = p^2, alpha_t = 0.75
    p = 1.0 / (1.0 + math.exp(-2.0))
    e2 = 0.75 * p**2 * math.log(1.0 + math.exp(2.0))
    torch.testing.assert_close(loss, torch.tensor([e1, e2]))
    # alpha < 0 disables the class balance term
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=2.0),
                               torch.tensor([e1 / 0.25, e2 / 0.75]))


def test_focal_loss_gamma_zero_is_binary_cross_entropy():
    logits = torch.randn(4, 3)
    targets = torch.randint(0, 2, (4, 3)).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0), bce)


def test_label_smoothing_formula():
    t = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # y (1 - eps) + eps / (K + 1)
    torch.testing.assert_close(smooth_targets(t, 0.1), torch.tensor([[0.92, 0.02, 0.02, 0.02]]))
    assert torch.equal(smooth_targets(t, 0.0), t)


def test_diou_identical_is_zero():
    off = torch.tensor([[1.0, 3.0], [0.5, 0.5]])
    torch.testing.assert_close(diou_loss_1d(off, off), torch.zeros(2))


def test_diou_hand_cases():
    pred = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    target = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    # case 1: [t, t+2] vs [t-2, t] do not overlap: I = 0, U = 4, hull 4, centres 2 apart
    #         -> 1 - 0 + (2 / 4)^2 = 1.25
    # case 2: [t-1, t+1] vs [t-1, t+3]: I = 2, U = 4, hull 4, centre distance 1 -> 1 - 0.5 + 1/16
    torch.testing.assert_close(diou_loss_1d(pred, target), torch.tensor([1.25, 0.5625]))
    torch.testing.assert_close(iou_1d(pred, target), torch.tensor([0.0, 0.5]))


def test_al_loss_hand_case():
    # one clip, two points, two classes; softmax rows [0.5, 0.5] and [0.75, 0.25]
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    valid = torch.tensor([[True, True]])
    targets = torch.tensor([[1.0, 0.0]])
    # P = max over points = [0.75, 0.5]; -ln 0.75 - ln(1 - 0.5)
    expected = -math.log(0.75) - math.log(0.5)
    torch.testing.assert_close(al_loss(logits, valid, targets), torch.tensor(expected))


def test_al_loss_ignores_padded_points_and_clamps_the_log():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [-50.0, 50.0]]])
    valid = torch.tensor([[True, True, False]])
    targets = torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(al_loss(logits, valid, targets), torch.tensor(-math.log(0.75) - math.log(0.5)))
    saturated = torch.tensor([[[100.0, -100.0]]], requires_grad=True)
    loss = al_loss(saturated, torch.tensor([[True]]), torch.tensor([[0.0, 1.0]]))
    # both terms hit the clamp: -2 ln(1e-6), and the gradient stays finite
    torch.testing.assert_close(loss, torch.tensor(-2 * math.log(1e-6)))
    loss.backward()
    assert torch.isfinite(saturated.grad).all()


def test_loss_normalizer_is_an_ema_buffer_that_round_trips():
    norm = LossNormalizer(100.0, 0.9)
    assert "value" in norm.state_dict()
    assert norm.update(torch.tensor(20)).item() == pytest.approx(0.9 * 100 + 0.1 * 20)
    assert norm.update(0).item() == pytest.approx(0.9 * 92 + 0.1 * 1)  # max(num_pos, 1)
    other = LossNormalizer(100.0, 0.9)
    other.load_state_dict(norm.state_dict())
    assert other.value.item() == pytest.approx(82.9)
