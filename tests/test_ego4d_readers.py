"""Official Ego4D annotation readers: the shared example files, every bad-input case, real data."""

import copy
import json
import math
from pathlib import Path

import pytest

from egoasl.data.ego4d import (
    TIME_TOLERANCE_AFTER,
    TIME_TOLERANCE_BEFORE,
    find_annotation_file,
    find_annotation_files,
    load_mq_annotations,
    load_nlq_annotations,
)
from egoasl.data.taxonomy import Taxonomy
from egoasl.errors import DataError, EgoaslError

SHARED = Path(__file__).resolve().parents[2] / "shared"
EXAMPLES = SHARED / "examples"
REFDATA = SHARED / "refdata"
QUOTED = '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"'


def _example(name: str) -> Path:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def _write(tmp_path: Path, data, name: str = "moments_train.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _label(label, start, end, primary=True):
    return {"label": label, "start_time": start, "end_time": end, "primary": primary}


def _mq_official() -> dict:
    """A small official-nesting MQ file: 2 videos, 3 clips, 2 annotators on the first clip."""
    return {
        "version": "v2",
        "videos": [
            {
                "video_uid": "vid-a",
                "split": "train",
                "clips": [
                    {
                        "clip_uid": "clip-a1",
                        "video_start_sec": 10.0,
                        "video_end_sec": 490.0,
                        "annotations": [
                            {
                                "annotator_uid": "ann-1",
                                "labels": [
                                    _label("use_phone", 1.0, 5.0),
                                    _label("drink_beverage", 1.0, 5.0, primary=False),
                                    _label(QUOTED, 100, 487.2),
                                ],
                            },
                            {"annotator_uid": "ann-2", "labels": [_label("use_phone", 1.5, 5.5)]},
                        ],
                    },
                    {
                        "clip_uid": "clip-a2",
                        "video_start_sec": 490.0,
                        "video_end_sec": 690.0,
                        "annotations": [{"annotator_uid": "ann-1", "labels": [_label("wash_hands", 3.0, 9.0)]}],
                    },
                ],
            },
            {
                "video_uid": "vid-b",
                "split": "train",
                "clips": [
                    {
                        "clip_uid": "clip-b1",
                        "video_start_sec": -0.5,
                        "video_end_sec": 300.0,
                        "annotations": [{"annotator_uid": "ann-3", "labels": [_label("use_phone", 0.0, 0.0)]}],
                    }
                ],
            },
        ],
    }


def _nlq_official() -> dict:
    def query(text, start, end, template="Objects: Where is object X?"):
        return {"query": text, "template": template, "clip_start_sec": start, "clip_end_sec": end}

    return {
        "videos": [
            {
                "video_uid": "vid-n",
                "split": "val",
                "clips": [
                    {
                        "clip_uid": "clip-n1",
                        "video_start_sec": 0.0,
                        "video_end_sec": 480.0,
                        "annotations": [
                            {
                                "annotation_uid": "an-1",
                                "language_queries": [
                                    query("Where is the cup?", 1.0, 4.0),
                                    query("Where is the knife?", 9.0, 9.0),
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }


def _error(load, path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load(path, **kwargs)
    message = str(info.value)
    assert message.startswith(str(path) + ":"), message
    return message


# ----------------------------------------------------------------------------------------------
# The shared example files, counted by hand


def test_moments_sample_counted_by_hand():
    path = _example("moments_sample.json")
    ann = load_mq_annotations(path)
    assert ann.format == "official" and ann.path == str(path)
    # 6 clips in the file; 8e4b...6b03 has only a non-primary label and is dropped.
    assert list(ann.clips) == [
        "7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a01",
        "7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a02",
        "8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b01",
        "8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b02",
        "9f5c1e32-4d6f-4081-8c3d-2e4f5a6b7c01",
    ]
    assert [len(c.instances) for c in ann.clips.values()] == [8, 3, 3, 1, 3]
    assert ann.non_primary_skipped == 2  # the "stir" secondary label and the lone "eat_a_snack"
    assert ann.dropped_unlabelled == 1
    assert all(c.split == "train" for c in ann.clips.values())

    first = ann.clips["7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a01"]
    assert first.video_uid == "0b6c4f3e-1d2a-4c1e-9a77-5f0e2a1b3c01"
    assert first.video_start_sec == 120.0210286 and first.video_end_sec == 600.0210286
    # every primary label of every annotator, file order, exact duplicates kept
    assert [(i.annotator[-2:], i.label[:12], i.start, i.end) for i in first.instances] == [
        ("01", "use_phone", 12.53311, 47.90102),
        ("01", '"cut_/_chop_', 96.0, 141.25),
        ("01", "converse_/_i", 300.5, 480.0),
        ("02", "use_phone", 12.9, 48.41733),
        ("02", '"cut_/_chop_', 95.41, 139.8),
        ("02", "converse_/_i", 301.25061, 480.03333),
        ("03", "use_phone", 12.53311, 47.90102),
        ("03", "wash_hands", 210.0, 222.75),
    ]
    assert first.instances[1].label == QUOTED
    assert isinstance(first.instances[2].end, float)  # JSON int 480 read as a float

    negative = ann.clips["8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b01"]
    assert negative.video_start_sec == -0.0123047 and negative.duration == pytest.approx(480.0)
    assert negative.instances[1].end == 481.2  # ends 1.2 s after the clip end: kept
    assert ann.clips["8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b02"].duration == pytest.approx(193.0)
    assert len(ann.labels()) == 11


def test_nlq_sample_counted_by_hand():
    path = _example("nlq_sample.json")
    ann = load_nlq_annotations(path)
    a = "a06d2f43-5e70-4192-9d4e-3f5a6b7c8d01"
    assert [q.key for q in ann.queries] == [
        (a, "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a01", 0),
        (a, "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a01", 1),
        (a, "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a01", 2),
        (a, "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a02", 0),  # its query_idx 1 has "query": null
        ("a06d2f43-5e70-4192-9d4e-3f5a6b7c8d02", "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a03", 0),
        ("b17e3054-6f81-42a3-8e5f-4a6b7c8d9e01", "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a04", 0),
        ("b17e3054-6f81-42a3-8e5f-4a6b7c8d9e01", "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a04", 1),
        ("c28f4165-7092-43b4-9f60-5b7c8d9eaf01", "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a05", 0),
    ]
    assert ann.skipped_empty == 1
    assert ann.zero_length == 1 and ann.queries[1].zero_length and ann.queries[1].start == 102.0
    q = ann.queries[0]
    assert (q.query, q.start, q.end, q.split) == ("What did I put in the blue bowl?", 31.52, 38.9, "train")
    assert q.template == "Objects: What did I put in X?" and q.video_uid == "3e9f7061-4a5d-4f41-8daa-8c3a5d4e6f04"
    assert (q.video_start_sec, q.video_end_sec) == (0.0210286, 480.0210286)
    assert ann.queries[2].template == "Objects: How many X’s? (quantity question)"  # curly apostrophe kept
    assert ann.queries[6].duration == pytest.approx(479.5)


# ----------------------------------------------------------------------------------------------
# Good small files


def test_small_official_file_and_taxonomy(tmp_path):
    path = _write(tmp_path, _mq_official())
    ann = load_mq_annotations(path)
    assert [len(c.instances) for c in ann.clips.values()] == [3, 1, 1]
    assert ann.clips["clip-a1"].instances[1].end == 487.2  # 7.2 s past the 480 s clip: the real overshoot
    assert ann.clips["clip-b1"].video_start_sec == -0.5
    # a non-primary label outside the taxonomy is not an error; primary ones are checked
    tax = Taxonomy([QUOTED, "use_phone", "wash_hands"])
    assert len(load_mq_annotations(path, taxonomy=tax).clips) == 3


def test_test_split_clips_are_kept_without_instances(tmp_path):
    data = _mq_official()
    for video in data["videos"]:
        video["split"] = "test"
    del data["videos"][0]["clips"][0]["annotations"]
    data["videos"][0]["clips"][1]["annotations"] = []
    ann = load_mq_annotations(_write(tmp_path, data, "moments_test_unannotated.json"))
    assert list(ann.clips) == ["clip-a1", "clip-a2", "clip-b1"]
    assert all(c.instances == [] and c.split == "test" for c in ann.clips.values())
    assert ann.dropped_unlabelled == 0


def test_converted_per_clip_format(tmp_path):
    data = {
        "c1": {
            "video_id": "v1", "clip_id": "c1", "subset": "train", "duration": 480.0123,
            "parent_start_sec": -0.0123, "parent_end_sec": 480.0, "fps": 1.87,
            "annotations": [
                {"segment": [1.0, 2], "label": QUOTED, "label_id": 75},
                {"segment": [1.0, 2], "label": QUOTED, "label_id": 75},
            ],
        },
        "c2": {"video_id": "v1", "subset": "val", "duration": 200.0, "parent_start_sec": 480.0, "annotations": []},
        "c3": {"video_id": "v2", "subset": "test", "duration": 300.0, "parent_start_sec": 5.0, "annotations": []},
    }
    ann = load_mq_annotations(_write(tmp_path, data, "ego4d_clip_annotations_v2.json"))
    assert ann.format == "converted" and list(ann.clips) == ["c1", "c3"]
    assert ann.dropped_unlabelled == 1 and ann.non_primary_skipped == 0
    c1 = ann.clips["c1"]
    assert (c1.video_uid, c1.split, c1.video_start_sec, c1.video_end_sec) == ("v1", "train", -0.0123, -0.0123 + 480.0123)
    assert [(i.label, i.start, i.end, i.annotator) for i in c1.instances] == [(QUOTED, 1.0, 2.0, "")] * 2
    assert ann.clips["c3"].video_end_sec == 305.0 and ann.clips["c3"].instances == []


def test_nlq_test_split_needs_only_the_query_text(tmp_path):
    data = _nlq_official()
    data["videos"][0]["split"] = "test"
    data["videos"][0]["clips"][0]["annotations"][0]["language_queries"] = [{"query": "Where is the cup?"}, {"query": ""}]
    ann = load_nlq_annotations(_write(tmp_path, data, "nlq_test_unannotated.json"))
    assert [(q.key, q.query, q.start, q.end, q.template) for q in ann.queries] == [
        (("clip-n1", "an-1", 0), "Where is the cup?", None, None, None)
    ]
    assert ann.skipped_empty == 1 and ann.zero_length == 0


# ----------------------------------------------------------------------------------------------
# Bad input: one DataError naming the file, the JSON path and what was expected

LABEL = "videos[0].clips[0].annotations[0].labels[2]"
CLIP = "videos[0].clips[1]"


def _set(path_keys, value):
    def mutate(data):
        obj = data
        for key in path_keys[:-1]:
            obj = obj[key]
        if value is _DELETE:
            del obj[path_keys[-1]]
        else:
            obj[path_keys[-1]] = value

    return mutate


_DELETE = object()
_L = ["videos", 0, "clips", 0, "annotations", 0, "labels", 2]
_C = ["videos", 0, "clips", 1]

MQ_BAD = [
    ("missing start", _set(_L + ["start_time"], _DELETE), f"{LABEL}.start_time: expected a number", "nothing (field missing)"),
    ("string time", _set(_L + ["end_time"], "487.2"), f"{LABEL}.end_time: expected a number", "'487.2'"),
    ("bool time", _set(_L + ["start_time"], True), f"{LABEL}.start_time: expected a number", "True"),
    ("nan time", _set(_L + ["start_time"], float("nan")), f"{LABEL}.start_time: expected a finite number", "nan"),
    ("inf time", _set(_L + ["end_time"], float("inf")), f"{LABEL}.end_time: expected a finite number", "inf"),
    ("start > end", _set(_L + ["start_time"], 490.0), f"{LABEL}.start_time: expected at most end_time", "490.0"),
    ("start far before", _set(_L + ["start_time"], -1.5), f"{LABEL}.start_time: expected a clip time >= -1", "-1.5"),
    ("end far after", _set(_L + ["end_time"], 490.5), f"{LABEL}.end_time: expected a clip time <= 490", "490.5"),
    ("label type", _set(_L + ["label"], 12), f"{LABEL}.label: expected a non-empty string", "12"),
    ("empty label", _set(_L + ["label"], ""), f"{LABEL}.label: expected a non-empty string", "''"),
    ("primary type", _set(_L + ["primary"], "true"), f"{LABEL}.primary: expected true or false", "'true'"),
    ("label not object", _set(_L, [1, 2]), f"{LABEL}: expected an object", "[1, 2]"),
    ("labels not list", _set(["videos", 0, "clips", 0, "annotations", 0, "labels"], {}),
     "videos[0].clips[0].annotations[0].labels: expected a list", "{}"),
    ("annotator uid", _set(["videos", 0, "clips", 0, "annotations", 1, "annotator_uid"], None),
     "videos[0].clips[0].annotations[1].annotator_uid: expected a string", "None"),
    ("annotations missing", _set(_C + ["annotations"], _DELETE), f"{CLIP}.annotations: expected a list", "nothing (field missing)"),
    ("clip uid missing", _set(_C + ["clip_uid"], _DELETE), f"{CLIP}.clip_uid: expected a non-empty string", "nothing (field missing)"),
    ("duplicate clip uid", _set(_C + ["clip_uid"], "clip-a1"),
     f"{CLIP}.clip_uid: expected a clip uid not already used (at videos[0].clips[0])", "'clip-a1'"),
    ("clip end before start", _set(_C + ["video_end_sec"], 400.0),
     f"{CLIP}.video_end_sec: expected greater than video_start_sec (490.0)", "400.0"),
    ("clip start nan", _set(_C + ["video_start_sec"], float("nan")), f"{CLIP}.video_start_sec: expected a finite number", "nan"),
    ("clips not list", _set(["videos", 1, "clips"], "x"), "videos[1].clips: expected a list", "'x'"),
    ("unknown split", _set(["videos", 1, "split"], "training"),
     "videos[1].split: expected one of 'train', 'val', 'test'", "'training'"),
    ("video uid", _set(["videos", 1, "video_uid"], 7), "videos[1].video_uid: expected a non-empty string", "7"),
    ("videos not list", _set(["videos"], {"a": 1}), "videos: expected a list", "{'a': 1}"),
    ("video not object", _set(["videos", 1], "vid-b"), "videos[1]: expected an object", "'vid-b'"),
]


@pytest.mark.parametrize("name,mutate,field_expected,got", MQ_BAD, ids=[case[0] for case in MQ_BAD])
def test_mq_bad_input_names_file_path_and_expectation(tmp_path, name, mutate, field_expected, got):
    data = copy.deepcopy(_mq_official())
    mutate(data)
    message = _error(load_mq_annotations, _write(tmp_path, data))
    assert field_expected in message
    assert message.endswith(f"got {got}") or f"got {got}" in message, message


def test_time_tolerance_is_documented_and_inclusive(tmp_path):
    assert (TIME_TOLERANCE_BEFORE, TIME_TOLERANCE_AFTER) == (1.0, 10.0)
    data = _mq_official()
    data["videos"][0]["clips"][0]["annotations"][0]["labels"][2]["start_time"] = -1.0
    data["videos"][0]["clips"][0]["annotations"][0]["labels"][2]["end_time"] = 490.0  # 480 s clip + 10 s
    ann = load_mq_annotations(_write(tmp_path, data))
    assert (ann.clips["clip-a1"].instances[1].start, ann.clips["clip-a1"].instances[1].end) == (-1.0, 490.0)


def test_unknown_primary_label_is_an_error_only_with_a_taxonomy(tmp_path):
    data = _mq_official()
    data["videos"][0]["clips"][1]["annotations"][0]["labels"][0]["label"] = "juggle_knives"
    path = _write(tmp_path, data)
    assert load_mq_annotations(path).clips["clip-a2"].instances[0].label == "juggle_knives"
    message = _error(load_mq_annotations, path, taxonomy=Taxonomy([QUOTED, "use_phone", "wash_hands"]))
    assert "videos[0].clips[1].annotations[0].labels[0].label: expected a label of the taxonomy (3 classes)" in message
    assert message.endswith("got 'juggle_knives'")


def test_unreadable_truncated_and_invalid_files(tmp_path):
    missing = tmp_path / "moments_val.json"
    message = _error(load_mq_annotations, missing)
    assert "expected a readable file" in message and "No such file" in message
    assert "expected a readable file" in _error(load_nlq_annotations, tmp_path)  # a folder

    text = json.dumps(_mq_official(), indent=1)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2], encoding="utf-8")
    message = _error(load_mq_annotations, truncated)
    lines = text[: len(text) // 2].count("\n") + 1
    assert f"line {lines}, column" in message and "valid JSON" in message and "may be truncated" in message

    broken = tmp_path / "broken.json"
    broken.write_text('{"videos": [\n  {"video_uid": "a",, "split": "train"}\n]}', encoding="utf-8")
    message = _error(load_nlq_annotations, broken)
    assert "line 2, column 21: expected valid JSON" in message and "may be truncated" not in message

    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "expected a UTF-8 text file" in _error(load_mq_annotations, binary)


def test_wrong_top_level_and_wrong_task(tmp_path):
    message = _error(load_mq_annotations, _write(tmp_path, [1, 2], "list.json"))
    assert "expected an object" in message and "got a list" in message
    message = _error(load_mq_annotations, _write(tmp_path, {}, "empty.json"))
    assert "got an empty object" in message
    message = _error(load_mq_annotations, _write(tmp_path, {"version": "v1", "database": {}}, "af.json"))
    assert "ActionFormer" in message
    message = _error(load_mq_annotations, _write(tmp_path, _nlq_official(), "nlq_val.json"))
    assert "videos[0].clips[0].annotations[0]" in message and "looks like an NLQ file" in message
    message = _error(load_nlq_annotations, _write(tmp_path, _mq_official(), "m.json"))
    assert "videos[0].clips[0].annotations[0]" in message and "looks like an MQ file" in message
    message = _error(load_nlq_annotations, _write(tmp_path, {"c1": {"subset": "val"}}, "conv.json"))
    assert "expected an object with a 'videos' list" in message


CONVERTED_BAD = [
    ("segment length", ["c1", "annotations", 0, "segment"], [1.0], "c1.annotations[0].segment: expected a list [start, end]"),
    ("segment nan", ["c1", "annotations", 0, "segment"], [float("nan"), 2.0], "c1.annotations[0].segment[0]: expected a finite number"),
    ("segment reversed", ["c1", "annotations", 0, "segment"], [3.0, 2.0], "c1.annotations[0].segment[0]: expected at most segment[1]"),
    ("missing subset", ["c1", "subset"], _DELETE, "c1.subset: expected one of 'train', 'val', 'test'"),
    ("duration type", ["c1", "duration"], "480", "c1.duration: expected a number"),
    ("zero duration", ["c1", "duration"], 0.0, "c1.duration: expected greater than 0"),
    ("video id", ["c1", "video_id"], _DELETE, "c1.video_id: expected a non-empty string"),
    ("clip id mismatch", ["c1", "clip_id"], "c9", "c1.clip_id: expected the key of its record ('c1')"),
    ("clip not object", ["c1"], 3, "c1: expected an object"),
    ("label", ["c1", "annotations", 0, "label"], None, "c1.annotations[0].label: expected a non-empty string"),
]


@pytest.mark.parametrize("name,keys,value,expected", CONVERTED_BAD, ids=[case[0] for case in CONVERTED_BAD])
def test_converted_bad_input(tmp_path, name, keys, value, expected):
    data = {
        "c0": {"video_id": "v0", "subset": "val", "duration": 100.0, "parent_start_sec": 0.0,
               "annotations": [{"segment": [1, 2], "label": "a"}]},
        "c1": {"video_id": "v1", "subset": "train", "duration": 480.0, "parent_start_sec": 0.0,
               "annotations": [{"segment": [1, 2], "label": "a"}]},
    }
    _set(keys, value)(data)
    assert expected in _error(load_mq_annotations, _write(tmp_path, data, "conv.json"))


def test_converted_duplicate_clip_uid(tmp_path):
    record = '{"video_id": "v", "subset": "val", "duration": 10.0, "parent_start_sec": 0.0, "annotations": [{"segment": [1, 2], "label": "a"}]}'
    path = tmp_path / "conv.json"
    path.write_text('{"c1": %s, "c2": %s, "c1": %s}' % (record, record, record), encoding="utf-8")
    message = _error(load_mq_annotations, path)
    assert "c1: expected a clip uid not already used" in message


NLQ_Q = "videos[0].clips[0].annotations[0].language_queries"
_Q = ["videos", 0, "clips", 0, "annotations", 0, "language_queries"]

NLQ_BAD = [
    ("missing time", _set(_Q + [0, "clip_start_sec"], _DELETE), f"{NLQ_Q}[0].clip_start_sec: expected a number"),
    ("reversed", _set(_Q + [0, "clip_start_sec"], 5.0), f"{NLQ_Q}[0].clip_start_sec: expected at most clip_end_sec"),
    ("nan", _set(_Q + [1, "clip_end_sec"], float("nan")), f"{NLQ_Q}[1].clip_end_sec: expected a finite number"),
    ("far after", _set(_Q + [1, "clip_end_sec"], 500.0), f"{NLQ_Q}[1].clip_end_sec: expected a clip time <= 490"),
    ("query type", _set(_Q + [1, "query"], 42), f"{NLQ_Q}[1].query: expected a string or null"),
    ("template type", _set(_Q + [1, "template"], 3), f"{NLQ_Q}[1].template: expected a string or null"),
    ("entry type", _set(_Q + [0], "Where?"), f"{NLQ_Q}[0]: expected an object"),
    ("queries not list", _set(_Q, None), f"{NLQ_Q}: expected a list"),
    ("annotation uid", _set(["videos", 0, "clips", 0, "annotations", 0, "annotation_uid"], _DELETE),
     "videos[0].clips[0].annotations[0].annotation_uid: expected a non-empty string"),
    ("split", _set(["videos", 0, "split"], "validation"), "videos[0].split: expected one of 'train', 'val', 'test'"),
    ("clip end", _set(["videos", 0, "clips", 0, "video_end_sec"], "480"), "videos[0].clips[0].video_end_sec: expected a number"),
]


@pytest.mark.parametrize("name,mutate,expected", NLQ_BAD, ids=[case[0] for case in NLQ_BAD])
def test_nlq_bad_input(tmp_path, name, mutate, expected):
    data = _nlq_official()
    mutate(data)
    assert expected in _error(load_nlq_annotations, _write(tmp_path, data, "nlq_val.json"))


def test_nlq_duplicate_clip_and_annotation(tmp_path):
    data = _nlq_official()
    clip = data["videos"][0]["clips"][0]
    clip["annotations"].append(copy.deepcopy(clip["annotations"][0]))
    message = _error(load_nlq_annotations, _write(tmp_path, data, "nlq_val.json"))
    assert "videos[0].clips[0].annotations[1].annotation_uid: expected an annotation uid not already used in this clip" in message
    data = _nlq_official()
    data["videos"].append(copy.deepcopy(data["videos"][0]))
    data["videos"][1]["video_uid"] = "other"
    message = _error(load_nlq_annotations, _write(tmp_path, data, "nlq_val.json"))
    assert "videos[1].clips[0].clip_uid: expected a clip uid not already used (at videos[0].clips[0])" in message


# ----------------------------------------------------------------------------------------------
# Collect-all mode


def test_collect_all_lists_every_problem_and_keeps_the_rest(tmp_path):
    data = _mq_official()
    labels = data["videos"][0]["clips"][0]["annotations"][0]["labels"]
    labels[0]["start_time"] = float("nan")  # this label is skipped, the clip keeps its other labels
    data["videos"][0]["clips"][1]["video_end_sec"] = None  # this clip is skipped
    data["videos"][1]["clips"][0]["annotations"][0]["labels"][0]["label"] = "juggle"  # unknown: skipped
    path = _write(tmp_path, data)
    errors: list = []
    ann = load_mq_annotations(path, taxonomy=Taxonomy([QUOTED, "use_phone", "wash_hands"]), errors=errors)
    assert [e.field for e in errors] == [
        "videos[0].clips[0].annotations[0].labels[0].start_time",
        "videos[0].clips[1].video_end_sec",
        "videos[1].clips[0].annotations[0].labels[0].label",
    ]
    assert all(isinstance(e, DataError) and e.path == str(path) for e in errors)
    assert list(ann.clips) == ["clip-a1"]
    assert [i.label for i in ann.clips["clip-a1"].instances] == [QUOTED, "use_phone"]
    assert ann.dropped_unlabelled == 0  # clip-b1 lost its only label to an error: not counted as unlabelled

    errors = []
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    ann = load_mq_annotations(tmp_path / "bad.json", errors=errors)
    assert len(errors) == 1 and ann.clips == {} and "line 1, column 2" in str(errors[0])

    nlq = _nlq_official()
    nlq["videos"][0]["clips"][0]["annotations"][0]["language_queries"][0]["clip_end_sec"] = -5
    errors = []
    ann = load_nlq_annotations(_write(tmp_path, nlq, "nlq_val.json"), errors=errors)
    assert len(errors) == 1 and [q.key for q in ann.queries] == [("clip-n1", "an-1", 1)]


# ----------------------------------------------------------------------------------------------
# Finding the files


def test_find_annotation_file_layouts(tmp_path):
    (tmp_path / "v1" / "annotations").mkdir(parents=True)
    (tmp_path / "v2" / "annotations").mkdir(parents=True)
    for version in ("v1", "v2"):
        (tmp_path / version / "annotations" / "moments_val.json").write_text("{}")
    (tmp_path / "v1" / "annotations" / "nlq_train.json").write_text("{}")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "moments_test_unannotated.json").write_text("{}")
    (tmp_path / "nlq_val.json").write_text("{}")

    assert find_annotation_file(tmp_path, "mq", "val") == tmp_path / "v2" / "annotations" / "moments_val.json"
    assert find_annotation_file(tmp_path, "mq", "test") == tmp_path / "annotations" / "moments_test_unannotated.json"
    assert find_annotation_file(tmp_path, "nlq", "train") == tmp_path / "v1" / "annotations" / "nlq_train.json"
    assert find_annotation_file(tmp_path, "nlq", "val") == tmp_path / "nlq_val.json"
    assert find_annotation_file(tmp_path / "nlq_val.json", "mq", "train") == tmp_path / "nlq_val.json"
    assert find_annotation_files(tmp_path, "mq") == {
        "val": tmp_path / "v2" / "annotations" / "moments_val.json",
        "test": tmp_path / "annotations" / "moments_test_unannotated.json",
    }

    with pytest.raises(EgoaslError) as info:
        find_annotation_file(tmp_path, "mq", "train")
    message = str(info.value)
    assert "moments_train.json" in message
    for where in (tmp_path, tmp_path / "annotations", tmp_path / "v2" / "annotations", tmp_path / "v1" / "annotations"):
        assert str(where) in message
    with pytest.raises(EgoaslError, match="does not exist"):
        find_annotation_file(tmp_path / "nowhere", "mq", "val")
    with pytest.raises(EgoaslError, match="task"):
        find_annotation_file(tmp_path, "vq", "val")
    with pytest.raises(EgoaslError, match="split"):
        find_annotation_file(tmp_path, "mq", "validation")
    with pytest.raises(EgoaslError, match="no nlq annotation file"):
        find_annotation_files(tmp_path / "annotations", "nlq")


# ----------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/refdata is absent)


def _refdata(name: str) -> Path:
    path = REFDATA / name
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


def test_real_converted_annotations():
    ann = load_mq_annotations(_refdata("ego4d_clip_annotations_v2.json"))
    assert ann.format == "converted"
    counts = {s: len(ann.split(s)) for s in ("train", "val", "test")}
    assert counts == {"train": 1486, "val": 521, "test": 488}
    instances = {s: sum(len(c.instances) for c in ann.split(s)) for s in ("train", "val", "test")}
    assert instances == {"train": 13559, "val": 4296, "test": 0}
    assert len(ann.labels()) == 110 and len(ann.labels(("train",))) == 110 and len(ann.labels(("val",))) == 110
    assert ann.non_primary_skipped == 0 and ann.dropped_unlabelled == 0
    assert sum(c.video_start_sec < 0 for c in ann.clips.values()) == 90
    assert len({c.video_uid for c in ann.split("train")}) == 932
    assert min(c.duration for c in ann.clips.values()) == 182.0
    assert sum(i.end > c.duration for c in ann.split("val") for i in c.instances) == 421
    assert sum(label.startswith('"') for label in ann.labels()) == 7
    # loading again against its own taxonomy finds nothing unknown
    errors: list = []
    load_mq_annotations(ann.path, taxonomy=Taxonomy.from_annotations(ann), errors=errors)
    assert errors == []


def test_real_official_val_file_matches_the_converted_val_split():
    """mq_val_official.json is the val split rebuilt in the official nesting (see its description).

    It holds 325 val videos, 521 clips, 4,296 primary labels from 1-3 (pseudo-)annotators and 14
    added non-primary labels (7 of them outside the 110 classes).
    """
    official = load_mq_annotations(_refdata("mq_val_official.json"))
    assert official.format == "official"
    assert len(official.clips) == 521 and official.split("val") == list(official.clips.values())
    assert sum(len(c.instances) for c in official.clips.values()) == 4296
    assert len({c.video_uid for c in official.clips.values()}) == 325
    assert official.non_primary_skipped == 14 and official.dropped_unlabelled == 0
    assert len(official.labels(("val",))) == 110

    converted = load_mq_annotations(_refdata("ego4d_clip_annotations_v2.json"))
    taxonomy = Taxonomy.from_annotations(converted)
    errors: list = []
    load_mq_annotations(official.path, taxonomy=taxonomy, errors=errors)
    assert errors == []  # the 7 out-of-taxonomy labels are non-primary
    for uid, clip in official.clips.items():
        other = converted.clips[uid]
        assert (clip.video_uid, clip.split) == (other.video_uid, other.split)
        assert math.isclose(clip.video_start_sec, other.video_start_sec, abs_tol=1e-9)
        assert math.isclose(clip.video_end_sec, other.video_end_sec, abs_tol=1e-9)
        assert [(i.label, i.start, i.end) for i in clip.instances] == [(i.label, i.start, i.end) for i in other.instances]
