"""Per-step and per-evaluation scalars: ``RUN/metrics.jsonl``, TensorBoard and (optionally) W&B.

``metrics.jsonl`` always gets every record. TensorBoard event files go to ``RUN/tb/`` when
the ``tensorboard`` package is installed (the ``tensorboard`` extra); without it training
goes on and says so once in the log. ``train.wandb: true`` mirrors the same scalars to
Weights & Biases (the ``wandb`` extra; project ``train.wandb_project``, one W&B run per run
folder, resumed with it); asking for it without the package is an error naming the extra.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import torch

from egoasl.config import Config
from egoasl.config_loader import to_dict
from egoasl.errors import EgoaslError
from egoasl.io.atomic import write_text_atomic


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` and mirrors scalars to TensorBoard and W&B."""

    def __init__(self, run_dir: Path, enabled: bool, cfg: Config | None = None, logger: logging.Logger | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        self.wandb_run = None
        if not enabled:
            return
        logger = logger or logging.getLogger("egoasl")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("TensorBoard is not installed (pip install 'egoasl[tensorboard]'): no %s; "
                        "metrics.jsonl holds every scalar", Path(run_dir) / "tb")
        else:
            self.writer = SummaryWriter(str(Path(run_dir) / "tb"))
        if cfg is not None and cfg.train.wandb:
            self.wandb_run = _start_wandb(Path(run_dir), cfg)

    def log(self, record: dict, step: int, prefix: str) -> None:
        """Append ``record`` and send its numeric leaves as ``prefix/key`` scalars at ``step``."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {f"{prefix}/{key}": value for key, value in _flatten(record).items()
                   if isinstance(value, (int, float)) and key not in ("epoch", "step")}
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def histogram(self, name: str, values: torch.Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(name, values.detach().float().cpu(), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _start_wandb(run_dir: Path, cfg: Config):
    """A W&B run for this run folder (its id kept in ``RUN/wandb_id``, so a resume continues it)."""
    try:
        import wandb
    except ImportError:
        raise EgoaslError("config key train.wandb: true needs the wandb package; install the extra: "
                          "pip install 'egoasl[wandb]' (or set train.wandb=false)") from None
    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    write_text_atomic(id_file, run_id + "\n")
    return wandb.init(project=cfg.train.wandb_project, name=cfg.name, id=run_id, resume="allow",
                      dir=str(run_dir), config=to_dict(cfg))


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat
