"""Ego4D challenge submission files: build, write (atomically), read and validate.

Formats (``specs/ego4d_formats.md`` section 9):

- MQ: ``{"version": "1.0", "challenge": "ego4d_moment_queries", "detect_results": {clip_uid:
  [{"label", "score", "segment": [start, end]}, ...]}, "retrieve_results": {same}}``; per clip
  sorted by descending score (Recall@kx reads the list order), at most 2000 entries, exact
  label strings, every clip of the split present (the official Recall script crashes on a
  missing clip).
- NLQ: ``{"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": [{"clip_uid",
  "annotation_uid", "query_idx", "predicted_times": [[s, e] x 5]}, ...]}``, one entry per
  query with text.

Times are seconds relative to the clip start. Validation returns every problem with its
location (a JSON path such as ``detect_results['<clip>'][12].segment``) instead of stopping
at the first; problems that make the file wrong are errors, doubtful but legal things
(a segment past the clip end, a clip outside the split) are warnings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from egoasl.data.json_reader import parse_json_file
from egoasl.data.records import MQClip, NLQQuery
from egoasl.errors import DataError, EgoaslError, shown
from egoasl.io.atomic import write_text_atomic

VERSION = "1.0"
MQ_CHALLENGE = "ego4d_moment_queries"
NLQ_CHALLENGE = "ego4d_nlq_challenge"
MAX_PER_CLIP = 2000
NLQ_WINDOWS = 5
END_TOLERANCE = 1.0
"""Seconds a predicted end may pass the clip end before a warning."""


@dataclass(frozen=True)
class Problem:
    """One finding of a validation: where, what, and whether it makes the file wrong."""

    location: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {self.message}"


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    """The problems of severity ``error``."""
    return [p for p in problems if p.severity == "error"]


# ----------------------------------------------------------------------------------------------
# building and writing


def _rows(items: Any, where: str, loc: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, scores (N,) and segments (N, 2) of one clip's predictions (dicts or columns)."""
    if isinstance(items, Mapping):
        try:
            labels, scores, segments = list(items["label"]), items["score"], items["segment"]
        except KeyError as exc:
            raise DataError(where, loc, "columns 'label', 'score' and 'segment'", got=sorted(items)) from exc
    elif isinstance(items, (list, tuple)):
        for i, it in enumerate(items):
            if not isinstance(it, Mapping) or not {"label", "score", "segment"} <= set(it):
                raise DataError(where, f"{loc}[{i}]", "an object with label, score and segment", got=it)
        labels = [it["label"] for it in items]
        scores = [it["score"] for it in items]
        segments = [it["segment"] for it in items]
    else:
        raise DataError(where, loc, "a list of predictions", got=type(items).__name__)
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise DataError(where, f"{loc}[{i}].label", "a label string", got=label)
    try:
        score_arr = np.asarray(scores, dtype=np.float64).reshape(len(labels))
        seg_arr = np.asarray(segments, dtype=np.float64).reshape(len(labels), 2)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(where, loc, "numeric scores and [start, end] segments", got=str(exc)) from None
    return labels, score_arr, seg_arr


def build_mq_results(predictions: Mapping[str, Any], max_per_clip: int = MAX_PER_CLIP,
                     where: str = "predictions", name: str = "results") -> dict[str, list[dict[str, Any]]]:
    """Per-clip lists in submission form: sorted by descending score (stable), capped, plain floats.

    ``predictions`` maps clip uids to lists of ``{label, score, segment}`` or to columns
    ``{"label": [...], "score": (N,), "segment": (N, 2)}``. Non-finite scores or times raise.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for uid, items in predictions.items():
        loc = f"{name}[{uid!r}]"
        labels, scores, segments = _rows(items, where, loc)
        bad = np.flatnonzero(~np.isfinite(scores) | ~np.isfinite(segments).all(axis=1))
        if len(bad):
            i = int(bad[0])
            raise DataError(where, f"{loc}[{i}]", "a finite score and segment",
                            got={"score": float(scores[i]), "segment": segments[i].tolist()})
        order = np.argsort(-scores, kind="stable")[:max_per_clip]
        out[str(uid)] = [
            {"label": labels[i], "score": float(scores[i]), "segment": [float(segments[i, 0]), float(segments[i, 1])]}
            for i in order
        ]
    return out


def build_mq_submission(detections: Mapping[str, Any], retrievals: Mapping[str, Any] | None = None,
                        max_per_clip: int = MAX_PER_CLIP) -> dict[str, Any]:
    """The MQ submission object. ``retrievals`` defaults to the detections (as ASL and OpenTAD do)."""
    detect = build_mq_results(detections, max_per_clip, name="detect_results")
    retrieve = detect if retrievals is None else build_mq_results(retrievals, max_per_clip, name="retrieve_results")
    return {"version": VERSION, "challenge": MQ_CHALLENGE, "detect_results": detect, "retrieve_results": retrieve}


def build_nlq_submission(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The NLQ submission object from entries ``{clip_uid, annotation_uid, query_idx, predicted_times}``."""
    entries = []
    for e, r in enumerate(results):
        try:
            times = [[float(s), float(t)] for s, t in r["predicted_times"]]
            entries.append({
                "clip_uid": str(r["clip_uid"]),
                "annotation_uid": str(r["annotation_uid"]),
                "query_idx": int(r["query_idx"]),
                "predicted_times": times,
            })
        except (KeyError, TypeError, ValueError) as exc:
            expected = "clip_uid, annotation_uid, query_idx and [[s, e], ...] windows"
            raise DataError("predictions", f"results[{e}]", expected,
                            got=f"{type(exc).__name__}: {exc}") from None
    return {"version": VERSION, "challenge": NLQ_CHALLENGE, "results": entries}


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON to a temporary file next to ``path``, then ``os.replace`` it into place.

    A reader never sees a half-written file, and an existing file survives a failed write.
    NaN and infinity are refused (they are not JSON).
    """
    try:
        text = json.dumps(obj, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:
        raise EgoaslError(f"{path}: cannot write a JSON submission: {exc}") from None
    write_text_atomic(path, text)
    return Path(path)


def write_mq_submission(path: str | Path, detections: Mapping[str, Any], retrievals: Mapping[str, Any] | None = None,
                        *, clips: Sequence[MQClip] | None = None, labels: Collection[str] | None = None,
                        max_per_clip: int = MAX_PER_CLIP) -> Path:
    """Build, optionally validate (against ``clips`` and ``labels``) and atomically write an MQ submission.

    Raises:
        EgoaslError: listing every validation error, before anything is written.
    """
    obj = build_mq_submission(detections, retrievals, max_per_clip)
    if clips is not None:
        _raise_errors(path, validate_mq_submission(obj, clips, labels, max_per_clip))
    return write_json_atomic(path, obj)


def write_nlq_submission(path: str | Path, results: Iterable[Mapping[str, Any]], *,
                         queries: Sequence[NLQQuery] | None = None) -> Path:
    """Build, optionally validate (against ``queries``) and atomically write an NLQ submission."""
    obj = build_nlq_submission(results)
    if queries is not None:
        _raise_errors(path, validate_nlq_submission(obj, queries))
    return write_json_atomic(path, obj)


def _raise_errors(path: str | Path, problems: list[Problem]) -> None:
    errors = errors_only(problems)
    if errors:
        listed = "\n  ".join(str(p) for p in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise EgoaslError(f"{path}: submission not written, {len(errors)} problems:\n  {listed}{more}")


# ----------------------------------------------------------------------------------------------
# reading


def read_submission(path: str | Path) -> tuple[dict[str, Any], list[Problem]]:
    """Load a submission JSON. Returns the object and the duplicate-key problems found while parsing.

    Content is not checked here (see :func:`validate_mq_submission`, :func:`validate_nlq_submission`).

    Raises:
        DataError: unreadable file, invalid JSON, or not a JSON object.
    """
    path = Path(path)
    duplicates: list[Problem] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                duplicates.append(
                    Problem(repr(key), "key appears twice in one JSON object; all but the last copy are lost"))
            out[key] = value
        return out

    obj = parse_json_file(path, hook, what="submission file")
    if not isinstance(obj, dict):
        raise DataError(path, "", "a JSON object", got=type(obj).__name__)
    return obj, duplicates


def read_mq_submission(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(detect_results, retrieve_results)`` of an MQ submission (structure checked, not content).

    A file with only ``results`` (the intermediate files of the official pipeline) gives the
    same mapping twice.
    """
    obj, _ = read_submission(path)
    if obj.get("challenge") not in (None, MQ_CHALLENGE):
        raise DataError(path, "challenge", repr(MQ_CHALLENGE), got=obj.get("challenge"))
    if "detect_results" not in obj and isinstance(obj.get("results"), dict):
        return obj["results"], obj["results"]
    for key in ("detect_results", "retrieve_results"):
        if not isinstance(obj.get(key), dict):
            raise DataError(path, key, "an object clip_uid -> list of predictions", got=obj.get(key))
    return obj["detect_results"], obj["retrieve_results"]


def read_nlq_submission(path: str | Path) -> list[dict[str, Any]]:
    """The ``results`` list of an NLQ submission, after the official ``version``/``challenge`` checks."""
    obj, _ = read_submission(path)
    if obj.get("version") != VERSION:
        raise DataError(path, "version", repr(VERSION), got=obj.get("version"))
    if obj.get("challenge") != NLQ_CHALLENGE:
        raise DataError(path, "challenge", repr(NLQ_CHALLENGE), got=obj.get("challenge"))
    if not isinstance(obj.get("results"), list):
        raise DataError(path, "results", "a list of entries", got=obj.get("results"))
    return obj["results"]


# ----------------------------------------------------------------------------------------------
# validation


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x: float) -> bool:
    """``math.isfinite`` that calls an integer no float holds infinite instead of overflowing."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _header(obj: Any, challenge: str, keys: Sequence[str], out: list[Problem]) -> bool:
    if not isinstance(obj, Mapping):
        out.append(Problem("(top level)", f"expected a JSON object, got {type(obj).__name__}"))
        return False
    if obj.get("version") != VERSION:
        out.append(Problem("version", f"expected {VERSION!r}, got {shown(obj.get('version'))}"))
    if obj.get("challenge") != challenge:
        out.append(Problem("challenge", f"expected {challenge!r}, got {shown(obj.get('challenge'))}"))
    for key in obj:
        if key not in ("version", "challenge", *keys):
            out.append(Problem(repr(key), "unexpected top-level key", "warning"))
    return True


def _label_hint(label: str, labels: Collection[str]) -> str:
    bare = {x.strip('"'): x for x in labels}
    official = bare.get(label.strip('"'))
    return f"; the official string is {official!r} (quotes are part of it)" if official else ""


def validate_mq_submission(
    obj: Any,
    clips: Sequence[MQClip],
    labels: Collection[str] | None = None,
    max_per_clip: int = MAX_PER_CLIP,
) -> list[Problem]:
    """Every problem of an MQ submission for the given clips (one split).

    Args:
        obj: the parsed submission.
        clips: the clips that must all be present (e.g. the 488 test clips).
        labels: the taxonomy (exact strings); ``None`` skips the label check.
        max_per_clip: the largest allowed number of predictions per clip.
    """
    out: list[Problem] = []
    if not _header(obj, MQ_CHALLENGE, ("detect_results", "retrieve_results"), out):
        return out
    label_set = set(labels) if labels is not None else None
    durations = {c.clip_uid: c.duration for c in clips}
    for key in ("detect_results", "retrieve_results"):
        results = obj.get(key)
        if not isinstance(results, Mapping):
            got = type(results).__name__
            out.append(Problem(key, f"expected an object clip_uid -> list of predictions, got {got}"))
            continue
        why = "the official Recall script crashes on it" if key == "retrieve_results" else "every clip must be present"
        for uid in durations:
            if uid not in results:
                out.append(Problem(f"{key}[{uid!r}]", f"missing clip of the split ({why})"))
        for uid, items in results.items():
            loc = f"{key}[{uid!r}]"
            if uid not in durations:
                what = "scored as false positives" if key == "detect_results" else "ignored"
                out.append(Problem(loc, f"clip is not in the evaluated split ({what})", "warning"))
            if not isinstance(items, list):
                out.append(Problem(loc, f"expected a list of predictions, got {type(items).__name__}"))
                continue
            if len(items) > max_per_clip:
                out.append(Problem(loc, f"{len(items)} predictions, more than the {max_per_clip} allowed per clip"))
            _check_mq_items(items, loc, label_set, durations.get(uid), out)
    return out


def _check_mq_items(items: list, loc: str, labels: set[str] | None, duration: float | None,
                    out: list[Problem]) -> None:
    previous = math.inf
    unsorted_at = None
    for i, it in enumerate(items):
        at = f"{loc}[{i}]"
        if not isinstance(it, Mapping):
            out.append(Problem(at, f"expected an object with label, score and segment, got {type(it).__name__}"))
            continue
        for key in ("label", "score", "segment"):
            if key not in it:
                out.append(Problem(at, f"missing {key!r}"))
        for key in it:
            if key not in ("label", "score", "segment"):
                out.append(Problem(f"{at}.{key}", "unexpected field", "warning"))
        label = it.get("label")
        if "label" in it:
            if not isinstance(label, str):
                out.append(Problem(f"{at}.label", f"expected a string, got {shown(label)}"))
            elif labels is not None and label not in labels:
                out.append(Problem(f"{at}.label", f"unknown label {shown(label)} (dropped by the evaluator)"
                                   + _label_hint(label, labels)))
        score = it.get("score")
        if "score" in it:
            if not _is_number(score):
                out.append(Problem(f"{at}.score", f"expected a number, got {shown(score)}"))
            elif not _finite(score):
                out.append(Problem(f"{at}.score", f"score is {score}"))
            else:
                if score > previous and unsorted_at is None:
                    unsorted_at = i
                previous = score
        if "segment" in it:
            _check_window(it["segment"], f"{at}.segment", duration, out)
    if unsorted_at is not None:
        out.append(Problem(f"{loc}[{unsorted_at}]", "list not sorted by descending score "
                           "(score above the one before it; Recall@kx reads the list order)"))


def _check_window(seg: Any, at: str, duration: float | None, out: list[Problem]) -> None:
    if not isinstance(seg, list) or len(seg) != 2 or not all(_is_number(x) for x in seg):
        out.append(Problem(at, f"expected [start, end] in seconds, got {shown(seg)}"))
        return
    s, e = seg
    if not (_finite(s) and _finite(e)):
        out.append(Problem(at, f"non-finite time in {shown(seg)}"))
    elif s > e:
        out.append(Problem(at, f"reversed: start {s} > end {e}"))
    else:
        if s < 0:
            out.append(Problem(at, f"starts before the clip: {s}", "warning"))
        if duration is not None and e > duration + END_TOLERANCE:
            out.append(Problem(at, f"ends at {e}, after the clip end {duration:.3f}", "warning"))


def validate_nlq_submission(obj: Any, queries: Sequence[NLQQuery], num_windows: int = NLQ_WINDOWS) -> list[Problem]:
    """Every problem of an NLQ submission for the given queries.

    Every query with text must have exactly one entry with ``num_windows`` windows.
    """
    out: list[Problem] = []
    if not _header(obj, NLQ_CHALLENGE, ("results",), out):
        return out
    results = obj.get("results")
    if not isinstance(results, list):
        out.append(Problem("results", f"expected a list of entries, got {type(results).__name__}"))
        return out
    by_key = {q.key: q for q in queries}
    seen: dict[tuple[str, str, int], int] = {}
    for e, entry in enumerate(results):
        at = f"results[{e}]"
        if not isinstance(entry, Mapping):
            out.append(Problem(at, f"expected an object, got {type(entry).__name__}"))
            continue
        bad_key = False
        for name in ("clip_uid", "annotation_uid"):
            if not isinstance(entry.get(name), str):
                out.append(Problem(f"{at}.{name}", f"expected a string, got {shown(entry.get(name))}"))
                bad_key = True
        idx = entry.get("query_idx")
        if not isinstance(idx, int) or isinstance(idx, bool):
            out.append(Problem(f"{at}.query_idx", f"expected an integer, got {shown(idx)}"))
            bad_key = True
        for name in entry:
            if name not in ("clip_uid", "annotation_uid", "query_idx", "predicted_times"):
                out.append(Problem(f"{at}.{name}", "unexpected field", "warning"))
        query = None
        if not bad_key:
            key = (entry["clip_uid"], entry["annotation_uid"], idx)
            query = by_key.get(key)
            if query is None:
                out.append(Problem(at, f"no such query {key} in the annotations (the official evaluator asserts)"))
            elif key in seen:
                out.append(Problem(at, f"query {key} already predicted in results[{seen[key]}] (would count twice)"))
            else:
                seen[key] = e
        times = entry.get("predicted_times")
        if not isinstance(times, list):
            out.append(Problem(f"{at}.predicted_times", f"expected a list of [start, end] windows, got {shown(times)}"))
            continue
        if times and _is_number(times[0]):
            out.append(Problem(f"{at}.predicted_times",
                               "a flat [start, end]; expected a list of windows [[s, e], ...]"))
            continue
        if len(times) != num_windows:
            out.append(Problem(f"{at}.predicted_times", f"{len(times)} windows, expected {num_windows}"))
        for r, w in enumerate(times):
            _check_window(w, f"{at}.predicted_times[{r}]", query.duration if query else None, out)
    for key, q in by_key.items():
        if q.query and key not in seen:
            out.append(Problem(f"query {key}", "missing: no entry predicts this query"))
    return out
