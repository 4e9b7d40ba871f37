"""How many CPU threads a run's PyTorch operations use (``train.threads``).

``train.threads: N > 0`` uses N threads. ``0`` (the default) decides by the model's size:

- a model under :data:`SMALL_MODEL_PARAMS` parameters trains on **one** thread. Its operations
  are too small to gain much from a second thread on an idle machine, and on a busy one every
  parallel region waits for the thread that got the least CPU time: on 2 cores with four other
  busy processes the demo MQ step took 8.7-11.5 s on 2 threads against 0.5-0.9 s on one
  (``bench/RESULTS.md``), a collapse instead of a proportional slowdown;
- a larger model keeps PyTorch's default (one thread per core), where each operation is large
  enough to use them;
- ``OMP_NUM_THREADS`` set in the environment is respected as the user's choice.
"""

from __future__ import annotations

import os

import torch

SMALL_MODEL_PARAMS = 5_000_000


def choose_threads(requested: int, num_params: int, device: torch.device) -> tuple[int, str]:
    """The intra-op thread count for a run, and the reason (printed by the trainer)."""
    if requested > 0:
        return requested, f"train.threads={requested}"
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads(), f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    if device.type == "cpu" and num_params < SMALL_MODEL_PARAMS:
        return 1, (f"train.threads=0: a {num_params / 1e6:.2f}M-parameter model runs on one thread, which "
                   "keeps a busy machine from stalling it")
    return torch.get_num_threads(), "train.threads=0: PyTorch's default"


def apply_threads(requested: int, model: torch.nn.Module, device: torch.device) -> str:
    """Set the thread count :func:`choose_threads` picks for ``model``; returns a line for the log."""
    count, reason = choose_threads(requested, sum(p.numel() for p in model.parameters()), device)
    torch.set_num_threads(count)
    return f"threads: {count} ({reason})"
