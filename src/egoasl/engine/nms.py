"""Gaussian Soft-NMS and segment voting for 1D segments, vectorised with PyTorch and NumPy.

Semantics follow the authors' release (``specs/asl_method.md`` section 6.2: the C++ op
``softnms_1d_cpu`` with the Gaussian method, wrapped by ``batched_nms``):

* Repeatedly pick the candidate with the highest *current* score, then multiply the score
  of every remaining candidate by ``exp(-IoU^2 / sigma)`` (no factor 2), and discard the
  ones whose decayed score is below ``min_score``. IoU uses lengths ``x2 - x1 + 1e-6``:
  ``IoU = inter / (len_a + len_b - inter)`` with ``inter = max(0, min(a2, b2) - max(a1, b1))``.
  All arithmetic is float32, in the same order of operations as the C++ op.
* The first pick is never compared with ``min_score`` (the C++ op only tests candidates after
  decaying them), so a group whose best score is below ``min_score`` still yields that one
  candidate. Every later pick has a score ``>= min_score``.
* Multi-class: each class separately, each capped at ``max_num`` picks; the classes are
  then merged, sorted by score and cut to the global top ``max_num``. Class-agnostic: one
  group, capped at ``max_num``.

**Tie rule.** Among candidates with exactly equal current scores we pick the one with the
lowest input index. The C++ op picks the one at the lowest position of its internal buffer,
which it permutes while it swaps picked and discarded candidates, so the two rules agree
whenever no two of the current maxima are exactly equal, and always in the first round. In
the final merge, equal scores keep the order (class id ascending, then pick order); the
release's unstable ``sort`` leaves that order unspecified.

**How it is vectorised.** Candidates are grouped by class into the rows of a padded
``(rows, width)`` matrix (pad score ``-inf``; inside a row, ascending input index). One loop
step takes the row-wise maximum of every class at once and decays every row with a few
whole-matrix operations, so a clip costs ``min(largest class, max_num)`` steps, whatever
the number of classes. Rows are sorted by size, so step ``s`` only touches the prefix of
rows that still hold more than ``s`` candidates, and rows are split into buckets of similar
size (:data:`STEP_COST`) so that a few large classes do not make every row as wide as the
largest one.

The work runs in NumPy on CPU copies of the inputs; torch is the interface. A loop step is a
dozen operations on small arrays, where torch's per-operation dispatch costs ~10x NumPy's
(measured ~20 us vs ~2 us per step on one core), and torch's intra-op threads slowed the
small grouping operations 2.5x on a loaded 2-core machine; see ``bench/bench_nms.py``.
Inputs on another device are processed on the CPU and the result is returned on the input
device, like the release's CPU-only op.

Discarding below ``min_score`` is lazy: decay only lowers scores, so a candidate below
``min_score`` can only be picked once every other remaining candidate of its class is
below ``min_score`` too. Such picks are dropped at the end, which gives exactly the C++
op's result without a masking operation per step.
"""

from __future__ import annotations

import bisect
import itertools
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

STEP_COST = 3000
"""Cost of one pick-loop step in element-operations, for splitting rows into buckets.

Measured on one core: a step costs ~8 us plus ~2.6 ns per element of the padded matrix."""

_LENGTH_EPS = 1e-6  # the release's IoU adds this to every length


class SoftNMSResult(NamedTuple):
    """Kept candidates, sorted by descending (decayed) score.

    Attributes:
        segments: ``(R, 2)`` float32, the kept segments (unchanged by Soft-NMS).
        scores: ``(R,)`` float32, their decayed scores.
        labels: ``(R,)`` long, their labels (zeros when no labels were given).
        indices: ``(R,)`` long, their positions in the input.
    """

    segments: Tensor
    scores: Tensor
    labels: Tensor
    indices: Tensor


def soft_nms(
    segments: Tensor,
    scores: Tensor,
    sigma: float,
    min_score: float,
    max_num: int,
    labels: Tensor | None = None,
    multiclass: bool = True,
) -> SoftNMSResult:
    """Gaussian Soft-NMS with the release's semantics (see the module docstring).

    Args:
        segments: ``(N, 2)`` candidate segments ``[start, end]`` with ``end >= start`` (any
            float dtype; computed in float32).
        scores: ``(N,)`` finite candidate scores.
        sigma: Gaussian parameter; the decay is ``exp(-IoU^2 / sigma)``. Must be > 0.
        min_score: candidates whose decayed score falls below this are discarded.
        max_num: cap per class and on the merged result (>= 1).
        labels: ``(N,)`` integer class of each candidate, or None (class-agnostic).
        multiclass: with labels, run each class separately (True) or all together (False).

    Returns:
        A :class:`SoftNMSResult` sorted by descending score, on the device of ``scores``.
    """
    device = scores.device
    segs, score_in = _check_inputs(segments, scores, labels, sigma, max_num)
    label_in = None if labels is None else labels.detach().to("cpu", torch.long).numpy()
    n = score_in.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return SoftNMSResult(torch.zeros(0, 2, device=device), torch.zeros(0, device=device), empty, empty.clone())
    group = label_in if label_in is not None and multiclass else np.zeros(n, dtype=np.int64)

    index, counts = _group_rows(group)  # (rows, width) input index or -1; per-row counts (descending)
    count_list = counts.tolist()
    picks = [
        _soft_nms_rows(segs, score_in, index[start:stop, : count_list[start]], count_list[start:stop], sigma, min_score, max_num)
        for start, stop in _buckets(count_list, max_num)
    ]
    score = np.concatenate([p[0] for p in picks])
    keep = np.concatenate([p[1] for p in picks])
    rank = np.concatenate([p[2] for p in picks])

    # merge: order by (class ascending, pick order), then a stable sort by descending score
    order = np.argsort(group[keep] * (max_num + 1) + rank, kind="stable")
    order = order[np.argsort(-score[order], kind="stable")][:max_num]
    keep = keep[order]
    out_labels = label_in[keep] if label_in is not None else np.zeros_like(keep)
    return SoftNMSResult(*(torch.from_numpy(x).to(device) for x in (segs[keep], score[order], out_labels, keep)))


def _check_inputs(
    segments: Tensor, scores: Tensor, labels: Tensor | None, sigma: float, max_num: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and parameters; return float32 NumPy copies of segments and scores."""
    if segments.dim() != 2 or segments.shape[1] != 2:
        raise ValueError(f"soft_nms: segments must have shape (N, 2), got {tuple(segments.shape)}")
    if scores.dim() != 1 or scores.shape[0] != segments.shape[0]:
        raise ValueError(f"soft_nms: scores must have shape ({segments.shape[0]},), got {tuple(scores.shape)}")
    if labels is not None and tuple(labels.shape) != tuple(scores.shape):
        raise ValueError(f"soft_nms: labels must have shape ({scores.shape[0]},), got {tuple(labels.shape)}")
    if not sigma > 0:
        raise ValueError(f"soft_nms: sigma must be > 0, got {sigma}")
    if max_num < 1:
        raise ValueError(f"soft_nms: max_num must be >= 1, got {max_num}")
    segs = segments.detach().to("cpu", torch.float32).numpy()
    score = scores.detach().to("cpu", torch.float32).numpy()
    if not (np.isfinite(score).all() and np.isfinite(segs).all()):
        raise ValueError("soft_nms: segments and scores must be finite")
    return segs, score


def _group_rows(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lay candidates out as rows of a padded matrix, one row per group.

    Returns ``index (rows, width)`` holding input positions (ascending within a row, ``-1``
    as padding) and ``counts (rows,)``; rows are sorted by descending count, equal counts by
    ascending group id.
    """
    _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    by_size = np.argsort(-counts, kind="stable")
    row_of_group = np.empty_like(by_size)
    row_of_group[by_size] = np.arange(len(counts))
    counts = counts[by_size]
    row = row_of_group[inverse.reshape(-1)]
    order = np.argsort(row, kind="stable")  # grouped by row, ascending input index inside
    row_sorted = row[order]
    starts = np.cumsum(counts) - counts
    col = np.arange(len(group)) - starts[row_sorted]
    index = np.full((len(counts), int(counts[0])), -1, dtype=np.int64)
    index[row_sorted, col] = order
    return index, counts


def _buckets(counts: list[int], max_num: int) -> list[tuple[int, int]]:
    """Split rows (sorted by descending count) into runs of rows padded to a common width.

    A bucket of width ``W`` costs ``min(W, max_num)`` loop steps, and a row of ``c``
    candidates in it costs ``min(c, max_num) * W`` element-operations. Row ``k`` starts a new
    bucket when the padding saved for the rows that would share it (those with at least
    half its count) is worth more than the steps the new bucket adds (greedy, one pass; on
    the benchmark cases as good as an exact dynamic programme, at a fraction of its cost).
    """
    capped = [min(c, max_num) for c in counts]
    prefix = [0, *itertools.accumulate(capped)]
    descending = [-c for c in counts]  # ascending, for bisect
    out, start = [], 0
    for k in range(1, len(counts)):
        end = bisect.bisect_right(descending, -0.5 * counts[k])  # rows with count >= counts[k] / 2
        if (counts[start] - counts[k]) * (prefix[end] - prefix[k]) > capped[k] * STEP_COST:
            out.append((start, k))
            start = k
    out.append((start, len(counts)))
    return out


def _soft_nms_rows(
    segments: np.ndarray, scores: np.ndarray, index: np.ndarray, counts: list[int], sigma: float, min_score: float,
    max_num: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft-NMS on every row of ``index (rows, width)`` in parallel.

    Returns the kept picks as flat arrays: decayed score, input index, and pick rank within
    the row.
    """
    rows, width = index.shape
    valid = index >= 0
    safe = np.maximum(index, 0)
    x1 = np.where(valid, segments[safe, 0], np.float32(0.0))
    x2 = np.where(valid, segments[safe, 1], np.float32(0.0))
    area = (x2 - x1) + np.float32(_LENGTH_EPS)
    info = np.stack([x1, x2, area], -1).reshape(rows * width, 3)  # per candidate: x1, x2, length
    work = np.where(valid, scores[safe], np.float32(-np.inf))  # current scores; picked/padding = -inf
    flat_work = work.reshape(-1)
    neg_sigma = np.float32(-sigma)
    # exp(-IoU^2/sigma) >= exp(-1/sigma) underflows to 0 only for sigma < ~0.0115; then floor it
    # so that -inf * factor stays -inf (not nan)
    floor = np.float32(np.finfo(np.float32).tiny) if sigma < 0.02 else None
    base = np.arange(rows) * width
    steps = min(width, max_num)

    values, positions = [], []
    active = rows  # rows with more than `step` candidates: a prefix, as counts are descending
    cur, c1, c2, carea, cbase = work, x1, x2, area, base
    for step in range(steps):
        if counts[active - 1] <= step:
            while counts[active - 1] <= step:
                active -= 1
            cur, c1, c2, carea, cbase = work[:active], x1[:active], x2[:active], area[:active], base[:active]
        pos = cur.argmax(axis=1)  # first maximum: the lowest input index among ties
        flat = cbase + pos
        val = flat_work[flat]
        values.append(val)
        positions.append(pos)
        if step and step % 8 == 0 and not val.max() >= min_score:
            break  # every later pick would be below min_score
        # decay factor exp(-IoU^2 / sigma) of each row's pick against its row, in the C++ op's
        # order of float32 operations
        pick = info[flat]
        factor = np.minimum(pick[:, 1:2], c2)
        factor -= np.maximum(pick[:, 0:1], c1)
        np.maximum(factor, 0.0, out=factor)  # intersection
        union = pick[:, 2:3] + carea
        union -= factor
        np.divide(factor, union, out=factor)  # IoU
        np.multiply(factor, factor, out=factor)
        np.divide(factor, neg_sigma, out=factor)
        np.exp(factor, out=factor)
        if floor is not None:
            np.maximum(factor, floor, out=factor)
        cur *= factor
        flat_work[flat] = -np.inf

    lengths = np.array([len(v) for v in values])
    value = np.concatenate(values)
    position = np.concatenate(positions)
    step_of = np.repeat(np.arange(len(values)), lengths)
    row_of = np.arange(len(value)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = (step_of == 0) | (value >= min_score)  # lazy min_score: the first pick is never tested
    return value[keep], index[row_of[keep], position[keep]], step_of[keep]


def segment_voting(
    kept_segs: Tensor,
    kept_scores: Tensor,
    all_segs: Tensor,
    all_scores: Tensor,
    iou_thresh: float,
    kept_labels: Tensor | None = None,
    all_labels: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Segment voting (``specs/asl_method.md`` section 8.6).

    Each kept segment becomes the average of the pre-NMS candidates whose IoU with it is
    ``>= iou_thresh``, weighted by their pre-NMS scores. IoU here uses plain lengths
    ``x2 - x1`` (as the release's voting does). A kept segment with no neighbour of positive
    weight stays as it is. With labels, only candidates of the same label vote.

    Args:
        kept_segs: ``(R, 2)`` segments kept by Soft-NMS.
        kept_scores: ``(R,)`` their scores; voting moves boundaries only, so they are returned
            unchanged, keeping the ``(segments, scores)`` pair together.
        all_segs: ``(N, 2)`` pre-NMS candidates; ``all_scores``: ``(N,)`` their scores.
        iou_thresh: IoU threshold in ``(0, 1]``.
        kept_labels, all_labels: optional labels restricting the vote to the same class.

    Returns:
        ``(voted_segments (R, 2) float32, kept_scores)``.
    """
    if kept_segs.dim() != 2 or kept_segs.shape[1] != 2 or kept_scores.shape != kept_segs.shape[:1]:
        raise ValueError(f"segment_voting: kept_segs (R, 2) and kept_scores (R,) expected, got {tuple(kept_segs.shape)}, {tuple(kept_scores.shape)}")
    if all_segs.dim() != 2 or all_segs.shape[1] != 2 or all_scores.shape != all_segs.shape[:1]:
        raise ValueError(f"segment_voting: all_segs (N, 2) and all_scores (N,) expected, got {tuple(all_segs.shape)}, {tuple(all_scores.shape)}")
    if (kept_labels is None) != (all_labels is None):
        raise ValueError("segment_voting: give both kept_labels and all_labels, or neither")
    kept = kept_segs.detach().to(torch.float32)
    cands = all_segs.detach().to(torch.float32)
    inter = (torch.minimum(kept[:, None, 1], cands[None, :, 1]) - torch.maximum(kept[:, None, 0], cands[None, :, 0])).clamp(min=0.0)
    union = (kept[:, None, 1] - kept[:, None, 0]) + (cands[None, :, 1] - cands[None, :, 0]) - inter
    iou = torch.where(union > 0, inter / union, torch.zeros_like(inter))
    weight = (iou >= iou_thresh).to(torch.float32) * all_scores.detach().to(torch.float32)[None, :]
    if kept_labels is not None:
        weight = weight * (kept_labels[:, None] == all_labels[None, :])
    total = weight.sum(dim=1, keepdim=True)
    voted = (weight @ cands) / total.clamp(min=torch.finfo(torch.float32).tiny)
    return torch.where(total > 0, voted, kept), kept_scores
