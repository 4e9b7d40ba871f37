"""A validating reader of the official Ego4D ``narration.json`` and the narration text rule.

Layout (Ego4D v1/v2 ``annotations/narration.json``): an object keyed by video uid; each video
holds ``narration_pass_1`` and/or ``narration_pass_2`` (two independent annotators; a video may
have only one pass, or a ``status`` such as ``"redacted"`` and no pass at all), each with::

    "narrations": [{"timestamp_sec": 12.3, "timestamp_frame": 369,
                    "narration_text": "#C C picks up the knife", "annotation_uid": "..."}, ...],
    "summaries":  [{"summary_text": "#Summary C cooks ...", "start_sec", "end_sec", ...}, ...]

A narration is a *point* in video time: the narrator paused the video and described what the
camera wearer (``#C``) or another person (``#O``) does at that moment. Summaries are not read.

Text rule (:func:`normalize_narration`): NLQ queries are first-person questions ("where did I put
the knife?"), so the camera-wearer tag ``#C C`` (and a lone ``#C``) becomes ``I``; the other-person
tag ``#O`` is dropped, keeping who it names ("#O man X hands..." -> "man X hands..."); any other
``#tag`` is dropped; whitespace is collapsed. A narration containing ``#unsure`` (the narrator was
unsure of a word) is skipped and counted (egoasl's choice: its query would name the wrong thing);
so is a narration whose text is empty once normalised.

Bad input: a truncated or invalid file, a video entry that is not an object, a pass without a
``narrations`` list, a timestamp that is not a finite number or lies before the video start
(``timestamp_sec < 0``) raise a :class:`DataError` naming the file and the JSON path
(``<video_uid>.narration_pass_1.narrations[7].timestamp_sec``). With ``errors=[]`` each problem
is appended instead and the bad record skipped. A timestamp after the video's end cannot be seen
here (the file does not carry durations); it falls in no clip and is counted by ``egoasl naq build``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from egoasl.data.json_reader import MISSING, JsonReader, describe, field_path
from egoasl.errors import DataError

PASSES = ("narration_pass_1", "narration_pass_2")
"""The two independent narration passes of a video."""
UNSURE_TAG = "#unsure"

_CAMERA_WEARER = re.compile(r"#c\s+c\b|#c\b", re.IGNORECASE)
_OTHER_PERSON = re.compile(r"#o\b", re.IGNORECASE)
_ANY_TAG = re.compile(r"#\w+")


@dataclass(frozen=True)
class Narration:
    """One timestamped narration, its text already normalised (:func:`normalize_narration`)."""

    video_uid: str
    pass_name: str  # "narration_pass_1" or "narration_pass_2"
    index: int  # position in that pass's ``narrations`` list
    timestamp: float  # video seconds
    text: str
    raw_text: str
    annotation_uid: str


@dataclass
class NarrationFile:
    """The narrations of one ``narration.json``, in file order, and what was skipped."""

    path: str
    narrations: list[Narration] = field(default_factory=list)
    videos: int = 0  # video entries read
    videos_without_pass: int = 0  # e.g. ``status: redacted``
    skipped_no_text: int = 0
    skipped_unsure: int = 0

    def by_video(self) -> dict[str, list[Narration]]:
        """The narrations grouped by video uid (file order inside each video)."""
        out: dict[str, list[Narration]] = {}
        for narration in self.narrations:
            out.setdefault(narration.video_uid, []).append(narration)
        return out


def normalize_narration(text: str) -> str:
    """The query text of a narration (see the module docstring); ``""`` when nothing is left.

    >>> normalize_narration("#C C picks up the knife ")
    'I picks up the knife'
    >>> normalize_narration("#O The man X hands a cup to #C C")
    'The man X hands a cup to I'
    """
    text = _CAMERA_WEARER.sub("I", text)
    text = _OTHER_PERSON.sub(" ", text)
    text = _ANY_TAG.sub(" ", text)
    return " ".join(text.split())


def load_narrations(path: str | Path, errors: list[DataError] | None = None) -> NarrationFile:
    """Read ``narration.json`` (see the module docstring for the layout, the text rule and errors)."""
    reader = JsonReader(path, errors)
    out = NarrationFile(path=str(path))
    try:
        data, _ = reader.read_json()
        if not isinstance(data, dict):
            raise reader.error("", "an object keyed by video uid (the official narration.json)", describe(data))
    except DataError as err:
        reader.report(err)
        return out
    for video_uid, video in data.items():
        try:
            video = reader.obj(video, video_uid)
        except DataError as err:
            reader.report(err)
            continue
        out.videos += 1
        passes = [name for name in PASSES if name in video]
        if not passes:
            out.videos_without_pass += 1
        for pass_name in passes:
            _read_pass(reader, video[pass_name], video_uid, pass_name, out)
    return out


def _read_pass(reader: JsonReader, entry: object, video_uid: str, pass_name: str, out: NarrationFile) -> None:
    where = field_path(video_uid, pass_name)
    try:
        entry = reader.obj(entry, where)
        items = reader.array(entry, "narrations", where)
    except DataError as err:
        reader.report(err)
        return
    for index, item in enumerate(items):
        n_where = f"{where}.narrations[{index}]"
        try:
            narration = _read_narration(reader, item, n_where, video_uid, pass_name, index)
        except DataError as err:
            reader.report(err)
            continue
        if UNSURE_TAG in narration.raw_text.lower():
            out.skipped_unsure += 1
        elif not narration.text:
            out.skipped_no_text += 1
        else:
            out.narrations.append(narration)


def _read_narration(
    reader: JsonReader, item: object, where: str, video_uid: str, pass_name: str, index: int
) -> Narration:
    """One narration; its ``text`` is empty when it has none (missing, null, empty, or only tags)."""
    item = reader.obj(item, where)
    timestamp = reader.number(item, "timestamp_sec", where)
    if timestamp < 0:
        raise reader.error(field_path(where, "timestamp_sec"), "a video time >= 0 s", timestamp)
    raw = item.get("narration_text", MISSING)
    if raw is MISSING or raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise reader.error(field_path(where, "narration_text"), "a string", raw)
    uid = item.get("annotation_uid", "")
    if not isinstance(uid, str):
        raise reader.error(field_path(where, "annotation_uid"), "a string", uid)
    return Narration(video_uid, pass_name, index, timestamp, normalize_narration(raw), raw, uid)
