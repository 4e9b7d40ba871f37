"""Dotted ``KEY=VALUE`` overrides from the command line, typed by the config schema.

One grammar for every command that takes a config (``train``, ``demo``, ``predict``,
``ensemble``)::

    train.lr=1e-4                      numbers in scientific notation
    train.ema=off                      yes/no/on/off/true/false where the field is a bool
    data.val_split=on                  a string field keeps the text as given
    data.sources.0.dir=/x              a list item by index ...
    data.sources.slowfast.dir=/x       ... or, in a list of named items, by its ``name``
    model.regression_ranges=[[0, 4]]   lists and mappings as YAML flow values

The key is walked through the schema (a dataclass such as :class:`egoasl.config.Config`):
an unknown key, an index out of range or an unknown item name is an error naming the
key path. A field absent from the tree starts from the schema's default, so
``data.train_splits.0=val`` works without the list being written out. Values are parsed
with YAML 1.2 scalar rules (:func:`parse_yaml`); the result is validated afterwards by
:func:`egoasl.config_loader.build`, which names the key path of a wrong type.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from egoasl.errors import EgoaslError

BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


class ConfigYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader with YAML 1.2 booleans (``true``/``false`` only) and floats
    (``1e-4``, ``2.5E3``, ``.inf``: exponent sign and decimal point optional). Its parser is
    libyaml's where PyYAML has it: faster, and deep nesting is refused at once instead of after
    seconds of scanning."""


ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ConfigYamlLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=ConfigYamlLoader)  # a SafeLoader subclass: plain data only


def apply_overrides(tree: dict, overrides: Iterable[str], schema: type | None = None) -> dict:
    """A new tree: ``tree`` with every ``key.sub=value`` of ``overrides`` applied in order.

    With ``schema`` (the dataclass the tree describes) keys are checked and values typed
    by their field; without it every value is parsed as YAML and keys are not checked.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not key or "" in parts:
            raise EgoaslError(f"override {item!r}: expected KEY=VALUE, e.g. model.num_levels=8")
        tree = _assign(tree, parts, raw, schema, "", item)
    return tree


def _assign(node: Any, parts: list[str], raw: str, tp: Any, path: str, item: str) -> Any:
    """``node`` with the value ``raw`` placed at ``parts`` below it (``tp``: node's type)."""
    if not parts:
        return _parse_value(raw, tp, item)
    head, rest = parts[0], parts[1:]
    here = f"{path}.{head}" if path else head
    if dataclasses.is_dataclass(tp):
        fields = {f.name: f for f in dataclasses.fields(tp)}
        if head not in fields:
            raise EgoaslError(
                f"config key {here}: unknown key; valid keys{' under ' + path if path else ''}: "
                f"{', '.join(sorted(fields))}"
            )
        if node is not None and not isinstance(node, dict):
            raise EgoaslError(f"config key {path}: expected a mapping, got {node!r}")
        new = dict(node or {})
        child = new[head] if head in new else _default_of(fields[head])
        new[head] = _assign(child, rest, raw, get_type_hints(tp)[head], here, item)
        return new
    origin = get_origin(tp)
    if origin in (list, tuple) or (tp is None and isinstance(node, list)):
        if not isinstance(node, (list, tuple)):
            raise EgoaslError(f"config key {here}: {path} is not a list to index; set the whole list, e.g. {path}=[...]")
        index = _list_index(node, head, path)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            item_tp = args[index] if index < len(args) else None
        else:
            item_tp = args[0] if args else None
        new_list = list(node)
        new_list[index] = _assign(node[index], rest, raw, item_tp, here, item)
        return new_list
    if origin is dict or (tp in (None, Any) and (node is None or isinstance(node, dict))):
        if node is not None and not isinstance(node, dict):
            raise EgoaslError(f"config key {path}: expected a mapping, got {node!r}")
        value_tp = get_args(tp)[1] if origin is dict and get_args(tp) else None
        new = dict(node or {})
        new[head] = _assign(new.get(head), rest, raw, value_tp, here, item)
        return new
    if origin in (typing.Union, types.UnionType):
        return _assign(node, parts, raw, None, path, item)
    raise EgoaslError(f"config key {here}: {path} holds a single value, it has no key {head!r}")


def _list_index(items: list | tuple, head: str, path: str) -> int:
    """The position named by ``head``: an index, or the ``name`` of a mapping item."""
    if head.isdigit():
        index = int(head)
        if index >= len(items):
            raise EgoaslError(f"config key {path}.{head}: index out of range; {path} has {len(items)} items")
        return index
    names = [entry.get("name") for entry in items if isinstance(entry, dict)]
    if head in names:
        return names.index(head)
    choices = f"an index 0..{len(items) - 1}" if items else "an index (the list is empty)"
    if any(name is not None for name in names):
        choices += " or an item name: " + ", ".join(str(n) for n in names if n is not None)
    raise EgoaslError(f"config key {path}.{head}: expected {choices}")


def _default_of(field: dataclasses.Field) -> Any:
    """The plain-data default of a dataclass field (None when it has none)."""
    from egoasl.config_loader import to_dict

    if field.default is not dataclasses.MISSING:
        return to_dict(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return to_dict(field.default_factory())
    return None


def _parse_value(raw: str, tp: Any, item: str) -> Any:
    """The override's text as a value for a field of type ``tp`` (None: untyped)."""
    if tp is str or (get_origin(tp) is Literal and all(isinstance(a, str) for a in get_args(tp))):
        return raw
    if tp is bool and raw.lower() in BOOL_WORDS:
        return BOOL_WORDS[raw.lower()]
    if raw == "":
        return ""
    try:
        return parse_yaml(raw)
    except yaml.YAMLError as exc:
        raise EgoaslError(f"override {item!r}: value is not valid YAML: {exc}") from None
    except (RecursionError, ValueError):
        raise EgoaslError(f"override {item!r}: value nested too deeply or a number too long") from None
