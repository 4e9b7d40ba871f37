"""Portable run folders through the CLI: overrides on train, predict and ensemble after the data
moved, train --resume, and the torchrun spelling of --run."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import TINY_MQ_CONFIG

from egoasl.cli import main
from egoasl.data.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory):
    """A tiny MQ run trained on a data folder that was then moved: (run folder, new data folder)."""
    root = tmp_path_factory.mktemp("moved")
    generate_synthetic(root / "data", seed=0, scale="tiny", videos=10)
    run = root / "run"
    assert main(["train", str(TINY_MQ_CONFIG), f"data.root={root / 'data'}", "--run", str(run), "--no-progress",
                 "train.epochs=2", "train.eval_start_epoch=2"]) == 0
    shutil.move(root / "data", root / "data_moved")
    return run, root / "data_moved"


def test_train_demo_preset_with_overrides_by_index_name_and_scientific_notation(tiny_data, tmp_path, capsys):
    egovlp = tmp_path / "egovlp_elsewhere"
    egovlp.symlink_to(tiny_data / "features" / "egovlp", target_is_directory=True)
    run = tmp_path / "run"
    args = ["train", "demo/mq", f"data.root={tiny_data}", "train.lr=1e-4", f"data.sources.0.dir={egovlp}",
            "data.sources.egovlp.dim=12", "data.sources.slowfast.dim=24", "data.sources.omnivore.dim=16",
            "model.num_classes=6", "model.width=32", "train.epochs=1", "train.eval_start_epoch=-1", "train.amp=none",
            "train.ema=off", "data.val_split=val", "--run", str(run), "--no-progress"]
    assert main(args) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["lr"] == 1e-4 and saved["train"]["ema"] is False
    assert saved["data"]["sources"][0]["dir"] == str(egovlp) and saved["data"]["sources"][1]["dim"] == 24
    log = (run / "train.log").read_text()
    assert "command: egoasl train demo/mq" in log and "train.lr=1e-4" in log
    assert "config differences from its preset:" in log and "train.lr (0.001 -> 0.0001)" in log
    assert "epoch 1/1: loss" in log and "epoch 1/1: loss" in capsys.readouterr().out


def test_predict_after_the_data_moved_with_overrides(moved_run, tmp_path, capsys):
    run, moved = moved_run
    assert main(["predict", str(run), "--split", "val", "--out", str(tmp_path / "stale"), "--no-progress"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    outputs = {}
    for sigma in ("0.5", "0.99"):
        out = tmp_path / f"sigma{sigma}"
        assert main(["predict", str(run), "--split", "val", f"test.nms_sigma={sigma}", f"data.root={moved}",
                     "--out", str(out), "--no-progress"]) == 0
        outputs[sigma] = json.loads((out / "val_submission.json").read_text())["detect_results"]
        assert (out / "val_metrics.json").is_file()
    assert outputs["0.5"] != outputs["0.99"]  # the override reached the decoding
    assert f"root: {moved}" not in (run / "config.yaml").read_text()  # predicting leaves the run's config alone


def test_predict_override_errors_match_train(moved_run, tmp_path, capsys):
    run, _ = moved_run
    for bad, message in [("tset.nms_sigma=1", "config key tset: unknown key"),
                         ("test.nms_sigma=wide", "config key test.nms_sigma: expected a number, got 'wide'")]:
        assert main(["predict", str(run), "--split", "val", bad]) == 2
        predict_err = capsys.readouterr().err
        assert main(["train", str(TINY_MQ_CONFIG), bad, "--run", str(tmp_path / "r")]) == 2
        train_err = capsys.readouterr().err
        assert message in predict_err and message in train_err
        assert predict_err.split(": error: ")[1] == train_err.split(": error: ")[1]


def test_ensemble_with_overrides_after_the_data_moved(moved_run, tmp_path, capsys):
    run, moved = moved_run
    out = tmp_path / "ens"
    assert main(["ensemble", str(run), str(run), f"data.root={moved}", "--out", str(out), "test.nms_sigma=0.6",
                 "--no-progress"]) == 0
    assert "average mAP" in capsys.readouterr().out
    assert (out / "val_submission.json").is_file()


def test_train_resume_with_the_runs_own_config_after_the_data_moved(moved_run, capsys):
    run, moved = moved_run
    assert main(["train", "--resume", str(run), f"data.root={moved}", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "all 2 epochs are done" in out
    log = (run / "train.log").read_text()
    assert "changed since the run started: data.root" in log and str(moved) in log
    assert f"root: {moved}" in (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), "model.width=64"]) == 2
    assert "these keys change the computation: model.width (32 -> 64)" in capsys.readouterr().err
