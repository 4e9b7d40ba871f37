"""Picks the task object for a config (``data.task``: mq or nlq)."""

from __future__ import annotations

from pathlib import Path

from egoasl.config import Config
from egoasl.engine.task import Task


def build_task(cfg: Config, run_dir: Path | None = None) -> Task:
    if cfg.data.task == "mq":
        from egoasl.engine.mq_task import MQTask

        return MQTask(cfg, run_dir)
    from egoasl.engine.nlq_task import NLQTask

    return NLQTask(cfg, run_dir)
