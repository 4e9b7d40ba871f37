"""Label assignment (spec section 3.1) on hand-worked cases.

Points: T = 16, two levels. Level 0: stride 1, t = 0..15, range [0, 4]; level 1: stride 2,
t = 0, 2, ..., 14, range [4, 100]. Point index of level-1 point t is 16 + t / 2.
"""

from __future__ import annotations

import torch

from egoasl.model.assignment import assign_batch, assign_points
from egoasl.model.points import make_points

POINTS = make_points(16, 2, [(0, 4), (4, 100)])
K = 5


def _idx(level: int, t: int) -> int:
    return t if level == 0 else 16 + t // 2


def _positives(a) -> dict[int, list[int]]:
    """point index -> sorted classes set in its target."""
    return {int(i): torch.nonzero(a.cls_targets[i]).flatten().tolist() for i in torch.nonzero(a.positive).flatten()}


def test_hand_case_windows_scale_gate_ties_and_targets():
    segments = torch.tensor([
        [2.0, 6.0],     # A, class 1: len 4, centre 4
        [2.0, 6.0005],  # A', class 4: len 4.0005, a tie with A within 1e-3
        [8.0, 14.0],    # B, class 2: len 6, centre 11
    ])
    labels = torch.tensor([1, 4, 2])
    a = assign_points(POINTS, segments, labels, K, center_sample=True, radius=1.5)
    expected = {
        # level 0, A/A' window (2.5, 5.5) strict: t = 3, 4, 5; max(l, r) <= 4; labels {1, 4}
        _idx(0, 3): [1, 4], _idx(0, 4): [1, 4], _idx(0, 5): [1, 4],
        # level 0, B window (9.5, 12.5): t = 10, 11, 12; max(l, r) = 4, 3, 4 (hi = 4 inclusive)
        _idx(0, 10): [2], _idx(0, 11): [2], _idx(0, 12): [2],
        # level 1, B window (8, 14) strict: t = 10, 12; max(l, r) = 4 = lo (inclusive)
        _idx(1, 10): [2], _idx(1, 12): [2],
        # level 1, A' window (2, 6.0005): t = 6 is strictly inside A' but on A's border;
        # max(l, r) = 4 passes the gate. t = 4 fails it (2.0005 < 4). t = 2 is on the border.
        _idx(1, 6): [4],
    }
    assert _positives(a) == expected
    # regression targets in stride units, from the shortest candidate (A, not A')
    assert a.reg_targets[_idx(0, 3)].tolist() == [1.0, 3.0]
    assert a.reg_targets[_idx(0, 5)].tolist() == [3.0, 1.0]
    assert a.reg_targets[_idx(0, 10)].tolist() == [2.0, 4.0]
    assert a.reg_targets[_idx(1, 10)].tolist() == [1.0, 2.0]
    assert a.reg_targets[_idx(1, 12)].tolist() == [2.0, 1.0]
    torch.testing.assert_close(a.reg_targets[_idx(1, 6)], torch.tensor([2.0, 0.00025]))
    assert a.gt_index[_idx(0, 4)] == 0 and a.gt_index[_idx(1, 6)] == 1 and a.gt_index[_idx(0, 11)] == 2
    # background: index -1, zero targets
    negative = ~a.positive
    assert torch.all(a.gt_index[negative] == -1)
    assert torch.all(a.reg_targets[negative] == 0) and torch.all(a.cls_targets[negative] == 0)


def test_length_difference_above_tolerance_is_not_a_tie():
    segments = torch.tensor([[2.0, 6.0], [2.0, 6.002]])
    a = assign_points(POINTS, segments, torch.tensor([1, 4]), K, center_sample=True, radius=1.5)
    assert a.cls_targets[_idx(0, 4)].tolist() == [0, 1, 0, 0, 0]


def test_same_segment_twice_with_two_classes_gives_two_labels():
    segments = torch.tensor([[8.0, 14.0], [8.0, 14.0]])
    a = assign_points(POINTS, segments, torch.tensor([3, 0]), K, center_sample=True, radius=1.5)
    assert a.cls_targets[_idx(1, 12)].tolist() == [1, 0, 0, 1, 0]
    assert a.gt_index[_idx(1, 12)] == 0


def test_without_centre_sampling_every_point_strictly_inside_is_a_candidate():
    a = assign_points(POINTS, torch.tensor([[2.0, 6.0]]), torch.tensor([1]), K, center_sample=False, radius=1.5)
    # level 0: t = 3, 4, 5 (t = 2, 6 lie on the border); level 1: t = 4 fails the gate
    assert sorted(_positives(a)) == [3, 4, 5]
    a = assign_points(POINTS, torch.tensor([[0.0, 15.0]]), torch.tensor([1]), K, center_sample=False, radius=1.5)
    # max(l, r) >= 7.5 everywhere: only level 1, t = 2 .. 14 strictly inside
    assert sorted(_positives(a)) == [_idx(1, t) for t in range(2, 15, 2)]


def test_clip_without_ground_truth_is_all_background():
    a = assign_points(POINTS, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), K, center_sample=True, radius=1.5)
    assert a.cls_targets.shape == (24, K) and not a.positive.any()
    assert torch.all(a.gt_index == -1)


def test_batch_stacks_per_clip_assignments():
    segs = [torch.tensor([[8.0, 14.0]]), torch.zeros(0, 2)]
    labs = [torch.tensor([2]), torch.zeros(0, dtype=torch.long)]
    a = assign_batch(POINTS, segs, labs, K, center_sample=True, radius=1.5)
    assert a.cls_targets.shape == (2, 24, K) and a.reg_targets.shape == (2, 24, 2) and a.gt_index.shape == (2, 24)
    assert a.positive[0].sum() == 5 and not a.positive[1].any()
