"""Run folders across restarts and machines: train.log, resume after the data moved, --resume PATH,
refusing a changed model, gradient accumulation equal to a bigger batch, W&B and TensorBoard optional."""

from __future__ import annotations

import builtins
import json
import shutil
import sys
import types

import pytest
import torch
from conftest import TINY_MQ_CONFIG
from safetensors.torch import load_file

from egoasl.config import load_config
from egoasl.engine.run_folder import config_changes, is_environment_key, prepare_run_folder, resume_checkpoint
from egoasl.engine.tasks import build_task
from egoasl.engine.train import train
from egoasl.errors import EgoaslError


def tiny_cfg(root, *overrides):
    return load_config(TINY_MQ_CONFIG, [f"data.root={root}", "train.eval_start_epoch=-1", *overrides])


def run_train(cfg, run_dir, **kw):
    return train(cfg, build_task(cfg, run_dir), run_dir, progress=False, **kw)


def test_environment_and_computation_keys():
    for key in ("data.root", "data.sources.1.dir", "train.device", "data.num_workers", "train.eval_every", "name"):
        assert is_environment_key(key), key
    for key in ("model.width", "data.sources.1.dim", "train.lr", "train.seed", "data.train_splits", "asl.al_weight",
                "train.accum_steps", "data.max_seq_len"):
        assert not is_environment_key(key), key
    base = load_config(TINY_MQ_CONFIG)
    other = load_config(TINY_MQ_CONFIG, ["data.sources.slowfast.dir=/x", "train.lr=1e-4"])
    assert [c.key for c in config_changes(base, other)] == ["data.sources.1.dir", "train.lr"]


def test_resume_after_the_data_moved_logs_what_changed(tiny_data, tmp_path):
    moved = tmp_path / "moved_data"
    moved.symlink_to(tiny_data, target_is_directory=True)
    run = tmp_path / "run"
    run_train(tiny_cfg(tiny_data, "train.epochs=2"), run, stop_after_epochs=1, command="egoasl train tiny")
    summary = run_train(tiny_cfg(moved, "train.epochs=2", "train.device=cpu", "data.num_workers=0"), run)
    assert summary.epochs_run == 1 and summary.steps == 6
    log = (run / "train.log").read_text()
    assert "command: egoasl train tiny" in log
    assert f"changed since the run started: data.root ('{tiny_data}' -> '{moved}'), train.device ('auto' -> 'cpu')" in log
    assert "resuming" in log and "after epoch 1" in log
    epoch_lines = [line for line in log.splitlines() if " epoch " in line and "peak memory" in line]
    assert [line.split(" epoch ")[1][:4] for line in epoch_lines] == ["1/2:", "2/2:"]
    assert "loss " in epoch_lines[0] and "cls " in epoch_lines[0] and "3 steps" in epoch_lines[0]
    assert f"root: {moved}" in (run / "config.yaml").read_text()
    back = prepare_run_folder(run, tiny_cfg(tiny_data, "train.epochs=2", "train.device=cpu"))  # the data moved back
    assert back.checkpoint == run / "checkpoints" / "last.safetensors"
    assert [(c.key, c.old, c.new) for c in back.environment_changes] == [("data.root", str(moved), str(tiny_data))]


def test_resume_with_a_changed_model_key_is_refused_naming_it(tiny_data, tmp_path):
    run = tmp_path / "run"
    run_train(tiny_cfg(tiny_data, "train.epochs=2"), run, stop_after_epochs=1)
    with pytest.raises(EgoaslError, match=r"these keys change the computation: model\.t_c_alpha \(0\.8 -> 0\.7\), "
                                          r"train\.lr \(0\.002 -> 0\.001\)"):
        run_train(tiny_cfg(tiny_data, "train.epochs=2", "model.t_c_alpha=0.7", "train.lr=1e-3"), run)


def test_resume_from_another_run_folder_or_checkpoint(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, "train.epochs=2")
    run_train(cfg, tmp_path / "whole")
    run_train(cfg, tmp_path / "first", stop_after_epochs=1)
    for name, source in (("from_folder", tmp_path / "first"),
                         ("from_file", tmp_path / "first" / "checkpoints" / "last.safetensors")):
        summary = run_train(cfg, tmp_path / name, resume_from=source)
        assert summary.epochs_run == 1 and summary.steps == 6
        whole = load_file(tmp_path / "whole" / "checkpoints" / "last.safetensors")
        resumed = load_file(tmp_path / name / "checkpoints" / "last.safetensors")
        assert all(torch.equal(whole[k], resumed[k]) for k in whole)
        assert f"from {tmp_path / 'first' / 'checkpoints' / 'last.safetensors'}" in (tmp_path / name / "train.log").read_text()
    with pytest.raises(EgoaslError, match="no checkpoints/last.safetensors"):
        resume_checkpoint(tmp_path)
    with pytest.raises(EgoaslError, match="no training state"):
        weights_only = tmp_path / "weights_only.safetensors"  # a `best` checkpoint: no optimiser state
        shutil.copy(tmp_path / "whole" / "checkpoints" / "last.safetensors", weights_only)
        resume_checkpoint(weights_only)


def test_two_accumulated_micro_batches_of_two_equal_one_batch_of_four(tiny_data, tmp_path):
    # same samples in the same order, no dropout in the tiny config, one loss normaliser update per step
    runs = {"batch4": ["train.batch_size=4"], "accum2x2": ["train.batch_size=2", "train.accum_steps=2"],
            "batch2": ["train.batch_size=2"]}
    for name, extra in runs.items():
        run_train(tiny_cfg(tiny_data, "train.epochs=2", *extra), tmp_path / name)
    torch.manual_seed(0)  # the trainer's initialisation: seeded, then built
    init = build_task(tiny_cfg(tiny_data), tmp_path).build_model().state_dict()
    big, accum, small = (_update(init, load_file(tmp_path / n / "checkpoints" / "last.safetensors")) for n in runs)
    # relative to the whole update (elementwise checks would trip on parameters whose true gradient is
    # zero, such as attention key biases: Adam scales their rounding noise up to the learning rate)
    assert (big - accum).norm() / big.norm() < 1e-4
    assert (big - small).norm() / big.norm() > 0.1  # the test can fail
    losses = [[json.loads(line)["loss"] for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()
               if "loss" in json.loads(line)] for n in ("batch4", "accum2x2")]
    assert len(losses[0]) == len(losses[1]) == 2
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def _update(init: dict, trained: dict) -> torch.Tensor:
    """The change of every model weight from its initial value, as one vector."""
    return torch.cat([(trained[f"model.{k}"] - v).flatten() for k, v in init.items() if v.is_floating_point()])


def test_wandb_is_optional_and_mirrors_the_scalars(tiny_data, tmp_path, monkeypatch):
    cfg = tiny_cfg(tiny_data, "train.epochs=1", "train.wandb=true")
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(EgoaslError, match=r"egoasl\[wandb\]"):
        run_train(cfg, tmp_path / "missing")
    logged, finished = [], []

    class FakeRun:
        def log(self, scalars, step):
            logged.append((step, scalars))

        def finish(self):
            finished.append(True)

    fake = types.SimpleNamespace(init=lambda **kw: logged.append(("init", kw["project"], kw["id"])) or FakeRun())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_train(cfg, tmp_path / "run")
    assert logged[0][0] == "init" and logged[0][1] == "egoasl"
    steps = [entry for entry in logged[1:] if "train/loss" in entry[1]]
    assert [s for s, _ in steps] == [1, 2, 3] and finished == [True]
    assert (tmp_path / "run" / "wandb_id").read_text().strip() == logged[0][2]


def test_training_goes_on_without_tensorboard(tiny_data, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    run_train(tiny_cfg(tiny_data, "train.epochs=1"), tmp_path / "run")
    assert not (tmp_path / "run" / "tb").exists()
    assert "TensorBoard is not installed (pip install 'egoasl[tensorboard]')" in (tmp_path / "run" / "train.log").read_text()
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\"loss\":") == 3  # every step still logged


def test_deterministic_switch_is_restored_after_training(tiny_data, tmp_path):
    assert not torch.are_deterministic_algorithms_enabled()
    run_train(tiny_cfg(tiny_data, "train.epochs=1", "train.deterministic=true"), tmp_path / "run")
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.mem_efficient_sdp_enabled() and torch.backends.cuda.cudnn_sdp_enabled()
