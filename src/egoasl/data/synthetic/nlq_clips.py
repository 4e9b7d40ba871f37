"""One synthetic NLQ clip: its templated queries, their answer windows and the entity appearances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egoasl.data.synthetic.plan import (
    ENTITY_AMP,
    Event,
    VideoPlan,
    action_events,
    clip_header,
    entity_events,
    log_uniform,
    place_actions,
    video_fields,
)
from egoasl.data.synthetic.scales import ScaleSpec
from egoasl.data.synthetic.seeding import random_uid
from egoasl.data.synthetic.world import SyntheticWorld

_WINDOW_SEC = (2.0, 30.0)
_MAX_WINDOW_FRACTION = 0.4
_CONTAINERS = frozenset({"bowl", "bag", "box", "bucket", "pan", "cup", "kettle"})
_EVENT_VERBS = ("cook", "wash", "clean", "cut", "eat", "paint", "read", "drive")
_NO_VERB = "[verb_not_applicable]"
_NO_SLOT = "[slot_not_applicable]"


@dataclass(frozen=True)
class _Template:
    """One NLQ template: the official template string and how a query is written from it."""

    template: str
    kind: str  # "object", "container" or "place": what X names
    text: str  # format string with {x} (and {when}, {y} for the before/after template)
    verb_x: str = _NO_VERB
    slot_y: str = _NO_SLOT  # "{y}" means the drawn event verb
    verb_y: str = _NO_VERB


_TEMPLATES: tuple[_Template, ...] = (
    _Template("Objects: Where is object X before / after event Y?", "object", "Where is the {x} {when} I {y}?",
              slot_y="{y}", verb_y="{y}"),
    _Template("Objects: Where is object X?", "object", "Where is the {x}?"),
    _Template("Objects: Where is object X?", "object", "Where was the {x}?"),
    _Template("Objects: What did I put in X?", "container", "What did I put in the {x}?", slot_y="put", verb_y="put"),
    _Template("Objects: How many X\u2019s? (quantity question)", "object", "How many times did I see the {x}?"),
    _Template("Objects: In what location did I see object X ?", "object", "In what location did I see the {x}?"),
    _Template("Objects: Where is my object X?", "object", "Where is my {x}?"),
    _Template("Place: Where did I put X?", "object", "Where did I put the {x}?", verb_x="put"),
    _Template("People: Who did I talk to in location X?", "place", "Who did I talk to in the {x}?", verb_x="talk"),
)  # fmt: skip


def _pick_template(
    rng: np.random.Generator, world: SyntheticWorld, objects: list[int], places: list[int]
) -> tuple[_Template, int] | None:
    """A random template and an entity not yet asked about in this clip (None when none is left)."""
    for t in rng.permutation(len(_TEMPLATES)):
        template = _TEMPLATES[int(t)]
        pool = places if template.kind == "place" else objects
        for entity in pool:
            if template.kind != "container" or world.entities[entity] in _CONTAINERS:
                pool.remove(entity)
                return template, entity
    return None


def _nlq_window(entry_start: float, entry_end: float, video_start: float) -> dict:
    """The time fields of a ``language_queries`` entry: its answer window in clip and video time."""
    window = video_fields(video_start, entry_start, entry_end, "sec")
    return {"clip_start_sec": entry_start, "clip_end_sec": entry_end, **window}


def _null_query(rng: np.random.Generator, duration: float, video_start: float) -> dict:
    """An entry without text, as in the real files: skipped by readers, but it keeps its query_idx."""
    start = round(float(rng.uniform(0.0, duration - 4.0)), 5)
    entry = _nlq_window(start, round(start + 4.0, 5), video_start)
    entry.update(template=None, query=None, slot_x=None, verb_x=None, slot_y=None, verb_y=_NO_VERB)
    entry["raw_tags"] = [None, None, None, None, None, _NO_VERB]
    return entry


def plan_nlq_clip(
    world: SyntheticWorld, spec: ScaleSpec, rng: np.random.Generator, plan: VideoPlan, video_start: float,
    duration: float, null_query: bool, zero_length: bool,
) -> None:  # fmt: skip
    """Add one NLQ clip at ``video_start`` to ``plan``: its queries, their windows and its latent events."""
    clip = clip_header(random_uid(rng), random_uid(rng), video_start, duration)
    objects = rng.permutation(world.num_objects).tolist()
    places = (world.num_objects + rng.permutation(len(world.entities) - world.num_objects)).tolist()
    max_window = min(_WINDOW_SEC[1], _MAX_WINDOW_FRACTION * duration)
    annotations = []
    for a in range(int(rng.integers(spec.annotations_per_nlq_clip[0], spec.annotations_per_nlq_clip[1] + 1))):
        annotation_uid = random_uid(rng)
        queries: list[dict] = []
        for q in range(int(rng.integers(spec.queries_per_annotation[0], spec.queries_per_annotation[1] + 1))):
            if null_query and a == 0 and q == 1:
                queries.append(_null_query(rng, duration, video_start))
                continue
            picked = _pick_template(rng, world, objects, places)
            if picked is None:
                break
            template, entity = picked
            word = world.entities[entity]
            when, verb = str(rng.choice(["before", "after"])), str(rng.choice(_EVENT_VERBS))
            text = template.text.format(x=word, when=when, y=verb)
            if zero_length and a == 0 and q == 0:
                start = end = round(float(rng.uniform(1.0, duration - 1.0)), 5)
                shown = (start - 0.5, start + 0.5)
            else:
                length = log_uniform(rng, _WINDOW_SEC[0], max_window)
                start = round(float(rng.uniform(0.0, duration - length)), 5)
                end = round(start + length, 5)
                shown = (start, end)
            amp = float(rng.uniform(*ENTITY_AMP))
            plan.events.append(Event("entity", entity, video_start + shown[0], video_start + shown[1], amp))
            plan.texts.append((clip["clip_uid"], annotation_uid, q, text))
            if plan.split == "test":
                queries.append({"query": text})
                continue
            slot_y = verb if template.slot_y == "{y}" else template.slot_y
            verb_y = verb if template.verb_y == "{y}" else template.verb_y
            entry = _nlq_window(start, end, video_start)
            entry.update(template=template.template, query=text, slot_x=word, verb_x=template.verb_x,
                         slot_y=slot_y, verb_y=verb_y)  # fmt: skip
            entry["raw_tags"] = [template.template, text, word, template.verb_x, slot_y, verb_y]
            queries.append(entry)
        annotations.append({"language_queries": queries, "annotation_uid": annotation_uid})
    clip["annotations"] = annotations
    unused = objects + places
    plan.events += entity_events(rng, unused, int(rng.integers(0, 3)), duration, video_start)
    ambient = place_actions(rng, duration, world.num_classes, draws=(1, 2), per_class=(1, 3))
    plan.events += action_events(rng, ambient, video_start)
    plan.nlq_clips.append(clip)
    plan.clip_spans.append((clip["clip_uid"], video_start, duration))


