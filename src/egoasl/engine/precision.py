"""Mixed precision: which autocast dtype a run uses on a device, and why.

``train.amp`` is ``none`` (float32), ``bf16``, ``fp16`` (CUDA only, with a GradScaler) or
``auto``. ``auto`` takes bfloat16 only where the hardware computes it natively:

- CUDA: bf16 when the GPU supports it (Ampere and newer), else float32;
- CPU: bf16 when the processor has bfloat16 instructions (x86 ``avx512_bf16`` or ``amx_bf16``,
  Arm ``bf16``), else float32. On a CPU without them PyTorch emulates bf16, and a bf16
  matmul ran 20x slower than float32 (1.4 vs 31.8 GFLOP/s on an AVX2-only AMD EPYC).

Prediction on a CPU of a run trained with ``fp16`` on a GPU falls back to float32, so a run
folder moves from a cluster to a laptop unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from egoasl.engine.weight_recast import recast_weights_in_backward
from egoasl.errors import EgoaslError

_X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The bfloat16 instruction-set flags this CPU reports (empty where it has none or they are unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            wanted = _X86_BF16_FLAGS if platform.machine() in ("x86_64", "AMD64", "i686") else ("bf16",)
            return tuple(f for f in wanted if f in flags)
    return ()


def resolve_amp(amp: str, device: torch.device, training: bool = True) -> tuple[str, str]:
    """The autocast setting (``none`` | ``bf16`` | ``fp16``) for ``amp`` on ``device``, and the reason.

    Raises :class:`EgoaslError` for ``fp16`` training off CUDA (no GradScaler there).
    """
    if amp == "auto":
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return "bf16", f"train.amp=auto: {torch.cuda.get_device_name(device)} computes bf16 natively"
            return "none", f"train.amp=auto: {torch.cuda.get_device_name(device)} has no native bf16; float32"
        if device.type == "cpu":
            flags = cpu_bf16_flags()
            if flags:
                return "bf16", f"train.amp=auto: this CPU has bf16 instructions ({', '.join(flags)})"
            return "none", ("train.amp=auto: this CPU has no bf16 instructions (emulated bf16 is ~10-20x slower); "
                            "float32")
        return "none", f"train.amp=auto: float32 on {device.type}"
    if amp == "fp16" and device.type != "cuda":
        if training:
            raise EgoaslError("config key train.amp: fp16 needs a CUDA device; use bf16 or auto on CPU")
        return "none", f"train.amp=fp16 is a CUDA setting; predicting in float32 on {device.type}"
    if amp not in ("none", "bf16", "fp16"):
        raise EgoaslError(f"config key train.amp: expected one of 'none', 'bf16', 'fp16', 'auto', got {amp!r}")
    return amp, f"train.amp={amp}"


def autocast_context(amp: str, device: torch.device, training: bool = True,
                     recast_weights: bool = False) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of autocast contexts for ``amp`` = none | bf16 | fp16 | auto (see :func:`resolve_amp`).

    ``recast_weights`` (``train.recast_weights``): within the context, the weight copies autocast
    makes are not kept for backward but cast again there (:mod:`egoasl.engine.weight_recast`).
    """
    resolved, _ = resolve_amp(amp, device, training)
    if resolved == "none":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float16
    if not recast_weights:
        return lambda: torch.autocast(device_type=device.type, dtype=dtype)

    @contextlib.contextmanager
    def autocast_recasting() -> Iterator[None]:
        with torch.autocast(device_type=device.type, dtype=dtype), recast_weights_in_backward():
            yield

    return autocast_recasting
