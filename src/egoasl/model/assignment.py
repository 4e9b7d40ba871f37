"""Label assignment of points to ground-truth segments (spec section 3.1, as released).

For point i (``t, lo, hi, stride``) and GT j (``[s_j, e_j]`` in level-0 grid units):

1. ``l = t - s_j``, ``r = e_j - t``;
2. centre sampling: the point must lie *strictly* inside
   ``[max(c_j - radius·stride, s_j), min(c_j + radius·stride, e_j)]`` (without centre
   sampling: strictly inside ``[s_j, e_j]``);
3. scale gate: ``lo <= max(l, r) <= hi`` (inclusive at both ends);
4. among the candidates, the shortest GT wins. Every candidate whose length is within 1e-3
   of the shortest adds its class (multi-label target);
5. the regression target is ``(l, r) / stride`` of the shortest candidate (the first one on
   exact ties), which is also the returned ``gt_index``.

Points with no candidate are background: zero class target, zero regression target,
``gt_index = -1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

TIE_TOLERANCE = 1e-3


@dataclass
class Assignment:
    """Targets for every point; leading batch dimension when made by :func:`assign_batch`."""

    cls_targets: Tensor  # (P, K) float in {0, 1}
    reg_targets: Tensor  # (P, 2) float, stride units, zeros for background
    gt_index: Tensor  # (P,) long, index of the assigned GT, -1 for background

    @property
    def positive(self) -> Tensor:
        """``(P,)`` bool: points with at least one class target."""
        return self.gt_index >= 0


@torch.no_grad()
def assign_points(points: Tensor, segments: Tensor, labels: Tensor, num_classes: int,
                  center_sample: bool, radius: float) -> Assignment:
    """Targets of one clip. ``points (P, 4)``, ``segments (N, 2)``, ``labels (N,)`` long."""
    P, N = points.shape[0], segments.shape[0]
    if N == 0:
        return Assignment(points.new_zeros(P, num_classes), points.new_zeros(P, 2),
                          torch.full((P,), -1, dtype=torch.long, device=points.device))
    segments = segments.to(points.dtype)
    t, lo, hi, stride = (points[:, k, None] for k in range(4))  # each (P, 1)
    start, end = segments[None, :, 0], segments[None, :, 1]  # each (1, N)
    left, right = t - start, end - t  # (P, N)
    if center_sample:
        centre = 0.5 * (start + end)
        win_lo = torch.maximum(centre - radius * stride, start)  # (P, N)
        win_hi = torch.minimum(centre + radius * stride, end)
        inside = (t > win_lo) & (t < win_hi)
    else:
        inside = (left > 0) & (right > 0)
    reach = torch.maximum(left, right)
    candidate = inside & (reach >= lo) & (reach <= hi)  # (P, N)
    lengths = (end - start).expand(P, N).masked_fill(~candidate, float("inf"))  # (P, N)
    best = lengths.argmin(dim=1)  # (P,) first index among exact ties
    min_len = lengths.gather(1, best[:, None])  # (P, 1)
    positive = torch.isfinite(min_len[:, 0])  # (P,)
    tied = candidate & (lengths <= min_len + TIE_TOLERANCE)  # (P, N)
    one_hot = F.one_hot(labels.long(), num_classes).to(points.dtype)  # (N, K)
    cls_targets = (tied.to(points.dtype) @ one_hot).clamp_(max=1.0)  # (P, K)
    rows = torch.arange(P, device=points.device)
    reg = torch.stack([left[rows, best], right[rows, best]], dim=-1) / stride  # (P, 2)
    reg = reg * positive[:, None].to(reg.dtype)
    gt_index = torch.where(positive, best, torch.full_like(best, -1))
    return Assignment(cls_targets, reg, gt_index)


def assign_batch(points: Tensor, segments: list[Tensor], labels: list[Tensor], num_classes: int,
                 center_sample: bool, radius: float) -> Assignment:
    """:func:`assign_points` for every clip, stacked: ``(B, P, K)``, ``(B, P, 2)``, ``(B, P)``."""
    parts = [assign_points(points, s, lab, num_classes, center_sample, radius) for s, lab in zip(segments, labels)]
    return Assignment(
        torch.stack([p.cls_targets for p in parts]),
        torch.stack([p.reg_targets for p in parts]),
        torch.stack([p.gt_index for p in parts]),
    )
