"""A validating reader of ActivityNet-style temporal action localisation files.

THUMOS14, ActivityNet, EPIC-Kitchens and most custom datasets ship their ground truth as::

    {"database": {"<video_id>": {"subset": "training" | "validation" | "testing",
                                 "duration": <seconds>,
                                 "annotations": [{"label": "<class>", "segment": [<start>, <end>]}, ...]}}}

Subsets may also be spelled ``train``, ``val`` and ``test`` (any case); they become egoasl's
split names ``train``, ``val`` and ``test``. Other fields (``fps``, ``resolution``, ``url``,
``label_id``, a top-level ``taxonomy`` or ``version``) are ignored. Each video becomes one
:class:`~egoasl.data.records.MQClip` whose clip and video uid are the video id, spanning
``[0, duration]`` seconds, so the rest of egoasl (features, datasets, the MQ task, metrics)
treats a video as a clip.

Checks, each one :class:`~egoasl.errors.DataError` naming the file, the JSON path
(``database.v_x.annotations[2].segment[1]``) and what was expected: a missing or unknown
``subset``, a ``duration`` that is not a positive number, a segment that is not two numbers
with start <= end inside ``[0, duration]`` (an end may pass the duration by
:data:`END_TOLERANCE_SEC`, as rounded durations make it do), a label outside the taxonomy when
one is given. ``testing`` videos need no ``annotations``; a training or validation video
without any is dropped and counted (it cannot be scored), as the Ego4D readers do. With
``errors=[]`` every problem is appended to the list and the bad record skipped.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from egoasl.data.json_reader import MISSING, JsonReader, describe, field_path
from egoasl.data.records import MQAnnotations, MQClip, MQInstance
from egoasl.errors import DataError

FORMAT = "anet"
SUBSETS = {"training": "train", "train": "train", "validation": "val", "val": "val", "testing": "test", "test": "test"}
"""Accepted ``subset`` spellings (compared lower-cased) and the split each becomes."""
END_TOLERANCE_SEC = 1.0
"""Seconds a segment's end may lie after the video's duration."""


def anet_subset(split: str) -> str:
    """The ActivityNet spelling of an egoasl split: ``train -> training``, ``val -> validation``, ``test -> testing``."""
    return {"train": "training", "val": "validation", "test": "testing"}[split]


def is_anet_data(data: object) -> bool:
    """True for a parsed JSON object in the ActivityNet layout (a top-level ``database`` object)."""
    return isinstance(data, dict) and isinstance(data.get("database"), dict)


def load_anet_annotations(
    path: str | Path,
    taxonomy: Collection[str] | None = None,
    errors: list[DataError] | None = None,
    training_taxonomy: bool = False,
) -> MQAnnotations:
    """Read an ActivityNet-style annotation file.

    Args:
        path: the JSON file.
        taxonomy: when given, a label outside it is an error.
        errors: when a list is given, every problem is appended to it and the bad record is
            skipped; otherwise the first problem raises.
        training_taxonomy: without ``taxonomy``, take the labels of the training subset as
            the taxonomy, so a validation or testing label never seen in training is an error.

    Returns:
        One clip per video in file order (``format == "anet"``). If the file cannot be read at
        all in collect mode, an empty :class:`MQAnnotations` with ``format == "unknown"``.
    """
    reader = JsonReader(path, errors)
    try:
        data, _ = reader.read_json()
        database = _database(reader, data)
    except DataError as err:
        reader.report(err)
        return MQAnnotations(path=str(path), format="unknown", clips={})
    if taxonomy is None and training_taxonomy:
        taxonomy = _training_labels(database)
    out = MQAnnotations(path=str(path), format=FORMAT, clips={})
    for video_id, record in database.items():
        try:
            _read_video(reader, video_id, record, taxonomy, out)
        except DataError as err:
            reader.report(err)
    return out


def _database(reader: JsonReader, data: object) -> dict:
    expected = 'an object with a "database" object (the ActivityNet layout)'
    if not isinstance(data, dict):
        raise reader.error("", expected, describe(data))
    database = data.get("database", MISSING)
    if not isinstance(database, dict):
        raise reader.error("database", 'an object of videos (the ActivityNet layout {"database": {video_id: {...}}})',
                           database)
    return database


def _training_labels(database: dict) -> set[str]:
    """Labels of the well-formed annotations of training videos (the taxonomy a model can learn)."""
    labels = set()
    for record in database.values():
        if not isinstance(record, dict) or SUBSETS.get(str(record.get("subset", "")).lower()) != "train":
            continue
        annotations = record.get("annotations")
        for item in annotations if isinstance(annotations, list) else []:
            if isinstance(item, dict) and isinstance(item.get("label"), str) and item["label"]:
                labels.add(item["label"])
    return labels


def _read_video(
    reader: JsonReader, video_id: str, record: object, taxonomy: Collection[str] | None, out: MQAnnotations
) -> None:
    where = field_path("database", video_id)
    record = reader.obj(record, where)
    subset = record.get("subset", MISSING)
    split = SUBSETS.get(subset.lower()) if isinstance(subset, str) else None
    if split is None:
        spellings = "'training', 'validation' or 'testing' (or train, val, test)"
        raise reader.error(field_path(where, "subset"), spellings, subset)
    duration = reader.number(record, "duration", where)
    if not duration > 0:
        raise reader.error(field_path(where, "duration"), "a duration in seconds greater than 0", duration)
    clip = MQClip(video_id, video_id, split, 0.0, duration)
    annotations = record.get("annotations", [] if split == "test" else MISSING)
    if not isinstance(annotations, list):
        raise reader.error(field_path(where, "annotations"), "a list of {label, segment} objects", annotations)
    had_errors = False
    for i, item in enumerate(annotations):
        a_where = f"{where}.annotations[{i}]"
        try:
            clip.instances.append(_read_segment(reader, item, a_where, duration, taxonomy))
        except DataError as err:
            reader.report(err)
            had_errors = True
    if clip.instances or split == "test":
        out.clips[video_id] = clip
    elif not had_errors:
        out.dropped_unlabelled += 1


def _read_segment(
    reader: JsonReader, item: object, where: str, duration: float, taxonomy: Collection[str] | None
) -> MQInstance:
    item = reader.obj(item, where)
    label = reader.text(item, "label", where)
    if taxonomy is not None and label not in taxonomy:
        raise reader.error(field_path(where, "label"), f"a label of the taxonomy ({len(taxonomy)} classes)", label)
    segment = item.get("segment", MISSING)
    if not isinstance(segment, list) or len(segment) != 2:
        raise reader.error(field_path(where, "segment"), "a list [start, end] of two numbers (seconds)", segment)
    start = reader.number_value(segment[0], field_path(where, "segment[0]"))
    end = reader.number_value(segment[1], field_path(where, "segment[1]"))
    if start < 0:
        raise reader.error(field_path(where, "segment[0]"), "a time >= 0 s (seconds from the video start)", start)
    if start > end:
        raise reader.error(field_path(where, "segment[0]"), f"at most the end ({end})", start)
    if end > duration + END_TOLERANCE_SEC:
        raise reader.error(
            field_path(where, "segment[1]"),
            f"a time within the video's duration ({round(duration, 3)} s, + {END_TOLERANCE_SEC} s tolerance)",
            end,
        )
    return MQInstance(label, start, end)
