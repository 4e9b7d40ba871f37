"""``train.deterministic``: the same run twice gives the same weights, bit for bit, on one device.

Turns on ``torch.use_deterministic_algorithms`` (kernels with a deterministic variant use it;
an operation without one warns instead of failing), cuDNN's deterministic convolutions with
autotuning off, cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which must
be set before the first cuBLAS call), and turns off the cuDNN and memory-efficient
scaled-dot-product attention kernels, whose backward passes are not deterministic (PyTorch
warns so on an H200): masked attention then runs on the math kernel, unmasked on flash. The cost is speed and memory on GPUs: deterministic
scatter/index kernels and convolution algorithms are slower, and masked attention on the
math kernel materialises the attention matrix (expect tens of percent per step at full
size; measure with bench/bench_mq.py); on CPU the difference is small. Runs are already seeded without it:
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
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
                torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled())
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]
        torch.backends.cuda.enable_cudnn_sdp(previous[4])
        torch.backends.cuda.enable_mem_efficient_sdp(previous[5])
