"""Checkpoints: weights in safetensors, training state loaded with ``weights_only=True``.

A checkpoint ``<name>`` in a run's ``checkpoints/`` folder is two files, each written
atomically:

* ``<name>.safetensors``: the model weights (keys ``model.<param>``) and, when EMA is on,
  the EMA weights (keys ``ema.<param>``), plus JSON metadata (epoch, step, metrics).
* ``<name>.state.pt``: optimizer state, epoch/step counters and the best metric so far.
  It holds only tensors and plain containers, and is read with
  ``torch.load(weights_only=True)``: nothing a user downloads is ever unpickled freely.

The two files of one checkpoint share a random id (``state_id`` in the weights' metadata,
``checkpoint_id`` in the state), and a save is ordered so that a crash at any moment leaves
a matching pair: the new state is first written in full to ``<name>.state.pt.pending``, then
the weights replace the old ones, then the pending state replaces the old state. A process
killed between the last two steps leaves new weights, the old state and the complete pending
state; :func:`load_checkpoint` then reads the pending one. A failed write (a full disk)
leaves the previous checkpoint as it was and raises an :class:`EgoaslError` saying so.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from egoasl.errors import DataError, EgoaslError
from egoasl.io.atomic import write_atomic


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    meta: dict = field(default_factory=dict)
    state: dict | None = None  # optimizer state, counters; None when only weights were read

    def inference_weights(self) -> dict[str, torch.Tensor]:
        """The EMA weights when present (what evaluation uses), else the raw weights."""
        return self.ema if self.ema is not None else self.model


def weights_path(ckpt_dir: Path, name: str) -> Path:
    return Path(ckpt_dir) / f"{name}.safetensors"


def state_path(ckpt_dir: Path, name: str) -> Path:
    return Path(ckpt_dir) / f"{name}.state.pt"


def pending_state_path(ckpt_dir: Path, name: str) -> Path:
    return Path(ckpt_dir) / f"{name}.state.pt.pending"


def save_checkpoint(ckpt_dir: Path, name: str, checkpoint: Checkpoint) -> Path:
    """Write ``<name>.safetensors`` (and ``<name>.state.pt`` when ``checkpoint.state``), crash-safely.

    Raises:
        EgoaslError: a write failed (e.g. no space left on the device); the previous checkpoint
            ``<name>`` is intact.
    """
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in checkpoint.model.items()}
    if checkpoint.ema is not None:
        tensors.update({f"ema.{k}": v.detach().contiguous().cpu() for k, v in checkpoint.ema.items()})
    metadata = {"egoasl": json.dumps(checkpoint.meta)}
    path = weights_path(ckpt_dir, name)
    pending = pending_state_path(ckpt_dir, name)
    try:
        _remove_stale_temporaries(Path(ckpt_dir), name)
        if checkpoint.state is not None:
            metadata["state_id"] = secrets.token_hex(8)
            state = {**checkpoint.state, "checkpoint_id": metadata["state_id"]}
            write_atomic(pending, lambda tmp: torch.save(state, tmp))
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        if checkpoint.state is not None:
            os.replace(pending, state_path(ckpt_dir, name))
    except OSError as exc:
        raise EgoaslError(
            f"{path}: could not write checkpoint {name!r} ({exc.strerror or exc}); the previous {name!r} "
            "checkpoint, if any, is intact"
        ) from None
    return path


def _remove_stale_temporaries(ckpt_dir: Path, name: str) -> None:
    """Delete the temporary files of this checkpoint that a killed process left behind (the run lock
    guarantees that no other process is writing them)."""
    for pattern in (f".{name}.safetensors.*.tmp", f".{name}.state.pt.pending.*.tmp"):
        for stale in ckpt_dir.glob(pattern):
            stale.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, with_state: bool = False) -> Checkpoint:
    """Read a checkpoint's weights (a ``.safetensors`` path or a name in a run folder)."""
    path = Path(path)
    if not path.is_file():
        raise EgoaslError(f"{path}: checkpoint not found")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(path, "", "a safetensors checkpoint", got=_first_line(exc)) from None
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")} or None
    try:
        meta = json.loads(metadata.get("egoasl", "{}"))
    except ValueError as exc:
        raise DataError(path, "metadata.egoasl", "a JSON object", got=_first_line(exc)) from None
    if not isinstance(meta, dict):
        raise DataError(path, "metadata.egoasl", "a JSON object", got=type(meta).__name__)
    state = None
    if with_state:
        name = path.name[: -len(".safetensors")]
        state = _matching_state(path.parent, name, metadata.get("state_id"))
    return Checkpoint(model=model, ema=ema, meta=meta, state=state)


def _matching_state(ckpt_dir: Path, name: str, state_id: str | None) -> dict:
    """The training state saved with the weights whose metadata holds ``state_id`` (see the module doc)."""
    spath = state_path(ckpt_dir, name)
    pending = pending_state_path(ckpt_dir, name)
    if state_id is None:  # written before the ids existed
        return load_training_state(spath)
    candidates = [candidate for candidate in (spath, pending) if candidate.is_file()]
    if not candidates:
        return load_training_state(spath)  # raises: not found
    for candidate in candidates:
        state = load_training_state(candidate)
        if state.get("checkpoint_id") == state_id:
            del state["checkpoint_id"]
            return state
    raise EgoaslError(f"{spath}: the training state does not belong to the weights {name}.safetensors next to it "
                      "(the checkpoint was copied from different saves)")


def load_training_state(path: Path) -> dict:
    """Read a ``.state.pt`` file with ``weights_only=True`` (arbitrary pickles are refused)."""
    if not path.is_file():
        raise EgoaslError(f"{path}: training state not found (the checkpoint is incomplete)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError for refused/bad files
        raise DataError(path, "", "a training state holding only tensors and plain containers", got=_first_line(exc)) from None
    if not isinstance(state, dict):
        raise DataError(path, "", "a dict of training state", got=type(state).__name__)
    return state


def _first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (some torch errors have none)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
