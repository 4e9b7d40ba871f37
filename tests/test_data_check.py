"""`egoasl data check`: statistics, every problem listed with its file, and the feature-file check."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from egoasl.commands import data as data_command
from egoasl.data.check import (
    FeatureSource,
    load_for_check,
    mq_statistics,
    nlq_statistics,
    parse_source,
    run_data_check,
)
from egoasl.data.ego4d import load_mq_annotations, load_nlq_annotations
from egoasl.errors import EgoaslError

SHARED = Path(__file__).resolve().parents[2] / "shared"
QUOTED = '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"'


def _label(label, start, end, primary=True):
    return {"label": label, "start_time": start, "end_time": end, "primary": primary}


def _clip(uid, start, end, labels):
    return {"clip_uid": uid, "video_start_sec": start, "video_end_sec": end,
            "annotations": [{"annotator_uid": "ann", "labels": labels}]}


def _mq(split="train", prefix="") -> dict:
    """2 videos, 3 clips (480 s, 200 s, 300.5 s), 5 primary instances of 3 classes, 1 non-primary."""
    return {"videos": [
        {"video_uid": "vid-a", "split": split, "clips": [
            _clip(prefix + "clip-a1", 10.0, 490.0, [
                _label("use_phone", 1.0, 5.0), _label("drink_beverage", 1.0, 5.0, primary=False),
                _label(QUOTED, 100.0, 487.2), _label("use_phone", 1.5, 5.5)]),
            _clip(prefix + "clip-a2", 490.0, 690.0, [_label("wash_hands", 3.0, 9.0)]),
        ]},
        {"video_uid": "vid-b", "split": split, "clips": [
            _clip(prefix + "clip-b1", -0.5, 300.0, [_label("use_phone", 0.0, 0.0)])]},
    ]}


def _nlq() -> dict:
    queries = [
        {"query": "Where is the cup?", "clip_start_sec": 1.0, "clip_end_sec": 4.0},
        {"query": None, "clip_start_sec": 1.0, "clip_end_sec": 4.0},
        {"query": "Where is the knife?", "clip_start_sec": 9.0, "clip_end_sec": 9.0},
    ]
    return {"videos": [{"video_uid": "vid-n", "split": "val", "clips": [
        {"clip_uid": "clip-n1", "video_start_sec": 0.0, "video_end_sec": 480.0,
         "annotations": [{"annotation_uid": "an-1", "language_queries": queries}]}]}]}


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _cli(argv, capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="egoasl")
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "check", "--no-progress", *map(str, argv)])
    code = args.func(args)
    return code, capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Statistics


def test_mq_statistics_pinned(tmp_path):
    ann = load_mq_annotations(_write(tmp_path / "moments_train.json", _mq()))
    stats = mq_statistics([ann])
    assert stats["splits"] == {"train": {"clips": 3, "videos": 2, "instances": 5, "classes": 3}}
    assert stats["classes"] == 3
    assert stats["clip_duration"] == {"min": 200.0, "median": 300.5, "max": 480.0}
    lengths = stats["instance_length"]  # 0, 4, 4, 6, 387.2
    assert (lengths["min"], lengths["p50"], lengths["max"]) == (0.0, 4.0, pytest.approx(387.2))
    assert lengths["p25"] == 4.0 and lengths["p75"] == 6.0 and lengths["p10"] == pytest.approx(1.6)
    assert stats["ends_after_clip"] == 1 and stats["non_primary_skipped"] == 1 and stats["dropped_unlabelled"] == 0


def test_statistics_of_the_shared_examples():
    moments, nlq = SHARED / "examples" / "moments_sample.json", SHARED / "examples" / "nlq_sample.json"
    if not (moments.is_file() and nlq.is_file()):
        pytest.skip("shared example files are not available")
    stats = mq_statistics([load_mq_annotations(moments)])
    assert stats["splits"] == {"train": {"clips": 5, "videos": 3, "instances": 18, "classes": 11}}
    assert (stats["non_primary_skipped"], stats["dropped_unlabelled"], stats["ends_after_clip"]) == (2, 1, 2)
    assert stats["clip_duration"]["min"] == pytest.approx(193.0)
    lengths = stats["instance_length"]
    assert lengths["min"] == pytest.approx(0.96) and lengths["max"] == pytest.approx(179.5)
    assert lengths["p50"] == pytest.approx((33.3 + 35.36791) / 2)  # 9th and 10th of the 18 lengths

    stats = nlq_statistics([load_nlq_annotations(nlq)])
    assert stats["splits"] == {"train": {"clips": 4, "videos": 3, "queries": 8, "zero_length": 1}}
    assert (stats["zero_length"], stats["skipped_empty"]) == (1, 1)
    assert stats["clip_duration"] == {"min": 360.0, "median": pytest.approx(479.75), "max": pytest.approx(480.0)}
    assert stats["window_length"]["min"] == 0.0 and stats["window_length"]["max"] == pytest.approx(19.5)


def test_cli_prints_statistics_and_exits_zero(tmp_path, capsys):
    mq = _write(tmp_path / "moments_train.json", _mq())
    nlq = _write(tmp_path / "nlq_val.json", _nlq())
    code, out = _cli(["--annotations", mq, nlq], capsys)
    assert code == 0, out
    lines = out.splitlines()
    assert f"  {mq}: official format, 3 clips" in lines
    assert lines[lines.index("  split  clips  videos  instances  classes") + 1].split() == ["train", "3", "2", "5", "3"]
    assert "  clip duration (s): min 200.00, median 300.50, max 480.00" in lines
    assert "  non-primary labels skipped: 1" in lines
    assert lines[lines.index("  split  clips  videos  queries  zero_length") + 1].split() == ["val", "1", "1", "2", "1"]
    assert "  zero-length windows: 1" in lines and "  queries skipped for missing or empty text: 1" in lines
    assert lines[-1] == "data check: no problems found"


def test_folder_input_reads_every_split_of_both_tasks(tmp_path, capsys):
    root = tmp_path / "ego4d_data"
    _write(root / "v2" / "annotations" / "moments_train.json", _mq())
    _write(root / "v2" / "annotations" / "moments_val.json", _mq("val", prefix="v-"))
    _write(root / "v2" / "annotations" / "nlq_val.json", _nlq())
    mq, nlq, problems = load_for_check([root])
    assert problems == []
    assert [Path(a.path).name for a in mq] == ["moments_train.json", "moments_val.json"]
    assert [Path(a.path).name for a in nlq] == ["nlq_val.json"]
    assert mq_statistics(mq)["splits"]["val"] == {"clips": 3, "videos": 2, "instances": 5, "classes": 3}

    mq, nlq, problems = load_for_check([root], task="mq")
    assert len(mq) == 2 and nlq == [] and problems == []
    code, out = _cli(["--annotations", root, "--task", "nlq"], capsys)
    assert code == 0 and "NLQ annotations (1 file):" in out and "MQ annotations" not in out

    empty = tmp_path / "empty"
    empty.mkdir()
    mq, nlq, problems = load_for_check([empty])
    assert len(problems) == 2 and "no mq annotation file" in problems[0] and "no nlq annotation file" in problems[1]


def test_every_problem_is_listed_with_its_file(tmp_path, capsys):
    data = _mq()
    data["videos"][0]["clips"][0]["annotations"][0]["labels"][0]["end_time"] = float("nan")
    data["videos"][1]["clips"][0]["video_end_sec"] = -3.0
    bad = _write(tmp_path / "moments_train.json", data)
    again = _write(tmp_path / "copy" / "moments_val.json", _mq())  # same clips as the first file
    truncated = tmp_path / "nlq_val.json"
    truncated.write_text(json.dumps(_nlq())[:50], encoding="utf-8")
    missing = tmp_path / "nowhere.json"

    code, out = _cli(["--annotations", bad, again, truncated, missing], capsys)
    assert code == 1
    problems = out[out.index("problem(s):"):].splitlines()[1:]
    assert out.splitlines()[-len(problems) - 1] == "data check: 5 problem(s):"
    assert problems[0] == f"  {missing}: no such file or folder"
    assert problems[1].startswith(f"  {bad}: videos[0].clips[0].annotations[0].labels[0].end_time: expected a finite number")
    assert problems[2].startswith(f"  {bad}: videos[1].clips[0].video_end_sec: expected greater than video_start_sec")
    assert problems[3].startswith(f"  {truncated}: line 1, column 51: expected valid JSON")
    assert problems[4] == (f"  {again}: expected each clip in one file only; 2 clip(s) are also in {bad} "
                           "(clip-a1, clip-a2)")


# ----------------------------------------------------------------------------------------------
# Feature files


def test_parse_source():
    assert parse_source("slowfast:2304") == FeatureSource("slowfast", 2304, None)
    assert parse_source("egovlp:256:clip") == FeatureSource("egovlp", 256, "clip")
    for bad in ("slowfast", "slowfast:big", ":256", "a:0", "a:4:frames", "a:4:video:x"):
        with pytest.raises(EgoaslError, match="--sources"):
            parse_source(bad)


def _features(root: Path, rows_a: int = 1293, nan_in_b: bool = False, egovlp_a2_dim: int = 3) -> Path:
    """slowfast (per video, dim 4) and egovlp (per clip, dim 3) for the clips of :func:`_mq`."""
    (root / "slowfast").mkdir(parents=True)
    (root / "egovlp").mkdir()
    (root / "text" / "clip-a1").mkdir(parents=True)  # NLQ query features: never a source
    torch.save(torch.zeros(rows_a, 4), root / "slowfast" / "vid-a.pt")
    b = torch.ones(562, 4)
    if nan_in_b:
        b[7, 2] = float("nan")
    torch.save(b, root / "slowfast" / "vid-b.pt")
    np.save(root / "egovlp" / "clip-a1.npy", np.zeros((900, 3), dtype=np.float32))
    np.save(root / "egovlp" / "clip-a2.npy", np.zeros((375, egovlp_a2_dim), dtype=np.float32))
    torch.save(torch.zeros(563, 3), root / "egovlp" / "clip-b1.pt")
    return root


def test_features_that_cover_every_clip_pass(tmp_path, capsys):
    mq = _write(tmp_path / "moments_train.json", _mq())
    feats = _features(tmp_path / "features")
    _write(feats / "annotations" / "moments_val.json", {})  # the Ego4D download layout: not a source
    code, out = _cli(["--annotations", mq, "--features", feats], capsys)
    assert code == 0, out
    assert f"features in {feats} (3 clips):" in out
    assert "  egovlp: layout clip, dim 3, 3 files read, 0 problem(s); vectors per second min 1.874, median 1.875, max 1.875" in out
    assert "  slowfast: layout video, dim 4, 2 files read, 0 problem(s)" in out
    assert "text:" not in out and "annotations:" not in out

    report = run_data_check([mq], feats, [FeatureSource("slowfast", 4, "video"), FeatureSource("egovlp", 3)])
    assert report.ok and report.lines[-2:] == [
        "  slowfast: layout video, dim 4, 2 files read, 0 problem(s)",
        "  egovlp: layout clip, dim 3, 3 files read, 0 problem(s); vectors per second min 1.874, median 1.875, max 1.875",
    ]


def test_every_feature_problem_is_listed(tmp_path, capsys):
    mq = _write(tmp_path / "moments_train.json", _mq())
    # vid-a: 1292 vectors reach 689.07 s (+ one step: 689.6 s), short of clip-a2's end at 690 s
    feats = _features(tmp_path / "features", rows_a=1292, nan_in_b=True, egovlp_a2_dim=5)
    (feats / "egovlp" / "clip-b1.pt").unlink()
    code, out = _cli(["--annotations", mq, "--features", feats,
                      "--sources", "slowfast:4:video", "egovlp:3:clip", "omnivore:1536"], capsys)
    assert code == 1
    problems = out[out.index("problem(s):"):].splitlines()[1:]
    assert len(problems) == 5, out
    assert problems[0].startswith(f"  {feats / 'slowfast' / 'vid-a.pt'}: rows: expected features reaching the end of "
                                  "clip clip-a2 (690.00 s) within one step; 1292 vectors x 16/30 s reach 689.07 s")
    assert problems[1].startswith(f"  {feats / 'slowfast' / 'vid-b.pt'}: values: expected finite numbers")
    assert problems[2].startswith(f"  {feats / 'egovlp' / 'clip-a2.npy'}: shape: expected [N, 3]")
    assert problems[3] == (f"  {feats / 'egovlp' / 'clip-b1.pt'}: expected the egovlp features of clip clip-b1 "
                           "(clip-b1.pt or .npy); no such file")
    assert problems[4] == f"  {feats / 'omnivore'}: expected the folder of feature source 'omnivore', no such folder"

    # a per-video source without a file for vid-b: the message names the video and the clip that needs it
    (feats / "slowfast" / "vid-b.pt").unlink()
    report = run_data_check([mq], feats, [FeatureSource("slowfast", 4)])
    assert report.problems[-1] == (f"{feats / 'slowfast' / 'vid-b.pt'}: expected the slowfast features of video vid-b "
                                   "(needed by clip clip-b1) (vid-b.pt or .npy); no such file")


def test_feature_folder_problems(tmp_path):
    mq = _write(tmp_path / "moments_train.json", _mq())
    report = run_data_check([mq], tmp_path / "absent")
    assert report.problems == [f"{tmp_path / 'absent'}: expected a folder of feature sources (one sub-folder each), "
                               "no such folder"]
    (tmp_path / "feats" / "unrelated").mkdir(parents=True)
    torch.save(torch.zeros(3, 2), tmp_path / "feats" / "unrelated" / "someone-else.pt")
    report = run_data_check([mq], tmp_path / "feats")
    assert len(report.problems) == 1 and "expected feature files named <clip_uid> or <video_uid>" in report.problems[0]
    assert report.problems[0].startswith(str(tmp_path / "feats" / "unrelated"))


def test_sources_need_features(tmp_path, capsys):
    mq = _write(tmp_path / "moments_train.json", _mq())
    with pytest.raises(EgoaslError, match="--sources needs --features"):
        _cli(["--annotations", mq, "--sources", "slowfast:2304"], capsys)


# ----------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/refdata is absent)


def test_real_annotations_statistics():
    path = SHARED / "refdata" / "ego4d_clip_annotations_v2.json"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    mq, nlq, problems = load_for_check([path])
    assert problems == [] and nlq == []
    stats = mq_statistics(mq)
    assert stats["splits"]["train"] == {"clips": 1486, "videos": 932, "instances": 13559, "classes": 110}
    assert stats["splits"]["val"] == {"clips": 521, "videos": 325, "instances": 4296, "classes": 110}
    assert stats["splits"]["test"] == {"clips": 488, "videos": 315, "instances": 0, "classes": 0}
    assert stats["clip_duration"]["min"] == 182.0 and stats["clip_duration"]["median"] == 480.0
    # the segment-length distribution quoted in specs/ego4d_formats.md section 6.2
    lengths = {key: round(value, 2) for key, value in stats["instance_length"].items()}
    assert lengths == {"min": 0.6, "p1": 0.71, "p10": 1.58, "p25": 3.36, "p50": 8.81, "p75": 28.85,
                       "p90": 118.74, "p99": 479.74, "max": 480.04}
    # 1,476 ends exceed the JSON duration; 96 of them only by float noise (< 1 microsecond)
    assert stats["ends_after_clip"] == 1380
