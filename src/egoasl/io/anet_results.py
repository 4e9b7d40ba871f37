"""Predictions in the ActivityNet result format, read by the ActivityNet, THUMOS and ActionFormer evaluators.

``{"version": "VERSION 1.3", "results": {video_id: [{"label", "score", "segment": [start, end]}, ...]},
"external_data": {"used": false, "details": ""}}``, seconds from the video start, per video sorted
by descending score. ``egoasl eval mq --predictions`` reads it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from egoasl.io.submission import MAX_PER_CLIP, build_mq_results, write_json_atomic

VERSION = "VERSION 1.3"


def build_anet_results(detections: Mapping[str, Any], max_per_clip: int = MAX_PER_CLIP) -> dict[str, Any]:
    """The result object of ``detections`` (video id -> ``{label, score, segment}`` lists or columns)."""
    results = build_mq_results(detections, max_per_clip, name="results")
    return {"version": VERSION, "results": results, "external_data": {"used": False, "details": ""}}


def write_anet_results(path: str | Path, detections: Mapping[str, Any], max_per_clip: int = MAX_PER_CLIP) -> Path:
    """Write :func:`build_anet_results` atomically to ``path``."""
    return write_json_atomic(path, build_anet_results(detections, max_per_clip))
