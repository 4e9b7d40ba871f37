"""A validating reader of one JSON file: typed field access that names the JSON path of every problem.

:class:`JsonReader` reads a file (UTF-8, with or without a BOM; of a key repeated in the
top-level object the first value is kept, and the repeated keys are returned) and checks fields
one at a time: ``reader.number(clip, "video_start_sec", "videos[3].clips[0]")`` returns a finite
float or raises a :class:`DataError` such as ``moments_val.json: videos[3].clips[0].video_start_sec:
expected a number, got 'abc'``. With ``errors=[]`` a caller catches each :class:`DataError`, hands
it to :meth:`JsonReader.report` (which appends it instead of raising) and skips the bad record, so
that every problem of a file can be listed at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from egoasl.errors import DataError


class HugeInteger(float):
    """A JSON integer too large for a 64-bit float: infinite as a number, shown by its size in messages.

    Every finiteness check refuses it like ``1e400``, and no conversion to float overflows.
    """

    digits = 0

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits (too large for a 64-bit float)"


def _integer(text: str) -> int | float:
    """A JSON integer literal as an int, or a :class:`HugeInteger` when no float can hold it."""
    if len(text) <= 308 or math.isfinite(float(text)):
        return int(text)
    value = HugeInteger(-math.inf if text.startswith("-") else math.inf)
    value.digits = len(text.lstrip("-"))
    return value


def parse_json_file(path: str | Path, object_pairs_hook: Callable[[list[tuple[str, object]]], dict],
                    what: str = "file") -> object:
    """Parse a JSON file (UTF-8, with or without a BOM) whatever it holds, or raise a :class:`DataError`.

    Integers too large for a float become :class:`HugeInteger`; ``NaN`` and ``Infinity`` literals
    are read as floats (the callers' finiteness checks name their place); nesting deeper than
    Python's recursion limit, invalid JSON and non-UTF-8 bytes are refused with the file named.
    ``what`` names the kind of file in the message of an unreadable one ("a readable <what>").
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, "", "a UTF-8 text file", Text(f"an undecodable byte at offset {exc.start}")) from None
    except OSError as exc:
        raise DataError(path, "", f"a readable {what}", Text(exc.strerror or str(exc))) from None
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook, parse_int=_integer)
    except json.JSONDecodeError as exc:
        truncated = "\n" not in exc.doc[exc.pos :].strip() and not exc.doc.rstrip().endswith(("}", "]"))
        hint = "; the file ends early, it may be truncated" if truncated else ""
        raise DataError(path, f"line {exc.lineno}, column {exc.colno}", f"valid JSON ({exc.msg}{hint})") from None
    except RecursionError:
        raise DataError(path, "", "JSON nested at most a few hundred levels deep") from None


class _Missing:
    """The value of a field that is absent (shown as such in error messages)."""

    def __repr__(self) -> str:
        return "nothing (field missing)"


MISSING = _Missing()


class Text(str):
    """A description shown as is after 'got' (not quoted like a value)."""

    def __repr__(self) -> str:
        return str(self)


def describe(value: object) -> Text:
    """What kind of JSON value ``value`` is, for an error message: "an object", "a list", "null", ...."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return Text(kinds.get(type(value), "a number"))


def field_path(where: str, key: str) -> str:
    """The JSON path of ``key`` inside ``where`` (``""`` is the top level)."""
    return f"{where}.{key}" if where else key


class JsonReader:
    """One JSON file being read: its path, where its errors go, and typed field access.

    ``where`` arguments are JSON paths of the parent (``""`` for the top level); ``field``
    arguments are full JSON paths.
    """

    def __init__(self, path: str | Path, errors: list[DataError] | None):
        self.path = str(path)
        self.errors = errors

    def error(self, field: str, expected: str, got: object = ...) -> DataError:
        """A :class:`DataError` of this file at ``field`` (not raised: the caller raises or reports it)."""
        return DataError(self.path, field, expected, got)

    def report(self, err: DataError) -> None:
        """Raise ``err``, or record it when collecting every problem."""
        if self.errors is None:
            raise err
        self.errors.append(err)

    def read_json(self) -> tuple[object, list[str]]:
        """The parsed file and the keys repeated in its top-level object (the first value is kept)."""
        duplicates: list[list[str]] = [[]]

        def first_wins(pairs: list[tuple[str, object]]) -> dict:
            obj = dict(pairs)
            repeated: list[str] = []
            if len(obj) != len(pairs):
                obj = {}
                for key, value in pairs:
                    if key in obj:
                        repeated.append(key)
                    else:
                        obj[key] = value
            duplicates[0] = repeated  # the outermost object is decoded last
            return obj

        data = parse_json_file(self.path, first_wins)
        return data, duplicates[0] if isinstance(data, dict) else []

    def obj(self, value: object, where: str) -> dict:
        """``value``, which must be an object."""
        if not isinstance(value, dict):
            raise self.error(where, "an object", value)
        return value

    def array(self, parent: dict, key: str, where: str) -> list:
        """``parent[key]``, which must be a list."""
        value = parent.get(key, MISSING)
        if not isinstance(value, list):
            raise self.error(field_path(where, key), "a list", value)
        return value

    def string(self, parent: dict, key: str, where: str) -> str:
        """``parent[key]``, which must be a string (maybe empty)."""
        value = parent.get(key, MISSING)
        if not isinstance(value, str):
            raise self.error(field_path(where, key), "a string", value)
        return value

    def text(self, parent: dict, key: str, where: str) -> str:
        """``parent[key]``, which must be a non-empty string."""
        value = parent.get(key, MISSING)
        if not isinstance(value, str) or not value:
            raise self.error(field_path(where, key), "a non-empty string", value)
        return value

    def number_value(self, value: object, field: str) -> float:
        """``value`` as a float; it must be a finite JSON number (not a boolean)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field, "a number", value)
        if not math.isfinite(value):
            raise self.error(field, "a finite number", value)
        return float(value)

    def number(self, parent: dict, key: str, where: str) -> float:
        """``parent[key]`` as a float (see :meth:`number_value`)."""
        return self.number_value(parent.get(key, MISSING), field_path(where, key))
