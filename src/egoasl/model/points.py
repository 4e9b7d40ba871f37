"""Anchor points of the feature pyramid (ActionFormer's point generator, release settings).

Level l has stride ``s = 2^l`` and one point per cell at ``t = 0, s, 2s, ... < T`` in
level-0 grid units: no half-stride offset. Each point carries its level's regression range
``[lo, hi]`` (inclusive) and its stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def make_points(length: int, num_levels: int, regression_ranges: Sequence[Sequence[float]],
                device: torch.device | str | None = None) -> Tensor:
    """All points of a clip of ``length`` level-0 cells, concatenated over levels.

    Returns ``(P, 4)`` float32 rows ``[t, lo, hi, stride]`` with ``P = sum_l T / 2^l``.
    """
    rows = []
    for level in range(num_levels):
        stride = 2**level
        t = torch.arange(0, length, stride, dtype=torch.float32, device=device)  # (T_l,)
        lo, hi = regression_ranges[level]
        rest = torch.tensor([lo, hi, stride], dtype=torch.float32, device=device).expand(t.shape[0], 3)
        rows.append(torch.cat([t[:, None], rest], dim=1))  # (T_l, 4)
    return torch.cat(rows, dim=0)
