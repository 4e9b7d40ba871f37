"""train.threads=0: all cores, or one thread when timed steps show a shared CPU makes that faster."""

from __future__ import annotations

import logging

import pytest
import torch

from egoasl.engine import cpu_threads
from egoasl.engine.cpu_threads import (
    PROBE_STEPS,
    REPROBE_EVERY,
    WARMUP_STEPS,
    ContentionGuard,
    apply_threads,
    choose_threads,
)

CPU = torch.device("cpu")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_threads_are_guarded_on_a_multi_core_cpu(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_threads, "DEFAULT_THREADS", 2)
    torch.set_num_threads(1)  # an earlier run in this process moved to one thread: the default is still 2
    count, reason, guarded = choose_threads(0, CPU)
    assert count == 2 and guarded and "one thread when timed steps say it is faster" in reason
    assert not choose_threads(0, torch.device("cuda"))[2]


def test_an_explicit_count_or_omp_num_threads_is_never_changed(monkeypatch):
    assert choose_threads(3, CPU) == (3, "train.threads=3", False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(0, CPU) == (torch.get_num_threads(), "OMP_NUM_THREADS=2", False)


def _feed(guard: ContentionGuard, seconds_at: dict[int, float], steps: int) -> list[str]:
    """Run ``steps`` steps whose duration depends on the current thread count; the logged lines."""
    lines = []
    for _ in range(steps):
        line = guard.after_step(seconds_at[torch.get_num_threads()])
        if line:
            lines.append(line)
    return lines


def test_an_idle_machine_keeps_all_cores(restore_threads):
    torch.set_num_threads(2)
    guard = ContentionGuard(active=True)
    assert _feed(guard, {2: 0.10, 1: 0.15}, 50) == []
    assert torch.get_num_threads() == 2


def test_a_shared_cpu_runs_on_one_thread_and_is_probed_again(restore_threads):
    torch.set_num_threads(2)
    guard = ContentionGuard(active=True)
    lines = _feed(guard, {2: 0.40, 1: 0.18}, WARMUP_STEPS + 2 * PROBE_STEPS)
    assert torch.get_num_threads() == 1
    assert len(lines) == 1 and lines[0].startswith("threads: 1 (a step took 0.180 s on one thread, 0.400 s on 2")
    # the other work stops: the next decision returns to both cores
    _feed(guard, {2: 0.10, 1: 0.18}, REPROBE_EVERY + 2 * PROBE_STEPS)
    assert torch.get_num_threads() == 2


def test_load_arriving_during_training_is_noticed_at_once(restore_threads):
    torch.set_num_threads(2)
    guard = ContentionGuard(active=True)
    _feed(guard, {2: 0.10, 1: 0.15}, WARMUP_STEPS + 2 * PROBE_STEPS + 5)
    assert torch.get_num_threads() == 2
    lines = _feed(guard, {2: 10 * 0.10, 1: 0.20}, PROBE_STEPS + 2 * PROBE_STEPS)  # far below REPROBE_EVERY
    assert torch.get_num_threads() == 1 and len(lines) == 1


def test_an_inactive_guard_never_switches(restore_threads):
    torch.set_num_threads(2)
    guard = ContentionGuard(active=False)
    assert all(guard.after_step(s) is None for s in [0.1] * 5 + [10.0] * 5)
    assert torch.get_num_threads() == 2


def test_apply_threads_sets_and_logs(monkeypatch, caplog, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    logger = logging.getLogger("egoasl.test_threads")
    with caplog.at_level(logging.INFO, logger="egoasl.test_threads"):
        guard = apply_threads(1, CPU, logger)
    assert torch.get_num_threads() == 1 and not guard.active
    assert "threads: 1 (train.threads=1)" in caplog.text
