"""The plan of one video before it is rendered: its clips' annotations and its latent events.

The MQ and NLQ clip planners add to a :class:`VideoPlan`; the helpers here place the action
instances and entity appearances that both kinds of clip hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from egoasl.data.synthetic.timing import frame_of

ENTITY_AMP = (0.8, 1.2)
"""Range of an entity appearance's amplitude on its latent channel."""
_ACTION_AMP = (0.8, 1.2)
_OVERLAP_PROB = 0.25
_MIN_ACTION_SEC = 1.0
_MAX_ACTION_FRACTION = 0.35


@dataclass
class Event:
    """One stretch of latent activity in video seconds: an action instance or an entity appearance."""

    kind: str  # "action" or "entity"
    index: int  # class index or entity index
    start: float
    end: float
    amp: float


@dataclass
class VideoPlan:
    """One video: its clips' annotation dicts, latent events, clip spans and query texts."""

    video_uid: str
    split: str
    duration: float
    mq_clips: list[dict] = field(default_factory=list)
    nlq_clips: list[dict] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    clip_spans: list[tuple[str, float, float]] = field(default_factory=list)  # (clip_uid, video_start_sec, duration)
    texts: list[tuple[str, str, int, str]] = field(default_factory=list)  # (clip_uid, annotation_uid, query_idx, query)
    instances: int = 0


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw between ``low`` and ``high`` (at least ``low``), uniform in log scale."""
    return float(math.exp(rng.uniform(math.log(low), math.log(max(high, low)))))


def video_fields(video_start: float, start: float, end: float, unit: str) -> dict:
    """The video-relative fields of the window ``[start, end]`` (clip seconds) of a clip at ``video_start``.

    ``video_start_<unit>`` and ``video_end_<unit>`` in video seconds (rounded to 7 places),
    then ``video_start_frame`` and ``video_end_frame``.
    """
    video_start_value = round(video_start + start, 7)
    video_end_value = round(video_start + end, 7)
    return {
        f"video_start_{unit}": video_start_value,
        f"video_end_{unit}": video_end_value,
        "video_start_frame": frame_of(video_start_value),
        "video_end_frame": frame_of(video_end_value),
    }


def clip_header(clip_uid: str, source_clip_uid: str, video_start: float, duration: float) -> dict:
    """The official fields of a clip (everything but its ``annotations``)."""
    return {
        "clip_uid": clip_uid,
        **video_fields(video_start, 0.0, duration, "sec"),
        "clip_start_sec": 0,
        "clip_end_sec": duration,
        "clip_start_frame": 0,
        "clip_end_frame": frame_of(duration),
        "source_clip_uid": source_clip_uid,
    }


def place_actions(
    rng: np.random.Generator,
    duration: float,
    num_classes: int,
    draws: tuple[int, int],
    per_class: tuple[int, int],
    must: tuple[int, ...] = (),
) -> list[tuple[int, float, float]]:
    """True action instances ``(class, start, end)`` in clip seconds, sorted by start.

    Draws ``draws`` classes (always including ``must``) and ``per_class`` instances of each,
    with log-uniform lengths. First instances are placed before second ones. An instance never
    overlaps or touches (1 s gap) one of the same class; about one instance in four may overlap
    instances of other classes. An instance that finds no room after a few tries (halving its
    length) is dropped, except the first one of a ``must`` class, which then may overlap
    instances of other classes (so it always finds room).
    """
    num_draws = max(len(must), int(rng.integers(draws[0], min(draws[1], num_classes) + 1)))
    rest = [k for k in rng.permutation(num_classes).tolist() if k not in must]
    classes = list(must) + rest[: num_draws - len(must)]
    counts = [int(rng.integers(per_class[0], per_class[1] + 1)) for _ in classes]
    order = [k for round_ in range(max(counts)) for k, n in zip(classes, counts) if n > round_]
    max_len = max(1.5 * _MIN_ACTION_SEC, _MAX_ACTION_FRACTION * duration)
    placed: list[tuple[int, float, float]] = []
    for position, k in enumerate(order):
        length = log_uniform(rng, _MIN_ACTION_SEC, max_len)
        may_overlap = rng.random() < _OVERLAP_PROB
        required = k in must and position < len(classes)  # first instance of a class the clip must hold
        for attempt in range(16 if required else 12):
            if attempt and attempt % 4 == 0:
                length = max(_MIN_ACTION_SEC, length / 2)
            may_overlap = may_overlap or attempt >= 12  # a required instance may overlap other classes
            start = float(rng.uniform(0.0, duration - length))
            end = start + length
            others = [(s, e) for k2, s, e in placed if k2 == k or not may_overlap]
            if all(end + 1.0 <= s or e + 1.0 <= start for s, e in others):
                placed.append((int(k), start, end))
                break
    return sorted(placed, key=lambda inst: (inst[1], inst[0]))


def action_events(
    rng: np.random.Generator, instances: list[tuple[int, float, float]], video_start: float
) -> list[Event]:
    """Latent events of action instances given in clip seconds."""
    return [
        Event("action", k, video_start + start, video_start + end, float(rng.uniform(*_ACTION_AMP)))
        for k, start, end in instances
    ]


def entity_events(
    rng: np.random.Generator, candidates: list[int], count: int, duration: float, video_start: float
) -> list[Event]:
    """Distractor appearances (2-10 s) of entities that no query of the clip asks about."""
    events = []
    for entity in candidates[:count]:
        length = float(rng.uniform(2.0, min(10.0, 0.3 * duration)))
        start = float(rng.uniform(0.0, duration - length))
        amp = float(rng.uniform(*ENTITY_AMP))
        events.append(Event("entity", int(entity), video_start + start, video_start + start + length, amp))
    return events


