"""train.amp: auto picks bf16 only where the hardware computes it; fp16 runs predict on a CPU."""

from __future__ import annotations

import contextlib

import pytest
import torch

from egoasl.engine import precision
from egoasl.engine.precision import autocast_context, resolve_amp
from egoasl.errors import EgoaslError

CPU = torch.device("cpu")


@pytest.mark.parametrize(("flags", "expected"), [(("avx512_bf16",), "bf16"), (("amx_bf16", "avx512_bf16"), "bf16"),
                                                 ((), "none")])
def test_auto_on_the_cpu_follows_its_bf16_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    amp, reason = resolve_amp("auto", CPU)
    assert amp == expected
    assert ("has bf16 instructions" in reason) == bool(flags)
    assert ("no bf16 instructions" in reason) == (not flags)


def test_auto_without_bf16_runs_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())
    assert autocast_context("auto", CPU) is contextlib.nullcontext


def test_auto_with_bf16_autocasts_matmuls_to_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    with autocast_context("auto", CPU)():
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == torch.bfloat16


def test_explicit_settings_are_kept():
    assert resolve_amp("bf16", CPU)[0] == "bf16"
    assert resolve_amp("none", CPU)[0] == "none"


def test_fp16_trains_only_on_cuda_but_predicts_anywhere():
    with pytest.raises(EgoaslError, match="train.amp: fp16 needs a CUDA device"):
        resolve_amp("fp16", CPU, training=True)
    amp, reason = resolve_amp("fp16", CPU, training=False)
    assert amp == "none" and "float32" in reason
    assert autocast_context("fp16", CPU, training=False) is contextlib.nullcontext


def test_the_cpu_flags_are_read_from_this_machine():
    flags = precision.cpu_bf16_flags()
    assert isinstance(flags, tuple) and set(flags) <= {"avx512_bf16", "amx_bf16", "bf16"}
