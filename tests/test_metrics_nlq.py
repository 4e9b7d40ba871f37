"""NLQ R@k and mIoU: hand-worked official behaviours and the spec's sample files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from egoasl.data.records import NLQQuery
from egoasl.errors import DataError, EgoaslError
from egoasl.metrics.nlq import evaluate_nlq, hull_iou

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"


def query(ann: str, idx: int, start: float | None, end: float | None, text: str = "where?",
          clip: str = "c") -> NLQQuery:
    return NLQQuery(clip, "v", ann, idx, text, "val", 0.0, 480.0, start, end)


def entry(ann: str, idx: int, *windows: list[float], clip: str = "c") -> dict:
    return {"clip_uid": clip, "annotation_uid": ann, "query_idx": idx, "predicted_times": [list(w) for w in windows]}


@pytest.mark.skipif(not EXAMPLES.exists(), reason="shared/examples not present")
def test_official_sample_numbers():
    data = json.loads((EXAMPLES / "nlq_sample.json").read_text())
    queries = [
        NLQQuery(c["clip_uid"], v["video_uid"], a["annotation_uid"], i, q["query"], v["split"],
                 c["video_start_sec"], c["video_end_sec"], q["clip_start_sec"], q["clip_end_sec"])
        for v in data["videos"] for c in v["clips"] for a in c["annotations"]
        for i, q in enumerate(a["language_queries"]) if q.get("query")
    ]
    sub = json.loads((EXAMPLES / "nlq_submission_sample.json").read_text())
    res = evaluate_nlq(queries, sub["results"])
    # Official: "Evaluated: 4 / 9", R@1@0.3 0.50, R@5@0.3 1.00, mIoU 39.15.
    assert res.evaluated == 4 and res.total_queries == 8 and len(res.missing) == 4
    assert res.r_at(1, 0.3) == 0.5 and res.r_at(5, 0.3) == 1.0
    # Top-1 IoUs: 7.38/8.6, 0 ([120,140] vs [250.8,260.14]), 15.5/21.9, 0 ([300,320] vs [470.1,479.5]).
    assert res.mIoU == pytest.approx((7.38 / 8.6 + 15.5 / 21.9) / 4, abs=1e-12)
    assert round(100 * res.mIoU, 2) == 39.15
    out = res.to_json()
    assert out["R1@0.3"] == 50.0 and out["R5@0.3"] == 100.0 and out["mean_R1"] == 50.0
    assert out["over_all_queries"]["R1@0.3"] == 25.0  # 2 hits over 8 queries


def test_denominator_is_the_number_of_entries_and_missing_queries_are_reported():
    qs = [query("a", 0, 0, 10), query("a", 1, 20, 30), query("b", 0, 40, 50)]
    res = evaluate_nlq(qs, [entry("a", 0, [0, 10])])
    # One entry, one hit: the official R@1 is 100 although 2 of 3 queries were skipped.
    assert res.recall.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert res.missing == [("c", "a", 1), ("c", "b", 0)]
    assert res.recall_all.tolist() == [[pytest.approx(1 / 3)] * 2] * 2
    assert "2 queries have no prediction" in res.coverage_line()
    assert res.to_json()["missing_queries"] == 2 and res.to_json()["evaluated"] == 1


def test_repeated_entries_count_again():
    qs = [query("a", 0, 0, 10), query("a", 1, 20, 30)]
    res = evaluate_nlq(qs, [entry("a", 0, [0, 10]), entry("a", 0, [0, 10]), entry("a", 1, [100, 110])])
    assert res.r_at(1, 0.5) == pytest.approx(2 / 3) and res.duplicate_entries == 1


def test_iou_must_be_strictly_above_the_threshold():
    qs = [query("a", 0, 0, 10)]
    # [0,3]: IoU 0.3 exactly -> not a hit at 0.3. [0,5]: 0.5 -> a hit at 0.3, not at 0.5.
    assert evaluate_nlq(qs, [entry("a", 0, [0, 3])]).recall[:, 0].tolist() == [0.0, 0.0]
    assert evaluate_nlq(qs, [entry("a", 0, [0, 5])]).recall[:, 0].tolist() == [1.0, 0.0]


def test_top_k_uses_the_given_order_and_miou_only_the_first_window():
    qs = [query("a", 0, 0, 10)]
    res = evaluate_nlq(qs, [entry("a", 0, [50, 60], [70, 80], [0, 10])])  # fewer than 5 windows is fine
    assert res.r_at(1, 0.5) == 0.0 and res.r_at(5, 0.5) == 1.0
    assert res.mIoU == 0.0
    res = evaluate_nlq(qs, [entry("a", 0, [0, 8], [0, 10])], topk=(1, 2))
    assert res.mIoU == 0.8 and res.r_at(2, 0.5) == 1.0


def test_more_than_five_windows_only_the_first_k_count():
    qs = [query("a", 0, 0, 10)]
    res = evaluate_nlq(qs, [entry("a", 0, *([[50, 60]] * 5), [0, 10])])
    assert res.r_at(5, 0.3) == 0.0


def test_hull_iou():
    gt_s, gt_e = np.array(0.0), np.array(10.0)
    # overlap: usual IoU; disjoint: 0; a point on a point: 0/0 = NaN.
    assert hull_iou(np.array([[5.0, 15.0], [20.0, 30.0]]), gt_s, gt_e).tolist() == [5 / 15, 0.0]
    assert np.isnan(hull_iou(np.array([3.0, 3.0]), np.array(3.0), np.array(3.0)))


def test_zero_length_ground_truth_is_never_a_hit():
    qs = [query("a", 0, 102.0, 102.0), query("a", 1, 0, 10)]
    res = evaluate_nlq(qs, [entry("a", 0, [100, 110], [102, 102]), entry("a", 1, [0, 10])], tious=(0.0, 0.3))
    # [100,110] vs the point 102: intersection 0 -> IoU 0, not above even 0.0. The point on the
    # point is 0/0: a miss; its IoU counts 0 in the mIoU (the official script prints NaN).
    assert res.recall.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    res = evaluate_nlq(qs, [entry("a", 0, [102, 102]), entry("a", 1, [0, 5])])
    assert res.mIoU == 0.25 and res.r_at(1, 0.3) == 0.5


def test_queries_without_text_are_not_missing_but_can_be_scored():
    qs = [query("a", 0, 0, 10), query("a", 1, 5, 9, text="")]
    res = evaluate_nlq(qs, [entry("a", 0, [0, 10])])
    assert res.missing == [] and res.total_queries == 1
    res = evaluate_nlq(qs, [entry("a", 0, [0, 10]), entry("a", 1, [5, 9])])
    assert res.evaluated == 2 and res.r_at(1, 0.5) == 1.0


@pytest.mark.parametrize(
    "bad, field",
    [
        (entry("zz", 0, [0, 1]), r"results\[1\]: expected a query of the annotations"),
        ({"clip_uid": "c", "annotation_uid": "a", "query_idx": 0, "predicted_times": [0, 10]},
         r"results\[1\]\.predicted_times\[0\]: expected a \[start, end\] pair"),
        ({"clip_uid": "c", "annotation_uid": "a", "query_idx": 0, "predicted_times": []},
         r"results\[1\]\.predicted_times: expected a non-empty list"),
        ({"clip_uid": "c", "annotation_uid": "a", "query_idx": "0", "predicted_times": [[0, 1]]},
         r"results\[1\]\.query_idx: expected an integer"),
        ({"clip_uid": "c", "annotation_uid": "a", "query_idx": 0, "predicted_times": [[0, "1"]]},
         r"results\[1\]\.predicted_times\[0\]"),
    ],
)
def test_bad_entries_name_their_location(bad, field):
    qs = [query("a", 0, 0, 10)]
    with pytest.raises(DataError, match=field):
        evaluate_nlq(qs, [entry("a", 0, [0, 10]), bad], where="sub.json")


def test_queries_without_ground_truth_and_empty_results_are_errors():
    with pytest.raises(DataError, match="ground-truth window"):
        evaluate_nlq([query("a", 0, None, None)], [entry("a", 0, [0, 1])])
    with pytest.raises(EgoaslError, match="results is empty"):
        evaluate_nlq([query("a", 0, 0, 1)], [])


windows = st.tuples(st.integers(0, 50), st.integers(1, 20)).map(lambda t: [float(t[0]), float(t[0] + t[1])])


@settings(max_examples=50, deadline=None)
@given(st.lists(windows, min_size=1, max_size=8))
def test_perfect_predictions_score_100(gts):
    qs = [query("a", i, s, e) for i, (s, e) in enumerate(gts)]
    res = evaluate_nlq(qs, [entry("a", i, [s, e], [0, 1]) for i, (s, e) in enumerate(gts)])
    assert res.to_json()["mean_R1"] == 100.0 and res.mIoU == 1.0 and res.recall.min() == 1.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(windows, st.lists(windows, min_size=1, max_size=5)), min_size=1, max_size=8), st.randoms())
def test_entry_order_does_not_matter(cases, rnd):
    qs = [query("a", i, *gt) for i, (gt, _) in enumerate(cases)]
    entries = [entry("a", i, *preds) for i, (_, preds) in enumerate(cases)]
    base = evaluate_nlq(qs, entries)
    rnd.shuffle(entries)
    other = evaluate_nlq(qs, entries)
    assert other.recall.tolist() == base.recall.tolist() and other.mIoU == pytest.approx(base.mIoU, abs=1e-15)
