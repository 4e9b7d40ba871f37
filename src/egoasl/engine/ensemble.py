"""Ensembling on saved raw outputs (``specs/asl_method.md`` section 6.4).

A member's *raw output* for one clip is a dict:

* ``cls_logits``: per level, ``(T_l, K)`` pre-sigmoid class logits;
* ``offsets``: per level, ``(T_l, 2)`` left/right distances in units of the level stride;
* ``masks``: per level, ``(T_l,)`` bool;
* ``points``: ``(sum T_l, 4)`` rows ``[t, reg_lo, reg_hi, stride]``;
* optionally ``meta``: a JSON-serialisable dict about the clip (e.g. its time grid).

The ensemble averages logits and offsets elementwise over members, per level, and decodes
the mean once. Members never need each other's configs: each one is run with its own config
and its raw outputs are saved; :func:`mean_raw_outputs` only needs matching shapes.

File format (:func:`save_raw_outputs`): one safetensors file per split, keys
``<clip_uid>/cls/<level>``, ``<clip_uid>/off/<level>``, ``<clip_uid>/mask/<level>`` and
``<clip_uid>/points``, plus a JSON document in the safetensors metadata under ``"egoasl"``:
``{"format": "egoasl-raw-outputs", "version": 1, "clips": {clip_uid: {"levels": L, "meta": {...}}},
"metadata": {...}}`` (``meta`` only for clips that have one).
Writes are atomic (temporary file in the same folder, then ``os.replace``); reading never
unpickles anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from egoasl.errors import DataError, EgoaslError
from egoasl.io.atomic import write_atomic

FORMAT = "egoasl-raw-outputs"
VERSION = 1
_META_KEY = "egoasl"
_LEVEL_KEYS = (("cls_logits", "cls"), ("offsets", "off"), ("masks", "mask"))


def mean_raw_outputs(members: list[Mapping], names: list[str] | None = None) -> dict:
    """Average several members' raw outputs of one clip.

    Pre-sigmoid logits and offsets are averaged elementwise per level (in float32).
    ``masks``, ``points`` and ``meta`` are taken from the first member, after checking that
    every member has the same masks and the same point times and strides (regression ranges
    may differ between members' configs; decoding does not use them).

    Args:
        members: raw-output dicts (see the module docstring), one per model.
        names: optional member names for error messages (e.g. checkpoint paths).

    Raises:
        EgoaslError: naming the member and level whose shapes differ from the first member's.
    """
    if not members:
        raise EgoaslError("mean_raw_outputs: expected at least one member")
    if names is not None and len(names) != len(members):
        raise EgoaslError(f"mean_raw_outputs: {len(names)} names for {len(members)} members")
    label = [f"member {i}" if names is None else f"member {names[i]!r}" for i in range(len(members))]
    first = members[0]
    out: dict = {}
    for key in ("cls_logits", "offsets"):
        levels = len(first[key])
        for m, member in enumerate(members):
            if len(member[key]) != levels:
                raise EgoaslError(f"ensemble {label[m]}: {key} has {len(member[key])} levels, {label[0]} has {levels}")
            for lvl in range(levels):
                got, want = tuple(member[key][lvl].shape), tuple(first[key][lvl].shape)
                if got != want:
                    raise EgoaslError(f"ensemble {label[m]}: {key} level {lvl} has shape {got}, {label[0]} has {want}")
        out[key] = [torch.stack([m[key][lvl].detach().float() for m in members]).mean(dim=0) for lvl in range(levels)]
    if "masks" in first:
        for m, member in enumerate(members):
            for lvl, mask in enumerate(first["masks"]):
                if lvl >= len(member["masks"]) or not torch.equal(member["masks"][lvl], mask):
                    raise EgoaslError(f"ensemble {label[m]}: masks level {lvl} differ from {label[0]}'s")
        out["masks"] = list(first["masks"])
    if "points" in first:
        for m, member in enumerate(members):
            p, q = member["points"], first["points"]
            if p.shape != q.shape or not torch.equal(p[:, [0, 3]], q[:, [0, 3]]):
                raise EgoaslError(f"ensemble {label[m]}: points (times and strides) differ from {label[0]}'s")
        out["points"] = first["points"]
    if "meta" in first:
        out["meta"] = first["meta"]
    return out


def save_raw_outputs(path: str | Path, outputs: Mapping[str, Mapping], metadata: Mapping | None = None) -> None:
    """Write ``clip_uid -> raw output`` for one split to a safetensors file, atomically.

    Args:
        path: destination file (replaced if it exists).
        outputs: raw-output dicts by clip uid; each needs cls_logits, offsets, masks, points.
        metadata: optional JSON-serialisable information (members, split, configs).
    """
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    clips: dict[str, dict] = {}
    for uid, raw in outputs.items():
        if not uid or "/" in uid:
            raise EgoaslError(f"save_raw_outputs: clip uid {uid!r} must be non-empty and contain no '/'")
        missing = [k for k in ("cls_logits", "offsets", "masks", "points") if k not in raw]
        if missing:
            raise EgoaslError(f"save_raw_outputs: clip {uid}: missing {', '.join(missing)}")
        levels = len(raw["cls_logits"])
        for key, short in _LEVEL_KEYS:
            if len(raw[key]) != levels:
                raise EgoaslError(f"save_raw_outputs: clip {uid}: {key} has {len(raw[key])} levels, cls_logits has {levels}")
            for lvl, tensor in enumerate(raw[key]):
                tensors[f"{uid}/{short}/{lvl}"] = _own(tensor)
        tensors[f"{uid}/points"] = _own(raw["points"])
        clips[uid] = {"levels": levels, **({"meta": dict(raw["meta"])} if "meta" in raw else {})}
    header = {"format": FORMAT, "version": VERSION, "clips": clips, "metadata": dict(metadata or {})}
    text = json.dumps(header)
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={_META_KEY: text}))


def raw_output_of(out, index: int) -> dict:
    """Batch item ``index`` of a model output (:class:`DetectorOutput` or its NLQ subclass) as a
    raw-output dict on the CPU: per-level float32 ``cls_logits``/``offsets``, ``masks``, ``points``."""
    return {
        "cls_logits": [x[index].float().cpu() for x in out.cls_logits],
        "offsets": [x[index].float().cpu() for x in out.offsets],
        "masks": [x[index].cpu() for x in out.masks],
        "points": out.points.cpu(),
    }


def _own(tensor: Tensor) -> Tensor:
    """A contiguous CPU copy that shares no storage (safetensors refuses shared storage)."""
    return tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)


def _read_header(path: Path, handle) -> dict:
    meta = handle.metadata() or {}
    if _META_KEY not in meta:
        raise DataError(path, "", f"a raw-outputs file written by egoasl (safetensors metadata key {_META_KEY!r})")
    try:
        header = json.loads(meta[_META_KEY])
    except json.JSONDecodeError as err:
        raise DataError(path, f"metadata.{_META_KEY}", "valid JSON", got=str(err)) from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise DataError(path, f"metadata.{_META_KEY}", f"format {FORMAT!r} version {VERSION}",
                        got=(header.get("format"), header.get("version")))
    if not isinstance(header.get("clips"), dict):
        raise DataError(path, f"metadata.{_META_KEY}.clips", "an object clip_uid -> {levels, meta}", got=header.get("clips"))
    return header


def _open(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "", "an existing raw-outputs safetensors file")
    try:
        return path, safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError) as err:
        raise DataError(path, "", "a readable safetensors file", got=str(err)) from None


def load_raw_outputs(path: str | Path) -> dict[str, dict]:
    """Read a file written by :func:`save_raw_outputs`: ``clip_uid -> raw output`` (file order)."""
    path, handle = _open(path)
    with handle as f:
        header = _read_header(path, f)
        keys = set(f.keys())

        def get(key: str) -> Tensor:
            if key not in keys:
                raise DataError(path, key, "a tensor listed by the metadata")
            return f.get_tensor(key)

        outputs = {}
        for uid, entry in header["clips"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("levels"), int):
                raise DataError(path, f"metadata.{_META_KEY}.clips.{uid}", 'an object {"levels": int, ...}', got=entry)
            raw = {name: [get(f"{uid}/{short}/{lvl}") for lvl in range(entry["levels"])] for name, short in _LEVEL_KEYS}
            raw["points"] = get(f"{uid}/points")
            if "meta" in entry:
                raw["meta"] = entry["meta"]
            outputs[uid] = raw
    return outputs


def load_raw_metadata(path: str | Path) -> dict:
    """The ``metadata`` given to :func:`save_raw_outputs` (without loading any tensor)."""
    path, handle = _open(path)
    with handle as f:
        return _read_header(path, f)["metadata"]
