"""asl.class_aware=false: one Gaussian triple shared by every class (the control of the
class-aware claim); the default keeps one per class."""

from __future__ import annotations

import torch

from egoasl.config import ASLConfig
from egoasl.model.sensitivity import GAUSSIAN_NAMES, SensitivityWeights

POINTS = torch.tensor([[float(t), 0.0, 1e4, 1.0] for t in range(8)])  # (P, 4): t, reg range, stride 1


def _weights(module: SensitivityWeights, label: int) -> torch.Tensor:
    segments = [torch.tensor([[1.0, 7.0]])]
    gt_index = torch.tensor([[-1, 0, 0, 0, 0, 0, 0, -1]])
    w_cls, _ = module(POINTS, segments, [torch.tensor([label])], gt_index)
    return w_cls[0]


def test_shared_gaussians_have_one_entry_and_weigh_every_class_alike():
    shared = SensitivityWeights(5, ASLConfig(class_aware=False, arg_norm="len"))
    assert all(getattr(shared, name).shape == (1,) for name in GAUSSIAN_NAMES)
    with torch.no_grad():
        shared.mu_cls.fill_(0.3)
    torch.testing.assert_close(_weights(shared, 0), _weights(shared, 4))
    assert not torch.allclose(_weights(shared, 0)[1:7], torch.ones(6))


def test_class_aware_gaussians_weigh_classes_by_their_own_parameters():
    aware = SensitivityWeights(5, ASLConfig(arg_norm="len"))
    assert all(getattr(aware, name).shape == (5,) for name in GAUSSIAN_NAMES)
    with torch.no_grad():
        aware.mu_cls[4] = 0.3
    assert not torch.allclose(_weights(aware, 0), _weights(aware, 4))
    torch.testing.assert_close(_weights(aware, 0), _weights(aware, 1))
