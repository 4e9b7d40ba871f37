"""Submission files: building, atomic writing, reading, and validation with locations."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from egoasl.data.records import MQClip, NLQQuery
from egoasl.errors import DataError, EgoaslError
from egoasl.io.submission import (
    Problem,
    build_mq_submission,
    build_nlq_submission,
    errors_only,
    read_mq_submission,
    read_nlq_submission,
    read_submission,
    validate_mq_submission,
    validate_nlq_submission,
    write_json_atomic,
    write_mq_submission,
    write_nlq_submission,
)

QUOTED = '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"'
LABELS = ["use_phone", QUOTED]
CLIPS = [
    MQClip("a", "v", "test", 0.0, 480.0, []),
    MQClip("b", "v", "test", 10.0, 203.0, []),  # a 193 s clip
]


def row(label: str, score: float, s: float, e: float) -> dict:
    return {"label": label, "score": score, "segment": [s, e]}


def good_mq() -> dict:
    return build_mq_submission({
        "a": [row("use_phone", 0.2, 1, 5), row(QUOTED, 0.9, 10, 20)],
        "b": [],
    })


def locations(problems: list[Problem], severity: str = "error") -> list[str]:
    return [p.location for p in problems if p.severity == severity]


# ------------------------------------------------------------------------------------------------
# MQ


def test_build_sorts_by_score_caps_and_uses_plain_types():
    sub = build_mq_submission(
        {"a": {"label": ["x", "y", "z"], "score": np.array([0.1, 0.9, 0.5], dtype=np.float32),
               "segment": np.array([[0, 1], [2, 3], [4, 5]])}},
        max_per_clip=2,
    )
    assert sub["version"] == "1.0" and sub["challenge"] == "ego4d_moment_queries"
    assert [r["label"] for r in sub["detect_results"]["a"]] == ["y", "z"]
    assert sub["retrieve_results"] == sub["detect_results"]
    assert type(sub["detect_results"]["a"][0]["score"]) is float
    assert sub["detect_results"]["a"][0]["segment"] == [2.0, 3.0]
    json.dumps(sub, allow_nan=False)


def test_build_keeps_submission_order_of_ties_and_separate_retrievals():
    dets = {"a": [row("x", 0.5, 0, 1), row("y", 0.5, 2, 3), row("z", 0.7, 4, 5)]}
    rets = {"a": [row("x", 0.1, 0, 1)]}
    sub = build_mq_submission(dets, rets)
    assert [r["label"] for r in sub["detect_results"]["a"]] == ["z", "x", "y"]
    assert sub["retrieve_results"]["a"] == [row("x", 0.1, 0.0, 1.0)]


def test_build_refuses_non_finite_values_with_location():
    with pytest.raises(DataError, match=r"detect_results\['a'\]\[1\]: expected a finite score"):
        build_mq_submission({"a": [row("x", 0.5, 0, 1), row("x", float("nan"), 0, 1)]})


def test_valid_submission_has_no_problem_and_keeps_quoted_labels():
    assert validate_mq_submission(good_mq(), CLIPS, LABELS) == []


def test_every_problem_is_reported_with_its_location():
    sub = {
        "version": "1.0",
        "challenge": "ego4d_moment_queries",
        "detect_results": {
            "a": [
                row("use_phone", 0.2, 1, 5),
                row(QUOTED.strip('"'), 0.9, 10, 20),  # quotes lost + unsorted
                row("use_phone", float("nan"), 1, 2),
                row("use_phone", 0.1, 9, 3),  # reversed
                {"label": "use_phone", "score": 0.05},  # no segment
                row("use_phone", 0.01, 470, 490),  # past the clip end: warning
            ],
            "x": [],  # not in the split: warning
        },  # "b" missing
        "retrieve_results": {"a": [], "b": "oops"},
    }
    problems = validate_mq_submission(sub, CLIPS, LABELS)
    assert locations(problems) == [
        "detect_results['b']",
        "detect_results['a'][1].label",
        "detect_results['a'][2].score",
        "detect_results['a'][3].segment",
        "detect_results['a'][4]",
        "detect_results['a'][1]",  # unsorted: reported at the first entry above its predecessor
        "retrieve_results['b']",
    ]
    assert locations(problems, "warning") == ["detect_results['a'][5].segment", "detect_results['x']"]
    messages = {p.location: p.message for p in problems}
    assert "quotes are part of it" in messages["detect_results['a'][1].label"]
    assert "reversed" in messages["detect_results['a'][3].segment"]
    assert "missing 'segment'" in messages["detect_results['a'][4]"]
    assert "score is nan" in messages["detect_results['a'][2].score"]
    assert str(problems[0]).startswith("error: detect_results['b']: missing clip")


def test_header_too_many_predictions_and_missing_retrievals():
    sub = {"version": "1", "challenge": "ego4d_nlq_challenge",
           "detect_results": {"a": [row("use_phone", 0.5, 0, 1)] * 3, "b": []}, "extra": 1}
    problems = validate_mq_submission(sub, CLIPS, LABELS, max_per_clip=2)
    assert locations(problems) == ["version", "challenge", "detect_results['a']", "retrieve_results"]
    assert locations(problems, "warning") == ["'extra'"]
    assert "3 predictions, more than the 2" in {p.location: p.message for p in problems}["detect_results['a']"]


def test_labels_are_not_checked_without_a_taxonomy():
    sub = build_mq_submission({"a": [row("anything", 0.5, 0, 1)], "b": []})
    assert validate_mq_submission(sub, CLIPS, None) == []
    assert locations(validate_mq_submission(sub, CLIPS, LABELS)) == [
        "detect_results['a'][0].label", "retrieve_results['a'][0].label"]


def test_write_validates_before_writing_and_is_atomic(tmp_path):
    path = tmp_path / "sub" / "mq.json"
    write_mq_submission(path, {"a": [row("use_phone", 0.5, 0, 1)], "b": []}, clips=CLIPS, labels=LABELS)
    assert json.loads(path.read_text())["detect_results"]["a"][0]["label"] == "use_phone"
    before = path.read_text()
    with pytest.raises(EgoaslError, match=r"not written, 2 problems:\n  error: detect_results\['b'\]: missing clip"):
        write_mq_submission(path, {"a": []}, clips=CLIPS, labels=LABELS)
    assert path.read_text() == before
    assert os.listdir(path.parent) == ["mq.json"]  # no temporary file left behind


def test_atomic_write_leaves_the_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(EgoaslError, match="x.json: cannot write"):
        write_json_atomic(path, {"bad": float("nan")})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_read_round_trip_and_intermediate_results_file(tmp_path):
    path = write_json_atomic(tmp_path / "s.json", good_mq())
    det, ret = read_mq_submission(path)
    assert det == ret == good_mq()["detect_results"]
    inter = write_json_atomic(tmp_path / "r.json", {"version": "1.0", "results": {"a": []}, "external_data": {}})
    assert read_mq_submission(inter) == ({"a": []}, {"a": []})


def test_read_errors_name_the_file_and_place(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0",\n "detect_results": {,}}')
    with pytest.raises(DataError, match=r"bad.json: line 2, column 21: expected valid JSON"):
        read_mq_submission(bad)
    nlq = write_json_atomic(tmp_path / "n.json", {"version": "1.0", "challenge": "ego4d_nlq_challenge", "results": []})
    with pytest.raises(DataError, match=r"n.json: challenge: expected 'ego4d_moment_queries'"):
        read_mq_submission(nlq)
    with pytest.raises(DataError, match=r"missing.json: expected a readable submission file"):
        read_mq_submission(tmp_path / "missing.json")
    lst = write_json_atomic(tmp_path / "l.json", [1, 2])
    with pytest.raises(DataError, match="l.json: expected a JSON object, got 'list'"):
        read_submission(lst)


def test_duplicate_keys_are_found_while_reading(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"version": "1.0", "detect_results": {"a": [], "a": []}}')
    _, problems = read_submission(path)
    assert [p.location for p in problems] == ["'a'"]


# ------------------------------------------------------------------------------------------------
# NLQ


QUERIES = [
    NLQQuery("c", "v", "a1", 0, "where?", "test", 0.0, 480.0),
    NLQQuery("c", "v", "a1", 2, "what?", "test", 0.0, 480.0),  # query_idx 1 had no text
]


def five(s: float = 0.0) -> list[list[float]]:
    return [[s + i, s + i + 1] for i in range(5)]


def test_build_nlq_and_valid_file():
    sub = build_nlq_submission([
        {"clip_uid": "c", "annotation_uid": "a1", "query_idx": np.int64(0), "predicted_times": np.array(five())},
        {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 2, "predicted_times": five(10)},
    ])
    assert sub["challenge"] == "ego4d_nlq_challenge" and type(sub["results"][0]["query_idx"]) is int
    assert sub["results"][0]["predicted_times"][4] == [4.0, 5.0]
    assert validate_nlq_submission(sub, QUERIES) == []


def test_nlq_problems_with_locations():
    sub = {
        "version": "1.0",
        "challenge": "ego4d_nlq_challenge",
        "results": [
            {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 0, "predicted_times": five()[:3]},  # 3 windows
            {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 0, "predicted_times": five()},  # duplicate
            {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 1, "predicted_times": five()},  # no such query
            {"clip_uid": "c", "annotation_uid": "a9", "query_idx": "2", "predicted_times": [0, 1]},  # str idx, flat
            {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 5,
             "predicted_times": [[3, 1], [0, float("inf")], [0, 1], [-2, 1], [400, 500]]},
        ],
    }
    problems = validate_nlq_submission(sub, QUERIES)
    assert locations(problems) == [
        "results[0].predicted_times",
        "results[1]",
        "results[2]",
        "results[3].query_idx",
        "results[3].predicted_times",
        "results[4]",
        "results[4].predicted_times[0]",
        "results[4].predicted_times[1]",
        "query ('c', 'a1', 2)",
    ]
    assert locations(problems, "warning") == ["results[4].predicted_times[3]"]
    text = "\n".join(map(str, problems))
    assert "3 windows, expected 5" in text and "already predicted in results[0]" in text
    assert "a flat [start, end]" in text and "reversed: start 3 > end 1" in text
    assert "missing: no entry predicts this query" in text


def test_nlq_end_after_clip_is_a_warning_when_the_query_is_known():
    sub = build_nlq_submission([
        {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 0, "predicted_times": five(478)},
        {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 2, "predicted_times": five()},
    ])
    problems = validate_nlq_submission(sub, QUERIES)
    assert errors_only(problems) == []
    assert locations(problems, "warning") == ["results[0].predicted_times[3]", "results[0].predicted_times[4]"]


def test_nlq_read_checks_version_and_challenge(tmp_path):
    path = write_nlq_submission(tmp_path / "n.json", [
        {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 0, "predicted_times": five()},
        {"clip_uid": "c", "annotation_uid": "a1", "query_idx": 2, "predicted_times": five()},
    ], queries=QUERIES)
    assert len(read_nlq_submission(path)) == 2
    bad = write_json_atomic(tmp_path / "b.json", {"version": "2.0", "challenge": "ego4d_nlq_challenge", "results": []})
    with pytest.raises(DataError, match=r"b.json: version: expected '1.0', got '2.0'"):
        read_nlq_submission(bad)
    with pytest.raises(EgoaslError, match=r"missing: no entry"):
        write_nlq_submission(tmp_path / "m.json", [], queries=QUERIES)
    assert not (tmp_path / "m.json").exists()
