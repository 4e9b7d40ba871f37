"""Nothing egoasl writes is lost: kill -9 and resume, one writer per run folder, a full disk while checkpointing.

The kill test kills ``egoasl train`` (a subprocess) ``EGOASL_CRASH_KILLS`` times (2 in the
suite, half of them inside a checkpoint write; ``EGOASL_CRASH_KILLS=10`` for the full check),
resumes after each kill, and compares the final weights with an uninterrupted run bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_MQ_CONFIG
from safetensors.torch import load_file

from egoasl.cli import main
from egoasl.config import load_config
from egoasl.engine import run_lock as run_lock_module
from egoasl.engine.run_lock import run_lock
from egoasl.engine.tasks import build_task
from egoasl.engine.train import train
from egoasl.errors import EgoaslError
from egoasl.io import checkpoint as checkpoint_module
from egoasl.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

KILLS = int(os.environ.get("EGOASL_CRASH_KILLS", "2"))
EPOCHS = KILLS + 4  # a killed process finishes at most one epoch: every kill lands before the run ends
OVERRIDES = [f"train.epochs={EPOCHS}", "train.eval_start_epoch=-1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_command(data_root: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "egoasl.cli", "train", str(TINY_MQ_CONFIG), f"data.root={data_root}",
            *OVERRIDES, "--run", str(run_dir), "--no-progress"]


@pytest.fixture(scope="module")
def whole_run(tiny_data, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must equal."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    cfg = load_config(TINY_MQ_CONFIG, [f"data.root={tiny_data}", *OVERRIDES])
    train(cfg, build_task(cfg, run_dir), run_dir, progress=False)
    return run_dir


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def _a_write_begins(ckpt_dir: Path):
    """A condition that holds once a checkpoint write is under way: a temporary file that was not
    there when the condition was made (a killed process leaves its own behind) appears."""
    before = _listing(ckpt_dir)
    return lambda: any(name.endswith(".tmp") for name in _listing(ckpt_dir) - before)


def _kill_during(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """SIGKILL ``proc`` once ``ready()`` holds (polled every millisecond); False when it ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    return False


def _some_steps_later(run_dir: Path, delay: float):
    """A condition that holds ``delay`` seconds after this process logged its first training step."""
    log = run_dir / "metrics.jsonl"
    size = log.stat().st_size if log.exists() else 0
    due: list[float] = []

    def ready() -> bool:
        if not due and log.exists() and log.stat().st_size > size:
            due.append(time.monotonic() + delay)
        return bool(due) and time.monotonic() >= due[0]

    return ready


def test_kill_9_at_random_moments_then_resume_is_bit_identical(tiny_data, whole_run, tmp_path):
    run_dir = tmp_path / "killed"
    ckpt_dir = run_dir / "checkpoints"
    rng = random.Random(0)
    in_writes = 0
    for kill in range(KILLS):
        proc = subprocess.Popen(_train_command(tiny_data, run_dir), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        inside_a_write = kill % 2 == 0
        ready = _a_write_begins(ckpt_dir) if inside_a_write else _some_steps_later(run_dir, rng.uniform(0, 0.4))
        if not _kill_during(proc, ready):
            _, err = proc.communicate(timeout=120)
            pytest.fail(f"kill {kill + 1} of {KILLS} never came; the process ended with {proc.returncode}: "
                        f"{err.decode()[-3000:]}")
        in_writes += inside_a_write
        assert _lock_is_free(run_dir)  # a killed process leaves no stuck lock
    assert in_writes == (KILLS + 1) // 2
    cfg = load_config(TINY_MQ_CONFIG, [f"data.root={tiny_data}", *OVERRIDES])
    train(cfg, build_task(cfg, run_dir), run_dir, progress=False)  # the last resume, in this process

    whole = load_file(whole_run / "checkpoints" / "last.safetensors")
    resumed = load_file(ckpt_dir / "last.safetensors")
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    assert load_checkpoint(ckpt_dir / "last.safetensors", with_state=True).state["epoch"] == EPOCHS
    assert not [name for name in os.listdir(ckpt_dir) if name.endswith((".tmp", ".pending"))]  # no debris left


def _lock_is_free(run_dir: Path) -> bool:
    with run_lock(run_dir, "test"):
        return True


def test_kill_9_during_predict_leaves_no_partial_submission(whole_run, tmp_path):
    out = tmp_path / "pred"
    cmd = [sys.executable, "-m", "egoasl.cli", "predict", str(whole_run), "--split", "val", "--checkpoint", "last",
           "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = _kill_during(proc, lambda: out.is_dir() and any(p.name.endswith(".tmp") for p in out.iterdir()))
    assert killed, "predict ended before it wrote anything"
    final = out / "val_submission.json"
    assert not final.exists() or json.loads(final.read_text())["challenge"] == "ego4d_moment_queries"


HOLDER = "import sys, time\nfrom egoasl.engine.run_lock import run_lock\nwith run_lock(sys.argv[1], 'holder'):\n" \
         "    print('locked', flush=True)\n    time.sleep(120)\n"


def test_a_second_writer_is_refused_and_a_killed_holder_leaves_no_lock(tiny_data, whole_run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(whole_run)], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = ["train", str(TINY_MQ_CONFIG), f"data.root={tiny_data}", *OVERRIDES, "--run", str(whole_run),
                "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"the run folder is in use by pid {holder.pid} (holder)" in err and "Traceback" not in err
        assert main(["predict", str(whole_run), "--split", "val", "--no-progress"]) == 2
        assert f"in use by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _lock_is_free(whole_run)


def test_predict_elsewhere_does_not_need_the_lock(whole_run, tmp_path, capsys):
    with run_lock(whole_run, "a training"):
        code = main(["predict", str(whole_run), "--split", "val", "--checkpoint", "last", "--out", str(tmp_path / "p"),
                     "--no-progress", "--no-raw"])
    assert code == 0 and (tmp_path / "p" / "val_submission.json").is_file()


def _full_disk_on_call(failing_call: int):
    """A ``save_file`` that writes half a file and fails with ENOSPC on its ``failing_call``-th call."""
    real = checkpoint_module.save_file
    calls = [0]

    def save_file(tensors, filename, metadata=None):
        calls[0] += 1
        if calls[0] == failing_call:
            Path(filename).write_bytes(b"\x00" * 64)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real(tensors, filename, metadata=metadata)

    return save_file


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tiny_data, tmp_path, monkeypatch):
    cfg = load_config(TINY_MQ_CONFIG, [f"data.root={tiny_data}", "train.epochs=2", "train.eval_start_epoch=-1"])
    run_dir = tmp_path / "run"
    monkeypatch.setattr(checkpoint_module, "save_file", _full_disk_on_call(2))
    with pytest.raises(EgoaslError, match=r"last.safetensors: could not write checkpoint 'last' \(No space left on "
                                          r"device\); the previous 'last' checkpoint, if any, is intact"):
        train(cfg, build_task(cfg, run_dir), run_dir, progress=False)
    ckpt_dir = run_dir / "checkpoints"
    previous = load_checkpoint(ckpt_dir / "last.safetensors", with_state=True)
    assert previous.meta["epoch"] == previous.state["epoch"] == 1
    assert not [p for p in os.listdir(ckpt_dir) if p.endswith(".tmp")]
    monkeypatch.undo()  # the disk has room again: the run resumes from epoch 1 and finishes
    assert train(cfg, build_task(cfg, run_dir), run_dir, progress=False).epochs_run == 1


def test_a_kill_between_the_weights_and_the_state_rename_is_recovered(tmp_path, monkeypatch):
    def checkpoint(step: int) -> Checkpoint:
        return Checkpoint({"w": torch.full((2,), float(step))}, None, {"step": step}, {"step": step, "epoch": step})

    save_checkpoint(tmp_path, "last", checkpoint(1))

    replace = os.replace

    def killed_before_the_state(src, dst):
        if str(src).endswith(".pending"):
            raise KeyboardInterrupt  # the process dies after the weights were replaced, before the state is
        replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", killed_before_the_state)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, "last", checkpoint(2))
    monkeypatch.undo()
    assert (tmp_path / "last.state.pt.pending").is_file()
    loaded = load_checkpoint(tmp_path / "last.safetensors", with_state=True)
    assert loaded.meta["step"] == loaded.state["step"] == 2 and float(loaded.model["w"][0]) == 2.0
    other = tmp_path / "other"
    save_checkpoint(other, "last", checkpoint(3))
    (tmp_path / "last.state.pt.pending").unlink()
    (other / "last.state.pt").replace(tmp_path / "last.state.pt")
    with pytest.raises(EgoaslError, match="does not belong to the weights"):
        load_checkpoint(tmp_path / "last.safetensors", with_state=True)


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(run_lock_module.fcntl, "flock", no_locks)
    expected = r"\.lock: the run folder cannot be locked \(No locks available\)"
    with pytest.warns(UserWarning, match=expected), run_lock(tmp_path / "run", "test") as path:
        assert path == tmp_path / "run" / ".lock"
