"""Ego4D Moment Queries metrics, equal to the official evaluator number for number.

Two metrics, as the official pipeline computes them (``EGO4D/episodic-memory:MQ``,
restated in ``specs/ego4d_formats.md`` section 7):

**mAP** (interpolated average precision per class and tIoU threshold)

- The classes are the labels present in the ground truth of the evaluated clips, in order
  of first appearance. Ground truth is *not* deduplicated: every annotator's copy is a
  positive of its own.
- Predictions whose label is not among those classes are dropped (and counted).
  Predictions on clips outside the evaluated set are false positives.
- Per class, predictions are ranked by descending score; tied scores come out in
  *reverse* submission order (``np.argsort(scores, kind="stable")[::-1]`` on the class's
  predictions in submission order, which is what the official numpy 1.23 produced).
- Per threshold, each prediction in rank order takes the unmatched ground truth of its clip
  and class with the highest tIoU, provided that tIoU is ``>= threshold`` (tIoU ties: the
  later ground truth first). Otherwise it is a false positive.
- AP is the VOC-2011 all-point interpolation. mAP is the unweighted mean over classes (a
  class without predictions scores 0); the average mAP is the mean over thresholds.

**Recall@kx** (``R@kx``)

- For each clip and each class with ``n`` ground-truth instances in it, the first ``k*n``
  predictions of that class *in the submitted order* (no sorting by score) are kept. A
  ground-truth instance is retrieved if one of them has IoU strictly above the threshold.
  Recall pools the instances of all clips and classes.
- A clip with ground truth but no predictions scores zero (the official script crashes with
  a ``KeyError``); such clips are listed in :attr:`MQResult.clips_without_predictions`.

One deliberate difference: a zero-length prediction exactly on a zero-length ground truth
has tIoU 0/0. The official mAP code lets that NaN pass as a match; here it is no match.
Real MQ ground truth has no zero-length segment (the shortest is 0.60 s), so no real
number changes. Recall needs no such rule: NaN is never ``> threshold`` in either code.

Speed: the greedy matching is sequential within one (clip, class) group but independent
across groups and thresholds, so it runs in *rounds*: each round gives every group its next
true positive (the earliest remaining prediction that still has an eligible free ground
truth, which takes its best one). The number of rounds is the largest number of matches in
one group, and every round is a handful of vectorised NumPy operations over the remaining
(prediction, ground truth) pairs.

The inputs are turned into flat arrays, and checked, by :mod:`egoasl.metrics.mq_inputs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from egoasl.data.records import MQClip
from egoasl.errors import EgoaslError
from egoasl.metrics.mq_inputs import (
    FlatPredictions,
    GroundTruth,
    Predictions,
    flatten_predictions,
    read_ground_truth,
)

DEFAULT_TIOUS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_TOPK: tuple[int, ...] = (1, 2, 3, 4, 5)


def format_tiou(t: float) -> str:
    """The key of a threshold in tables and JSON: ``0.5 -> "0.5"``."""
    return f"{t:g}"


@dataclass
class MQResult:
    """Everything :func:`evaluate_mq` computes. Metric values are fractions in [0, 1].

    ``ap`` has shape ``(len(tious), len(classes))``; ``recall`` has shape
    ``(len(recall_tious), len(topk))`` and is ``None`` when recall was not computed.
    """

    tious: tuple[float, ...]
    classes: list[str]
    ap: np.ndarray
    mAP: np.ndarray
    average_mAP: float
    num_gt: np.ndarray  # (C,) ground-truth instances per class, duplicates included
    num_class_predictions: np.ndarray  # (C,) scored detections per class
    num_predictions: int
    dropped_unknown_labels: int
    predictions_outside_clips: int
    topk: tuple[int, ...] = ()
    recall_tious: tuple[float, ...] = ()
    recall: np.ndarray | None = None
    num_retrievals: int = 0
    clips_without_predictions: list[str] = field(default_factory=list)
    unsorted_retrieval_clips: list[str] = field(default_factory=list)
    # For precision/recall curves: scores and TP flags of the scored detections.
    curve_scores: np.ndarray | None = field(default=None, repr=False)
    curve_tp: np.ndarray | None = field(default=None, repr=False)

    def map_at(self, tiou: float) -> float:
        """mAP (fraction) at one of the evaluated thresholds."""
        return float(self.mAP[self._tiou_index(tiou, self.tious)])

    def recall_at(self, k: int, tiou: float) -> float:
        """Recall@kx (fraction) at one of the evaluated ``k`` and thresholds."""
        if self.recall is None:
            raise EgoaslError("recall was not computed")
        if k not in self.topk:
            raise EgoaslError(f"k={k} was not evaluated (evaluated: {list(self.topk)})")
        return float(self.recall[self._tiou_index(tiou, self.recall_tious), self.topk.index(k)])

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: label, ground-truth count, prediction count, AP per threshold (fractions)."""
        return [
            {
                "label": label,
                "num_gt": int(self.num_gt[c]),
                "num_predictions": int(self.num_class_predictions[c]),
                "ap": {format_tiou(t): float(self.ap[i, c]) for i, t in enumerate(self.tious)},
            }
            for c, label in enumerate(self.classes)
        ]

    def pr_curve(self, tiou: float) -> tuple[np.ndarray, np.ndarray]:
        """Pooled precision and recall over all classes at one threshold.

        Detections of all classes are ranked by score with their per-class match result;
        recall is relative to all ground-truth instances. A diagnostic, not an official metric.
        """
        if self.curve_scores is None or self.curve_tp is None:
            raise EgoaslError("this result holds no curve data")
        i = self._tiou_index(tiou, self.tious)
        order = np.argsort(-self.curve_scores, kind="stable")
        tp = self.curve_tp[i, order].astype(np.float64)
        ctp = np.cumsum(tp)
        precision = ctp / np.arange(1, len(tp) + 1)
        recall = ctp / float(self.num_gt.sum())
        return precision, recall

    def to_json(self, per_class: bool = False) -> dict[str, Any]:
        """The CLI's JSON object: metric values as percentages (floats), counts as ints."""
        out: dict[str, Any] = {
            "mAP": {format_tiou(t): 100.0 * float(m) for t, m in zip(self.tious, self.mAP)},
            "average_mAP": 100.0 * float(self.average_mAP),
        }
        if self.recall is not None:
            out["recall"] = {
                f"{k}x@{format_tiou(t)}": 100.0 * float(self.recall[i, j])
                for i, t in enumerate(self.recall_tious)
                for j, k in enumerate(self.topk)
            }
        out.update(
            num_classes=len(self.classes),
            num_gt_instances=int(self.num_gt.sum()),
            num_predictions=self.num_predictions,
            dropped_unknown_labels=self.dropped_unknown_labels,
            predictions_outside_clips=self.predictions_outside_clips,
        )
        if self.recall is not None:
            out["num_retrievals"] = self.num_retrievals
            out["clips_without_predictions"] = len(self.clips_without_predictions)
            out["unsorted_retrieval_clips"] = len(self.unsorted_retrieval_clips)
        if per_class:
            out["per_class"] = [
                {**row, "ap": {t: 100.0 * v for t, v in row["ap"].items()}} for row in self.per_class()
            ]
        return out

    @staticmethod
    def _tiou_index(tiou: float, tious: Sequence[float]) -> int:
        for i, t in enumerate(tious):
            if math.isclose(t, tiou, rel_tol=0.0, abs_tol=1e-9):
                return i
        raise EgoaslError(f"tIoU {tiou} was not evaluated (evaluated: {list(tious)})")


# ----------------------------------------------------------------------------------------------
# mAP


def _pairs(lo: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows with candidate ranges ``[lo, lo+cnt)``: (row index, candidate index) of every pair."""
    total = int(cnt.sum())
    rows = np.repeat(np.arange(len(cnt), dtype=np.int64), cnt)
    starts = np.cumsum(cnt) - cnt
    cols = np.arange(total, dtype=np.int64) - np.repeat(starts - lo, cnt)
    return rows, cols


def _group_ranges(g_key: np.ndarray, p_key: np.ndarray, key_span: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth grouped by key: the stable sort of ``g_key``, and per prediction key the
    range ``[lo, lo + cnt)`` of its group in that sort (``cnt`` 0 for ``p_key`` -1 or no group)."""
    g_order = np.argsort(g_key, kind="stable")
    g_sorted = g_key[g_order]
    if key_span <= max(1 << 22, 4 * len(p_key)):
        # Dense lookup tables: one gather per prediction instead of two binary searches.
        keys = np.arange(key_span + 1)
        first = np.searchsorted(g_sorted, keys)
        lo_table = first[:-1]
        cnt_table = np.diff(first)
        safe = np.maximum(p_key, 0)
        lo = lo_table[safe]
        cnt = np.where(p_key >= 0, cnt_table[safe], 0)
    else:
        lo = np.searchsorted(g_sorted, p_key, side="left")
        cnt = np.where(p_key >= 0, np.searchsorted(g_sorted, p_key, side="right") - lo, 0)
    return g_order, lo, cnt


def _greedy_tp(
    p_key: np.ndarray, p_start: np.ndarray, p_end: np.ndarray, gt: GroundTruth, g_key: np.ndarray, key_span: int,
    tious: Sequence[float],
) -> np.ndarray:
    """True-positive flags ``(T, N)`` of ranked predictions under the official greedy matching.

    ``p_key`` is the (class, clip) group key of each prediction, in rank order (-1: no group);
    ``g_key`` the group key of each ground truth (file order); keys lie in ``[0, key_span)``.
    """
    n_pred, n_tiou, n_gt = len(p_key), len(tious), len(g_key)
    tp = np.zeros((n_tiou, n_pred), dtype=bool)
    g_order, lo, cnt = _group_ranges(g_key, p_key, key_span)
    cand = np.flatnonzero(cnt)  # rank positions of predictions whose group has ground truth
    # Group-major order, rank order inside a group (keys are unique, so any sort is stable).
    if key_span * max(n_pred, 1) < 2**62:
        cand = cand[np.argsort(p_key[cand] * n_pred + cand)]
    else:
        cand = cand[np.argsort(p_key[cand], kind="stable")]
    # Pairs (prediction, ground truth of its group): by group, rank, then ground truth file order.
    row, gpos = _pairs(lo[cand], cnt[cand])
    if len(row) == 0:
        return tp
    pred = cand[row]
    gidx = g_order[gpos]
    ps, pe = p_start[pred], p_end[pred]
    gs, ge = gt.start[gidx], gt.end[gidx]
    inter = np.clip(np.minimum(pe, ge) - np.maximum(ps, gs), 0.0, None)
    union = (ge - gs) + (pe - ps) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union  # the official segment_iou; 0/0 = NaN never passes ">= t" here
    # Stack the thresholds: pairs eligible at threshold i live in group i*span + group, with
    # prediction and ground-truth ids offset the same way, so one loop serves all thresholds.
    group = p_key[pred]
    parts = [np.flatnonzero(iou >= t) for t in tious]
    g_ = np.concatenate([group[k] + i * key_span for i, k in enumerate(parts)])
    p_ = np.concatenate([pred[k] + i * n_pred for i, k in enumerate(parts)])
    t_ = np.concatenate([gidx[k] + i * n_gt for i, k in enumerate(parts)])
    u_ = np.concatenate([iou[k] for k in parts])
    tp_flat = tp.reshape(-1)
    locked = np.zeros(n_tiou * n_gt, dtype=bool)
    # Each round gives every group its next true positive: its earliest remaining prediction
    # (each skipped one found all its eligible ground truth taken: a false positive). That
    # prediction takes its free ground truth of highest tIoU, ties to the later one in file
    # order (the reversed stable argsort rule). Then its pairs and that ground truth's go.
    while len(g_):
        first = np.flatnonzero(np.concatenate(([True], g_[1:] != g_[:-1])))
        tp_flat[p_[first]] = True
        sel = np.flatnonzero(tp_flat[p_])  # pairs of this round's predictions: one run each
        run_start = np.concatenate(([True], p_[sel][1:] != p_[sel][:-1]))
        run_id = np.cumsum(run_start) - 1
        best = np.maximum.reduceat(u_[sel], np.flatnonzero(run_start))
        ties = sel[u_[sel] == best[run_id]]
        tie_run = run_id[u_[sel] == best[run_id]]
        last = np.concatenate((tie_run[1:] != tie_run[:-1], [True]))
        locked[t_[ties[last]]] = True
        keep = ~(tp_flat[p_] | locked[t_])
        g_, p_, t_, u_ = g_[keep], p_[keep], t_[keep], u_[keep]
    return tp


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 all-point interpolated AP of one ranked list (the official formula)."""
    mprec = np.concatenate(([0.0], precision, [0.0]))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _mean_ap(
    gt: GroundTruth, det: FlatPredictions, tious: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AP ``(T, C)``, per-class prediction counts, and the scored detections' scores and TP flags."""
    n_cls, n_clips = len(gt.classes), len(gt.clip_uids)
    known = np.flatnonzero(det.cls >= 0)
    cls_small = det.cls[known].astype(np.int16 if n_cls < 2**15 else np.int64)  # int16: radix sort
    by_class = known[np.argsort(cls_small, kind="stable")]  # submission order inside a class
    bounds = np.searchsorted(det.cls[by_class], np.arange(n_cls + 1))
    # Inside a class: descending score, ties in reverse submission order (official rule).
    rank = np.empty_like(by_class)
    for c in range(n_cls):
        a, b = bounds[c], bounds[c + 1]
        seg = by_class[a:b]
        rank[a:b] = seg[np.argsort(det.score[seg], kind="stable")[::-1]]
    cls, clip, score = det.cls[rank], det.clip[rank], det.score[rank]
    p_key = np.where(clip >= 0, cls * n_clips + clip, -1)
    g_key = gt.cls * n_clips + gt.clip
    tp = _greedy_tp(p_key, det.start[rank], det.end[rank], gt, g_key, n_cls * n_clips, tious)
    npos = np.bincount(gt.cls, minlength=n_cls)
    ap = np.zeros((len(tious), n_cls))
    for c in range(n_cls):
        a, b = bounds[c], bounds[c + 1]
        if a == b:
            continue  # a class without predictions scores 0
        tp_c = tp[:, a:b].astype(np.float64)
        tp_cum = np.cumsum(tp_c, axis=1)
        fp_cum = np.cumsum(1.0 - tp_c, axis=1)
        rec = tp_cum / float(npos[c])
        prec = tp_cum / (tp_cum + fp_cum)
        for i in range(len(tious)):
            ap[i, c] = interpolated_ap(prec[i], rec[i])
    return ap, np.diff(bounds), score, tp


# ----------------------------------------------------------------------------------------------
# Recall@kx


def _recall(gt: GroundTruth, ret: FlatPredictions, tious: Sequence[float], topk: Sequence[int]) -> np.ndarray:
    """Recall ``(T, K)``: first ``k*n`` predictions per (clip, class) in submitted order, IoU > t."""
    n_clips = len(gt.clip_uids)
    g_key = gt.cls * n_clips + gt.clip
    ok = (ret.cls >= 0) & (ret.clip >= 0)
    p_key = np.where(ok, ret.cls * n_clips + ret.clip, -1)
    g_order, lo, cnt = _group_ranges(g_key, p_key, len(gt.classes) * n_clips)
    cand = np.flatnonzero(cnt)  # predictions of a (clip, class) that has ground truth
    # Rank inside each group, in submission order.
    order = cand[np.argsort(p_key[cand], kind="stable")]
    key = p_key[order]
    new_group = np.concatenate(([True], key[1:] != key[:-1]))
    group_start = np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
    p_rank = np.arange(len(order)) - group_start
    keep = p_rank < max(topk) * cnt[order]
    order, p_rank = order[keep], p_rank[keep]
    p_start, p_end = ret.start[order], ret.end[order]
    g_sorted = g_key[g_order]
    pred, gpos = _pairs(lo[order], cnt[order])
    # Sort pairs by ground truth, then rank, so the first hit of each ground truth is its best rank.
    order = np.lexsort((p_rank[pred], gpos))
    pred, gpos = pred[order], gpos[order]
    gidx = g_order[gpos]
    ps, pe, gs, ge = p_start[pred], p_end[pred], gt.start[gidx], gt.end[gidx]
    inter = np.maximum(0.0, np.minimum(pe, ge) - np.maximum(ps, gs))
    union = np.maximum(0.0, np.maximum(pe, ge) - np.minimum(ps, gs))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union  # hull "union", as the official script; NaN is never > t
    rank = p_rank[pred]
    n_per_gt = np.empty(len(g_key), dtype=np.int64)  # n of each ground truth's (clip, class)
    n_per_gt[g_order] = np.searchsorted(g_sorted, g_sorted, side="right") - np.searchsorted(g_sorted, g_sorted)
    total = float(len(g_key))
    out = np.zeros((len(tious), len(topk)))
    for i, t in enumerate(tious):
        hit = np.flatnonzero(iou > t)
        best = np.full(len(g_key), np.iinfo(np.int64).max, dtype=np.int64)
        if len(hit):
            g_hit = gidx[hit]
            is_first = np.concatenate(([True], gpos[hit][1:] != gpos[hit][:-1]))
            best[g_hit[is_first]] = rank[hit][is_first]
        for j, k in enumerate(topk):
            out[i, j] = np.count_nonzero(best < k * n_per_gt) / total
    return out


# ----------------------------------------------------------------------------------------------
# public entry point


def _check_tious(tious: Sequence[float], name: str) -> tuple[float, ...]:
    values = tuple(float(t) for t in tious)
    if not values:
        raise EgoaslError(f"{name}: at least one tIoU threshold is needed")
    for t in values:
        if not (0.0 <= t <= 1.0):
            raise EgoaslError(f"{name}: tIoU thresholds must lie in [0, 1], got {t}")
    if len({format_tiou(t) for t in values}) != len(values):
        raise EgoaslError(f"{name}: duplicate tIoU thresholds {list(values)}")
    return values


def evaluate_mq(
    clips: Iterable[MQClip],
    detections: Predictions,
    retrievals: Predictions | None = None,
    tious: Sequence[float] = DEFAULT_TIOUS,
    topk: Sequence[int] | None = DEFAULT_TOPK,
    recall_tious: Sequence[float] | None = None,
    where: str = "predictions",
) -> MQResult:
    """Score MQ predictions exactly as the official Ego4D evaluator does.

    Args:
        clips: the evaluated clips (one split) with their ground truth. Their order fixes the
            class order (first appearance), which only matters for ties in floating-point sums.
        detections: ``clip_uid -> predictions`` scored for mAP (``detect_results``), in
            submission order.
        retrievals: predictions scored for Recall@kx (``retrieve_results``); ``None`` uses
            ``detections``. Their list order per clip is the ranking (write it sorted by score).
        tious: mAP thresholds (a match needs ``tIoU >= t``). Used as given: ``0.3`` is ``0.3``.
        topk: the ``k`` of Recall@kx; ``None`` or empty skips recall.
        recall_tious: thresholds of Recall@kx (IoU ``> t``); ``None`` uses ``tious``.
        where: the name of the predictions' source, used in error messages.

    Returns:
        An :class:`MQResult` with fractions in [0, 1].

    Raises:
        EgoaslError: no ground truth, bad thresholds, or malformed predictions (with location).
    """
    tious = _check_tious(tious, "tious")
    recall_tious = _check_tious(tious if recall_tious is None else recall_tious, "recall_tious")
    topk = tuple(int(k) for k in (topk or ()))
    if any(k < 1 for k in topk) or len(set(topk)) != len(topk):
        raise EgoaslError(f"topk: expected distinct positive integers, got {list(topk)}")
    clips = list(clips)
    gt = read_ground_truth(clips)
    det = flatten_predictions(detections, gt, where, "detect_results")
    ap, class_counts, scores, tp = _mean_ap(gt, det, tious)
    mAP = ap.mean(axis=1)
    result = MQResult(
        tious=tious,
        classes=gt.classes,
        ap=ap,
        mAP=mAP,
        average_mAP=float(mAP.mean()),
        num_gt=np.bincount(gt.cls, minlength=len(gt.classes)),
        num_class_predictions=class_counts,
        num_predictions=len(det.cls),
        dropped_unknown_labels=int(np.count_nonzero(det.cls < 0)),
        predictions_outside_clips=int(np.count_nonzero(det.clip < 0)),
        curve_scores=scores,
        curve_tp=tp,
    )
    if topk:
        ret = det if retrievals is None else flatten_predictions(retrievals, gt, where, "retrieve_results")
        result.topk = topk
        result.recall_tious = recall_tious
        result.recall = _recall(gt, ret, recall_tious, topk)
        result.num_retrievals = len(ret.cls)
        has_gt = np.zeros(len(gt.clip_uids), dtype=bool)
        has_gt[gt.clip] = True
        result.clips_without_predictions = [
            uid for uid, flag in zip(gt.clip_uids, has_gt) if flag and not ret.num_per_clip.get(uid)
        ]
        result.unsorted_retrieval_clips = ret.unsorted_clips
    return result
