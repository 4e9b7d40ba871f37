"""What the fuzz tests share: seed documents, the mutations a hostile user makes, the example budget.

A fuzz case is a valid seed document (an official annotation file, a submission, a config)
changed by one to three mutations of its JSON tree (a value replaced by another type, a huge
integer, a NaN/Infinity literal, deep nesting, a long string; a key deleted or repeated) and
optionally of its bytes (a BOM, a non-UTF-8 byte, truncation, an empty file). A reader or a
command fed such a file must either accept it or raise egoasl's own :class:`EgoaslError`;
any other exception fails the test.

The suite runs a small, derandomised budget per target (a few seconds in all). Setting
``EGOASL_FUZZ_EXAMPLES=N`` runs N random cases per target instead (e.g. 600 for a nightly run).
"""

from __future__ import annotations

import copy
import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SUITE_EXAMPLES = 75
_override = int(os.environ.get("EGOASL_FUZZ_EXAMPLES", "0"))

FUZZ = settings(
    max_examples=_override or SUITE_EXAMPLES,
    derandomize=not _override,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)
"""The settings of every fuzz test: SUITE_EXAMPLES derandomised cases, or EGOASL_FUZZ_EXAMPLES random ones."""

_RAW = "\x00RAW{}"
_DUP = "\x00DUP{}"

# JSON text a json.dumps of a Python value cannot produce: numbers no float holds, literals outside
# the JSON standard, nesting deeper than any recursive walk allows, very long strings.
_raw_fragments = st.one_of(
    st.integers(309, 5000).map(lambda n: "9" * n),
    st.integers(309, 5000).map(lambda n: "-1" + "0" * n),
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1E-400", "0.0000001e999", "-0"]),
    st.integers(2, 20000).map(lambda d: "[" * d + "]" * d),
    st.integers(2, 20000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    st.integers(2, 3000).map(lambda d: "[" * d + "1" + "]" * d),
    st.integers(1000, 200000).map(lambda n: json.dumps("x" * n)),
    st.sampled_from(['"\\ud800"', '"\\u0000"', '"\u00e9\u4e2d \U0001f600"', '""', '" "', "[]", "{}", "null"]),
)

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_values = st.recursive(_leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=8)

_BYTE_EDITS = ["none", "none", "none", "bom", "bad_byte", "truncate", "empty", "latin1", "nul"]


def _children(node: object) -> list:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


@st.composite
def mutated_json(draw: st.DrawFn, seed: object) -> bytes:
    """The bytes of ``seed`` (a JSON-able value) after one to three tree mutations and maybe one byte edit."""
    tree = copy.deepcopy(seed)
    raws: list[str] = []
    duplicates: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        parent, key = None, None
        node = tree
        while _children(node) and draw(st.integers(0, 3)) > 0:
            keys = _children(node)
            parent, key = node, keys[draw(st.integers(0, len(keys) - 1))]
            node = node[key]
        op = draw(st.sampled_from(["value", "raw", "raw", "delete", "duplicate", "wrap", "empty"]))
        if parent is None:
            if op in ("value", "raw"):
                tree = draw(_values) if op == "value" else _raw(draw, raws)
            continue
        if op == "value":
            parent[key] = draw(_values)
        elif op == "raw":
            parent[key] = _raw(draw, raws)
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, dict):
            marker = _DUP.format(len(duplicates))
            duplicates.append(key)
            parent[marker] = _raw(draw, raws) if draw(st.booleans()) else draw(_values)
        elif op == "wrap":
            parent[key] = [node]
        elif op == "empty":
            parent[key] = type(node)() if isinstance(node, (dict, list, str)) else None
    text = json.dumps(tree)
    for i, fragment in enumerate(raws):
        text = text.replace(json.dumps(_RAW.format(i)), fragment, 1)
    for i, key in enumerate(duplicates):
        text = text.replace(json.dumps(_DUP.format(i)), json.dumps(key), 1)
    return _edit_bytes(draw, text)


def _raw(draw: st.DrawFn, raws: list[str]) -> str:
    raws.append(draw(_raw_fragments))
    return _RAW.format(len(raws) - 1)


def _edit_bytes(draw: st.DrawFn, text: str) -> bytes:
    data = text.encode("utf-8", errors="surrogatepass")
    edit = draw(st.sampled_from(_BYTE_EDITS))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    if edit == "bom":
        return b"\xef\xbb\xbf" + data
    if edit == "bad_byte":
        return data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + data[at:]
    if edit == "truncate":
        return data[:at]
    if edit == "empty":
        return b""
    if edit == "latin1":
        return text.replace("a", "\u00e9").encode("latin-1", errors="replace")
    if edit == "nul":
        return data[:at] + b"\x00" + data[at:]
    return data


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` (a binary file) truncated, with bytes flipped, or with bytes inserted."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "zero_tail"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            del data[at:]
        elif op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "zero_tail":
            data[at:] = bytes(len(data) - at)
    return bytes(data)


# ------------------------------------------------------------------------------------------ seeds

QUOTED = '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"'


def _label(label: str, start: float, end: float) -> dict:
    return {"label": label, "start_time": start, "end_time": end, "video_start_time": start + 10,
            "video_end_time": end + 10, "primary": True}


def mq_official() -> dict:
    """An official-layout ``moments_val.json``: two videos, three clips, two classes."""
    def clip(uid: str, start: float, labels: list[dict]) -> dict:
        return {"clip_uid": uid, "video_start_sec": start, "video_end_sec": start + 480.0, "clip_start_sec": 0,
                "clip_end_sec": 480.0, "annotations": [{"annotator_uid": "ann-1", "labels": labels}]}

    return {
        "version": "v2",
        "videos": [
            {"video_uid": "vid-a", "split": "val", "clips": [
                clip("clip-a1", 10.0, [_label("use_phone", 1.0, 5.0), _label(QUOTED, 100.0, 300.5)]),
                clip("clip-a2", 490.0, [_label("use_phone", 20.0, 40.0)]),
            ]},
            {"video_uid": "vid-b", "split": "val", "clips": [clip("clip-b1", 0.0, [_label(QUOTED, 3.0, 9.0)])]},
        ],
    }


def mq_converted() -> dict:
    """The converted per-clip layout (``ego4d_clip_annotations_v2.json``) of two clips."""
    def clip(video: str, start: float, labels: list[tuple[str, int, float, float]]) -> dict:
        return {"video_id": video, "subset": "val", "duration": 480.0, "parent_start_sec": start, "fps": 30.0,
                "annotations": [{"label": name, "label_id": i, "segment": [s, e]} for name, i, s, e in labels]}

    return {
        "clip-a1": clip("vid-a", 10.0, [("use_phone", 0, 1.0, 5.0), (QUOTED, 1, 100.0, 300.5)]),
        "clip-b1": clip("vid-b", 0.0, [(QUOTED, 1, 3.0, 9.0)]),
    }


def nlq_official() -> dict:
    """An official-layout ``nlq_val.json``: one video, two clips, three queries."""
    def query(s: float, e: float, text: str) -> dict:
        return {"clip_start_sec": s, "clip_end_sec": e, "video_start_sec": s, "video_end_sec": e,
                "template": "Objects: Where is object X?", "query": text, "slot_x": "x", "verb_x": "put"}

    def clip(uid: str, start: float, annotations: list[dict]) -> dict:
        return {"clip_uid": uid, "video_start_sec": start, "video_end_sec": start + 480.0, "clip_start_sec": 0,
                "clip_end_sec": 480.0, "annotations": annotations}

    return {"version": "v2", "videos": [{"video_uid": "vid-n", "split": "val", "clips": [
        clip("clip-n1", 0.0, [{"annotation_uid": "an-1", "language_queries": [
            query(31.5, 38.9, "What did I put in the blue bowl?"), query(102.0, 110.0, "Where was the knife?")]}]),
        clip("clip-n2", 480.0, [{"annotation_uid": "an-2", "language_queries": [
            query(0.0, 12.0, "Who did I talk to?")]}]),
    ]}]}


def mq_submission() -> dict:
    """A complete, valid MQ submission for :func:`mq_official`."""
    rows = {
        "clip-a1": [{"label": "use_phone", "score": 0.9, "segment": [1.2, 5.5]},
                    {"label": QUOTED, "score": 0.5, "segment": [98.0, 301.0]}],
        "clip-a2": [{"label": "use_phone", "score": 0.7, "segment": [19.0, 41.0]}],
        "clip-b1": [{"label": QUOTED, "score": 0.6, "segment": [2.0, 10.0]}],
    }
    return {"version": "1.0", "challenge": "ego4d_moment_queries", "detect_results": rows,
            "retrieve_results": copy.deepcopy(rows)}


def nlq_submission() -> dict:
    """A complete, valid NLQ submission for :func:`nlq_official`."""
    five = [[30.0, 40.0], [0.0, 5.0], [100.0, 112.0], [200.0, 210.0], [1.0, 2.0]]
    keys = [("clip-n1", "an-1", 0), ("clip-n1", "an-1", 1), ("clip-n2", "an-2", 0)]
    return {"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": [
        {"clip_uid": c, "annotation_uid": a, "query_idx": i, "predicted_times": copy.deepcopy(five)}
        for c, a, i in keys]}


def anet() -> dict:
    """An ActivityNet-style file: two annotated videos and one test video."""
    return {"version": "1.3", "taxonomy": [], "database": {
        "v_a": {"subset": "training", "duration": 120.5, "fps": 30,
                "annotations": [{"label": "jump", "segment": [1.0, 4.5]}, {"label": "run", "segment": [10, 30]}]},
        "v_b": {"subset": "validation", "duration": 60.0, "annotations": [{"label": "jump", "segment": [0.0, 59.9]}]},
        "v_c": {"subset": "testing", "duration": 30.0, "annotations": []},
    }}


def narrations() -> dict:
    """An official ``narration.json``: one video with two passes, one redacted video."""
    def narration(t: float, text: str) -> dict:
        return {"timestamp_sec": t, "timestamp_frame": int(t * 30), "narration_text": text, "annotation_uid": "n"}

    return {
        "vid-n": {
            "narration_pass_1": {"narrations": [narration(3.5, "#C C picks up the knife"),
                                                narration(9.0, "#O man X hands #C C a cup")],
                                 "summaries": [{"summary_text": "#Summary C cooks", "start_sec": 0, "end_sec": 9}]},
            "narration_pass_2": {"narrations": [narration(4.0, "#C C holds a knife #unsure")]},
        },
        "vid-r": {"status": "redacted"},
    }
