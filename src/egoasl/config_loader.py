"""Typed configs from YAML: inheritance, dotted command-line overrides, strict validation.

A YAML file may name a ``base`` (a path relative to itself, or a built-in preset such as
``mq/egovlp``); the file's keys are deep-merged over the base (lists are replaced, not
merged). Overrides such as ``model.num_levels=8`` (``egoasl.config_overrides``) are merged
last. The merged mapping is then checked against the dataclass schema: unknown keys and
values of the wrong type are rejected with the full key path in the message.

Config files and override values are read with YAML 1.2 scalar rules, not PyYAML's YAML 1.1
ones: ``1e-4`` is a number (YAML 1.1 wants ``1.0e-4``), and only ``true``/``false`` are
booleans in general. The YAML 1.1 words ``yes``/``no``/``on``/``off`` are accepted as
booleans only where the schema field is a bool; a string field keeps ``on`` as the string.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from egoasl.config_overrides import BOOL_WORDS, parse_yaml
from egoasl.errors import EgoaslError, shown

PRESET_DIR = Path(__file__).parent / "configs"


def resolve_config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A config file path, or a built-in preset name (``mq/egovlp``, ``demo/mq``)."""
    candidates = []
    path = Path(name)
    if relative_to is not None and not path.is_absolute():
        candidates.append(relative_to / path)
    candidates.append(path)
    preset = str(name)
    preset = preset if preset.endswith((".yaml", ".yml")) else preset + ".yaml"
    candidates.append(PRESET_DIR / preset)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    presets = sorted(str(p.relative_to(PRESET_DIR).with_suffix("")) for p in PRESET_DIR.rglob("*.yaml"))
    raise EgoaslError(f"config {str(name)!r} is neither a file nor a built-in preset; presets: {', '.join(presets)}")


def load_yaml_tree(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML config and everything it inherits, merged into one mapping."""
    path = path.resolve()
    if path in _seen:
        raise EgoaslError(f"{path}: config inheritance loops back to itself")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        raise EgoaslError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise EgoaslError(f"{path}: expected a UTF-8 text file, got an undecodable byte at offset {exc.start}") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise EgoaslError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise EgoaslError(f"{path}: expected YAML nested at most a few hundred levels deep") from None
    except OSError as exc:
        raise EgoaslError(f"{path}: expected a readable config file, got {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise EgoaslError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise EgoaslError(f"{path}: config key base: expected a config file or preset name, got {shown(base)}")
    try:
        base_path = resolve_config_path(base, relative_to=path.parent)
    except EgoaslError as exc:
        raise EgoaslError(f"{path}: config key base: {exc}") from None
    parent = load_yaml_tree(base_path, _seen + (path,))
    return deep_merge(parent, data)


def deep_merge(base: dict, update: dict) -> dict:
    """A new dict: ``update`` over ``base``, recursing into nested mappings only."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build(schema: type, data: Any, path: str = "") -> Any:
    """Instantiate dataclass ``schema`` from plain data, checking every key and type."""
    return _convert(schema, data, path)


def to_dict(obj: Any) -> Any:
    """A dataclass config as plain YAML-serialisable data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _describe(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _convert(tp: Any, value: Any, path: str) -> Any:
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            where = f"config key {path}" if path else "config"
            raise EgoaslError(f"{where}: expected a mapping, got {shown(value)}")
        hints = get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise EgoaslError(
                f"config key {_join(path, unknown[0])}: unknown key; valid keys"
                f"{' under ' + path if path else ''}: {', '.join(sorted(names))}"
            )
        kwargs = {name: _convert(hints[name], item, _join(path, name)) for name, item in value.items()}
        try:
            obj = tp(**kwargs)
        except TypeError as exc:
            raise EgoaslError(f"config key {path}: {exc}") from None
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate(path or "config")
        return obj
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return _convert(option, value, path)
            except EgoaslError as exc:
                errors.append(exc)
        raise EgoaslError(f"config key {path}: expected {_describe(tp)}, got {shown(value)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise EgoaslError(f"config key {path}: expected {_describe(tp)}, got {shown(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise EgoaslError(f"config key {path}: expected a list, got {shown(value)}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise EgoaslError(f"config key {path}: expected a list of {len(args)} items, got {shown(value)}")
            return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item_type = args[0] if args else Any
        items = [_convert(item_type, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise EgoaslError(f"config key {path}: expected a mapping, got {shown(value)}")
        _, value_type = get_args(tp) or (Any, Any)
        return {k: _convert(value_type, v, _join(path, k)) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is type(None):
        if value is not None:
            raise EgoaslError(f"config key {path}: expected null, got {shown(value)}")
        return None
    if tp is bool:
        if isinstance(value, str) and value.lower() in BOOL_WORDS:
            return BOOL_WORDS[value.lower()]
        if not isinstance(value, bool):
            raise EgoaslError(f"config key {path}: expected true or false, got {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EgoaslError(f"config key {path}: expected an integer, got {shown(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EgoaslError(f"config key {path}: expected a number, got {shown(value)}")
        try:
            return float(value)
        except OverflowError:
            raise EgoaslError(f"config key {path}: expected a number a 64-bit float can hold (at most about "
                              f"1.8e308), got an integer of {value.bit_length()} bits") from None
    if tp is str:
        if not isinstance(value, str):
            raise EgoaslError(f"config key {path}: expected a string, got {shown(value)}")
        return value
    raise EgoaslError(f"config key {path}: unsupported type {tp}")
