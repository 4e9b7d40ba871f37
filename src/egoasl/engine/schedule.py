"""Learning-rate schedule: linear warm-up, then cosine decay, stepped every iteration."""

from __future__ import annotations

import math


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
