"""The inputs of the MQ metric as flat arrays: ground truth of the evaluated clips and predictions.

Predictions are checked while they are flattened; a malformed one raises a :class:`DataError`
that names its place (``detect_results['<clip>'][12].segment``). Numbers are never converted
from strings or booleans. The order of the arrays is the submission order (clips in mapping
order, then list order), which the metric's tie rules depend on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np

from egoasl.data.records import MQClip
from egoasl.errors import DataError, EgoaslError

Predictions = Mapping[str, Any]
"""``clip_uid -> predictions of that clip``: either a list of ``{"label", "score", "segment"}``
dicts (the submission format), or a mapping of columns ``{"label": [str, ...], "score":
array (N,), "segment": array (N, 2)}`` (cheaper for in-memory callers)."""


@dataclass
class GroundTruth:
    """Every ground-truth instance of the evaluated clips (duplicates included), clip by clip."""

    clip: np.ndarray  # (G,) index of the clip in the evaluated list
    cls: np.ndarray  # (G,) class index (first-appearance order)
    start: np.ndarray
    end: np.ndarray
    classes: list[str]
    class_index: dict[str, int]
    clip_index: dict[str, int]
    clip_uids: list[str]


@dataclass
class FlatPredictions:
    """Predictions in submission order, with their clip and class resolved against the ground truth."""

    clip: np.ndarray  # (N,) clip index, -1 when the clip is not evaluated
    cls: np.ndarray  # (N,) class index, -1 for a label absent from the ground truth
    score: np.ndarray
    start: np.ndarray
    end: np.ndarray
    num_per_clip: dict[str, int]
    unsorted_clips: list[str]


def read_ground_truth(clips: Iterable[MQClip]) -> GroundTruth:
    """The instances of ``clips`` as arrays; classes are numbered in order of first appearance."""
    clip_index: dict[str, int] = {}
    clip_uids: list[str] = []
    class_index: dict[str, int] = {}
    g_clip: list[int] = []
    g_cls: list[int] = []
    g_start: list[float] = []
    g_end: list[float] = []
    for clip in clips:
        if clip.clip_uid in clip_index:
            raise EgoaslError(f"clip {clip.clip_uid!r} is listed twice in the ground truth")
        ci = clip_index[clip.clip_uid] = len(clip_uids)
        clip_uids.append(clip.clip_uid)
        for inst in clip.instances:
            g_clip.append(ci)
            g_cls.append(class_index.setdefault(inst.label, len(class_index)))
            g_start.append(float(inst.start))
            g_end.append(float(inst.end))
    if not g_clip:
        raise EgoaslError("no ground-truth instance among the evaluated clips: nothing to score")
    return GroundTruth(
        clip=np.asarray(g_clip, dtype=np.int64),
        cls=np.asarray(g_cls, dtype=np.int64),
        start=np.asarray(g_start, dtype=np.float64),
        end=np.asarray(g_end, dtype=np.float64),
        classes=list(class_index),
        class_index=class_index,
        clip_index=clip_index,
        clip_uids=clip_uids,
    )


def flatten_predictions(preds: Predictions, gt: GroundTruth, where: str, name: str) -> FlatPredictions:
    """Predictions in submission order (clips in mapping order, then list order) as arrays."""
    if not isinstance(preds, Mapping):
        raise DataError(where, name, "a mapping clip_uid -> list of predictions", got=type(preds).__name__)
    get_class = gt.class_index.get
    clips, classes, scores, segments = [], [], [], []
    num_per_clip: dict[str, int] = {}
    unsorted: list[str] = []
    for uid, items in preds.items():
        loc = f"{name}[{uid!r}]"
        if isinstance(items, Mapping):
            try:
                labels, score, seg = items["label"], items["score"], items["segment"]
            except KeyError as exc:
                raise DataError(where, loc, "columns 'label', 'score' and 'segment'", got=sorted(items)) from exc
            labels = list(labels)
        elif isinstance(items, (list, tuple)):
            try:
                labels = [it["label"] for it in items]
                score = [it["score"] for it in items]
                seg = [it["segment"] for it in items]
            except (KeyError, TypeError, IndexError):
                _raise_bad_item(items, where, loc)
        else:
            raise DataError(where, loc, "a list of predictions", got=type(items).__name__)
        n = len(labels)
        try:
            cls = np.fromiter(map(get_class, labels, repeat(-1)), dtype=np.int64, count=n)
        except TypeError:
            i = next(i for i, label in enumerate(labels) if not isinstance(label, str))
            raise DataError(where, f"{loc}[{i}].label", "a string", got=labels[i]) from None
        score_arr = _numbers(score, (n,), where, loc, "score", "a number")
        seg_arr = _numbers(seg, (n, 2), where, loc, "segment", "[start, end] in seconds")
        ci = gt.clip_index.get(uid, -1)
        clips.append(np.full(n, ci, dtype=np.int64))
        classes.append(cls)
        scores.append(score_arr)
        segments.append(seg_arr)
        num_per_clip[uid] = n
        if n > 1 and np.any(score_arr[1:] > score_arr[:-1]):
            unsorted.append(uid)
    if clips:
        seg_all = np.concatenate(segments)
        return FlatPredictions(
            clip=np.concatenate(clips),
            cls=np.concatenate(classes),
            score=np.concatenate(scores),
            start=seg_all[:, 0].copy(),
            end=seg_all[:, 1].copy(),
            num_per_clip=num_per_clip,
            unsorted_clips=unsorted,
        )
    empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return FlatPredictions(empty_i, empty_i, empty_f, empty_f, empty_f, num_per_clip, unsorted)


_NUMBER_TYPES = frozenset({int, float, np.float64, np.float32, np.int64, np.int32})


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _numbers(values: Any, shape: tuple[int, ...], where: str, loc: str, key: str, expected: str) -> np.ndarray:
    """``values`` as a finite float64 array of ``shape`` ((N,) scores or (N, 2) segments), or a located error.

    JSON-shaped lists take a fast path; strings and booleans are refused, not converted; NaN,
    infinity and integers too large for a float are refused where they are.
    """
    try:
        array = _float_array(values, shape, where, loc, key, expected)
    except OverflowError:
        array = np.asarray([_float_or_inf(v) for v in (values if len(shape) == 1 else chain.from_iterable(values))],
                           dtype=np.float64).reshape(shape)
    finite = np.isfinite(array) if len(shape) == 1 else np.isfinite(array).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise DataError(where, f"{loc}[{i}].{key}", f"{expected}, finite", got=list(values)[i])
    return array


def _float_or_inf(value: Any) -> float:
    """``float(value)``, or infinity for an integer no float holds."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _float_array(values: Any, shape: tuple[int, ...], where: str, loc: str, key: str, expected: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        fits = values.size == int(np.prod(shape)) and (values.ndim == len(shape) or not values.size)
        if values.dtype.kind in "fiu" and fits:
            return values.astype(np.float64, copy=False).reshape(shape)
        raise DataError(where, f"{loc}.{key}", f"a numeric array of shape {shape}",
                        got=f"{values.dtype} array of shape {values.shape}")
    values = values if isinstance(values, list) else list(values)
    if len(shape) == 1:
        if set(map(type, values)) <= _NUMBER_TYPES:
            return np.fromiter(values, dtype=np.float64, count=shape[0])
    elif set(map(type, values)) <= {list, tuple} and set(map(len, values)) <= {shape[1]}:
        flat = list(chain.from_iterable(values))
        if set(map(type, flat)) <= _NUMBER_TYPES:
            return np.fromiter(flat, dtype=np.float64, count=len(flat)).reshape(shape)
    # Slow path: other sequence types, numpy scalars of other widths, or an error to locate.
    for i, v in enumerate(values):
        ok = _is_number(v) if len(shape) == 1 else (
            isinstance(v, (list, tuple, np.ndarray)) and len(v) == shape[1] and all(_is_number(x) for x in v))
        if not ok:
            raise DataError(where, f"{loc}[{i}].{key}", expected, got=v)
    return np.asarray(values, dtype=np.float64).reshape(shape)


def _raise_bad_item(items: Sequence[Any], where: str, loc: str) -> None:
    for i, it in enumerate(items):
        if not isinstance(it, Mapping):
            raise DataError(where, f"{loc}[{i}]", "an object with label, score and segment", got=it)
        for key in ("label", "score", "segment"):
            if key not in it:
                raise DataError(where, f"{loc}[{i}]", f"a '{key}' field", got=sorted(it))
    raise DataError(where, loc, "a list of {label, score, segment} objects")

