"""Raw head outputs of one clip -> scored segments (``specs/asl_method.md`` sections 6.1-6.3, 8.6).

Per pyramid level: ``prob = sigmoid(logit) * mask``, flattened over ``(T_l, K)``; keep the
entries with ``prob > pre_nms_thresh``; keep the ``pre_nms_topk`` highest of them (per level,
ties by flat position); recover ``(point, class)`` as ``(i // K, i % K)``; decode
``[t - o_l * stride, t + o_r * stride]`` in level-0 grid units; drop segments of length
``<= duration_thresh``. The levels are concatenated, then Soft-NMS (per class for MQ,
class-agnostic for NLQ or when ``multiclass_nms`` is off) keeps at most ``max_seg_num``, and
segment voting (``voting_thresh > 0``) moves each kept segment to the score-weighted mean of
the pre-NMS candidates that overlap it enough (same class only, in the multi-class case;
the release disables voting there, which the default ``voting_thresh = 0`` reproduces).
NLQ (one class) finally keeps the ``top_k`` best windows.

Grid units become seconds only in :func:`to_seconds`, through :class:`TimeGrid`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from egoasl.config import TestConfig
from egoasl.data.timegrid import TimeGrid
from egoasl.engine.nms import segment_voting, soft_nms


@dataclass(frozen=True)
class Detections:
    """Scored segments of one clip (or query), sorted by descending score.

    Attributes:
        segments: ``(M, 2)`` float32, ``[start, end]`` in level-0 grid units.
        scores: ``(M,)`` float32.
        labels: ``(M,)`` long class ids (0 for NLQ).
    """

    segments: Tensor
    scores: Tensor
    labels: Tensor


def decode_clip(
    cls_logits: list[Tensor],
    offsets: list[Tensor],
    masks: list[Tensor],
    points: Tensor,
    test_cfg: TestConfig,
    num_classes: int,
) -> Detections:
    """Decode one clip's raw outputs into detections (see the module docstring).

    Args:
        cls_logits: per level, ``(T_l, K)`` pre-sigmoid class logits.
        offsets: per level, ``(T_l, 2)`` left/right distances in units of the level stride.
        masks: per level, ``(T_l,)`` bool, True at valid points.
        points: ``(sum T_l, 4)`` rows ``[t, reg_lo, reg_hi, stride]``, levels in the same order.
        test_cfg: decoding and NMS settings.
        num_classes: K; 1 means NLQ (class-agnostic NMS and a ``top_k`` cut).

    Returns:
        :class:`Detections` sorted by descending score.
    """
    _check_shapes(cls_logits, offsets, masks, points, num_classes)
    segs, scores, labels = [], [], []
    start = 0
    for logits, offs, mask in zip(cls_logits, offsets, masks):
        pts = points[start : start + logits.shape[0]]
        start += logits.shape[0]
        s, p, c = _level_candidates(logits, mask, test_cfg.pre_nms_thresh, test_cfg.pre_nms_topk, num_classes)
        offs = offs.detach().float()[p]
        pts = pts.detach().float()[p]
        seg = torch.stack([pts[:, 0] - offs[:, 0] * pts[:, 3], pts[:, 0] + offs[:, 1] * pts[:, 3]], dim=1)
        long_enough = (seg[:, 1] - seg[:, 0]) > test_cfg.duration_thresh
        segs.append(seg[long_enough])
        scores.append(s[long_enough])
        labels.append(c[long_enough])
    all_segs, all_scores, all_labels = torch.cat(segs), torch.cat(scores), torch.cat(labels)

    multiclass = test_cfg.multiclass_nms and num_classes > 1
    if test_cfg.nms == "soft":
        kept = soft_nms(
            all_segs, all_scores, test_cfg.nms_sigma, test_cfg.min_score, test_cfg.max_seg_num,
            labels=all_labels, multiclass=multiclass,
        )
        det = Detections(kept.segments, kept.scores, kept.labels)
    elif test_cfg.nms == "none":
        order = torch.argsort(all_scores, descending=True, stable=True)[: test_cfg.max_seg_num]
        det = Detections(all_segs[order], all_scores[order], all_labels[order])
    else:
        raise ValueError(f"test.nms: expected 'soft' or 'none', got {test_cfg.nms!r}")

    if test_cfg.voting_thresh > 0 and det.scores.numel() > 0:
        voted, _ = segment_voting(
            det.segments, det.scores, all_segs, all_scores, test_cfg.voting_thresh,
            kept_labels=det.labels if multiclass else None, all_labels=all_labels if multiclass else None,
        )
        det = Detections(voted, det.scores, det.labels)
    if num_classes == 1:
        det = top_k(det, test_cfg.top_k)
    return det


def _level_candidates(logits: Tensor, mask: Tensor, thresh: float, topk: int, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """One level's candidates: (probability, point index, class id), by descending probability."""
    prob = (torch.sigmoid(logits.detach().float()) * mask[:, None]).flatten()
    flat = torch.nonzero(prob > thresh, as_tuple=True)[0]
    prob = prob[flat]
    order = torch.argsort(prob, descending=True, stable=True)[:topk]
    flat = flat[order]
    return prob[order], torch.div(flat, num_classes, rounding_mode="floor"), flat % num_classes


def _check_shapes(cls_logits: list[Tensor], offsets: list[Tensor], masks: list[Tensor], points: Tensor, num_classes: int) -> None:
    if not (len(cls_logits) == len(offsets) == len(masks)) or not cls_logits:
        raise ValueError(
            f"decode_clip: cls_logits, offsets and masks need one entry per level, got {len(cls_logits)}, "
            f"{len(offsets)}, {len(masks)}"
        )
    total = 0
    for level, (logits, offs, mask) in enumerate(zip(cls_logits, offsets, masks)):
        t = logits.shape[0]
        if logits.dim() != 2 or logits.shape[1] != num_classes:
            raise ValueError(f"decode_clip: cls_logits level {level}: expected (T, {num_classes}) for num_classes={num_classes}, got {tuple(logits.shape)}")
        if tuple(offs.shape) != (t, 2):
            raise ValueError(f"decode_clip: offsets level {level}: expected ({t}, 2), got {tuple(offs.shape)}")
        if tuple(mask.shape) != (t,) or mask.dtype != torch.bool:
            raise ValueError(f"decode_clip: masks level {level}: expected bool ({t},), got {mask.dtype} {tuple(mask.shape)}")
        total += t
    if points.dim() != 2 or tuple(points.shape) != (total, 4):
        raise ValueError(f"decode_clip: points: expected ({total}, 4) = levels' points concatenated, got {tuple(points.shape)}")


def top_k(detections: Detections, k: int) -> Detections:
    """The ``k`` best detections (they are already sorted by descending score)."""
    return Detections(detections.segments[:k], detections.scores[:k], detections.labels[:k])


def to_seconds(detections: Detections, grid: TimeGrid) -> tuple[Tensor, Tensor, Tensor]:
    """Grid-unit detections -> ``(segments (M, 2) float64 seconds in [0, duration], scores, labels)``."""
    seconds = grid.to_seconds(detections.segments.detach().double(), clamp=True)
    return seconds, detections.scores, detections.labels
