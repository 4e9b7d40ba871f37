"""Base losses of the MQ detector (spec sections 3.2 to 3.5).

All functions are unreduced (per element, per point or per clip) so that the ASL weights
can be applied before summing; the detector divides the sums by :class:`LossNormalizer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AL_LOG_FLOOR = 1e-6
RELEASE_PADDED_LOGIT = -1e7  # what the release writes into padded logits before al_loss's softmax


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Element-wise ``BCE(x, y) · (1 - p_t)^γ · α_t`` (``α < 0`` drops the α term)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1.0 - p) * (1.0 - targets)
    loss = ce * (1.0 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
    return loss


def smooth_targets(targets: Tensor, eps: float) -> Tensor:
    """ActionFormer's label smoothing ``y (1 - ε) + ε / (K + 1)`` over the last axis of K classes."""
    if eps == 0:
        return targets
    return targets * (1.0 - eps) + eps / (targets.shape[-1] + 1)


def iou_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """IoU of two segments given as ``(left, right)`` distances from the same point, ``(..., 2)``."""
    inter = torch.minimum(pred[..., 0], target[..., 0]) + torch.minimum(pred[..., 1], target[..., 1])
    union = pred.sum(-1) + target.sum(-1) - inter
    return inter / union.clamp(min=eps)


def diou_loss_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """1D distance-IoU loss ``1 - IoU + (ρ / hull)^2`` per row of ``(..., 2)`` offsets."""
    hull = torch.maximum(pred[..., 0], target[..., 0]) + torch.maximum(pred[..., 1], target[..., 1])
    rho = 0.5 * ((pred[..., 1] - pred[..., 0]) - (target[..., 1] - target[..., 0]))  # centre distance
    return 1.0 - iou_1d(pred, target, eps) + (rho / hull.clamp(min=eps)) ** 2


def al_loss(logits: Tensor, valid: Tensor, video_targets: Tensor, valid_only: bool = True) -> Tensor:
    """The release's video-level multi-label loss, summed over clips and classes.

    ``logits (B, P, K)`` of all points, ``valid (B, P)``, ``video_targets (B, K)`` in {0, 1}.
    A softmax over classes at every point, the max over *valid* points gives ``P_c``, then
    binary cross-entropy against "class c occurs in the clip", with both logs clamped at
    ``log(1e-6)`` (the release took them unclamped; the two differ only where its log is infinite).

    ``valid_only=False`` (``asl.al_valid_only: false``) is the release's max: padded logits are
    replaced by -1e7, whose softmax is uniform, so a clip with padding gets ``P_c >= 1/K``.
    """
    if valid_only:
        prob = logits.float().softmax(dim=-1).masked_fill(~valid[..., None], 0.0)  # (B, P, K)
    else:
        prob = logits.float().masked_fill(~valid[..., None], RELEASE_PADDED_LOGIT).softmax(dim=-1)  # (B, P, K)
    video = prob.amax(dim=1)  # (B, K)
    # clamp the arguments, not the logs: a clamped log(0) would send 0/0 = NaN backwards
    pos = torch.log(video.clamp(min=AL_LOG_FLOOR))
    neg = torch.log((1.0 - video).clamp(min=AL_LOG_FLOOR))
    return -(video_targets * pos + (1.0 - video_targets) * neg).sum()


class LossNormalizer(nn.Module):
    """EMA of the number of positive points, ``N <- m N + (1 - m) max(num_pos, 1)``.

    Kept as a buffer (``value``) so that it is saved, averaged by EMA and restored on resume
    (the release kept a Python float, so resuming reset it).
    """

    value: Tensor

    def __init__(self, init: float, momentum: float) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("value", torch.tensor(float(init)))
        self._pending: Tensor | None = None  # counts summed while gradients accumulate

    @torch.no_grad()
    def update(self, num_pos: Tensor | int) -> Tensor:
        """Fold in one batch's positive count and return the new value (during gradient
        accumulation: add the count to the pending sum and keep the value)."""
        count = torch.as_tensor(num_pos, dtype=self.value.dtype, device=self.value.device)
        if self._pending is not None:
            self._pending += count
            return self.value
        self.value.mul_(self.momentum).add_((1.0 - self.momentum) * count.clamp(min=1.0))
        return self.value

    def begin_accumulation(self) -> None:
        """Gradient accumulation (``train.accum_steps``): hold the value for the coming micro-batches."""
        self._pending = torch.zeros_like(self.value)

    @torch.no_grad()
    def end_accumulation(self) -> float:
        """Fold in the micro-batches' summed count as ONE batch; returns ``old / new``, the factor
        that turns losses normalised by the held value into losses normalised by the new one."""
        if self._pending is None:
            raise RuntimeError("end_accumulation without begin_accumulation")
        old = self.value.clone()
        count, self._pending = self._pending, None
        self.value.mul_(self.momentum).add_((1.0 - self.momentum) * count.clamp(min=1.0))
        return float(old / self.value)
