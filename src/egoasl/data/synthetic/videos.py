"""The videos of the dataset: their splits, where the special cases go, and their clips end to end."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egoasl.data.ego4d import SPLITS
from egoasl.data.synthetic.mq_clips import plan_mq_clip
from egoasl.data.synthetic.nlq_clips import plan_nlq_clip
from egoasl.data.synthetic.plan import VideoPlan
from egoasl.data.synthetic.scales import ScaleSpec
from egoasl.data.synthetic.seeding import random_uid, seeded_rng
from egoasl.data.synthetic.world import SyntheticWorld

_NEGATIVE_CLIP_START = -0.0123047  # like the 90 real MQ clips that start just before their video


def assign_splits(seed: int, num_videos: int) -> list[str]:
    """About 60 / 20 / 20 % of the videos to train / val / test, at least one each."""
    num_val = max(1, round(0.2 * num_videos))
    num_test = max(1, round(0.2 * num_videos))
    names = ["train"] * (num_videos - num_val - num_test) + ["val"] * num_val + ["test"] * num_test
    order = seeded_rng(seed, "splits").permutation(num_videos)
    splits = [""] * num_videos
    for position, video in enumerate(order):
        splits[int(video)] = names[position]
    return splits


@dataclass
class VideoFlags:
    """Where the special cases go (decided once per dataset so that they always exist)."""

    negative_start: bool = False
    null_query: bool = False
    zero_length_clips: int = 0
    force_non_primary: bool = False
    mq_classes: list[tuple[int, ...]] = field(default_factory=list)  # classes each MQ clip must contain


def video_flags(spec: ScaleSpec, splits: list[str], num_classes: int, seed: int) -> list[VideoFlags]:
    """Place the special cases, and deal every class to the MQ clips of every split.

    The classes are dealt round-robin (in a seeded order) over the MQ clips of each split, so
    every class has instances in every split that has at least as many clip slots as classes
    allow (always in train and val at the default sizes).
    """
    flags = [VideoFlags() for _ in splits]
    train = [i for i, split in enumerate(splits) if split == "train"]
    first = flags[train[0]]
    first.negative_start = spec.negative_clip_start
    first.null_query = True
    first.force_non_primary = True
    remaining = spec.zero_length_train
    for i in train:
        flags[i].zero_length_clips = min(remaining, spec.nlq_clips_per_video)
        remaining -= flags[i].zero_length_clips
    if spec.null_query_val:
        flags[splits.index("val")].null_query = True
    rng = seeded_rng(seed, "deal")
    for split in SPLITS:
        slots = [i for i, name in enumerate(splits) if name == split for _ in range(spec.mq_clips_per_video)]
        order = rng.permutation(num_classes).tolist()
        for j, video in enumerate(slots):
            flags[video].mq_classes.append(tuple(order[j :: len(slots)]))
    return flags


def plan_video(
    world: SyntheticWorld, spec: ScaleSpec, rng: np.random.Generator, split: str, flags: VideoFlags
) -> VideoPlan:
    """Clips laid end to end on one video (random gaps), with their annotations and latent events."""
    plan = VideoPlan(video_uid=random_uid(rng), split=split, duration=0.0)
    tasks = ["mq"] * spec.mq_clips_per_video + ["nlq"] * spec.nlq_clips_per_video
    tasks = [tasks[int(i)] for i in rng.permutation(len(tasks))]
    if flags.negative_start:  # the real clips that start before their video are MQ clips
        tasks.insert(0, tasks.pop(tasks.index("mq")))
    cursor = _NEGATIVE_CLIP_START if flags.negative_start else float(rng.uniform(0.5, 30.0))
    low, high = spec.clip_seconds
    nlq_seen = mq_seen = 0
    for task in tasks:
        duration = round(float(rng.uniform(low, high)), 5) if high > low else float(low)
        video_start = round(cursor, 7)
        if task == "mq":
            plan_mq_clip(world, rng, plan, video_start, duration, flags.force_non_primary and mq_seen == 0,
                         flags.mq_classes[mq_seen])  # fmt: skip
            mq_seen += 1
        else:
            plan_nlq_clip(world, spec, rng, plan, video_start, duration,
                          null_query=flags.null_query and nlq_seen == 0,
                          zero_length=nlq_seen < flags.zero_length_clips)  # fmt: skip
            nlq_seen += 1
        cursor = video_start + duration + float(rng.uniform(1.0, 20.0))
    plan.duration = round(cursor, 5)
    return plan
