"""Seconds <-> grid units: the only place where time is converted.

Every feature sequence that reaches a model is a grid of equally spaced cells. Cell ``i``
is centred at clip time ``offset + i * step`` seconds. Public inputs and outputs are
always clip-relative seconds; grid units live only inside datasets and models.

Two grids are used:

* **Resized grid** (MQ): a clip of duration ``D`` seconds resized to ``T`` cells with
  linear interpolation, ``align_corners=False``. Cell ``i`` covers
  ``[i * D / T, (i + 1) * D / T)`` and is centred at ``(i + 0.5) * D / T``, so
  ``step = D / T`` and ``offset = step / 2``. This is ``g = sec * T / D - 0.5`` and
  ``sec = (g + 0.5) * D / T``, the duration-based mapping of the method spec (section 1.5).
* **Native grid** (NLQ): features kept at their extraction rate. The official Ego4D
  features use a 32-frame window every 16 frames at 30 fps, so ``step = 16 / 30`` and
  cell ``j`` of a clip is centred where the feature store says its first cell is
  (``offset``), plus ``j * step``.

Where the rows of a feature *file* lie in time is a :class:`FeatureTiming`: row ``j`` summarises
frames ``[j * stride, j * stride + window)`` of a video at ``fps`` frames per second, so it is
centred at ``(j * stride + window / 2) / fps`` seconds and rows are ``stride / fps`` apart. The
official per-video Ego4D features are ``fps 30, stride 16, window 32``; a per-clip file at
``rate`` vectors per second whose windows tile the clip is ``fps rate, stride 1, window 1``;
ActivityNet-style datasets state their own (THUMOS14 I3D: ``fps 30, stride 4, window 16``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

OFFICIAL_FEATURE_STEP = 16 / 30
"""Seconds between two official Ego4D feature vectors (16 frames at 30 fps)."""


@dataclass(frozen=True)
class TimeGrid:
    """Maps clip seconds to grid units and back for one clip.

    Attributes:
        step: seconds between the centres of two neighbouring cells.
        offset: clip time (seconds) of the centre of cell 0.
        duration: clip duration in seconds; seconds outputs are clamped to ``[0, duration]``.
    """

    step: float
    offset: float
    duration: float

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"TimeGrid.step must be > 0, got {self.step}")
        if not self.duration >= 0:
            raise ValueError(f"TimeGrid.duration must be >= 0, got {self.duration}")

    @classmethod
    def resized(cls, duration: float, num_cells: int) -> "TimeGrid":
        """The grid of a clip of ``duration`` seconds resized to ``num_cells`` cells."""
        if duration <= 0 or num_cells <= 0:
            raise ValueError(f"resized grid needs duration > 0 and num_cells > 0, got {duration}, {num_cells}")
        step = duration / num_cells
        return cls(step=step, offset=0.5 * step, duration=duration)

    def to_grid(self, seconds):
        """Clip seconds (float, array or tensor) -> grid units (same type)."""
        return (seconds - self.offset) / self.step

    def to_seconds(self, grid, clamp: bool = True):
        """Grid units (float, array or tensor) -> clip seconds, clamped to ``[0, duration]``."""
        seconds = grid * self.step + self.offset
        if not clamp:
            return seconds
        if isinstance(seconds, torch.Tensor):
            return seconds.clamp(0.0, self.duration)
        if isinstance(seconds, np.ndarray):
            return np.clip(seconds, 0.0, self.duration)
        return min(max(float(seconds), 0.0), self.duration)


@dataclass(frozen=True)
class FeatureTiming:
    """Where the rows of one feature file lie in time (module docstring).

    Attributes:
        fps: frames per second of the video the features were extracted from.
        stride: frames between the first frames of two consecutive rows.
        window: frames summarised by one row.
    """

    fps: float
    stride: float
    window: float

    def __post_init__(self) -> None:
        if not (self.fps > 0 and self.stride > 0 and self.window > 0):
            raise ValueError(f"FeatureTiming needs fps, stride and window > 0, got {self.fps}, {self.stride}, {self.window}")

    @property
    def step(self) -> float:
        """Seconds between the centres of two consecutive rows."""
        return self.stride / self.fps

    @property
    def first_centre(self) -> float:
        """Seconds from the start of the video to the centre of row 0."""
        return 0.5 * self.window / self.fps

    def grid(self, duration: float) -> TimeGrid:
        """The native grid of the file's rows over a video of ``duration`` seconds."""
        return TimeGrid(step=self.step, offset=self.first_centre, duration=duration)

    def full_windows(self, duration: float) -> int:
        """Rows a sliding-window extractor gives for ``duration`` seconds: ``floor((D fps - window) / stride) + 1``.

        The windows that fit entirely in the video, at least one.
        """
        frames = duration * self.fps
        return max(1, math.floor((frames - self.window) / self.stride + 1e-9) + 1)
