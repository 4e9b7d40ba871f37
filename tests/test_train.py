"""The training loop: learning, exact resume, refusing a mismatched run, two-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TINY_MQ_CONFIG
from safetensors.torch import load_file

from egoasl.config import load_config
from egoasl.engine.runs import load_run
from egoasl.engine.tasks import build_task
from egoasl.engine.train import train
from egoasl.errors import EgoaslError


def tiny_cfg(root, *overrides):
    return load_config(TINY_MQ_CONFIG, [f"data.root={root}", *overrides])


def run_train(cfg, run_dir, **kw):
    return train(cfg, build_task(cfg, run_dir), run_dir, progress=False, **kw)


def test_tiny_detector_learns_synthetic_mq(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, "train.epochs=30", "train.eval_start_epoch=30")
    summary = run_train(cfg, tmp_path / "run")
    assert summary.epochs_run == 30 and summary.best_epoch == 30
    # a fresh model scores near zero; the trained one must find most instances
    assert summary.best_metric >= 40.0, summary.last_metrics
    metrics_lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics_lines) == 30 * 3 + 1 + 30  # one line per step, one per evaluation, one per epoch (ASL spread)
    spread = json.loads(metrics_lines[-1])["asl"]
    assert spread["mu_cls_std"] > 0 and spread["sigma_cls_shift"] > 0  # the Gaussians moved apart from their init
    assert (tmp_path / "run" / "predictions" / "val_submission.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()
    assert list((tmp_path / "run" / "tb").iterdir())


def test_interrupted_and_resumed_run_equals_uninterrupted(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, "train.epochs=3", "train.eval_start_epoch=-1")
    run_train(cfg, tmp_path / "whole")
    first = run_train(cfg, tmp_path / "resumed", stop_after_epochs=1)
    assert first.epochs_run == 1
    second = run_train(cfg, tmp_path / "resumed")
    assert second.epochs_run == 2 and second.steps == 9
    whole = load_file(tmp_path / "whole" / "checkpoints" / "last.safetensors")
    resumed = load_file(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    assert "model.loss_norm.value" in whole or any("norm" in k for k in whole)


def test_rerun_after_the_last_epoch_trains_nothing(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, "train.epochs=1", "train.eval_start_epoch=-1")
    run_train(cfg, tmp_path / "run")
    again = run_train(cfg, tmp_path / "run")
    assert again.epochs_run == 0


def test_resume_with_a_different_config_is_refused(tiny_data, tmp_path):
    run_train(tiny_cfg(tiny_data, "train.epochs=1", "train.eval_start_epoch=-1"), tmp_path / "run")
    with pytest.raises(EgoaslError, match="different config"):
        run_train(tiny_cfg(tiny_data, "train.epochs=1", "train.eval_start_epoch=-1", "train.lr=0.1"), tmp_path / "run")


def test_overfit_batch_and_bf16(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, "train.epochs=2", "train.eval_start_epoch=-1", "train.amp=bf16")
    summary = run_train(cfg, tmp_path / "run", overfit_batch=True)
    assert summary.steps == 2  # one batch per epoch
    _, task, model = load_run(tmp_path / "run", "last")
    assert task.name == "mq" and not model.training


def test_two_process_ddp_on_cpu(tiny_data, tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
        # `--` keeps torchrun's parser off `--run` (an abbreviation of its --run-path to it)
        "-m", "egoasl.cli", "--", "train", str(TINY_MQ_CONFIG), f"data.root={tiny_data}",
        "train.epochs=2", "train.eval_start_epoch=2", "train.device=cpu", "--run", str(run_dir), "--no-progress",
        "train.accum_steps=2",  # DDP's no_sync on the accumulating micro-batch
        "train.amp=bf16",  # autocast under DDP, with its weight copies cast again in backward (train.recast_weights)
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "epoch 2/2" in proc.stdout and "val average_mAP" in proc.stdout
    assert (run_dir / "train.log").read_text().count("epoch 2/2") == 1  # the main process logs, once
    # one process writes: one line per optimiser step (3 micro-batches of 1 per rank: one step of 2 and a
    # dropped partial one), one evaluation per run
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 1 + 1 + 2  # + the ASL spread of each epoch
    ckpt = load_file(run_dir / "checkpoints" / "last.safetensors")
    assert all(torch.isfinite(v).all() for v in ckpt.values() if v.is_floating_point())


def test_init_from_starts_from_another_runs_weights(tiny_data, tmp_path, capsys):
    pretrain = tiny_cfg(tiny_data, "train.epochs=1", "train.eval_start_epoch=-1")
    run_train(pretrain, tmp_path / "pre")
    source = tmp_path / "pre" / "checkpoints" / "last.safetensors"
    # lr 0: the fine-tuning run's weights stay exactly the EMA weights it started from
    finetune = tiny_cfg(tiny_data, "train.epochs=1", "train.eval_start_epoch=-1", "train.lr=0.0",
                        "train.warmup_epochs=0", "train.eta_min=0.0", f"train.init_from={source}")
    run_train(finetune, tmp_path / "fine")
    assert "initialised from" in capsys.readouterr().out
    before = load_file(source)
    after = load_file(tmp_path / "fine" / "checkpoints" / "last.safetensors")
    for key, value in after.items():
        if key.startswith("model.") and value.is_floating_point() and "loss_norm" not in key:
            assert torch.equal(value, before["ema." + key[len("model."):]]), key
