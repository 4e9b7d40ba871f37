"""The one exception type that egoasl raises for bad input.

Every message names where the problem is (a file, a JSON path or a config key) and what
was expected, so the command line can print it without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EgoaslError(Exception):
    """A user-facing error: bad input file, bad config, bad command-line value."""


class DataError(EgoaslError):
    """A problem in an input file, located by file and field.

    >>> str(DataError("moments_val.json", "videos[3].clips[0].clip_uid", "a string", got=None))
    'moments_val.json: videos[3].clips[0].clip_uid: expected a string, got None'
    """

    def __init__(self, path: str | Path, field: str, expected: str, got: object = ...):
        self.path = str(path)
        self.field = field
        self.expected = expected
        message = f"{self.path}: {field}: expected {expected}" if field else f"{self.path}: expected {expected}"
        if got is not ...:
            message += f", got {shown(got)}"
        super().__init__(message)


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a message; a value nested too deeply to print says so."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."
