"""The user's path through the CLI: train, predict a split, predict one video, evaluate, ensemble."""

from __future__ import annotations

import json

import pytest
import torch

from egoasl.cli import main
from egoasl.io.submission import validate_mq_submission
from egoasl.data.ego4d import load_mq_annotations

from conftest import TINY_MQ_CONFIG, clip_feature_files


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory):
    """Two tiny MQ runs with different configs (an ensemble's members)."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in (("a", []), ("b", ["train.seed=1", "model.t_c_alpha=0.7"])):
        code = main(["train", str(TINY_MQ_CONFIG), f"data.root={tiny_data}", "--run", str(root / name),
                     "--no-progress", "train.epochs=4", "train.eval_start_epoch=4", *extra])
        assert code == 0
    return root


def test_predict_split_writes_valid_submission_and_raw_outputs(two_runs, tiny_data, capsys):
    out = two_runs / "pred"
    assert main(["predict", str(two_runs / "a"), "--split", "val", "--out", str(out), "--no-progress"]) == 0
    submission = json.loads((out / "val_submission.json").read_text())
    assert submission["challenge"] == "ego4d_moment_queries"
    clips = load_mq_annotations(tiny_data / "annotations" / "moments_val.json").split("val")
    errors = [p for p in validate_mq_submission(submission, clips) if p.severity == "error"]
    assert not errors, errors
    for preds in submission["detect_results"].values():
        scores = [p["score"] for p in preds]
        assert scores == sorted(scores, reverse=True) and len(preds) <= 2000
    assert (out / "val_raw.safetensors").is_file()
    # the eval command on the written file gives the numbers predict printed
    metrics = json.loads((out / "val_metrics.json").read_text())
    capsys.readouterr()
    assert main(["eval", "mq", "--annotations", str(tiny_data / "annotations" / "moments_val.json"),
                 "--predictions", str(out / "val_submission.json"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["average_mAP"] == pytest.approx(metrics["average_mAP"])


def test_predict_test_split_without_annotations(two_runs):
    out = two_runs / "pred_test"
    assert main(["predict", str(two_runs / "a"), "--split", "test", "--out", str(out), "--no-progress", "--no-raw"]) == 0
    submission = json.loads((out / "test_submission.json").read_text())
    assert len(submission["detect_results"]) == 2 and not (out / "test_metrics.json").exists()


def test_predict_one_video_from_feature_files(two_runs, tiny_data, tmp_path):
    clip = load_mq_annotations(tiny_data / "annotations" / "moments_val.json").split("val")[0]
    files = clip_feature_files(tiny_data, clip, tmp_path)
    out = tmp_path / "moments.csv"
    code = main(["predict", str(two_runs / "a"), "--features", *map(str, files), "--duration", str(clip.duration),
                 "--out", str(out), "--plot", str(tmp_path / "t.png"), "--top", "20",
                 "--ground-truth", str(tiny_data / "annotations" / "moments_val.json"), "--clip-uid", clip.clip_uid])
    assert code == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "label,score,start_sec,end_sec" and len(rows) == 21
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_features_wrong_count_is_a_clear_error(two_runs, tmp_path, capsys):
    torch.save(torch.zeros(10, 12), tmp_path / "a.pt")
    assert main(["predict", str(two_runs / "a"), "--features", str(tmp_path / "a.pt")]) == 2
    assert "needs 3 files, one per source in order: egovlp (12)" in capsys.readouterr().err


def test_ensemble_mean_pools_members_with_their_own_configs(two_runs, tiny_data, capsys):
    out = two_runs / "ens"
    assert main(["ensemble", str(two_runs / "a"), str(two_runs / "b"), "--split", "val", "--out", str(out),
                 "--no-progress"]) == 0
    assert "ensemble of 2 runs on val: average mAP" in capsys.readouterr().out
    assert (two_runs / "b" / "predictions" / "val_raw.safetensors").is_file()  # computed and saved for member b
    metrics = json.loads((out / "val_metrics.json").read_text())
    assert 0.0 <= metrics["average_mAP"] <= 100.0


def test_unknown_override_key_is_one_line_error(tiny_data, tmp_path, capsys):
    assert main(["train", str(TINY_MQ_CONFIG), "model.widht=3", "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("egoasl train: error: config key model.widht: unknown key") and "Traceback" not in err
