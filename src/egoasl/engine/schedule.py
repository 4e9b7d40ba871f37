"""Learning-rate schedule: linear warm-up, then cosine decay, stepped every iteration."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, eta_min: float) -> float:
    """The learning rate for 0-based iteration ``step``.

    Warm-up rises linearly from 0 to ``base_lr`` over ``warmup_steps`` (the first step
    already gets ``base_lr / warmup_steps``); then a half cosine takes it from ``base_lr``
    to ``eta_min`` at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return eta_min + 0.5 * (base_lr - eta_min) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group ``lr`` times its ``lr_mult`` (1 where a group has none).

    The trainer calls it before every step with :func:`lr_at`, so a group's multiplier (the
    class Gaussians' ``asl.gauss_lr_mult``, see :mod:`egoasl.model.param_groups`) holds
    through warm-up and cosine decay alike.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
