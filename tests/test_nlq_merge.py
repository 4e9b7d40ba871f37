"""Merging the NLQ predictions of several models: pool, sort by score, keep the top 5."""

from __future__ import annotations

import json
import math

import pytest

from egoasl.data.records import NLQQuery
from egoasl.engine.nlq_merge import (
    ScoredWindow,
    merge_nlq_predictions,
    read_member,
    scores_path,
    write_nlq_predictions,
)
from egoasl.errors import EgoaslError

Q1 = ("clip_a", "ann_1", 0)
Q2 = ("clip_a", "ann_1", 2)
Q3 = ("clip_b", "ann_7", 1)


def w(start: float, end: float, score: float) -> ScoredWindow:
    return ScoredWindow(start, end, score)


def test_pooled_windows_sorted_by_score():
    a = {Q1: [w(0, 10, 0.9), w(20, 30, 0.5)]}
    b = {Q1: [w(5, 15, 0.7), w(40, 50, 0.6)]}
    merged = merge_nlq_predictions([a, b])
    assert merged == {Q1: [w(0, 10, 0.9), w(5, 15, 0.7), w(40, 50, 0.6), w(20, 30, 0.5)]}


def test_top_5_of_the_pool_and_stable_ties():
    a = {Q1: [w(i, i + 1, s) for i, s in enumerate([0.9, 0.6, 0.4, 0.2])]}
    b = {Q1: [w(10 + i, 11 + i, s) for i, s in enumerate([0.8, 0.6, 0.3, 0.1])]}
    merged = merge_nlq_predictions([a, b])[Q1]
    # the two 0.6 windows keep member order: a's first
    assert merged == [w(0, 1, 0.9), w(10, 11, 0.8), w(1, 2, 0.6), w(11, 12, 0.6), w(2, 3, 0.4)]
    assert merge_nlq_predictions([a, b], top_k=2)[Q1] == merged[:2]


def test_duplicates_are_pooled_into_one_window_with_the_best_score():
    a = {Q1: [w(0, 10, 0.6), w(20, 30, 0.5)]}
    b = {Q1: [w(0, 10, 0.8), w(40, 50, 0.3)]}
    merged = merge_nlq_predictions([a, b])[Q1]
    assert merged == [w(0, 10, 0.8), w(20, 30, 0.5), w(40, 50, 0.3)]
    # a model listing the same window twice is pooled too
    assert merge_nlq_predictions([{Q1: [w(1, 2, 0.5), w(1, 2, 0.4)]}])[Q1] == [w(1, 2, 0.5)]


def test_queries_of_every_member_in_first_seen_order():
    a = {Q1: [w(0, 1, 0.5)], Q2: [w(2, 3, 0.5)]}
    b = {Q3: [w(4, 5, 0.9)], Q1: [w(6, 7, 0.7)]}
    merged = merge_nlq_predictions([a, b])
    assert list(merged) == [Q1, Q2, Q3]
    assert merged[Q3] == [w(4, 5, 0.9)] and merged[Q1] == [w(6, 7, 0.7), w(0, 1, 0.5)]


def test_optional_soft_nms_on_the_pool():
    a = {Q1: [w(0, 10, 0.9), w(30, 40, 0.5)]}
    b = {Q1: [w(0, 10.5, 0.85)]}
    assert merge_nlq_predictions([a, b], top_k=2)[Q1] == [w(0, 10, 0.9), w(0, 10.5, 0.85)]
    merged = merge_nlq_predictions([a, b], top_k=2, nms_sigma=0.5)[Q1]
    # IoU([0, 10], [0, 10.5]) = 10 / 10.5: the near-duplicate decays to 0.85 e^{-IoU^2/0.5} ~ 0.138 < 0.5
    assert [(x.start, x.end) for x in merged] == [(0, 10), (30, 40)]
    assert [x.score for x in merged] == pytest.approx([0.9, 0.5], rel=1e-6)
    full = merge_nlq_predictions([a, b], top_k=3, nms_sigma=0.5)[Q1]
    assert full[2].end == 10.5 and full[2].score == pytest.approx(0.85 * math.exp(-((10 / 10.5) ** 2) / 0.5), rel=1e-4)


def test_argument_errors():
    with pytest.raises(EgoaslError, match="at least one"):
        merge_nlq_predictions([])
    with pytest.raises(EgoaslError, match="top_k"):
        merge_nlq_predictions([{Q1: [w(0, 1, 0.5)]}], top_k=0)
    with pytest.raises(EgoaslError, match="nms_sigma"):
        merge_nlq_predictions([{Q1: [w(0, 1, 0.5)]}], nms_sigma=0.0)
    with pytest.raises(EgoaslError, match="member 1"):
        merge_nlq_predictions([{Q1: [w(0, 1, 0.5)]}, {Q2: [w(3, 1, 0.5)]}])
    with pytest.raises(EgoaslError, match="member 0"):
        merge_nlq_predictions([{Q1: [w(0, 1, float("nan"))]}])


def queries() -> list[NLQQuery]:
    return [
        NLQQuery(clip, "vid", ann, idx, f"where is thing {idx}?", "val", 0.0, 100.0, 1.0, 5.0)
        for clip, ann, idx in (Q1, Q2, Q3)
    ]


def predictions(offset: float) -> dict:
    return {key: [w(offset + i, offset + i + 2.5, 0.9 - 0.1 * i) for i in range(5)] for key in (Q1, Q2, Q3)}


def test_files_round_trip_and_validate(tmp_path):
    sub = tmp_path / "val_submission.json"
    paths = write_nlq_predictions(sub, predictions(1.0), queries=queries())
    assert paths == [sub, tmp_path / "val_scores.json"] and scores_path(sub) == paths[1]
    obj = json.loads(sub.read_text())
    assert obj["challenge"] == "ego4d_nlq_challenge" and len(obj["results"]) == 3
    assert obj["results"][0]["predicted_times"][0] == [1.0, 3.5] and "scores" not in obj["results"][0]
    assert read_member(sub) == predictions(1.0)
    # a missing query or a wrong window count is refused before anything is written
    with pytest.raises(EgoaslError, match="missing"):
        write_nlq_predictions(tmp_path / "x_submission.json", {Q1: predictions(1.0)[Q1]}, queries=queries())
    assert not (tmp_path / "x_submission.json").exists()


def test_member_without_scores_gets_rank_scores_with_a_warning(tmp_path):
    scored = tmp_path / "a" / "val_submission.json"
    write_nlq_predictions(scored, predictions(0.0))
    unscored = tmp_path / "b" / "val_submission.json"
    write_nlq_predictions(unscored, predictions(50.0))
    scores_path(unscored).unlink()
    with pytest.warns(UserWarning, match="rank-based scores"):
        member = read_member(unscored)
    assert [x.score for x in member[Q1]] == pytest.approx([1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    merged = merge_nlq_predictions([read_member(scored), member])[Q1]
    assert [x.start for x in merged] == [50.0, 0.0, 1.0, 2.0, 3.0]  # rank score 1/2 of window 51 loses to 0.6
    assert [x.score for x in merged] == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6])


def test_mismatched_sidecar_is_refused(tmp_path):
    sub = tmp_path / "val_submission.json"
    write_nlq_predictions(sub, predictions(0.0))
    side = json.loads(scores_path(sub).read_text())
    side["results"][1]["scores"] = side["results"][1]["scores"][:3]
    scores_path(sub).write_text(json.dumps(side))
    with pytest.raises(EgoaslError, match=r"results\[1\]"):
        read_member(sub)
    side["results"] = side["results"][:1]
    scores_path(sub).write_text(json.dumps(side))
    with pytest.raises(EgoaslError, match="no scores"):
        read_member(sub)
