"""Pieces every benchmark shares: the machine's CPU model and the trainer's step order.

Benchmarks run as scripts (``python bench/<name>.py``), so this folder is on ``sys.path``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo, or what ``platform`` knows when that is not readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def training_step(model, optimizer, ema, losses: Callable[[], dict], clip_grad_norm: float,
                  scaler=None) -> Callable[[], float]:
    """One optimisation step in the trainer's order; returns the loss.

    Gradients are freed before the forward (as ``egoasl.engine.train`` does, so they never
    coexist with the activations), then ``losses()`` (forward + loss dict), backward,
    clipping, the optimizer step and the EMA update. With a ``torch.amp.GradScaler``
    (fp16 on CUDA) the loss is scaled and the gradients unscaled before clipping, as the
    trainer does. Reading the loss back synchronises a GPU, so the returned step is complete.
    """
    import torch

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        values = losses()
        if scaler is not None:
            scaler.scale(values["loss"]).backward()
            scaler.unscale_(optimizer)
        else:
            values["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        ema.update(model)
        return float(values["loss"].detach())

    return step


def random_mq_batch(cfg, device) -> tuple:
    """A full-size-shaped random MQ batch: ``feats (B, channels, T)``, all-valid ``masks (B, T)``,
    and per clip 10 ground-truth ``segments`` (grid cells, lengths up to e^5.5) and ``labels``.

    ``B`` is ``cfg.train.batch_size`` and ``T`` is ``cfg.data.max_seq_len``; seeded, so every
    benchmark of the detector trains on the same batch.
    """
    import torch

    channels = sum(s.dim for s in cfg.data.sources)
    T, B = cfg.data.max_seq_len, cfg.train.batch_size
    feats = torch.randn(B, channels, T, generator=torch.Generator().manual_seed(0)).to(device)
    masks = torch.ones(B, T, dtype=torch.bool, device=device)
    gen = torch.Generator().manual_seed(1)
    segments, labels = [], []
    for _ in range(B):
        start = torch.rand(10, generator=gen) * (T - 64)
        length = torch.exp(torch.rand(10, generator=gen) * 5.5)
        segments.append(torch.stack([start, (start + length).clamp(max=T - 1)], 1).to(device))
        labels.append(torch.randint(0, cfg.model.num_classes, (10,), generator=gen).to(device))
    return feats, masks, segments, labels


def append_section(results: Path, section: str) -> None:
    """Append a dated markdown ``section`` to a results file (``bench/RESULTS.md``) and print it."""
    with open(results, "a", encoding="utf-8") as f:
        f.write(section)
    print(section)
