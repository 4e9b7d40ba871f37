"""MQ mAP and Recall@kx: hand-worked official behaviours, the spec's sample, a slow reference.

Every expected number below is worked out by hand from the official algorithm
(``specs/ego4d_formats.md`` section 7); the comment next to it shows the working.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egoasl.data.records import MQClip, MQInstance
from egoasl.errors import DataError, EgoaslError
from egoasl.metrics.mq import evaluate_mq, interpolated_ap

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"
QUOTED = '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"'


def clip(uid: str, *instances: tuple[str, float, float]) -> MQClip:
    return MQClip(uid, "v-" + uid, "val", 0.0, 480.0, [MQInstance(label, s, e) for label, s, e in instances])


def pred(label: str, score: float, start: float, end: float) -> dict:
    return {"label": label, "score": score, "segment": [start, end]}


def ap_of(result, label: str, tiou: float = 0.5) -> float:
    return float(result.ap[result.tious.index(tiou), result.classes.index(label)])


# ------------------------------------------------------------------------------------------------
# mAP: hand-worked official behaviours


def test_tied_scores_rank_in_reverse_submission_order():
    gt = [clip("a", ("x", 0, 10))]
    # Same score: the later one in the file is ranked first. FP [20,30] comes first, then the TP:
    # precision (0, 1/2), recall (0, 1) -> interpolated AP = 1 * 1/2.
    res = evaluate_mq(gt, {"a": [pred("x", 0.5, 0, 10), pred("x", 0.5, 20, 30)]}, tious=(0.5,), topk=None)
    assert ap_of(res, "x") == 0.5
    # The other file order puts the TP first: AP 1.
    res = evaluate_mq(gt, {"a": [pred("x", 0.5, 20, 30), pred("x", 0.5, 0, 10)]}, tious=(0.5,), topk=None)
    assert ap_of(res, "x") == 1.0


def test_ties_across_clips_follow_clip_order_of_the_submission():
    gt = [clip("a", ("x", 0, 10)), clip("b", ("y", 0, 10))]
    dets = {"a": [pred("x", 0.5, 0, 10)], "b": [pred("x", 0.5, 50, 60)]}  # b's x is a false positive
    # Reverse submission order ranks b's FP first: AP(x) = 1/2; y has no prediction: AP 0.
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=None)
    assert ap_of(res, "x") == 0.5 and ap_of(res, "y") == 0.0
    assert res.map_at(0.5) == 0.25
    res = evaluate_mq(gt, {"b": dets["b"], "a": dets["a"]}, tious=(0.5,), topk=None)
    assert ap_of(res, "x") == 1.0


def test_duplicate_ground_truth_is_not_merged():
    gt = [clip("a", ("x", 0, 10), ("x", 0, 10))]  # two annotators, identical segments
    # One prediction matches one copy: recall 1/2 at precision 1 -> AP 1/2.
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 10)]}, tious=(0.5,), topk=None)
    assert ap_of(res, "x") == 0.5
    assert int(res.num_gt[0]) == 2
    # A second, worse-scored copy of the prediction matches the second copy: AP 1. (So a worse
    # duplicate *can* raise AP when the ground truth has duplicates; see the property test below.)
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 10), pred("x", 0.8, 0, 10)]}, tious=(0.5,), topk=None)
    assert ap_of(res, "x") == 1.0


def test_unknown_labels_are_dropped_and_counted():
    gt = [clip("a", ("x", 0, 10), (QUOTED, 20, 30))]
    dets = {
        "a": [
            pred("nope", 0.99, 0, 10),
            pred(QUOTED.strip('"'), 0.98, 20, 30),  # quotes stripped: not the official string
            pred(QUOTED, 0.4, 20, 30),
            pred("x", 0.3, 0, 10),
        ]
    }
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=None)
    # Dropped ones are neither TP nor FP: both classes stay at AP 1.
    assert res.mAP.tolist() == [1.0]
    assert res.dropped_unknown_labels == 2 and res.num_predictions == 4
    assert res.classes == ["x", QUOTED]


def test_classes_come_from_the_evaluated_ground_truth_only():
    # "z" exists in another split's ground truth but not here: its predictions are unknown.
    res = evaluate_mq([clip("a", ("x", 0, 10))], {"a": [pred("z", 0.9, 0, 10), pred("x", 0.5, 0, 10)]},
                      tious=(0.5,), topk=None)
    assert res.classes == ["x"] and res.mAP.tolist() == [1.0] and res.dropped_unknown_labels == 1


def test_predictions_on_clips_without_ground_truth_are_false_positives():
    gt = [clip("a", ("x", 0, 10)), clip("c", ("y", 0, 10))]
    dets = {
        "b": [pred("x", 0.9, 0, 10)],  # clip outside the evaluated set
        "c": [pred("x", 0.8, 0, 10), pred("y", 0.1, 0, 10)],  # evaluated clip without ground truth of x
        "a": [pred("x", 0.7, 0, 10)],
    }
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=None)
    # x ranked FP, FP, TP: precision (0, 0, 1/3), recall (0, 0, 1) -> AP 1/3.
    assert ap_of(res, "x") == pytest.approx(1 / 3, abs=1e-15)
    assert ap_of(res, "y") == 1.0
    assert res.predictions_outside_clips == 1


def test_match_needs_tiou_at_least_the_threshold():
    gt = [clip("a", ("x", 0, 10))]
    # tIoU([0,5],[0,10]) = 5/10 = 0.5 exactly: a match at 0.5 (>=), none above.
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 5)]}, tious=(0.5, 0.6), topk=None)
    assert res.mAP.tolist() == [1.0, 0.0]


def test_thresholds_are_used_as_given():
    gt = [clip("a", ("x", 0, 10))]
    dets = {"a": [pred("x", 0.9, 0, 3)]}  # tIoU = 3/10 = 0.3 exactly
    assert evaluate_mq(gt, dets, tious=(0.3,), topk=None).mAP.tolist() == [1.0]
    # np.linspace(0.1, 0.5, 5)[2] is 0.30000000000000004 (ActionFormer/ASL): no match there.
    third = float(np.linspace(0.1, 0.5, 5)[2])
    assert third != 0.3
    assert evaluate_mq(gt, dets, tious=(third,), topk=None).mAP.tolist() == [0.0]


def test_greedy_takes_the_next_best_free_ground_truth_per_threshold():
    gt = [clip("a", ("x", 0, 10), ("x", 2, 12))]
    dets = {"a": [pred("x", 0.9, 0, 10), pred("x", 0.8, 0, 10)]}
    # First prediction: tIoU 1 with g1 (taken). Second: g1 locked, g2 has tIoU 8/12 = 0.667.
    # At 0.5 both TP -> AP 1. At 0.7 the second is FP: precision (1, 1/2), recall (1/2, 1/2) -> AP 1/2.
    res = evaluate_mq(gt, dets, tious=(0.5, 0.7), topk=None)
    assert res.ap[:, 0].tolist() == [1.0, 0.5]


def test_tiou_ties_in_matching_go_to_the_later_ground_truth():
    gt = [clip("a", ("x", 0, 10), ("x", 5, 15))]
    # First prediction [5,10]: tIoU 5/10 with both. The rule gives it g2 (later in the file), so
    # the second prediction [0,10] finds g1 free (tIoU 1): AP 1. Had g1 been taken, the second
    # would see g2 at tIoU 5/15 < 0.5 and the AP would be 1/2.
    dets = {"a": [pred("x", 0.9, 5, 10), pred("x", 0.8, 0, 10)]}
    assert evaluate_mq(gt, dets, tious=(0.5,), topk=None).mAP.tolist() == [1.0]


def test_interpolated_ap_by_hand():
    gt = [clip("a", ("x", 0, 10), ("x", 100, 110), ("x", 200, 210))]
    dets = {"a": [pred("x", 0.9, 0, 10), pred("x", 0.8, 50, 60), pred("x", 0.7, 100, 110)]}
    # TP, FP, TP of 3 positives: precision (1, 1/2, 2/3), recall (1/3, 1/3, 2/3).
    # Envelope (1, 2/3, 2/3); recall steps 1/3 at precision 1 and 1/3 at 2/3 -> 5/9.
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=None)
    assert ap_of(res, "x") == pytest.approx(5 / 9, abs=1e-15)
    assert interpolated_ap(np.array([1.0, 0.5, 2 / 3]), np.array([1 / 3, 1 / 3, 2 / 3])) == pytest.approx(5 / 9)


def test_class_without_predictions_scores_zero_and_classes_average_unweighted():
    gt = [clip("a", ("x", 0, 10), ("x", 20, 30), ("x", 40, 50), ("y", 0, 10))]
    dets = {"a": [pred("x", 0.9, 0, 10), pred("x", 0.8, 20, 30), pred("x", 0.7, 40, 50)]}
    res = evaluate_mq(gt, dets, tious=(0.1, 0.5), topk=None)
    # AP(x) = 1, AP(y) = 0: mAP 1/2 per threshold (not 3/4 as an instance-weighted mean would be).
    assert res.mAP.tolist() == [0.5, 0.5] and res.average_mAP == 0.5


def test_zero_over_zero_overlap_is_no_match():
    # Documented difference: the official code counts 0/0 (NaN) as a match.
    gt = [clip("a", ("x", 5, 5), ("x", 20, 30))]
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 5, 5)]}, tious=(0.5,), topk=None)
    assert res.mAP.tolist() == [0.0]


def test_average_over_thresholds():
    gt = [clip("a", ("x", 0, 10))]
    # tIoU([0,3],[0,10]) = 0.3: AP 1 at 0.1, 0.2, 0.3 and 0 at 0.4, 0.5 -> average 3/5.
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 3)]}, topk=None)
    assert res.mAP.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert res.average_mAP == pytest.approx(0.6, abs=1e-15)


# ------------------------------------------------------------------------------------------------
# Recall@kx


def test_recall_keeps_first_k_times_n_in_submitted_order():
    gt = [clip("a", ("x", 0, 10))]
    # Submitted order counts, not score: the first (low-score) entry is the miss.
    dets = {"a": [pred("x", 0.1, 50, 60), pred("x", 0.9, 0, 10)]}
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=(1, 2))
    assert res.recall.tolist() == [[0.0, 1.0]]
    assert res.unsorted_retrieval_clips == ["a"]
    # The mAP side ranks by score: AP 1.
    assert res.mAP.tolist() == [1.0]


def test_recall_budget_is_k_times_the_clip_class_count():
    gt = [clip("a", ("x", 0, 10), ("x", 100, 110)), clip("b", ("x", 0, 10))]
    dets = {
        # n = 2 in clip a: 1x keeps two entries ([300,310] miss, [100,110] hit); 2x adds [0,10].
        "a": [pred("x", 0.9, 300, 310), pred("x", 0.8, 100, 110), pred("y", 0.7, 0, 10), pred("x", 0.6, 0, 10)],
        # n = 1 in clip b: 1x keeps one entry (a miss), 2x finds the hit.
        "b": [pred("x", 0.9, 200, 210), pred("x", 0.8, 0, 10)],
    }
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=(1, 2, 3))
    # Pooled over the 3 instances: 1x 1/3, 2x 3/3.
    assert res.recall[0].tolist() == pytest.approx([1 / 3, 1.0, 1.0], abs=1e-15)


def test_recall_iou_must_be_strictly_above_and_one_prediction_can_retrieve_several():
    gt = [clip("a", ("x", 0, 10), ("x", 0, 10))]
    dets = {"a": [pred("x", 0.9, 0, 5), pred("x", 0.8, 0, 10)]}
    # n = 2: 1x keeps both entries. At 0.5: [0,5] has IoU exactly 0.5 (not above), [0,10] IoU 1
    # retrieves both copies -> 1. At tIoU 0.5 with only the first entry, nothing is retrieved.
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=(1,))
    assert res.recall.tolist() == [[1.0]]
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 5)]}, tious=(0.4, 0.5), topk=(1,))
    assert res.recall.tolist() == [[1.0], [0.0]]


def test_recall_uses_hull_iou_and_zero_for_disjoint_segments():
    gt = [clip("a", ("x", 0, 10))]
    # Overlapping: hull IoU equals the usual one, 6/14 = 0.43 (retrieved at 0.4, not at 0.5).
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 4, 14)]}, tious=(0.4, 0.5), topk=(1,))
    assert res.recall.tolist() == [[1.0], [0.0]]
    # tIoU 0 (every overlap counts): a disjoint prediction has IoU 0, which is not above 0.
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 20, 30)]}, tious=(0.0,), topk=(1,))
    assert res.recall.tolist() == [[0.0]]


def test_clip_without_predictions_scores_zero_recall_and_is_reported():
    gt = [clip("a", ("x", 0, 10)), clip("b", ("x", 0, 10)), clip("c", ("x", 0, 10)), clip("t")]
    dets = {"a": [pred("x", 0.9, 0, 10)], "c": []}  # b missing (official: KeyError), c empty
    res = evaluate_mq(gt, dets, tious=(0.5,), topk=(1,))
    assert res.recall.tolist() == [[pytest.approx(1 / 3, abs=1e-15)]]
    # "t" has no ground truth, so it is not reported.
    assert res.clips_without_predictions == ["b", "c"]
    assert res.to_json()["clips_without_predictions"] == 2


def test_retrievals_are_scored_separately_from_detections():
    gt = [clip("a", ("x", 0, 10))]
    dets = {"a": [pred("x", 0.9, 50, 60)]}
    rets = {"a": [pred("x", 0.9, 0, 10)]}
    res = evaluate_mq(gt, dets, rets, tious=(0.5,), topk=(1,))
    assert res.mAP.tolist() == [0.0] and res.recall.tolist() == [[1.0]]
    assert res.num_predictions == 1 and res.num_retrievals == 1


def test_recall_thresholds_can_differ_from_map_thresholds():
    gt = [clip("a", ("x", 0, 10))]
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 6)]}, tious=(0.5,), topk=(1, 5), recall_tious=(0.3, 0.5, 0.7))
    assert res.recall.tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    assert res.recall_at(1, 0.7) == 0.0
    assert set(res.to_json()["recall"]) == {"1x@0.3", "5x@0.3", "1x@0.5", "5x@0.5", "1x@0.7", "5x@0.7"}


# ------------------------------------------------------------------------------------------------
# inputs, outputs, errors


def test_column_input_equals_list_input():
    gt = [clip("a", ("x", 0, 10), ("y", 20, 30)), clip("b", ("x", 5, 9))]
    rows = {
        "a": [pred("x", 0.9, 0, 9), pred("y", 0.5, 21, 30), pred("x", 0.5, 1, 2)],
        "b": [pred("x", 0.7, 5, 9)],
    }
    cols = {
        uid: {
            "label": [r["label"] for r in items],
            "score": np.array([r["score"] for r in items]),
            "segment": np.array([r["segment"] for r in items]),
        }
        for uid, items in rows.items()
    }
    a, b = evaluate_mq(gt, rows), evaluate_mq(gt, cols)
    assert np.array_equal(a.ap, b.ap) and np.array_equal(a.recall, b.recall)


def test_to_json_reports_percentages_and_counts():
    gt = [clip("a", ("x", 0, 10), ("y", 20, 30))]
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 10), pred("q", 0.1, 0, 1)]}, tious=(0.1, 0.5), topk=(1, 5))
    out = res.to_json(per_class=True)
    assert out["mAP"] == {"0.1": 50.0, "0.5": 50.0} and out["average_mAP"] == 50.0
    assert out["recall"] == {"1x@0.1": 50.0, "5x@0.1": 50.0, "1x@0.5": 50.0, "5x@0.5": 50.0}
    assert out["num_predictions"] == 2 and out["dropped_unknown_labels"] == 1
    assert out["per_class"][1] == {"label": "y", "num_gt": 1, "num_predictions": 0, "ap": {"0.1": 0.0, "0.5": 0.0}}
    json.dumps(out)  # plain JSON types only


def test_pr_curve_pools_classes_by_score():
    gt = [clip("a", ("x", 0, 10), ("y", 0, 10))]
    res = evaluate_mq(gt, {"a": [pred("x", 0.9, 0, 10), pred("y", 0.8, 50, 60), pred("y", 0.7, 0, 10)]},
                      tious=(0.5,), topk=None)
    precision, recall = res.pr_curve(0.5)
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert recall.tolist() == [0.5, 0.5, 1.0]


@pytest.mark.parametrize(
    "dets, field",
    [
        ({"a": [{"label": "x", "score": 0.5}]}, "detect_results['a'][0]"),
        ({"a": [pred("x", "high", 0, 1)]}, "detect_results['a'][0].score"),
        ({"a": [pred("x", 0.5, 0, 1), pred("x", "0.5", 0, 1)]}, "detect_results['a'][1].score"),  # not converted
        ({"a": [pred("x", True, 0, 1)]}, "detect_results['a'][0].score"),
        ({"a": [pred("x", 0.5, "0", 1)]}, "detect_results['a'][0].segment"),
        ({"a": {"label": ["x"], "score": np.array([0.5]), "segment": np.array([0.0, 1.0])}},
         "detect_results['a'].segment"),
        ({"a": [pred("x", 0.5, 0, 1), {"label": "x", "score": 0.4, "segment": [1, 2, 3]}]},
         "detect_results['a'][1].segment"),
        ({"a": [{"label": ["x"], "score": 0.4, "segment": [1, 2]}]}, "detect_results['a'][0].label"),
        ({"a": "nope"}, "detect_results['a']"),
    ],
)
def test_malformed_predictions_name_their_location(dets, field):
    with pytest.raises(DataError, match=field.replace("[", r"\[").replace("]", r"\]")) as err:
        evaluate_mq([clip("a", ("x", 0, 10))], dets, where="sub.json")
    assert str(err.value).startswith("sub.json: ")


def test_bad_arguments():
    gt = [clip("a", ("x", 0, 10))]
    with pytest.raises(EgoaslError, match="no ground-truth instance"):
        evaluate_mq([clip("t")], {})
    with pytest.raises(EgoaslError, match=r"\[0, 1\]"):
        evaluate_mq(gt, {}, tious=(1.5,))
    with pytest.raises(EgoaslError, match="topk"):
        evaluate_mq(gt, {}, topk=(0,))
    with pytest.raises(EgoaslError, match="not evaluated"):
        evaluate_mq(gt, {}, tious=(0.5,)).map_at(0.3)


# ------------------------------------------------------------------------------------------------
# the spec's sample files (section 12): official average mAP 0.379


def _sample_clips() -> list[MQClip]:
    data = json.loads((EXAMPLES / "moments_sample.json").read_text())
    clips = []
    for video in data["videos"]:
        for c in video["clips"]:
            inst = [
                MQInstance(lab["label"], lab["start_time"], lab["end_time"], ann["annotator_uid"])
                for ann in c["annotations"] for lab in ann["labels"] if lab["primary"]
            ]
            if inst:  # the official converter drops clips without primary labels
                clips.append(MQClip(c["clip_uid"], video["video_uid"], "val",
                                    c["video_start_sec"], c["video_end_sec"], inst))
    return clips


@pytest.mark.skipif(not EXAMPLES.exists(), reason="shared/examples not present")
def test_official_sample_average_map():
    sub = json.loads((EXAMPLES / "mq_submission_sample.json").read_text())
    res = evaluate_mq(_sample_clips(), sub["detect_results"], sub["retrieve_results"])
    # 11 classes; AP: use_phone 2/3 (3 copies, 2 matched), cut 1/2, converse 1/2, wash_hands 1,
    # clean 1, cut_open 1/2, five classes 0 -> 25/6 / 11 = 25/66 = 0.379 at every threshold.
    assert len(res.classes) == 11
    assert res.average_mAP == pytest.approx(25 / 66, abs=1e-12)
    assert round(res.average_mAP, 3) == 0.379
    # Recall: 11 of 18 instances at tIoU <= 0.4; at 0.5 one cut_open copy (hull IoU 0.96/2.1) drops.
    assert res.recall_at(1, 0.4) == pytest.approx(11 / 18) and res.recall_at(5, 0.5) == pytest.approx(10 / 18)
    assert len(res.clips_without_predictions) == 3


# ------------------------------------------------------------------------------------------------
# a slow, obviously-correct reference (the spec's pseudo-code, line by line) and properties


def reference_map(clips, dets, tious):
    classes, gt = [], {}
    for c in clips:
        for inst in c.instances:
            if inst.label not in classes:
                classes.append(inst.label)
            gt.setdefault(inst.label, []).append((c.clip_uid, inst.start, inst.end))
    by_class = {label: [] for label in classes}
    for uid, items in dets.items():
        for p in items:
            if p["label"] in by_class:
                by_class[p["label"]].append((uid, p["score"], p["segment"][0], p["segment"][1]))
    ap = [[0.0] * len(classes) for _ in tious]
    for ci, label in enumerate(classes):
        P, G = by_class[label], gt[label]
        if not P:
            continue
        order = sorted(range(len(P)), key=lambda i: (P[i][1], i), reverse=True)
        for ti, t in enumerate(tious):
            locked, flags = set(), []
            for i in order:
                uid, _, ps, pe = P[i]
                cands = [j for j, g in enumerate(G) if g[0] == uid]
                ious = {}
                for j in cands:
                    inter = max(min(pe, G[j][2]) - max(ps, G[j][1]), 0.0)
                    union = (G[j][2] - G[j][1]) + (pe - ps) - inter
                    ious[j] = inter / union if union != 0 else float("nan")
                ok = False
                for j in sorted(cands, key=lambda j: (ious[j] if not math.isnan(ious[j]) else -1.0, j), reverse=True):
                    if math.isnan(ious[j]) or ious[j] < t:
                        break
                    if j in locked:
                        continue
                    locked.add(j)
                    ok = True
                    break
                flags.append(ok)
            tp = fp = 0
            prec, rec = [], []
            for f in flags:
                tp, fp = tp + f, fp + (not f)
                prec.append(tp / (tp + fp))
                rec.append(tp / len(G))
            mprec, mrec = [0.0] + prec + [0.0], [0.0] + rec + [1.0]
            for i in range(len(mprec) - 2, -1, -1):
                mprec[i] = max(mprec[i], mprec[i + 1])
            ap[ti][ci] = sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
    return classes, ap


def reference_recall(clips, rets, tious, topk):
    hits = {(t, k): 0 for t in tious for k in topk}
    total = 0
    for c in clips:
        groups = {}
        for inst in c.instances:
            groups.setdefault(inst.label, []).append((inst.start, inst.end))
        for label, G in groups.items():
            total += len(G)
            P = [p["segment"] for p in rets.get(c.clip_uid, []) if p["label"] == label]
            for t in tious:
                for k in topk:
                    for gs, ge in G:
                        for ps, pe in P[: k * len(G)]:
                            inter = max(0.0, min(pe, ge) - max(ps, gs))
                            union = max(0.0, max(pe, ge) - min(ps, gs))
                            if union > 0 and inter / union > t:
                                hits[(t, k)] += 1
                                break
    return [[hits[(t, k)] / total for k in topk] for t in tious]


LABELS = ["x", "y", "z"]
times = st.integers(0, 12).map(float)


@st.composite
def mq_case(draw, distinct_scores=False, single_gt_per_class=False):
    n_clips = draw(st.integers(1, 3))
    clips = []
    for c in range(n_clips):
        insts = []
        labels_used = set()
        for _ in range(draw(st.integers(0, 4))):
            label = draw(st.sampled_from(LABELS))
            if single_gt_per_class and label in labels_used:
                continue
            labels_used.add(label)
            s = draw(times)
            insts.append((label, s, s + draw(st.integers(0, 6))))
        clips.append(clip(f"c{c}", *insts))
    if not any(c.instances for c in clips):
        clips[0].instances.append(MQInstance("x", 0.0, 4.0))
    uids = [f"c{c}" for c in range(n_clips + 1)]  # one extra clip outside the ground truth
    scores = st.integers(1, 4).map(lambda v: v / 4)  # few values: many ties
    dets = {}
    for uid in draw(st.lists(st.sampled_from(uids), unique=True)):
        items = []
        for _ in range(draw(st.integers(0, 6))):
            s = draw(times)
            label = draw(st.sampled_from(LABELS + ["unknown"]))
            items.append(pred(label, draw(scores), s, s + draw(st.integers(0, 6))))
        dets[uid] = items
    if distinct_scores:
        flat = [p for items in dets.values() for p in items]
        for p, rank in zip(flat, draw(st.permutations(range(len(flat))))):
            p["score"] = (rank + 1) / (len(flat) + 1)
    return clips, dets


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(mq_case())
def test_matches_the_reference_on_random_cases(case):
    clips, dets = case
    tious = (0.1, 0.3, 0.5, 0.7)
    res = evaluate_mq(clips, dets, tious=tious, topk=(1, 2, 3))
    classes, ap = reference_map(clips, dets, tious)
    assert res.classes == classes
    np.testing.assert_allclose(res.ap, np.array(ap), rtol=0, atol=1e-12)
    expected_recall = reference_recall(clips, dets, tious, (1, 2, 3))
    np.testing.assert_allclose(res.recall, np.array(expected_recall), rtol=0, atol=1e-12)


@FAST
@given(mq_case())
def test_perfect_predictions_score_100(case):
    clips, _ = case
    clips = [MQClip(c.clip_uid, c.video_uid, c.split, 0, 480, [i for i in c.instances if i.end > i.start])
             for c in clips]
    if not any(c.instances for c in clips):
        clips[0].instances.append(MQInstance("x", 0.0, 4.0))
    rng = random.Random(0)
    dets = {c.clip_uid: [pred(i.label, rng.random(), i.start, i.end) for i in c.instances] for c in clips}
    res = evaluate_mq(clips, dets, tious=(0.1, 0.5, 0.95), topk=(1,))
    assert res.mAP.tolist() == [1.0, 1.0, 1.0] and res.average_mAP == 1.0
    assert res.recall.tolist() == [[1.0], [1.0], [1.0]]
    assert res.to_json()["average_mAP"] == 100.0


@FAST
@given(mq_case(distinct_scores=True), st.randoms(use_true_random=False))
def test_shuffling_clips_does_not_change_map(case, rnd):
    clips, dets = case
    base = evaluate_mq(clips, dets, topk=(1, 5))
    clips2, keys = clips[:], list(dets)
    rnd.shuffle(clips2)
    rnd.shuffle(keys)
    other = evaluate_mq(clips2, {k: dets[k] for k in keys}, topk=(1, 5))
    # Class order follows clip order, so only the summation order of the class mean can differ.
    assert other.mAP == pytest.approx(base.mAP, abs=1e-12)
    assert other.recall.tolist() == base.recall.tolist()
    assert dict(zip(other.classes, other.ap.T.tolist())) == dict(zip(base.classes, base.ap.T.tolist()))


@FAST
@given(mq_case(single_gt_per_class=True), st.data())
def test_adding_a_worse_scored_duplicate_never_raises_ap(case, data):
    # With at most one ground truth per (clip, class) the duplicate can only be a false positive.
    # (With several, e.g. annotator copies, it can match one and raise AP: see
    # test_duplicate_ground_truth_is_not_merged.)
    clips, dets = case
    items = [(uid, i) for uid, lst in dets.items() for i in range(len(lst))]
    if not items:
        return
    uid, i = data.draw(st.sampled_from(items))
    orig = dets[uid][i]
    worse = dict(orig, score=orig["score"] * data.draw(st.floats(0.0, 0.999)))
    pos = data.draw(st.integers(0, len(dets[uid])))
    dets2 = {k: list(v) for k, v in dets.items()}
    dets2[uid].insert(pos, worse)
    before = evaluate_mq(clips, dets, topk=None)
    after = evaluate_mq(clips, dets2, topk=None)
    assert np.all(after.ap <= before.ap + 1e-12)
