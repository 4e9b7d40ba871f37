"""Readers for the official Ego4D Moment Queries and Natural Language Queries annotation files.

MQ files are read in either of two layouts, detected from the content:

* the official nesting of ``moments_{train,val,test_unannotated}.json`` (v1 and v2):
  ``{"videos": [{"video_uid", "split", "clips": [{"clip_uid", "video_start_sec", "video_end_sec",
  "annotations": [{"annotator_uid", "labels": [{"label", "start_time", "end_time", "primary"}]}]}]}]}``;
* the converted per-clip file of ASL (``ego4d_clip_annotations_v2.json``): an object keyed by clip
  uid with ``video_id``, ``subset``, ``duration``, ``parent_start_sec`` and
  ``annotations: [{"segment": [start, end], "label"}]``.

Ground truth follows the official converter (``EGO4D/episodic-memory:MQ/Convert_annotation.py``):
every label with ``primary == true`` from every annotator, in file order, duplicates kept;
non-primary labels are skipped and counted; train/val clips left without a primary label are
dropped and counted; the ``annotations`` of test clips are never read. Label strings are kept
exactly (seven official labels contain ``"`` and ``,``).

NLQ files (``nlq_*.json``) give one :class:`NLQQuery` per ``(clip_uid, annotation_uid,
query_idx)``, where ``query_idx`` is the raw index into ``language_queries``. Entries with a
missing, null or empty ``query`` are skipped and counted (as the official VSLNet preparation
does), without renumbering the others. On the test split only ``query`` is read.

Times are clip-relative seconds. A time is accepted when it lies in
``[-TIME_TOLERANCE_BEFORE, duration + TIME_TOLERANCE_AFTER]``: real MQ labels end up to 7.2 s
after the clip end, so the tolerance after the end is 10 s; nothing real starts before 0, so
the tolerance before the start is 1 s. Anything outside, and any start after its end, is an error.

Every problem raises a :class:`DataError` naming the file, the JSON path
(``videos[3].clips[0].annotations[1].labels[2].start_time``) and what was expected. With
``errors=[]`` the readers append each problem to that list instead, skip the bad record (a
label, a query, a clip or a video) and go on, so that a check can list every problem at once.
The field checks come from :class:`~egoasl.data.json_reader.JsonReader`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

from egoasl.data.json_reader import MISSING, JsonReader, Text, describe, field_path
from egoasl.data.records import MQAnnotations, MQClip, MQInstance, NLQAnnotations, NLQQuery
from egoasl.errors import DataError, EgoaslError

SPLITS = ("train", "val", "test")
TASKS = ("mq", "nlq")
TIME_TOLERANCE_BEFORE = 1.0
"""Seconds a start time may lie before the clip start."""
TIME_TOLERANCE_AFTER = 10.0
"""Seconds an end time may lie after the clip end (real MQ labels overshoot by up to 7.2 s)."""

_FILE_STEMS = {"mq": "moments", "nlq": "nlq"}


# ---------------------------------------------------------------------------------------------
# Locating the files


def annotation_file_name(task: str, split: str) -> str:
    """The official file name of a task's split, e.g. ``moments_val.json``, ``nlq_test_unannotated.json``."""
    if task not in TASKS:
        raise EgoaslError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if split not in SPLITS:
        raise EgoaslError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return f"{_FILE_STEMS[task]}_{'test_unannotated' if split == 'test' else split}.json"


def _search_folders(folder: Path) -> list[Path]:
    return [folder, folder / "annotations", folder / "v2" / "annotations", folder / "v1" / "annotations"]


def find_annotation_file(location: str | Path, task: str, split: str) -> Path:
    """The annotation file of ``task`` (``mq``/``nlq``) and ``split`` at ``location``.

    A file is returned as is. In a folder, ``moments_<split>.json`` / ``nlq_<split>.json``
    (``*_test_unannotated.json`` for test) is looked for in the folder itself, then in
    ``annotations/``, ``v2/annotations/`` and ``v1/annotations/`` (the layouts of the Ego4D
    download tool). Raises :class:`EgoaslError` listing every place looked at.
    """
    name = annotation_file_name(task, split)
    location = Path(location)
    if location.is_file():
        return location
    if not location.is_dir():
        raise EgoaslError(f"annotation location {location} does not exist")
    folders = _search_folders(location)
    for folder in folders:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise EgoaslError(f"no {name} found; looked in: {', '.join(str(folder) for folder in folders)}")


def find_annotation_files(folder: str | Path, task: str) -> dict[str, Path]:
    """Every split of ``task`` found in ``folder`` (see :func:`find_annotation_file`), keyed by split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EgoaslError(f"annotation folder {folder} does not exist or is not a folder")
    found = {}
    for split in SPLITS:
        try:
            found[split] = find_annotation_file(folder, task, split)
        except EgoaslError:
            continue
    if not found:
        names = ", ".join(annotation_file_name(task, split) for split in SPLITS)
        places = ", ".join(str(place) for place in _search_folders(folder))
        raise EgoaslError(f"no {task} annotation file ({names}) found; looked in: {places}")
    return found


# ---------------------------------------------------------------------------------------------
# Public readers


def load_mq_annotations(
    path: str | Path,
    taxonomy: Collection[str] | None = None,
    errors: list[DataError] | None = None,
) -> MQAnnotations:
    """Read an MQ annotation file (official nesting or ASL's converted per-clip file).

    Args:
        path: the JSON file.
        taxonomy: when given (a :class:`~egoasl.data.taxonomy.Taxonomy` or any collection of
            label strings), a primary label outside it is an error. Non-primary labels are
            never checked against it.
        errors: when a list is given, every problem is appended to it and the bad record is
            skipped; otherwise the first problem raises.

    Returns:
        The clips in file order, keyed by clip uid. If the file cannot be read at all in
        collect mode, an empty :class:`MQAnnotations` with ``format == "unknown"``.
    """
    reader = _Reader(path, errors)
    try:
        data, duplicate_keys = reader.read_json()
        layout = _mq_layout(reader, data)
    except DataError as err:
        reader.report(err)
        return MQAnnotations(path=str(path), format="unknown", clips={})
    if layout == "official":
        return _read_mq_official(reader, data, taxonomy)
    return _read_mq_converted(reader, data, duplicate_keys, taxonomy)


def load_nlq_annotations(path: str | Path, errors: list[DataError] | None = None) -> NLQAnnotations:
    """Read an official NLQ annotation file (``nlq_train.json``, ``nlq_val.json``, ``nlq_test_unannotated.json``).

    Args:
        path: the JSON file.
        errors: when a list is given, every problem is appended to it and the bad record is
            skipped; otherwise the first problem raises.

    Returns:
        One query per non-empty ``language_queries`` entry, in file order.
    """
    reader = _Reader(path, errors)
    try:
        data, _ = reader.read_json()
        if not isinstance(data, dict) or "videos" not in data:
            raise reader.error("", "an object with a 'videos' list (the official nlq_*.json nesting)", describe(data))
        videos = reader.array(data, "videos", "")
        _reject_other_task(reader, videos, "nlq")
    except DataError as err:
        reader.report(err)
        return NLQAnnotations(path=str(path), queries=[])
    out = NLQAnnotations(path=str(path), queries=[])
    seen: dict[str, str] = {}
    for where, clip, video_uid, split in _official_clips(reader, videos):
        try:
            _read_nlq_clip(reader, clip, where, video_uid, split, seen, out)
        except DataError as err:
            reader.report(err)
    return out


def _official_clips(reader: _Reader, videos: list) -> Iterator[tuple[str, object, str, str]]:
    """``(json_path, clip, video_uid, split)`` for every clip of the official nesting; bad videos are reported."""
    for vi, video in enumerate(videos):
        where = f"videos[{vi}]"
        try:
            video = reader.obj(video, where)
            video_uid = reader.text(video, "video_uid", where)
            split = reader.split(video, "split", where)
            clips = reader.array(video, "clips", where)
        except DataError as err:
            reader.report(err)
            continue
        for ci, clip in enumerate(clips):
            yield f"{where}.clips[{ci}]", clip, video_uid, split


# ---------------------------------------------------------------------------------------------
# MQ internals


def _mq_layout(reader: _Reader, data: object) -> str:
    expected = "an object: the official {\"videos\": [...]} nesting or a converted file keyed by clip uid"
    if not isinstance(data, dict):
        raise reader.error("", expected, describe(data))
    if not data:
        raise reader.error("", expected, Text("an empty object"))
    if "videos" in data:
        _reject_other_task(reader, reader.array(data, "videos", ""), "mq")
        return "official"
    if "database" in data:
        raise reader.error(
            "database",
            "the official moments_*.json nesting or ASL's converted per-clip file; ActionFormer's converted "
            "file is not supported (its times are shifted to the feature grid and it has no clip boundaries): "
            "use the official moments_*.json instead (an ActivityNet-style dataset is read with data.format "
            "anet or auto, or --format anet)",
        )
    return "converted"


def _read_mq_official(reader: _Reader, data: dict, taxonomy: Collection[str] | None) -> MQAnnotations:
    out = MQAnnotations(path=reader.path, format="official", clips={})
    seen: dict[str, str] = {}
    for where, clip, video_uid, split in _official_clips(reader, data["videos"]):
        try:
            _read_mq_official_clip(reader, clip, where, video_uid, split, seen, taxonomy, out)
        except DataError as err:
            reader.report(err)
    return out


def _read_mq_official_clip(
    reader: _Reader,
    clip: object,
    where: str,
    video_uid: str,
    split: str,
    seen: dict[str, str],
    taxonomy: Collection[str] | None,
    out: MQAnnotations,
) -> None:
    clip = reader.obj(clip, where)
    clip_uid = reader.unique_clip_uid(clip, where, seen)
    start, end = reader.clip_bounds(clip, where, "video_start_sec", "video_end_sec")
    record = MQClip(clip_uid, video_uid, split, start, end)
    if split == "test":  # never read, as in the official converter
        out.clips[clip_uid] = record
        return
    had_errors = False
    for ai, annotation in enumerate(reader.array(clip, "annotations", where)):
        a_where = f"{where}.annotations[{ai}]"
        try:
            annotation = reader.obj(annotation, a_where)
            annotator = reader.string(annotation, "annotator_uid", a_where)
            labels = reader.array(annotation, "labels", a_where)
        except DataError as err:
            reader.report(err)
            had_errors = True
            continue
        for li, label in enumerate(labels):
            l_where = f"{a_where}.labels[{li}]"
            try:
                label = reader.obj(label, l_where)
                primary = label.get("primary", MISSING)
                if not isinstance(primary, bool):
                    raise reader.error(field_path(l_where, "primary"), "true or false", primary)
                if not primary:
                    out.non_primary_skipped += 1
                    continue
                name = reader.label(label, "label", l_where, taxonomy)
                t0 = reader.number(label, "start_time", l_where)
                t1 = reader.number(label, "end_time", l_where)
                reader.window(t0, t1, record.duration, l_where, "start_time", "end_time")
            except DataError as err:
                reader.report(err)
                had_errors = True
                continue
            record.instances.append(MQInstance(name, t0, t1, annotator))
    _keep_or_drop(record, had_errors, out)


def _read_mq_converted(
    reader: _Reader, data: dict, duplicate_keys: list[str], taxonomy: Collection[str] | None
) -> MQAnnotations:
    out = MQAnnotations(path=reader.path, format="converted", clips={})
    for uid in dict.fromkeys(duplicate_keys):
        count = duplicate_keys.count(uid) + 1
        expected = f"a clip uid not already used (the key appears {count} times; the first is read)"
        reader.report(reader.error(uid, expected))
    for uid, record in data.items():
        try:
            _read_mq_converted_clip(reader, uid, record, taxonomy, out)
        except DataError as err:
            reader.report(err)
    return out


def _read_mq_converted_clip(
    reader: _Reader, uid: str, record: object, taxonomy: Collection[str] | None, out: MQAnnotations
) -> None:
    record = reader.obj(record, uid)
    if "clip_id" in record and record["clip_id"] != uid:
        raise reader.error(field_path(uid, "clip_id"), f"the key of its record ({uid!r})", record["clip_id"])
    video_uid = reader.text(record, "video_id", uid)
    split = reader.split(record, "subset", uid)
    duration = reader.number(record, "duration", uid)
    if not duration > 0:
        raise reader.error(field_path(uid, "duration"), "greater than 0", duration)
    start = reader.number(record, "parent_start_sec", uid)
    clip = MQClip(uid, video_uid, split, start, start + duration)
    if split == "test":
        out.clips[uid] = clip
        return
    had_errors = False
    for i, item in enumerate(reader.array(record, "annotations", uid)):
        where = f"{uid}.annotations[{i}]"
        try:
            item = reader.obj(item, where)
            name = reader.label(item, "label", where, taxonomy)
            segment = item.get("segment", MISSING)
            if not isinstance(segment, list) or len(segment) != 2:
                raise reader.error(field_path(where, "segment"), "a list [start, end] of two numbers", segment)
            t0 = reader.number_value(segment[0], field_path(where, "segment[0]"))
            t1 = reader.number_value(segment[1], field_path(where, "segment[1]"))
            reader.window(t0, t1, duration, where, "segment[0]", "segment[1]")
        except DataError as err:
            reader.report(err)
            had_errors = True
            continue
        clip.instances.append(MQInstance(name, t0, t1))
    _keep_or_drop(clip, had_errors, out)


def _keep_or_drop(clip: MQClip, had_errors: bool, out: MQAnnotations) -> None:
    """Keep a train/val clip with GT; drop it otherwise (counted only when no error emptied it)."""
    if clip.instances:
        out.clips[clip.clip_uid] = clip
    elif not had_errors:
        out.dropped_unlabelled += 1


# ---------------------------------------------------------------------------------------------
# NLQ internals


def _read_nlq_clip(
    reader: _Reader, clip: object, where: str, video_uid: str, split: str, seen: dict[str, str], out: NLQAnnotations
) -> None:
    clip = reader.obj(clip, where)
    clip_uid = reader.unique_clip_uid(clip, where, seen)
    start, end = reader.clip_bounds(clip, where, "video_start_sec", "video_end_sec")
    if split == "test" and "annotations" not in clip:
        return
    annotation_uids: set[str] = set()
    for ai, annotation in enumerate(reader.array(clip, "annotations", where)):
        a_where = f"{where}.annotations[{ai}]"
        try:
            annotation = reader.obj(annotation, a_where)
            annotation_uid = reader.text(annotation, "annotation_uid", a_where)
            if annotation_uid in annotation_uids:
                expected = "an annotation uid not already used in this clip"
                raise reader.error(field_path(a_where, "annotation_uid"), expected, annotation_uid)
            annotation_uids.add(annotation_uid)
            entries = reader.array(annotation, "language_queries", a_where)
        except DataError as err:
            reader.report(err)
            continue
        for qi, entry in enumerate(entries):
            q_where = f"{a_where}.language_queries[{qi}]"
            try:
                query = _read_nlq_query(reader, entry, q_where, end - start, split)
            except DataError as err:
                reader.report(err)
                continue
            if query is None:
                out.skipped_empty += 1
                continue
            text, template, t0, t1 = query
            out.queries.append(
                NLQQuery(clip_uid, video_uid, annotation_uid, qi, text, split, start, end, t0, t1, template)
            )


def _read_nlq_query(
    reader: _Reader, entry: object, where: str, duration: float, split: str
) -> tuple[str, str | None, float | None, float | None] | None:
    """``(query, template, start, end)`` of one ``language_queries`` entry; None when it has no text."""
    entry = reader.obj(entry, where)
    text = entry.get("query")
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise reader.error(field_path(where, "query"), "a string or null", text)
    if split == "test":
        return text, None, None, None
    template = entry.get("template")
    if template is not None and not isinstance(template, str):
        raise reader.error(field_path(where, "template"), "a string or null", template)
    t0 = reader.number(entry, "clip_start_sec", where)
    t1 = reader.number(entry, "clip_end_sec", where)
    reader.window(t0, t1, duration, where, "clip_start_sec", "clip_end_sec")
    return text, template, t0, t1


def _reject_other_task(reader: _Reader, videos: list, task: str) -> None:
    """Fail early, with a hint, when an NLQ file is read as MQ or the other way round."""
    for vi, video in enumerate(videos):
        clips = video.get("clips") if isinstance(video, dict) else None
        for ci, clip in enumerate(clips if isinstance(clips, list) else []):
            annotations = clip.get("annotations") if isinstance(clip, dict) else None
            for ai, entry in enumerate(annotations if isinstance(annotations, list) else []):
                if not isinstance(entry, dict):
                    continue
                where = f"videos[{vi}].clips[{ci}].annotations[{ai}]"
                if task == "mq" and "labels" not in entry and "language_queries" in entry:
                    raise reader.error(
                        where,
                        "an MQ annotator entry with 'labels' (this looks like an NLQ file: "
                        "read it with load_nlq_annotations, or pass --task nlq)",
                        Text("an entry with 'language_queries'"),
                    )
                if task == "nlq" and "language_queries" not in entry and "labels" in entry:
                    raise reader.error(
                        where,
                        "an NLQ annotation with 'language_queries' (this looks like an MQ file: "
                        "read it with load_mq_annotations, or pass --task mq)",
                        Text("an entry with 'labels'"),
                    )
                return


# ---------------------------------------------------------------------------------------------
# Validation of the Ego4D fields


class _Reader(JsonReader):
    """A :class:`JsonReader` that also checks labels, splits, clip uids and clip-relative times."""

    def label(self, parent: dict, key: str, where: str, taxonomy: Collection[str] | None) -> str:
        name = self.text(parent, key, where)
        if taxonomy is not None and name not in taxonomy:
            raise self.error(field_path(where, key), f"a label of the taxonomy ({len(taxonomy)} classes)", name)
        return name

    def split(self, parent: dict, key: str, where: str) -> str:
        value = parent.get(key, MISSING)
        if value not in SPLITS:
            raise self.error(field_path(where, key), "one of " + ", ".join(repr(s) for s in SPLITS), value)
        return value

    def unique_clip_uid(self, clip: dict, where: str, seen: dict[str, str]) -> str:
        uid = self.text(clip, "clip_uid", where)
        if uid in seen:
            raise self.error(field_path(where, "clip_uid"), f"a clip uid not already used (at {seen[uid]})", uid)
        seen[uid] = where
        return uid

    def clip_bounds(self, clip: dict, where: str, start_key: str, end_key: str) -> tuple[float, float]:
        start = self.number(clip, start_key, where)
        end = self.number(clip, end_key, where)
        if not end > start:
            raise self.error(field_path(where, end_key), f"greater than {start_key} ({start})", end)
        return start, end

    def window(self, start: float, end: float, duration: float, where: str, start_key: str, end_key: str) -> None:
        """Check a clip-relative window against itself and the clip (see the module's tolerance)."""
        if start > end:
            raise self.error(field_path(where, start_key), f"at most {end_key} ({end})", start)
        if start < -TIME_TOLERANCE_BEFORE:
            raise self.error(
                field_path(where, start_key),
                f"a clip time >= {-TIME_TOLERANCE_BEFORE} s (clip-relative seconds; "
                f"at most {TIME_TOLERANCE_BEFORE} s before the clip start)",
                start,
            )
        if end > duration + TIME_TOLERANCE_AFTER:
            raise self.error(
                field_path(where, end_key),
                f"a clip time <= {round(duration + TIME_TOLERANCE_AFTER, 3)} s "
                f"(clip duration {round(duration, 3)} s + {TIME_TOLERANCE_AFTER} s tolerance)",
                end,
            )
