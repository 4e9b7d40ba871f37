"""A run folder across restarts: which config changes a resumed run accepts.

A run resumes from a checkpoint with the optimiser state (``RUN/checkpoints/last``, or the
checkpoint named by ``egoasl train --resume PATH``). Its config is compared with the config
the run started with, key by key:

* **computation keys** (the model, ASL and loss switches, data content and splits,
  optimisation, seed, test-time settings that pick the best epoch): a difference refuses
  the resume and names the differing keys;
* **environment keys** (:data:`ENVIRONMENT_KEYS`: where the data lives, workers, device,
  threads, evaluation cadence, logging): a difference is accepted, logged as "changed since
  the run started" and written to ``RUN/config.yaml``. This is what lets a run continue on
  another node or after its data folder moved.

A key not listed as environment is a computation key, so a new config field is safe by default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egoasl.config import Config, dump_config
from egoasl.config_loader import to_dict
from egoasl.engine.runs import load_run_config
from egoasl.errors import EgoaslError
from egoasl.io.atomic import write_text_atomic
from egoasl.io.checkpoint import state_path, weights_path

ENVIRONMENT_KEYS = (
    "name",
    "data.root",
    "data.annotations",
    "data.features",
    "data.text_features",
    "data.cache_dir",
    "data.num_workers",
    "data.sources.*.dir",
    "train.device",
    "train.threads",
    "train.eval_start_epoch",
    "train.eval_every",
    "train.init_from",
    "train.deterministic",
    "train.wandb",
    "train.wandb_project",
)


@dataclass(frozen=True)
class Change:
    """One config key whose value differs between two configs."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} ({self.old!r} -> {self.new!r})"


@dataclass
class ResumePoint:
    """Where a training call starts: a checkpoint with training state (or none) and what changed."""

    checkpoint: Path | None
    environment_changes: list[Change]


def is_environment_key(key: str) -> bool:
    """Whether dotted ``key`` (list items by index) may differ when a run resumes."""
    parts = key.split(".")
    for pattern in ENVIRONMENT_KEYS:
        expected = pattern.split(".")
        if len(expected) == len(parts) and all(e in ("*", p) for e, p in zip(expected, parts)):
            return True
    return False


def config_changes(old: Config, new: Config) -> list[Change]:
    """Every dotted key whose value differs, in schema order (items of lists of mappings
    are compared one by one when both lists have the same length)."""
    changes: list[Change] = []
    _compare(to_dict(old), to_dict(new), "", changes)
    return changes


def _compare(old: Any, new: Any, path: str, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            _compare(old.get(key), new.get(key), f"{path}.{key}" if path else key, out)
    elif (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
          and all(isinstance(v, dict) for v in old + new)):
        for index, (a, b) in enumerate(zip(old, new)):
            _compare(a, b, f"{path}.{index}", out)
    elif old != new:
        out.append(Change(path, old, new))


def resume_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``--resume PATH`` names: a run folder (its ``checkpoints/last``), a
    ``checkpoints`` folder, or a ``.safetensors``/``.state.pt`` file with training state."""
    path = Path(path)
    if path.is_dir():
        for candidate in (weights_path(path / "checkpoints", "last"), weights_path(path, "last")):
            if candidate.is_file():
                return _with_state(candidate, path)
        raise EgoaslError(f"--resume {path}: no checkpoints/last.safetensors in this folder; "
                          "give a run folder of `egoasl train` or a checkpoint file")
    if path.name.endswith(".state.pt"):
        path = path.with_name(path.name[: -len(".state.pt")] + ".safetensors")
    if not path.name.endswith(".safetensors") or not path.is_file():
        raise EgoaslError(f"--resume {path}: expected a run folder or a checkpoint file <name>.safetensors")
    return _with_state(path, path)


def _with_state(weights: Path, given: Path) -> Path:
    name = weights.name[: -len(".safetensors")]
    if not state_path(weights.parent, name).is_file():
        raise EgoaslError(f"--resume {given}: {weights} has no training state ({name}.state.pt next to it); "
                          "only `last` checkpoints carry the optimiser state a run resumes from")
    return weights


def checkpoint_run_config(checkpoint: Path) -> Path:
    """The ``config.yaml`` of the run folder a checkpoint file sits in."""
    folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return folder / "config.yaml"


def find_resume_checkpoint(run_dir: Path, resume_from: str | Path | None = None) -> Path | None:
    """The checkpoint a training call in ``run_dir`` starts from: ``resume_from``'s when given,
    else the run's own ``checkpoints/last`` when it exists, else None (a fresh start)."""
    if resume_from is not None:
        return resume_checkpoint(resume_from)
    last = weights_path(Path(run_dir) / "checkpoints", "last")
    return last if last.is_file() else None


def prepare_run_folder(run_dir: Path, cfg: Config, resume_from: str | Path | None = None,
                       logger: logging.Logger | None = None) -> ResumePoint:
    """Create ``run_dir`` (or check that a resumed run may continue with ``cfg``) and write
    ``cfg`` to ``RUN/config.yaml``.

    Without ``resume_from`` a run resumes from its own ``checkpoints/last`` when there is
    one. A computation key that differs from the run's config raises; environment keys
    that differ are logged and returned.
    """
    run_dir = Path(run_dir)
    logger = logger or logging.getLogger("egoasl")
    checkpoint = find_resume_checkpoint(run_dir, resume_from)
    changes: list[Change] = []
    if checkpoint is not None:
        reference = checkpoint_run_config(checkpoint)
        if reference.is_file():
            changes = config_changes(load_run_config(reference.parent), cfg)
        computation = [c for c in changes if not is_environment_key(c.key)]
        if computation:
            raise EgoaslError(
                f"{run_dir}: cannot resume from {checkpoint}: it was trained with a different config ({reference}); "
                f"these keys change the computation: {', '.join(str(c) for c in computation)}. Give the run's "
                "values to resume, or train in a new run folder"
            )
        changes = [c for c in changes if is_environment_key(c.key)]
        if changes:
            logger.info("changed since the run started: %s", ", ".join(str(c) for c in changes))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
    return ResumePoint(checkpoint, changes)
