"""What the trainer needs from a task (MQ or NLQ): data, model, losses, evaluation.

The training loop in :mod:`egoasl.engine.train` is task-agnostic; a task object supplies
the pieces that differ between Moment Queries and Natural Language Queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass
class EvalResult:
    """Metrics of one evaluation pass (percentages) and what it predicted."""

    metrics: dict[str, Any]
    main: float  # the number that selects the best checkpoint
    submission: dict = field(default_factory=dict)  # the challenge-format predictions
    raw_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # clip -> raw model outputs


class Task(Protocol):
    name: str
    main_metric: str  # e.g. "average_mAP" or "mean_R1"

    def train_dataset(self) -> Dataset: ...

    def collate(self, items: list[dict]) -> dict:
        """Batch dataset items (padded to the model's input length)."""
        ...

    def build_model(self) -> nn.Module: ...

    def training_losses(self, model: nn.Module, batch: dict, device: torch.device, autocast) -> dict[str, torch.Tensor]:
        """Forward a collated batch (under ``autocast``) and return the loss dict (key ``loss``)."""
        ...

    def evaluate(self, model: nn.Module, split: str, device: torch.device, progress: bool) -> EvalResult: ...

    def write_predictions(self, result: EvalResult, out_dir: Path, split: str) -> list[Path]: ...
