"""NLQ predictions with scores: their files, and the merge of several models (spec section 8.6).

**Predictions.** ``NLQPredictions`` maps a query ``(clip_uid, annotation_uid, query_idx)`` to
its windows, best first, each a :class:`ScoredWindow` ``(start, end, score)`` in clip seconds.

**Files.** The challenge submission holds no scores, and merging needs them, so
:func:`write_nlq_predictions` writes two files: the submission (``<split>_submission.json``,
official format) and a *scores sidecar* next to it (``<split>_scores.json``, see
:func:`scores_path`)::

    {"version": "1.0", "format": "egoasl_nlq_scores",
     "results": [{"clip_uid", "annotation_uid", "query_idx", "scores": [s1, ..., s5]}, ...]}

one ``scores`` list per submission entry, in the order of its ``predicted_times``.
:func:`read_member` reads them back.

**Merge** (:func:`merge_nlq_predictions`, the report's NaQ ensemble): for every query, pool
the windows of all members, sort by score (stable: ties keep member order, then rank) and
keep the ``top_k`` best. Two refinements:

- exact duplicates (both ends within 1e-6 s), which would only waste slots, are pooled into
  one window carrying the best of their scores;
- ``nms_sigma`` (off by default, to match the report) runs class-agnostic Gaussian Soft-NMS
  on the pool first, so that near-duplicates from different models decay; the scores
  returned are then the decayed ones.

Scores must share one calibration (sigmoid scores of the same kind of model).

.. warning::
   A member without a scores sidecar (e.g. another team's submission) gets **rank-based
   scores** ``1/(rank+1)`` (1, 1/2, 1/3, ...). They are not calibrated against sigmoid
   scores: such a member's first window outranks every window scored below 1. Use it only
   knowingly; :func:`read_member` warns when it happens.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from egoasl.data.records import NLQQuery
from egoasl.engine.nms import soft_nms
from egoasl.errors import DataError, EgoaslError
from egoasl.io.submission import (
    NLQ_WINDOWS,
    build_nlq_submission,
    errors_only,
    read_nlq_submission,
    read_submission,
    validate_nlq_submission,
    write_json_atomic,
)
from egoasl.metrics.nlq import QueryKey, entry_key

SCORES_FORMAT = "egoasl_nlq_scores"
DUPLICATE_TOL_SEC = 1e-6


class ScoredWindow(NamedTuple):
    """One predicted window in clip seconds and its score."""

    start: float
    end: float
    score: float


NLQPredictions = dict[QueryKey, list[ScoredWindow]]


def merge_nlq_predictions(members: Sequence[Mapping[QueryKey, Sequence[ScoredWindow]]], top_k: int = 5,
                          nms_sigma: float | None = None) -> NLQPredictions:
    """Pool the windows of several models per query and keep the ``top_k`` best (module docstring).

    Args:
        members: one mapping query -> windows per model. A query may be missing from some.
        top_k: windows kept per query.
        nms_sigma: when given (> 0), Gaussian Soft-NMS with this sigma on each pool first.

    Returns:
        Query -> at most ``top_k`` windows, best first; queries in first-seen order.

    Raises:
        EgoaslError: no member, ``top_k < 1``, ``nms_sigma <= 0``, or a window with
            ``end < start`` or a non-finite value (naming the member and query).
    """
    if not members:
        raise EgoaslError("merge_nlq_predictions: expected at least one member")
    if top_k < 1:
        raise EgoaslError(f"merge_nlq_predictions: top_k must be >= 1, got {top_k}")
    if nms_sigma is not None and not nms_sigma > 0:
        raise EgoaslError(f"merge_nlq_predictions: nms_sigma must be > 0 (or None for no NMS), got {nms_sigma}")
    pools: dict[QueryKey, list[ScoredWindow]] = {}
    for m, member in enumerate(members):
        for key, windows in member.items():
            pool = pools.setdefault(key, [])
            for window in windows:
                start, end, score = (float(x) for x in window)
                if not all(math.isfinite(x) for x in (start, end, score)) or end < start:
                    raise EgoaslError(f"merge_nlq_predictions: member {m}, query {key}: bad window {tuple(window)}")
                _pool_window(pool, ScoredWindow(start, end, score))
    return {key: _best(pool, top_k, nms_sigma) for key, pool in pools.items()}


def _pool_window(pool: list[ScoredWindow], window: ScoredWindow) -> None:
    """Append ``window``, or raise the score of its exact duplicate already in ``pool``."""
    for i, other in enumerate(pool):
        if abs(other.start - window.start) <= DUPLICATE_TOL_SEC and abs(other.end - window.end) <= DUPLICATE_TOL_SEC:
            if window.score > other.score:
                pool[i] = other._replace(score=window.score)
            return
    pool.append(window)


def _best(pool: list[ScoredWindow], top_k: int, nms_sigma: float | None) -> list[ScoredWindow]:
    if nms_sigma is None:
        return sorted(pool, key=lambda x: -x.score)[:top_k]
    segments = torch.tensor([[x.start, x.end] for x in pool], dtype=torch.float64)
    scores = torch.tensor([x.score for x in pool], dtype=torch.float64)
    kept = soft_nms(segments, scores, nms_sigma, min_score=0.0, max_num=top_k)
    return [pool[i]._replace(score=float(s)) for i, s in zip(kept.indices.tolist(), kept.scores.tolist())]


# ----------------------------------------------------------------------------- files


def scores_path(submission_path: str | Path) -> Path:
    """The sidecar of a submission: ``X_submission.json`` -> ``X_scores.json``, else ``X_scores.json`` for ``X.json``."""
    path = Path(submission_path)
    stem = path.name[: -len("_submission.json")] if path.name.endswith("_submission.json") else path.stem
    return path.with_name(f"{stem}_scores.json")


def prediction_entries(predictions: Mapping[QueryKey, Sequence[ScoredWindow]]) -> list[dict]:
    """Submission ``results`` entries (``predicted_times`` best first, no scores), in query order."""
    return [
        {"clip_uid": clip, "annotation_uid": ann, "query_idx": idx, "predicted_times": [[w.start, w.end] for w in windows]}
        for (clip, ann, idx), windows in predictions.items()
    ]


def write_nlq_predictions(submission_path: str | Path, predictions: Mapping[QueryKey, Sequence[ScoredWindow]], *,
                          queries: Sequence[NLQQuery] | None = None, num_windows: int = NLQ_WINDOWS) -> list[Path]:
    """Write the submission and its scores sidecar; returns both paths.

    With ``queries``, the submission is validated first (every query with text present once,
    ``num_windows`` windows each) and nothing is written when it has errors.

    Raises:
        EgoaslError: listing the validation errors.
    """
    submission = build_nlq_submission(prediction_entries(predictions))
    if queries is not None:
        errors = errors_only(validate_nlq_submission(submission, queries, num_windows))
        if errors:
            shown = "\n  ".join(str(p) for p in errors[:20])
            more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            raise EgoaslError(f"{submission_path}: NLQ predictions not written, {len(errors)} problems:\n  {shown}{more}")
    sidecar = {
        "version": "1.0",
        "format": SCORES_FORMAT,
        "results": [
            {"clip_uid": clip, "annotation_uid": ann, "query_idx": idx, "scores": [float(w.score) for w in windows]}
            for (clip, ann, idx), windows in predictions.items()
        ],
    }
    side = scores_path(submission_path)
    write_json_atomic(side, sidecar)
    return [write_json_atomic(submission_path, submission), side]


def read_member(submission_path: str | Path, scores: str | Path | None = None) -> NLQPredictions:
    """One merge member from an NLQ submission and its scores sidecar.

    Args:
        submission_path: an NLQ submission JSON.
        scores: its sidecar; by default :func:`scores_path` of the submission. When that
            default does not exist, windows get rank-based scores ``1/(rank+1)`` and a
            ``UserWarning`` is issued (see the module docstring's warning).

    Raises:
        EgoaslError: an unreadable file, or a sidecar that does not match the submission.
    """
    submission_path = Path(submission_path)
    results = read_nlq_submission(submission_path)
    side = Path(scores) if scores is not None else scores_path(submission_path)
    if scores is None and not side.is_file():
        warnings.warn(
            f"{submission_path}: no scores sidecar {side.name}; using rank-based scores 1/(rank+1), "
            "which are not calibrated against other members' scores",
            UserWarning,
            stacklevel=2,
        )
        by_key: dict[QueryKey, list[float]] | None = None
    else:
        by_key = _read_scores(side)
    member: NLQPredictions = {}
    for e, entry in enumerate(results):
        loc = f"results[{e}]"
        key = entry_key(entry, str(submission_path), loc)
        times = entry.get("predicted_times")
        if not isinstance(times, list) or not all(isinstance(t, list) and len(t) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in t) for t in times):
            raise DataError(submission_path, f"{loc}.predicted_times", "a list of [start, end] windows of numbers",
                            got=times)
        if by_key is None:
            values = [1.0 / (rank + 1) for rank in range(len(times))]
        elif key not in by_key:
            raise DataError(side, "results", f"the scores of query {key} (the submission's {loc}); no scores")
        else:
            values = by_key[key]
            if len(values) != len(times):
                index = list(by_key).index(key)
                raise DataError(side, f"results[{index}].scores", f"{len(times)} scores, one per window of {loc}",
                                got=len(values))
        member[key] = [ScoredWindow(float(s), float(t), float(v)) for (s, t), v in zip(times, values)]
    return member


def _read_scores(path: Path) -> dict[QueryKey, list[float]]:
    obj, _ = read_submission(path)
    if obj.get("format") != SCORES_FORMAT or not isinstance(obj.get("results"), list):
        raise DataError(path, "", f"a scores sidecar ({{'format': {SCORES_FORMAT!r}, 'results': [...]}})")
    out: dict[QueryKey, list[float]] = {}
    for e, entry in enumerate(obj["results"]):
        key = entry_key(entry, str(path), f"results[{e}]")
        values = entry.get("scores")
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise DataError(path, f"results[{e}].scores", "a list of numbers", got=values)
        out[key] = [float(v) for v in values]
    return out
