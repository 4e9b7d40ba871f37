"""train.threads=0: one thread for small models on the CPU, PyTorch's default otherwise."""

from __future__ import annotations

import torch

from egoasl.engine.cpu_threads import SMALL_MODEL_PARAMS, apply_threads, choose_threads

CPU = torch.device("cpu")


def test_small_models_run_on_one_thread(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    count, reason = choose_threads(0, 440_000, CPU)
    assert count == 1 and "0.44M-parameter model runs on one thread" in reason


def test_large_models_and_gpus_keep_the_default(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(0, SMALL_MODEL_PARAMS, CPU) == (torch.get_num_threads(), "train.threads=0: PyTorch's default")
    assert choose_threads(0, 1000, torch.device("cuda"))[0] == torch.get_num_threads()


def test_an_explicit_count_or_omp_num_threads_wins(monkeypatch):
    assert choose_threads(3, 1000, CPU) == (3, "train.threads=3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads(0, 1000, CPU) == (torch.get_num_threads(), "OMP_NUM_THREADS=2")


def test_apply_threads_sets_torch(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        line = apply_threads(0, torch.nn.Linear(4, 4), CPU)
        assert torch.get_num_threads() == 1 and line.startswith("threads: 1 (")
    finally:
        torch.set_num_threads(before)
