"""Gradient accumulation: ``train.accum_steps`` micro-batches of ``train.batch_size`` per optimiser step.

One optimiser step over ``k`` accumulated micro-batches computes the same update as one
step over a batch of ``k * batch_size`` (to float rounding: on CPU the weight updates of the
tiny test config differ by < 1e-4 relative; on an H200, whose cuDNN convolutions round to
TF32 by default, by 6e-3), given the same samples in the same order and no random layers in
play (dropout draws differ). What makes it equal:

* the losses are sums over points divided by a loss normaliser, an EMA of the number of
  positive points per batch. Updated per micro-batch, the EMA would move ``k`` times and
  divide every micro-batch by a different value. Instead the model's normaliser holds its
  value during the accumulation, sums the micro-batches' counts, and folds them in once
  as one batch; the accumulated gradients (losses divided by the held value) are then
  multiplied by ``held / new``, which is exactly "divided by the new value";
* a model without such a normaliser has mean losses: the summed gradients are divided by ``k``;
* under DDP the gradients are all-reduced once per optimiser step (``no_sync`` on the
  accumulating micro-batches).

The learning-rate schedule counts optimiser steps. When the trainer drops the last partial
batch (a training set at least one accumulated batch long), the micro-batches of a trailing
partial accumulation are dropped too; otherwise the epoch ends with a shorter accumulation,
normalised the same way.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from egoasl.errors import EgoaslError


class GradientAccumulation:
    """Which micro-batch opens and closes an optimiser step, and the factor its gradients need."""

    def __init__(self, model: nn.Module, steps: int, distributed: bool, drop_last: bool = False):
        if steps < 1:
            raise EgoaslError(f"config key train.accum_steps: expected a positive integer, got {steps}")
        self.steps = steps
        self.distributed = distributed
        self.drop_last = drop_last
        self.normalizers = [m for m in model.modules() if hasattr(m, "begin_accumulation")] if steps > 1 else []
        if len(self.normalizers) > 1:
            raise EgoaslError(f"train.accum_steps: the model has {len(self.normalizers)} loss normalisers; "
                              "gradient accumulation supports one")
        self._count = 0

    def optimizer_steps(self, micro_batches: int) -> int:
        """Optimiser steps in an epoch of ``micro_batches``."""
        return micro_batches // self.steps if self.drop_last else math.ceil(micro_batches / self.steps)

    def usable(self, micro_batches: int) -> int:
        """How many of an epoch's micro-batches are trained on: with ``drop_last`` a trailing
        partial accumulation is dropped, as a partial batch is."""
        return self.optimizer_steps(micro_batches) * self.steps if self.drop_last else micro_batches

    def opens(self, index: int) -> bool:
        """Whether micro-batch ``index`` (0-based in its epoch) starts an optimiser step."""
        opening = index % self.steps == 0
        if opening:
            self._count = 0
            for normalizer in self.normalizers:
                normalizer.begin_accumulation()
        self._count += 1
        return opening

    def closes(self, index: int, micro_batches: int) -> bool:
        """Whether micro-batch ``index`` ends an optimiser step (the k-th, or the epoch's last)."""
        return (index + 1) % self.steps == 0 or index + 1 == micro_batches

    def sync_context(self, module: nn.Module, closing: bool):
        """DDP's ``no_sync`` on micro-batches that do not close a step; a no-op otherwise."""
        if self.distributed and not closing and hasattr(module, "no_sync"):
            return module.no_sync()
        return contextlib.nullcontext()

    def finish(self) -> float:
        """Close the step: the factor its summed gradients and losses are multiplied by (1.0 without accumulation)."""
        if self.steps == 1:
            return 1.0
        if self.normalizers:
            return self.normalizers[0].end_accumulation()
        return 1.0 / self._count

    def step_losses(self, sums: dict[str, float], factor: float) -> dict[str, float]:
        """The step's losses as one batch's: micro-batch sums times ``factor``; the normaliser
        (``loss_norm``, reported by each micro-batch at its held value) is the new value."""
        losses = {key: value * factor for key, value in sums.items() if key != "loss_norm"}
        if "loss_norm" in sums:
            held = sums["loss_norm"] / self._count
            losses["loss_norm"] = held / factor if self.normalizers else held
        return losses

    @staticmethod
    def scale_gradients(model: nn.Module, factor: float) -> None:
        """Multiply every gradient by ``factor`` (in place)."""
        if factor == 1.0:
            return
        with torch.no_grad():
            for param in model.parameters():
                if param.grad is not None:
                    param.grad.mul_(factor)
