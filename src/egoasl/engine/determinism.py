"""``train.deterministic``: the same run twice gives the same weights, bit for bit, on one device.

Turns on ``torch.use_deterministic_algorithms`` (kernels with a deterministic variant use it;
an operation without one warns instead of failing), cuDNN's deterministic convolutions with
autotuning off, and cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which must
be set before the first cuBLAS call). The cost is speed on GPUs: deterministic scatter/index
kernels and convolution algorithms are slower (often 10-30% per step, more for
scatter-heavy code); on CPU the difference is small. Runs are already seeded without it:
what it removes is the run-to-run noise of non-deterministic GPU kernels.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Deterministic kernels inside the block when ``enabled``; the previous settings after it."""
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]
