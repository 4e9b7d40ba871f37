"""Frame and feature-vector timing of the official Ego4D features, and the feature sources.

The conventions are those of the official features (section 5 of the format notes); the
package docstring of :mod:`egoasl.data.synthetic` restates them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

FPS = 30
"""Frame rate of the canonical videos; every ``*_frame`` field is ``round(seconds * FPS)``."""
VIDEO_WINDOW_FRAMES = 32
VIDEO_STRIDE_FRAMES = 16
CLIP_RATE = FPS / VIDEO_STRIDE_FRAMES
"""Vectors per second of every source (1.875, the official features' rate)."""


def frame_of(seconds: float) -> int:
    """The frame index of a time in seconds (the value of every ``*_frame`` field)."""
    return int(round(seconds * FPS))


def official_feature_count(num_frames: int) -> int:
    """Number of official per-video feature vectors for a video of ``num_frames`` frames.

    32-frame windows every 16 frames, the last one moved back to end at the last frame
    (PyTorchVideo's ``UniformClipSampler(backpad_last=True)``)::

        N = 1 if F < 32 else floor((F - 32) / 16) + 1 + (1 if (F - 32) % 16 else 0)
    """
    if num_frames < VIDEO_WINDOW_FRAMES:
        return 1
    rest = num_frames - VIDEO_WINDOW_FRAMES
    return rest // VIDEO_STRIDE_FRAMES + 1 + (1 if rest % VIDEO_STRIDE_FRAMES else 0)


def video_feature_times(num_vectors: int) -> np.ndarray:
    """Video seconds of the centres of per-video vectors ``0 .. num_vectors - 1``: ``(16 i + 16) / 30``."""
    return (VIDEO_STRIDE_FRAMES * np.arange(num_vectors) + VIDEO_STRIDE_FRAMES) / FPS


def clip_feature_count(clip_duration: float) -> int:
    """Rows of a per-clip feature file: ``floor(clip_duration * 1.875)`` (VSLNet's ``num_frames``)."""
    return int(math.floor(clip_duration * CLIP_RATE + 1e-9))


def clip_feature_times(num_vectors: int) -> np.ndarray:
    """Clip seconds of the centres of per-clip rows ``0 .. num_vectors - 1``: ``(j + 0.5) / 1.875``."""
    return (np.arange(num_vectors) + 0.5) / CLIP_RATE


@dataclass(frozen=True)
class SourceSpec:
    """One feature source: its folder name under ``features/``, vector size and layout.

    ``layout`` is ``"video"`` (one file per canonical video, keyed by ``video_uid``, vector
    ``i`` centred at ``(16 i + 16) / 30`` s of the video) or ``"clip"`` (one file per clip, keyed
    by ``clip_uid``, row ``j`` centred at ``(j + 0.5) / rate`` s of the clip). ``rate`` is in
    vectors per second.
    """

    name: str
    dim: int
    layout: str
    rate: float = CLIP_RATE

    def to_dict(self) -> dict:
        return asdict(self)


