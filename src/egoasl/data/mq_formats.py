"""Which reader an MQ annotation file needs: the Ego4D layouts or the ActivityNet layout.

``data.format`` (``--format`` where a command reads annotations) is ``ego4d``
(:func:`egoasl.data.ego4d.load_mq_annotations`: the official nesting or ASL's converted
per-clip file), ``anet`` (:func:`egoasl.data.anet.load_anet_annotations`) or ``auto``: a file
whose top level holds a ``database`` object is ActivityNet-style, anything else (a folder of
``moments_*.json``, an official or converted file) is Ego4D.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from egoasl.data.anet import FORMAT as ANET
from egoasl.data.anet import is_anet_data, load_anet_annotations
from egoasl.data.ego4d import load_mq_annotations
from egoasl.data.json_reader import JsonReader
from egoasl.data.records import MQAnnotations
from egoasl.errors import DataError, EgoaslError

FORMATS = ("auto", "ego4d", ANET)


def detect_format(path: str | Path) -> str:
    """``anet`` for a file in the ActivityNet layout, else ``ego4d`` (whose reader reports any problem)."""
    path = Path(path)
    if not path.is_file():
        return "ego4d"
    try:
        data, _ = JsonReader(path, None).read_json()
    except DataError:
        return "ego4d"
    return ANET if is_anet_data(data) else "ego4d"


def load_mq_file(
    path: str | Path,
    format: str = "auto",
    taxonomy: Collection[str] | None = None,
    errors: list[DataError] | None = None,
    training_taxonomy: bool = True,
) -> MQAnnotations:
    """Read one MQ annotation file in ``format`` (``auto``, ``ego4d`` or ``anet``).

    An ActivityNet-style file is read with its training subset's labels as the taxonomy
    (unless ``taxonomy`` is given or ``training_taxonomy`` is false, as for scoring): a model
    cannot learn a class it never saw.
    """
    if format not in FORMATS:
        raise EgoaslError(f"unknown annotation format {format!r}: expected one of {', '.join(FORMATS)}")
    if format == "auto":
        format = detect_format(path)
    if format == ANET:
        return load_anet_annotations(path, taxonomy, errors, training_taxonomy=training_taxonomy)
    return load_mq_annotations(path, taxonomy, errors)
