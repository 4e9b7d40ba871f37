"""Ego4D Natural Language Queries metric, equal to the official evaluator number for number.

The official script (``EGO4D/episodic-memory:NLQ/VSLNet/utils/evaluate_ego4d_nlq.py``,
restated in ``specs/ego4d_formats.md`` section 8):

- walks the submitted ``results`` list in order (a query submitted twice counts twice);
- for each entry computes the IoU of every predicted window with the query's ground-truth
  window, with the *hull* as union: ``max(0, min(ends) - max(starts)) / max(0, max(ends) -
  min(starts))``;
- R@k at IoU t is the fraction of **entries** whose first ``k`` windows (in the given order)
  contain one with IoU strictly above ``t``;
- mIoU is the mean IoU of the **first** window over entries.

The denominator is the number of submitted entries, not the number of queries, so dropping
hard queries raises the official numbers. :class:`NLQResult` therefore also reports the
queries with no prediction (``missing_queries``) and the recalls recomputed as if each of
them had been submitted and missed (``over_all_queries``).

Zero-length ground truth (``start == end``) is never a hit. One deliberate difference: when
the first window and the ground truth are the same single point, the IoU is 0/0; the
official script then prints a NaN mIoU, here that IoU counts as 0 (and is never a hit in
either code).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from egoasl.data.records import NLQQuery
from egoasl.errors import DataError, EgoaslError

DEFAULT_NLQ_TIOUS: tuple[float, ...] = (0.3, 0.5)
DEFAULT_NLQ_TOPK: tuple[int, ...] = (1, 5)

QueryKey = tuple[str, str, int]


def _fmt(t: float) -> str:
    return f"{t:g}"


@dataclass
class NLQResult:
    """What :func:`evaluate_nlq` computes. Metric values are fractions in [0, 1].

    ``recall[i, j]`` is R@``topk[j]`` at IoU ``tious[i]`` over the submitted entries (the
    official number); ``recall_all`` the same over all queries, missing ones counted as misses.
    """

    tious: tuple[float, ...]
    topk: tuple[int, ...]
    recall: np.ndarray
    recall_all: np.ndarray
    mIoU: float
    evaluated: int
    total_queries: int
    missing: list[QueryKey] = field(default_factory=list)
    duplicate_entries: int = 0

    def r_at(self, k: int, tiou: float) -> float:
        """R@k at IoU ``tiou`` (fraction, official denominator)."""
        return float(self.recall[self._t(tiou), self._k(k)])

    @property
    def mean_r1(self) -> float:
        """The challenge's ranking value: mean of R@1 over the thresholds (0.3 and 0.5)."""
        return float(np.mean(self.recall[:, self._k(1)]))

    def coverage_line(self) -> str:
        """One line saying how many queries were scored, for tables and logs."""
        line = f"Evaluated: {self.evaluated} entries for {self.total_queries} queries with text"
        if self.missing:
            line += (
                f"; {len(self.missing)} queries have no prediction and are NOT counted by the official metric"
                " (which divides by the number of entries)"
            )
        if self.duplicate_entries:
            line += f"; {self.duplicate_entries} entries repeat a query and count again"
        return line

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object: metric values as percentages (floats), counts as ints."""
        out: dict[str, Any] = {}
        for i, t in enumerate(self.tious):
            for j, k in enumerate(self.topk):
                out[f"R{k}@{_fmt(t)}"] = 100.0 * float(self.recall[i, j])
        if 1 in self.topk:
            out["mean_R1"] = 100.0 * self.mean_r1
        out["mIoU"] = 100.0 * self.mIoU
        out["evaluated"] = self.evaluated
        out["missing_queries"] = len(self.missing)
        out["total_queries"] = self.total_queries
        out["duplicate_entries"] = self.duplicate_entries
        out["over_all_queries"] = {
            f"R{k}@{_fmt(t)}": 100.0 * float(self.recall_all[i, j])
            for i, t in enumerate(self.tious)
            for j, k in enumerate(self.topk)
        }
        return out

    def _t(self, tiou: float) -> int:
        for i, t in enumerate(self.tious):
            if math.isclose(t, tiou, rel_tol=0.0, abs_tol=1e-9):
                return i
        raise EgoaslError(f"IoU {tiou} was not evaluated (evaluated: {list(self.tious)})")

    def _k(self, k: int) -> int:
        if k not in self.topk:
            raise EgoaslError(f"k={k} was not evaluated (evaluated: {list(self.topk)})")
        return self.topk.index(k)


def hull_iou(pred: np.ndarray, gt_start: np.ndarray, gt_end: np.ndarray) -> np.ndarray:
    """Official NLQ IoU of windows ``pred (..., 2)`` with ``[gt_start, gt_end]`` (broadcast).

    Intersection over the hull of the two windows; 0/0 comes out as NaN.
    """
    ps, pe = pred[..., 0], pred[..., 1]
    inter = np.maximum(0.0, np.minimum(pe, gt_end) - np.maximum(ps, gt_start))
    union = np.maximum(0.0, np.maximum(pe, gt_end) - np.minimum(ps, gt_start))
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _windows(value: Any, where: str, loc: str) -> list[list[float]]:
    """``predicted_times`` checked: a non-empty list of ``[start, end]`` number pairs."""
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(where, f"{loc}.predicted_times", "a non-empty list of [start, end] windows", got=value)
    out = []
    for r, w in enumerate(value):
        if (
            not isinstance(w, (list, tuple))
            or len(w) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in w)
        ):
            raise DataError(where, f"{loc}.predicted_times[{r}]", "a [start, end] pair of numbers", got=w)
        try:
            out.append([float(w[0]), float(w[1])])
        except OverflowError:
            raise DataError(where, f"{loc}.predicted_times[{r}]", "numbers a 64-bit float holds", got=w) from None
    return out


def entry_key(entry: Any, where: str, loc: str) -> QueryKey:
    """``(clip_uid, annotation_uid, query_idx)`` of a results entry, checked."""
    if not isinstance(entry, Mapping):
        raise DataError(where, loc, "an object with clip_uid, annotation_uid, query_idx, predicted_times", got=entry)
    for name in ("clip_uid", "annotation_uid"):
        if not isinstance(entry.get(name), str):
            raise DataError(where, f"{loc}.{name}", "a string", got=entry.get(name))
    idx = entry.get("query_idx")
    if not isinstance(idx, int) or isinstance(idx, bool):
        raise DataError(where, f"{loc}.query_idx", "an integer", got=idx)
    return (entry["clip_uid"], entry["annotation_uid"], idx)


def evaluate_nlq(
    queries: Iterable[NLQQuery],
    results: Sequence[Mapping[str, Any]],
    tious: Sequence[float] = DEFAULT_NLQ_TIOUS,
    topk: Sequence[int] = DEFAULT_NLQ_TOPK,
    where: str = "predictions",
) -> NLQResult:
    """Score NLQ predictions exactly as the official Ego4D evaluator does.

    Args:
        queries: the ground-truth queries (those with text; their ``start``/``end`` are used).
        results: the submission's ``results`` entries, ``{clip_uid, annotation_uid, query_idx,
            predicted_times: [[s, e], ...]}``, windows best first, seconds in clip time.
        tious: IoU thresholds (a hit needs IoU ``> t``).
        topk: the ``k`` of R@k.
        where: the name of the predictions' source, used in error messages.

    Raises:
        EgoaslError: an entry for a query not in ``queries`` (the official script asserts), a
            query without a ground-truth window, malformed windows, or no entries at all.
    """
    tious = tuple(float(t) for t in tious)
    topk = tuple(int(k) for k in topk)
    if not tious or not topk or any(k < 1 for k in topk):
        raise EgoaslError(f"NLQ metric needs IoU thresholds and positive k, got {list(tious)} and {list(topk)}")
    by_key: dict[QueryKey, NLQQuery] = {}
    for q in queries:
        by_key[q.key] = q
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise DataError(where, "results", "a list of entries", got=type(results).__name__)
    if not results:
        raise EgoaslError(f"{where}: results is empty: nothing to evaluate")
    kmax = max(topk)
    windows = np.full((len(results), kmax), np.nan)
    first = np.full(len(results), np.nan)
    seen: set[QueryKey] = set()
    duplicates = 0
    for e, entry in enumerate(results):
        loc = f"results[{e}]"
        key = entry_key(entry, where, loc)
        q = by_key.get(key)
        if q is None:
            raise DataError(where, loc, "a query of the annotations (clip_uid, annotation_uid, query_idx)", got=key)
        if q.start is None or q.end is None:
            raise DataError(where, loc, "a query with a ground-truth window (not the unannotated test split)", got=key)
        if key in seen:
            duplicates += 1
        seen.add(key)
        w = np.asarray(_windows(entry.get("predicted_times"), where, loc))
        ious = hull_iou(w, q.start, q.end)
        first[e] = ious[0]
        n = min(len(ious), kmax)
        windows[e, :n] = ious[:n]
    # hit[i, e, r]: window r of entry e above threshold i; "any within the first k" by cumulative or.
    hit = windows[None, :, :] > np.asarray(tious)[:, None, None]
    hit_upto = np.logical_or.accumulate(hit, axis=2)
    counts = np.stack([hit_upto[:, :, k - 1].sum(axis=1) for k in topk], axis=1)  # (T, K)
    evaluated = len(results)
    missing = [k for k, q in by_key.items() if k not in seen and q.query]
    top1 = np.where(np.isnan(first), 0.0, first)
    return NLQResult(
        tious=tious,
        topk=topk,
        recall=counts / evaluated,
        recall_all=counts / (evaluated + len(missing)),
        mIoU=float(np.mean(top1)),
        evaluated=evaluated,
        total_queries=sum(1 for q in by_key.values() if q.query),
        missing=missing,
        duplicate_entries=duplicates,
    )
