"""`egoasl eval mq|nlq` and `egoasl submission check` end to end, on the spec's sample files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egoasl import cli
from egoasl.io.submission import write_json_atomic

SHARED = Path(__file__).resolve().parents[2] / "shared"
EXAMPLES = SHARED / "examples"
REFDATA = SHARED / "refdata"
MOMENTS = EXAMPLES / "moments_sample.json"
MQ_SUB = EXAMPLES / "mq_submission_sample.json"
NLQ = EXAMPLES / "nlq_sample.json"
NLQ_SUB = EXAMPLES / "nlq_submission_sample.json"
QUOTED = '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"'

pytestmark = pytest.mark.skipif(not EXAMPLES.exists(), reason="shared/examples not present")


@pytest.fixture
def run(monkeypatch, capsys):
    """Run `egoasl ARGS...` with only this suite's commands; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["eval", "submission"])

    def _run(*args: object) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return _run


def test_commands_are_registered():
    assert {"eval", "submission"} <= set(cli.COMMAND_MODULES)


# ------------------------------------------------------------------------------------------------
# eval mq


def test_eval_mq_json_is_one_object_with_official_numbers(run):
    code, out, err = run("eval", "mq", "--annotations", MOMENTS, "--predictions", MQ_SUB, "--split", "train", "--json")
    assert code == 0
    assert out.count("\n") == 1
    res = json.loads(out)
    # Official average mAP on the sample: 0.379 (= 25/66).
    assert res["mAP"] == {t: pytest.approx(2500 / 66) for t in ("0.1", "0.2", "0.3", "0.4", "0.5")}
    assert res["average_mAP"] == pytest.approx(2500 / 66) and round(res["average_mAP"] / 100, 3) == 0.379
    assert set(res["recall"]) == {f"{k}x@{t}" for k in range(1, 6) for t in ("0.1", "0.2", "0.3", "0.4", "0.5")}
    assert res["recall"]["1x@0.5"] == pytest.approx(1000 / 18)
    assert res["num_predictions"] == 7 and res["dropped_unknown_labels"] == 0
    assert res["clips_without_predictions"] == 3
    assert "3 clips with ground truth have no retrievals" in err


def test_eval_mq_table_with_per_class(run):
    code, out, _ = run("eval", "mq", "--annotations", MOMENTS, "--predictions", MQ_SUB, "--split", "train",
                       "--tiou", "0.3", "0.5", "--topk", "1", "5", "--per-class")
    assert code == 0
    lines = out.splitlines()
    assert lines[3].split() == ["tIoU", "0.3", "0.5", "average"]
    assert lines[4].split() == ["mAP", "(%)", "37.88", "37.88", "37.88"]
    assert "Recall@kx (%)" in lines
    grid = lines[lines.index("Recall@kx (%)") + 1:][:3]
    assert [row.split() for row in grid] == [
        ["tIoU", "R@1x", "R@5x"], ["0.3", "61.11", "61.11"], ["0.5", "55.56", "55.56"]]
    assert any(line.startswith(QUOTED) and line.split()[-1] == "50.00" for line in lines)
    assert any(line.startswith("use_phone ") and line.split()[1:4] == ["3", "2", "66.67"] for line in lines)


def test_eval_mq_selected_thresholds_in_json(run):
    code, out, _ = run("eval", "mq", "--annotations", MOMENTS, "--predictions", MQ_SUB, "--split", "train",
                       "--tiou", "0.5", "0.7", "--topk", "1", "--json", "--per-class")
    res = json.loads(out)
    assert list(res["mAP"]) == ["0.5", "0.7"] and list(res["recall"]) == ["1x@0.5", "1x@0.7"]
    assert res["per_class"][0]["label"] == "use_phone" and res["per_class"][0]["num_gt"] == 3


def test_eval_mq_plots(run, tmp_path):
    code, out, err = run("eval", "mq", "--annotations", MOMENTS, "--predictions", MQ_SUB, "--split", "train",
                         "--json", "--plot", tmp_path / "plots")
    assert code == 0 and json.loads(out)["average_mAP"] > 0
    for name in ("per_class_ap.png", "pr_curve.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"wrote {tmp_path / 'plots' / name}" in err


def test_eval_mq_reads_the_converted_per_clip_format(run, tmp_path):
    official = json.loads(MOMENTS.read_text())
    converted = {}
    for video in official["videos"]:
        for c in video["clips"]:
            anns = [{"segment": [lab["start_time"], lab["end_time"]], "label": lab["label"], "label_id": 0}
                    for a in c["annotations"] for lab in a["labels"] if lab["primary"]]
            if anns:
                converted[c["clip_uid"]] = {
                    "video_id": video["video_uid"], "clip_id": c["clip_uid"], "subset": "val",
                    "duration": c["video_end_sec"] - c["video_start_sec"], "parent_start_sec": c["video_start_sec"],
                    "parent_end_sec": c["video_end_sec"], "fps": 1.875, "annotations": anns,
                }
    path = write_json_atomic(tmp_path / "converted.json", converted)
    code, out, _ = run("eval", "mq", "--annotations", path, "--predictions", MQ_SUB, "--json")  # default split val
    assert code == 0 and json.loads(out)["average_mAP"] == pytest.approx(2500 / 66)


def test_eval_mq_errors_are_one_line(run, tmp_path):
    code, out, err = run("eval", "mq", "--annotations", MOMENTS, "--predictions", MQ_SUB)  # the sample is "train"
    assert code == 2 and out == ""
    assert "moments_sample.json: no clip of split 'val' (splits present: ['train'])" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"detect_results": {"x": [{"label": "use_phone", "score": "high", "segment": [0, 1]}]}, '
                   '"retrieve_results": {}}')
    code, _, err = run("eval", "mq", "--annotations", MOMENTS, "--predictions", bad, "--split", "train")
    assert code == 2 and err.strip().endswith("detect_results['x'][0].score: expected a number, got 'high'")
    assert err.count("\n") == 1


# ------------------------------------------------------------------------------------------------
# eval nlq


def test_eval_nlq_json(run):
    code, out, _ = run("eval", "nlq", "--annotations", NLQ, "--predictions", NLQ_SUB, "--json")
    assert code == 0 and out.count("\n") == 1
    res = json.loads(out)
    # Official on the samples: "Evaluated: 4 / 9", R@1@0.3 0.50, R@5@0.3 1.00, mIoU 39.15.
    assert {k: res[k] for k in ("R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5", "mean_R1")} == {
        "R1@0.3": 50.0, "R1@0.5": 50.0, "R5@0.3": 100.0, "R5@0.5": 100.0, "mean_R1": 50.0}
    assert round(res["mIoU"], 2) == 39.15
    assert res["evaluated"] == 4 and res["missing_queries"] == 4


def test_eval_nlq_table_reports_coverage(run):
    code, out, _ = run("eval", "nlq", "--annotations", NLQ, "--predictions", NLQ_SUB)
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert ["IoU", "0.3", "50.00", "100.00"] in rows and ["IoU", "0.5", "50.00", "100.00"] in rows
    assert ["mIoU:", "39.15"] in rows and ["mean", "R@1:", "50.00"] in rows
    assert "Evaluated: 4 entries for 8 queries with text; 4 queries have no prediction" in out
    assert "over all queries (missing ones as misses): R@1@0.3 25.00" in out


def test_eval_nlq_refuses_an_mq_file(run):
    code, _, err = run("eval", "nlq", "--annotations", NLQ, "--predictions", MQ_SUB)
    assert code == 2 and "version: expected '1.0'" not in err and "challenge: expected 'ego4d_nlq_challenge'" in err


# ------------------------------------------------------------------------------------------------
# submission check


def _complete_mq(tmp_path: Path) -> Path:
    sub = json.loads(MQ_SUB.read_text())
    for key in ("detect_results", "retrieve_results"):
        for uid in ("7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a02", "8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b01",
                    "8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b02"):
            sub[key][uid] = []
    return write_json_atomic(tmp_path / "complete.json", sub)


def test_check_mq_lists_missing_clips_then_passes_when_complete(run, tmp_path):
    code, out, _ = run("submission", "check", "--task", "mq", "--annotations", MOMENTS, MQ_SUB)
    assert code == 1
    assert out.splitlines()[0].endswith("INVALID against 5 train clips, 11 labels: 6 errors, 0 warnings")
    assert "  error: retrieve_results['8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b01']: missing clip" in out
    code, out, _ = run("submission", "check", "--task", "mq", "--annotations", MOMENTS, _complete_mq(tmp_path))
    assert code == 0 and ": OK against 5 train clips" in out


def test_check_mq_json_lists_every_problem(run, tmp_path):
    sub = json.loads(_complete_mq(tmp_path).read_text())
    sub["detect_results"]["7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a01"][1]["label"] = QUOTED.strip('"')
    sub["retrieve_results"]["7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a01"].reverse()
    path = write_json_atomic(tmp_path / "s.json", sub)
    code, out, _ = run("submission", "check", "--task", "mq", "--annotations", MOMENTS, path, "--json")
    res = json.loads(out)
    assert code == 1 and res["ok"] is False and res["errors"] == 2
    assert [p["location"] for p in res["problems"]] == [
        "detect_results['7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a01'][1].label",
        "retrieve_results['7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a01'][1]",
    ]


def test_check_mq_test_split_needs_labels_from_elsewhere(run, tmp_path):
    official = json.loads(MOMENTS.read_text())
    for video in official["videos"]:
        video["split"] = "test"
    test_file = write_json_atomic(tmp_path / "moments_test_unannotated.json", official)
    code, out, _ = run("submission", "check", "--task", "mq", "--annotations", test_file, _complete_mq(tmp_path))
    # All 6 test clips are kept (also the one without primary labels): one is missing.
    assert code == 1 and "6 test clips" in out and "note: label strings not checked" in out
    assert "detect_results['8e4b0d21-3c5e-4f70-9b2c-1d3e4f5a6b03']: missing clip" in out
    code, out, _ = run("submission", "check", "--task", "mq", "--annotations", test_file, _complete_mq(tmp_path),
                       "--labels-from", MOMENTS)
    assert "note:" not in out and "6 test clips, 11 labels" in out


def test_check_nlq(run, tmp_path):
    code, out, _ = run("submission", "check", "--task", "nlq", "--annotations", NLQ, NLQ_SUB)
    assert code == 1 and "4 errors" in out and "missing: no entry predicts this query" in out
    sub = json.loads(NLQ_SUB.read_text())
    keys = {(r["clip_uid"], r["annotation_uid"], r["query_idx"]) for r in sub["results"]}
    data = json.loads(NLQ.read_text())
    for video in data["videos"]:
        for c in video["clips"]:
            for a in c["annotations"]:
                for i, q in enumerate(a["language_queries"]):
                    if q.get("query") and (c["clip_uid"], a["annotation_uid"], i) not in keys:
                        sub["results"].append({"clip_uid": c["clip_uid"], "annotation_uid": a["annotation_uid"],
                                               "query_idx": i, "predicted_times": [[0.0, 1.0]] * 5})
    code, out, _ = run("submission", "check", "--task", "nlq", "--annotations", NLQ,
                       write_json_atomic(tmp_path / "n.json", sub))
    assert code == 0 and "OK against 8 queries with text: 0 errors" in out


def test_check_caps_the_printed_list_but_counts_everything(run, tmp_path):
    sub = json.loads(_complete_mq(tmp_path).read_text())
    sub["detect_results"]["7f3a9c10-2b4d-4e6f-8a1b-0c2d3e4f5a01"] = [
        {"label": "nope", "score": 0.5, "segment": [0, 1]}] * 30
    path = write_json_atomic(tmp_path / "many.json", sub)
    code, out, _ = run("submission", "check", "--task", "mq", "--annotations", MOMENTS, path, "--max-shown", "10")
    assert code == 1 and "30 errors" in out
    assert sum(line.startswith("  error:") for line in out.splitlines()) == 10
    assert "  ... 20 more:" in out and "    20 x error: unknown label 'nope'" in out


# ------------------------------------------------------------------------------------------------
# real Ego4D val ground truth (skipped when shared/refdata is absent)


@pytest.mark.skipif(not (REFDATA / "mq_val_official.json").exists(), reason="shared/refdata not present")
def test_perfect_submission_on_real_val_scores_100_in_both_formats(run, tmp_path):
    from egoasl.data.ego4d import load_mq_annotations
    from egoasl.io.submission import build_mq_submission

    clips = load_mq_annotations(REFDATA / "mq_val_official.json").split("val")
    sub = build_mq_submission({c.clip_uid: [{"label": i.label, "score": 1.0, "segment": [i.start, i.end]}
                                            for i in c.instances] for c in clips})
    path = write_json_atomic(tmp_path / "perfect.json", sub)
    for ann_file in (REFDATA / "mq_val_official.json", REFDATA / "ego4d_clip_annotations_v2.json"):
        code, out, _ = run("eval", "mq", "--annotations", ann_file, "--predictions", path, "--json")
        res = json.loads(out)
        # Every annotator copy is a positive (4,296 with duplicates; deduplicated would be 4,289).
        assert code == 0 and res["num_gt_instances"] == 4296 and res["num_classes"] == 110
        assert res["average_mAP"] == 100.0 and set(res["recall"].values()) == {100.0}
