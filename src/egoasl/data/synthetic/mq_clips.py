"""One synthetic MQ clip: its true action instances and every annotator's labels."""

from __future__ import annotations

import numpy as np

from egoasl.data.synthetic.plan import (
    VideoPlan,
    action_events,
    clip_header,
    entity_events,
    place_actions,
    video_fields,
)
from egoasl.data.synthetic.seeding import random_uid
from egoasl.data.synthetic.vocabulary import OFFICIAL_MQ_LABELS, RAW_TOOL_LABELS
from egoasl.data.synthetic.world import SyntheticWorld

_NON_PRIMARY_PROB = 0.1


def _mq_label(label: str, start: float, end: float, video_start: float, primary: bool) -> dict:
    """One entry of an annotator's ``labels``."""
    return {
        "start_time": start,
        "end_time": end,
        "label": label,
        **video_fields(video_start, start, end, "time"),
        "primary": primary,
    }


def _jitter(rng: np.random.Generator, start: float, end: float, duration: float,
            jitter_sec: float) -> tuple[float, float]:
    """One annotator's copy of a true instance: both ends moved by N(0, jitter_sec) (0.25 s; 0.8 s when hard)."""
    jittered_start = max(0.0, start + float(rng.normal(0.0, jitter_sec)))
    jittered_end = min(duration + 0.5, end + float(rng.normal(0.0, jitter_sec)))
    jittered_end = max(jittered_end, jittered_start + 0.2)
    return round(jittered_start, 5), round(jittered_end, 5)


def plan_mq_clip(
    world: SyntheticWorld, rng: np.random.Generator, plan: VideoPlan, video_start: float, duration: float,
    force_non_primary: bool, must: tuple[int, ...],
) -> None:  # fmt: skip
    """Add one MQ clip at ``video_start`` to ``plan``: its instances, their events and (not on test) labels."""
    clip = clip_header(random_uid(rng), random_uid(rng), video_start, duration)
    instances = place_actions(rng, duration, world.num_classes, draws=(1, 3), per_class=(1, 6), must=must)
    plan.events += action_events(rng, instances, video_start)
    extra = rng.permutation(len(world.entities)).tolist()
    plan.events += entity_events(rng, extra, int(rng.integers(0, 3)), duration, video_start)
    plan.instances += len(instances)
    if plan.split != "test":
        annotators = rng.choice(world.annotators, size=int(rng.integers(2, 4)), replace=False)
        secondary = [bool(rng.random() < _NON_PRIMARY_PROB) for _ in instances]
        if force_non_primary and instances and not any(secondary):
            secondary[0] = True
        annotations = []
        for a, annotator in enumerate(annotators):
            labels = []
            for (k, start, end), add_secondary in zip(instances, secondary):
                label_start, label_end = _jitter(rng, start, end, duration, world.difficulty.label_jitter_sec)
                labels.append(_mq_label(world.labels[k], label_start, label_end, video_start, True))
                if add_secondary and a == 0:
                    pool = [label for label in OFFICIAL_MQ_LABELS if label != world.labels[k]] + list(RAW_TOOL_LABELS)
                    other = str(pool[int(rng.integers(len(pool)))])
                    labels.append(_mq_label(other, label_start, label_end, video_start, False))
            annotations.append({"annotator_uid": str(annotator), "labels": labels})
        clip["annotations"] = annotations
    plan.mq_clips.append(clip)
    plan.clip_spans.append((clip["clip_uid"], video_start, duration))


