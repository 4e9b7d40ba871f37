"""ActivityNet-style datasets: the reader, feature timing, `data check`, the tIoU list and the result format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from egoasl.cli import main
from egoasl.config import SourceConfig, load_config
from egoasl.data.anet import END_TOLERANCE_SEC, load_anet_annotations
from egoasl.data.check import check_config
from egoasl.data.features import check_rows, slice_video_features, source_timing
from egoasl.data.mq_formats import detect_format, load_mq_file
from egoasl.data.timegrid import OFFICIAL_FEATURE_STEP, FeatureTiming
from egoasl.errors import DataError, EgoaslError

from conftest import TESTS


def _video(subset, duration, *segments, **extra):
    return {"subset": subset, "duration": duration, "resolution": "1280x720", "fps": 25.0,
            "annotations": [{"label": label, "segment": [s, e], "label_id": 3} for label, s, e in segments], **extra}


def _database() -> dict:
    return {"version": "1.3", "taxonomy": [{"nodeName": "jump"}], "database": {
        "v1": _video("training", 60.0, ("jump", 1.0, 5.0), ("run, fast", 10.0, 20.5)),
        "v2": _video("train", 30.0, ("jump", 0.0, 30.4)),
        "v3": _video("validation", 45.0, ("run, fast", 2.0, 8.0)),
        "v4": _video("VAL", 20.0, ("jump", 3.0, 4.0)),
        "v5": {"subset": "testing", "duration": 50.0},
        "v6": _video("test", 25.0),
        "v7": _video("training", 40.0),
    }}


def _write(tmp_path, data, name="anet.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_reader_subsets_aliases_and_ignored_fields(tmp_path):
    path = _write(tmp_path, _database())
    ann = load_anet_annotations(path)
    assert ann.format == "anet" and detect_format(path) == "anet" and load_mq_file(path).clips.keys() == ann.clips.keys()
    assert [c.clip_uid for c in ann.split("train")] == ["v1", "v2"]
    assert [c.clip_uid for c in ann.split("val")] == ["v3", "v4"]
    assert [c.clip_uid for c in ann.split("test")] == ["v5", "v6"]
    v1 = ann.clips["v1"]
    assert (v1.video_uid, v1.video_start_sec, v1.video_end_sec, v1.duration) == ("v1", 0.0, 60.0, 60.0)
    assert [(i.label, i.start, i.end) for i in v1.instances] == [("jump", 1.0, 5.0), ("run, fast", 10.0, 20.5)]
    assert ann.clips["v2"].instances[0].end == 30.4  # within the end tolerance
    assert ann.dropped_unlabelled == 1 and "v7" not in ann.clips  # a training video without segments


BAD = [
    ("missing subset", ["database", "v1", "subset"], None,
     "database.v1.subset: expected 'training', 'validation' or 'testing' (or train, val, test), got nothing"),
    ("unknown subset", ["database", "v1", "subset"], "holdout", "database.v1.subset: expected 'training'"),
    ("segment after duration", ["database", "v1", "annotations", 1, "segment"], [10.0, 61.5],
     f"database.v1.annotations[1].segment[1]: expected a time within the video's duration (60.0 s, + {END_TOLERANCE_SEC} s"),
    ("negative start", ["database", "v3", "annotations", 0, "segment"], [-0.5, 3.0],
     "database.v3.annotations[0].segment[0]: expected a time >= 0 s"),
    ("reversed", ["database", "v3", "annotations", 0, "segment"], [5.0, 3.0],
     "database.v3.annotations[0].segment[0]: expected at most the end (3.0), got 5.0"),
    ("one number", ["database", "v3", "annotations", 0, "segment"], [5.0],
     "database.v3.annotations[0].segment: expected a list [start, end] of two numbers"),
    ("duration", ["database", "v3", "duration"], 0, "database.v3.duration: expected a duration in seconds greater than 0"),
    ("no database", ["database"], None, "database: expected an object of videos (the ActivityNet layout"),
]


@pytest.mark.parametrize("case, keys, value, message", BAD, ids=[b[0] for b in BAD])
def test_reader_errors_name_file_path_and_expectation(tmp_path, case, keys, value, message):
    data = _database()
    parent = data
    for key in keys[:-1]:
        parent = parent[key]
    if value is None:
        del parent[keys[-1]]
    else:
        parent[keys[-1]] = value
    path = _write(tmp_path, data)
    with pytest.raises(DataError) as info:
        load_anet_annotations(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_labels_outside_the_training_taxonomy(tmp_path):
    data = _database()
    data["database"]["v3"]["annotations"][0]["label"] = "swim"
    path = _write(tmp_path, data)
    assert load_anet_annotations(path).clips["v3"].instances[0].label == "swim"  # open taxonomy: read
    with pytest.raises(DataError, match=r"database\.v3\.annotations\[0\]\.label: expected a label of the taxonomy "
                                        r"\(2 classes\), got 'swim'"):
        load_mq_file(path)  # what training reads: the training subset's labels are the taxonomy


def test_feature_timing_keeps_the_ego4d_conventions():
    official = source_timing(SourceConfig("sf", 2304, 64, layout="video"))
    assert official.step == OFFICIAL_FEATURE_STEP and official.first_centre == OFFICIAL_FEATURE_STEP
    assert official.grid(100.0).to_seconds(3.0) == pytest.approx((16 * 3 + 16) / 30)
    assert source_timing(SourceConfig("c", 8, 8, layout="clip", rate=2.0)).first_centre == 0.25
    thumos = source_timing(SourceConfig("i3d", 2048, 64, fps=30, stride=4, window=16))
    assert (thumos.step, thumos.first_centre) == (4 / 30, 8 / 30)
    assert thumos.grid(60.0).to_grid(thumos.grid(60.0).to_seconds(123.0, clamp=False)) == pytest.approx(123.0)
    # 60 s at 30 fps = 1800 frames: windows of 16 every 4 frames -> floor((1800 - 16) / 4) + 1 = 447
    assert thumos.full_windows(60.0) == 447
    with pytest.raises(EgoaslError, match="fps, stride and window go together"):
        load_config(TESTS / "configs" / "tiny_mq.yaml", ["data.sources=[{name: a, dim: 4, proj_dim: 4, fps: 30}]"])


def test_stated_timing_slices_rows_by_centre_and_refuses_short_files():
    timing = FeatureTiming(fps=10, stride=5, window=10)  # rows centred at 0.5 + 0.5 j s
    rows = torch.arange(30, dtype=torch.float32)[:, None].repeat(1, 2)
    clip, first = slice_video_features(rows, 0.0, 9.0, step=timing.step, offset=timing.first_centre)
    assert first == 0.5 and clip[:, 0].tolist() == list(range(18))  # centres 0.5 .. 9.0
    check_rows(timing, 18, 9.0, "f.npy")  # (90 - 10) / 5 + 1 = 17 windows fit; 16 needed
    with pytest.raises(DataError, match=r"f\.npy: rows: expected at least 16 feature vectors for 9\.00 s at 10 fps, "
                                        r"stride 5, window 10 .*the file has 15, covering 8\.00 s"):
        check_rows(timing, 15, 9.0, "f.npy")


def _bad_dataset(tmp_path):
    """The synthetic ActivityNet-style set with one of each problem of issue 9's list."""
    root = tmp_path / "data"
    assert main(["synth", "--format", "anet", "--scale", "tiny", "--videos", "10", "--out", str(root)]) == 0
    path = root / "annotations" / "anet.json"
    data = json.loads(path.read_text())
    ids = list(data["database"])
    train = [v for v in ids if data["database"][v]["subset"] == "training"]
    val = [v for v in ids if data["database"][v]["subset"] == "validation"]
    del data["database"][train[0]]["subset"]
    data["database"][train[1]]["annotations"][0]["segment"][1] = data["database"][train[1]]["duration"] + 5
    data["database"][val[0]]["annotations"][0]["label"] = "not_a_trained_class"
    path.write_text(json.dumps(data))
    short = root / "features" / f"{train[2]}.npy"
    np.save(short, np.load(short)[:20])
    return root, path, train, val


def test_data_check_lists_every_problem_of_an_anet_dataset(tmp_path, capsys):
    root, path, train, val = _bad_dataset(tmp_path)
    config = tmp_path / "mine.yaml"
    config.write_text(
        "base: tal/anet_style\n"
        f"data: {{root: {root}, annotations: annotations/anet.json, sources: [{{name: feats, dir: '.', dim: 12, "
        "proj_dim: 16, layout: video, fps: 30, stride: 16, window: 16}]}\n"
        "model: {num_classes: 5}\n"
    )
    assert main(["data", "check", "--config", str(config), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"{path}: database.{train[0]}.subset: expected 'training', 'validation' or 'testing'" in out
    assert f"{path}: database.{train[1]}.annotations[0].segment[1]: expected a time within the video's duration" in out
    assert f"{path}: database.{val[0]}.annotations[0].label: expected a label of the taxonomy" in out
    assert f"{train[2]}.npy: rows: expected at least" in out and "the file has 20" in out
    assert "config key model.num_classes: expected 6" in out
    assert "data check: 5 problem(s)" in out and "  feats: layout video, dim 12, 9 files read" in out
    # the loader refuses the short file with the same message when it is read for training
    cfg = load_config(config, ["model.num_classes=6"])
    report = check_config(cfg)
    assert sum("rows: expected at least" in p for p in report.problems) == 1


def test_synth_anet_trains_with_its_tiou_list_and_writes_activitynet_results(tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["synth", "--format", "anet", "--scale", "tiny", "--videos", "8", "--out", str(root)]) == 0
    run = tmp_path / "run"
    tiny = ["train.epochs=2", "train.eval_start_epoch=2", "train.batch_size=2", "model.width=32", "model.num_levels=4",
            "model.rel_global_inner=64", "data.max_seq_len=64", "model.regression_ranges=[[0,4],[2,8],[4,16],[8,10000]]",
            "data.sources=[{name: f, dir: '.', dim: 12, proj_dim: 16, layout: video, fps: 30, stride: 16, window: 16}]",
            "model.num_classes=6", f"data.root={root}", "data.annotations=annotations/anet.json",
            "test.tious=[0.3,0.5,0.7]", "train.threads=1"]
    assert main(["train", "tal/anet_style", "--run", str(run), "--no-progress", *tiny]) == 0
    assert main(["predict", str(run), "--split", "val", "--no-progress", "--no-raw"]) == 0
    metrics = json.loads((run / "predictions" / "val_metrics.json").read_text())
    assert list(metrics["mAP"]) == ["0.3", "0.5", "0.7"]
    results = json.loads((run / "predictions" / "val_results.json").read_text())
    assert results["version"] == "VERSION 1.3" and set(results["results"]) == set(
        json.loads((run / "predictions" / "val_submission.json").read_text())["detect_results"])
    capsys.readouterr()
    assert main(["eval", "mq", "--annotations", str(root / "annotations" / "anet.json"), "--predictions",
                 str(run / "predictions" / "val_results.json"), "--tiou", "0.3", "0.5", "0.7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["average_mAP"] == pytest.approx(metrics["average_mAP"])


def test_feature_file_prefix(tmp_path, capsys):
    from egoasl.data.features import ClipFeatureLoader
    from egoasl.data.mq_formats import load_mq_file

    root = tmp_path / "data"
    assert main(["synth", "--format", "anet", "--scale", "tiny", "--out", str(root)]) == 0
    for path in (root / "features").glob("*.npy"):
        path.rename(path.with_name("v_" + path.name))  # ActivityNet features: v_<video id>.npy
    source = "{name: f, dir: '.', dim: 12, proj_dim: 16, layout: video, fps: 30, stride: 16, window: 16%s}"
    common = ["tal/anet_style", f"data.root={root}", "data.annotations=annotations/anet.json", "model.num_classes=6"]
    capsys.readouterr()
    assert main(["data", "check", "--no-progress", "--config", *common, f"data.sources=[{source % ''}]"]) == 1
    assert ".pt or .npy); no such file" in capsys.readouterr().out
    assert main(["data", "check", "--no-progress", "--config", *common, f"data.sources=[{source % ', prefix: v_'}]"]) == 0
    cfg = load_config("tal/anet_style", [*common[1:], f"data.sources=[{source % ', prefix: v_'}]"])
    clip = next(iter(load_mq_file(root / "annotations" / "anet.json").clips.values()))
    assert ClipFeatureLoader(cfg.data, root).load_clip(clip).feats.shape == (12, 192)
