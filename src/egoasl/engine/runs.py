"""Opening a finished (or running) run folder for prediction: config, task and weights."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import nn

from egoasl.config import Config, config_from_dict
from egoasl.config_overrides import apply_overrides, parse_yaml
from egoasl.engine.task import Task
from egoasl.engine.tasks import build_task
from egoasl.errors import EgoaslError
from egoasl.io.checkpoint import load_checkpoint, weights_path


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> Config:
    """A run folder's resolved config (``RUN/config.yaml``) with dotted ``KEY=VALUE`` overrides.

    The overrides follow the grammar of ``egoasl train`` (:mod:`egoasl.config_overrides`):
    re-point a moved data folder (``data.root=/elsewhere``), re-tune post-processing
    (``test.nms_sigma=0.5``); an unknown key or a wrong type is the same error as on ``train``.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise EgoaslError(f"{run_dir}: not a run folder (no config.yaml); train one with `egoasl train`")
    try:
        tree = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EgoaslError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise EgoaslError(f"{path}: expected a mapping at the top level, got {type(tree).__name__}")
    return config_from_dict(apply_overrides(tree, overrides or [], Config))


def load_run(run_dir: Path, checkpoint: str = "best", device: torch.device | None = None,
             overrides: list[str] | None = None) -> tuple[Config, Task, nn.Module]:
    """The run's config, task and model with its EMA weights (``best``, else ``last``)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, overrides)
    ckpt_dir = run_dir / "checkpoints"
    path = weights_path(ckpt_dir, checkpoint)
    if not path.is_file() and checkpoint == "best":
        path = weights_path(ckpt_dir, "last")
    if not path.is_file():
        raise EgoaslError(f"{run_dir}: no checkpoint {checkpoint!r} in {ckpt_dir}")
    task = build_task(cfg, run_dir)
    model = task.build_model()
    model.load_state_dict(load_checkpoint(path).inference_weights())
    model.to(device or torch.device("cpu")).eval()
    return cfg, task, model
