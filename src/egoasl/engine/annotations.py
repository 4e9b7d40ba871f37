"""Finding and loading a config's annotation files, split by split."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from egoasl.config import Config
from egoasl.data.ego4d import find_annotation_file, load_nlq_annotations
from egoasl.data.mq_formats import load_mq_file
from egoasl.data.records import MQClip, NLQQuery


def data_path(cfg: Config, relative: str) -> Path:
    """A data path from the config: absolute as given, else relative to ``data.root``."""
    path = Path(relative)
    return path if path.is_absolute() else Path(cfg.data.root or ".") / path


@lru_cache(maxsize=16)
def _mq_file(path: Path, format: str):
    return load_mq_file(path, format)


@lru_cache(maxsize=16)
def _nlq_file(path: Path):
    return load_nlq_annotations(path)


def mq_clips(cfg: Config, split: str) -> list[MQClip]:
    """The MQ clips of ``split`` (a split file, or the split's part of a converted or ActivityNet-style file)."""
    path = find_annotation_file(data_path(cfg, cfg.data.annotations), "mq", split).resolve()
    return _mq_file(path, cfg.data.format).split(split)


def mq_file_format(cfg: Config, split: str) -> str:
    """The format of the file holding ``split`` (``official``, ``converted`` or ``anet``)."""
    path = find_annotation_file(data_path(cfg, cfg.data.annotations), "mq", split).resolve()
    return _mq_file(path, cfg.data.format).format


def nlq_queries(cfg: Config, split: str) -> list[NLQQuery]:
    path = find_annotation_file(data_path(cfg, cfg.data.annotations), "nlq", split).resolve()
    return _nlq_file(path).split(split)
