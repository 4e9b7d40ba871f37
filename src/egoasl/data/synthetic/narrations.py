"""Synthetic ``narration.json`` entries: timestamped narrations of what a video's latent events show.

Each of two passes (two independent narrators) narrates every latent event of the video:

* an **entity appearance** (an NLQ answer window, a distractor, an MQ clip's background
  entity) gets a narration every 2-4 s while it is visible (at least one), naming the entity
  word: ``"#C C picks up the knife"`` / ``"#C C walks in the garage"``. These carry the same
  signal as the NLQ queries (the entity word's text embedding, the entity's video channel at
  those times), and there are many more of them than NLQ queries;
* an **action instance** gets a narration every 4-8 s naming its class in words
  (``"#C C cut dough"``): learnable, but not what NLQ asks about.

About one narration in 40 carries ``#unsure`` (skipped by the readers, as real ones are).
Timestamps are video seconds; ``timestamp_frame`` is ``round(30 t)``. Everything is drawn
from a stream of its own (``seeded_rng(seed, "narrate", video)``), so adding the narrations
changed no byte of the other synthetic files.
"""

from __future__ import annotations

import re

import numpy as np

from egoasl.data.synthetic.plan import VideoPlan
from egoasl.data.synthetic.seeding import random_uid
from egoasl.data.synthetic.timing import FPS
from egoasl.data.synthetic.world import SyntheticWorld

NARRATION_FILE = "narration.json"
"""File name under ``annotations/`` (as in the official download)."""
_OBJECT_VERBS = ("picks up the", "holds the", "looks at the", "puts down the", "moves the", "touches the")
_PLACE_VERBS = ("walks in the", "stands in the", "looks around the")
_ENTITY_GAP_SEC = (2.0, 4.0)
_ACTION_GAP_SEC = (4.0, 8.0)
_UNSURE_PROB = 0.025
_PASSES = ("narration_pass_1", "narration_pass_2")


def _times(rng: np.random.Generator, start: float, end: float, gap: tuple[float, float]) -> list[float]:
    """Narration times inside ``[start, end]``: a first one within the first gap, then one every gap."""
    t = start + float(rng.uniform(0.0, min(gap[0], end - start)))
    times = []
    while t <= end:
        times.append(t)
        t += float(rng.uniform(*gap))
    return times or [(start + end) / 2]


def _action_words(label: str) -> str:
    return " ".join(re.findall(r"[a-z]+", label.lower()))


def _narration(rng: np.random.Generator, t: float, text: str) -> dict:
    if rng.random() < _UNSURE_PROB:
        text = text.rsplit(" ", 1)[0] + " #unsure"
    return {"timestamp_sec": round(t, 4), "timestamp_frame": round(t * FPS), "narration_text": text,
            "annotation_uid": random_uid(rng)}


def narrate_video(world: SyntheticWorld, plan: VideoPlan, rng: np.random.Generator) -> dict:
    """The ``narration.json`` entry of one video: both passes, narrations sorted by time."""
    entry: dict = {"status": "complete"}
    for pass_name in _PASSES:
        narrations = []
        for event in plan.events:
            if event.kind == "entity":
                word = world.entities[event.index]
                verbs = _OBJECT_VERBS if event.index < world.num_objects else _PLACE_VERBS
                for t in _times(rng, event.start, event.end, _ENTITY_GAP_SEC):
                    narrations.append(_narration(rng, t, f"#C C {verbs[int(rng.integers(len(verbs)))]} {word}"))
            else:
                words = _action_words(world.labels[event.index])
                for t in _times(rng, event.start, event.end, _ACTION_GAP_SEC):
                    narrations.append(_narration(rng, t, f"#C C {words}"))
        narrations = [n for n in narrations if 0.0 <= n["timestamp_sec"] <= plan.duration]
        narrations.sort(key=lambda n: n["timestamp_sec"])
        summary = {"summary_text": "#Summary C handles objects and does chores.", "start_sec": 0.0,
                   "end_sec": plan.duration, "start_frame": 0, "end_frame": round(plan.duration * FPS),
                   "annotation_uid": random_uid(rng)}
        entry[pass_name] = {"narrations": narrations, "summaries": [summary]}
    return entry
