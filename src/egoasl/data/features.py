"""The feature store: read feature files safely, cut clips out of videos, align sources.

Conventions (the one place they are written down):

* **Files.** A feature file holds one 2-D array of feature vectors, time-major ``[N, D]``.
  ``.pt`` files are read with ``torch.load(weights_only=True)`` and must hold a plain
  tensor; ``.npy`` files are read with ``numpy.load(allow_pickle=False)``. Nothing that
  would need arbitrary unpickling is ever loaded. float16/float64 are converted to float32.
* **Per-video files** (``layout: video``, the official Ego4D features). Vector ``i`` is a
  window of two strides: with ``step = 1 / rate`` (16/30 s for the official 1.875 vectors
  per second) it covers video time ``[i * step, i * step + 2 * step)`` and is centred at
  ``(i + 1) * step`` seconds (``(16 i + 16) / 30`` for the official features). A clip
  ``[video_start_sec, video_end_sec]`` takes exactly the vectors whose centre lies in that
  interval (a negative ``video_start_sec`` simply selects from vector 0), see
  :func:`slice_video_features`. Clip time is video time minus ``video_start_sec``.
* **Per-clip files** (``layout: clip``) cover exactly the clip: row ``j`` is taken to be
  centred at clip time ``(j + 0.5) * step`` (windows tiling the clip from its start).
* **Stated timing** (ActivityNet-style datasets): a source with ``fps``, ``stride`` and
  ``window`` has row ``j`` centred at ``(j * stride + window / 2) / fps`` seconds of its file
  (:class:`~egoasl.data.timegrid.FeatureTiming`), in either layout; :func:`source_timing` gives
  every source's timing. Such a file must hold at least the windows that fit in what it covers
  (the clip's end for ``video``, its duration for ``clip``) less one (:func:`check_rows`).
* **Alignment** (:class:`ClipFeatureLoader`):

  - ``resize: true`` (MQ): every source is resized to ``max_seq_len`` cells by
    :func:`resize_sequence` (``data.resize_mode``: area averaging when down-sampling and linear
    interpolation when up-sampling by default; always linear in the release); each spans the
    whole clip, so the grid is :meth:`TimeGrid.resized` of the clip duration.
  - ``resize: false`` (NLQ): the first source keeps its native rate and defines the grid
    (``step = 1 / rate``, ``offset`` = clip time of its first row's centre); every other
    source is linearly resampled by time onto those cell centres (values beyond its ends
    are held constant). If the first source has more than ``max_seq_len`` rows, the
    aligned features are resized (:func:`resize_sequence`, ``data.resize_mode``) down to
    ``max_seq_len`` cells and the grid becomes ``step' = step * T / max_seq_len``,
    ``offset' = offset + (T / max_seq_len - 1) * step / 2``, which is where resized cell
    centres fall.

All conversions between seconds and grid units go through :class:`TimeGrid`.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from egoasl.config import DataConfig, SourceConfig
from egoasl.data.timegrid import OFFICIAL_FEATURE_STEP, FeatureTiming, TimeGrid
from egoasl.errors import DataError, EgoaslError
from egoasl.io.atomic import write_atomic

FEATURE_SUFFIXES = (".pt", ".npy")
_CACHE_FORMAT = 1
_FLOAT16_MAX = 65504.0


# ----------------------------------------------------------------------------- files


def load_feature_file(path: str | Path, expected_dim: int | None = None) -> torch.Tensor:
    """Read one feature file as a float32 ``[N, D]`` tensor, refusing anything suspicious.

    Args:
        path: a ``.pt`` file holding one plain tensor, or a ``.npy`` file.
        expected_dim: the feature dimension ``D``. When given, a file stored ``[D, N]`` is
            transposed; a file where both axes or neither axis equals it is refused.

    Raises:
        DataError: naming the file, for a missing, unreadable or truncated file, a pickle
            that is not a plain tensor, a non-floating, non-2-D or empty array, NaN/Inf
            values, or a dimension that does not match ``expected_dim``.
    """
    path = Path(path)
    if path.suffix not in FEATURE_SUFFIXES:
        raise DataError(path, "", f"a feature file ending in {' or '.join(FEATURE_SUFFIXES)}")
    if not path.is_file():
        raise DataError(path, "", "an existing feature file; no such file")
    array = _read_pt(path) if path.suffix == ".pt" else _read_npy(path)

    if not array.is_floating_point():
        raise DataError(path, "dtype", "floating-point features (float16/32/64)", got=str(array.dtype))
    if array.dim() != 2:
        raise DataError(path, "shape", "a 2-D [N, D] tensor", got=tuple(array.shape))
    if array.numel() == 0:
        raise DataError(path, "shape", "a non-empty [N, D] tensor", got=tuple(array.shape))

    if expected_dim is not None:
        rows, cols = array.shape
        if rows == expected_dim and cols == expected_dim:
            raise DataError(
                path, "shape", f"one axis of size {expected_dim}; both axes have that size, so the "
                "orientation ([N, D] or [D, N]) is ambiguous", got=tuple(array.shape)
            )
        if cols != expected_dim and rows != expected_dim:
            raise DataError(path, "shape", f"[N, {expected_dim}] (feature dimension {expected_dim})", got=tuple(array.shape))
        if cols != expected_dim:
            array = array.t()

    feats = array.to(torch.float32).contiguous()
    # min and max propagate NaN and hold any +-Inf: both are finite exactly when every value is;
    # one vectorised pass, ~50x faster than an element-wise isfinite over a whole video's features
    if not all(bool(torch.isfinite(v)) for v in torch.aminmax(feats)):
        finite = torch.isfinite(feats)
        n_nan = int(torch.isnan(feats).sum())
        n_inf = int(torch.isinf(feats).sum())
        first_row = int((~finite).any(dim=1).nonzero()[0, 0])
        raise DataError(
            path, "values", f"finite numbers; found {n_nan} NaN and {n_inf} Inf values (as float32), "
            f"first in row {first_row} of the [N, D] array"
        )
    return feats


def _read_pt(path: Path) -> torch.Tensor:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            path, "", "a plain tensor saved with torch.save; the file holds other pickled objects (classes or "
            "functions), which egoasl never loads"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError... for broken files
        raise DataError(path, "", f"a readable torch tensor file; it is unreadable or truncated ({type(exc).__name__}: "
                        f"{str(exc).strip()[:120]})") from None
    if not isinstance(obj, torch.Tensor):
        raise DataError(path, "", "a plain tensor saved with torch.save", got=type(obj).__name__)
    return obj


def _read_npy(path: Path) -> torch.Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (object arrays, short data), EOFError, OSError
        raise DataError(path, "", f"a readable numeric .npy array; it is unreadable, truncated or holds pickled "
                        f"objects ({type(exc).__name__}: {str(exc).strip()[:120]})") from None
    if array.dtype.kind != "f":
        raise DataError(path, "dtype", "floating-point features (float16/32/64)", got=str(array.dtype))
    return torch.from_numpy(np.ascontiguousarray(array))


# ----------------------------------------------------------------------------- timing


def source_timing(source: SourceConfig) -> FeatureTiming:
    """Where the rows of ``source``'s files lie: its stated ``fps``/``stride``/``window``, else its
    ``rate`` with the layout's convention (per-video: windows of two steps; per-clip: of one)."""
    if source.fps > 0:
        return FeatureTiming(source.fps, source.stride, source.window)
    return FeatureTiming(source.rate, 1.0, 2.0 if source.layout == "video" else 1.0)


def check_rows(timing: FeatureTiming, rows: int, covered_sec: float, path: str | Path) -> None:
    """Raise a :class:`DataError` when a file of stated timing is shorter than ``covered_sec`` claims.

    It must hold the windows that fit in ``covered_sec`` seconds less one (one stride of slack
    for rounded durations).
    """
    needed = timing.full_windows(covered_sec) - 1
    if rows < needed:
        raise DataError(
            path, "rows", f"at least {needed} feature vectors for {covered_sec:.2f} s at {timing.fps:g} fps, stride "
            f"{timing.stride:g}, window {timing.window:g} (duration x fps / stride, less the window); the file has "
            f"{rows}, covering {((rows - 1) * timing.stride + timing.window) / timing.fps:.2f} s"
        )


# ----------------------------------------------------------------------------- slicing


def slice_video_features(
    feats: torch.Tensor,
    video_start_sec: float,
    video_end_sec: float,
    step: float = OFFICIAL_FEATURE_STEP,
    source: str | Path = "<video features>",
    offset: float | None = None,
) -> tuple[torch.Tensor, float]:
    """Cut one clip out of a per-video feature tensor.

    Vector ``i`` is centred at video time ``offset + i * step``, by default ``(i + 1) * step``
    (module docstring). The rows
    whose centre lies in ``[video_start_sec, video_end_sec]`` are kept; a negative start
    selects from row 0 and an end past the last vector stops at row ``N - 1``. When no
    centre falls inside a (very short) clip, the single row whose centre is nearest to the
    clip's middle is returned.

    Args:
        feats: ``[N, D]`` features of the whole video.
        video_start_sec, video_end_sec: clip bounds in video seconds.
        step: seconds between two vectors (``1 / rate``; official: 16/30).
        source: the file name used in error messages.
        offset: video time of vector 0's centre (:attr:`FeatureTiming.first_centre`); None: ``step``.

    Returns:
        ``(clip_feats [M, D], first_centre_sec)``, with ``M >= 1`` and ``first_centre_sec``
        the clip time (seconds from ``video_start_sec``) of the first row's centre.

    Raises:
        DataError: if the clip bounds are reversed or the clip starts after the video's
            features end (after ``(N + 1) * step`` seconds).
    """
    if feats.dim() != 2 or feats.shape[0] == 0:
        raise DataError(source, "shape", "a non-empty [N, D] tensor", got=tuple(feats.shape))
    if not video_end_sec > video_start_sec:
        raise DataError(source, "clip bounds", "video_end_sec > video_start_sec",
                        got=(video_start_sec, video_end_sec))
    n = feats.shape[0]
    # Per-video grid: row i centred at video time offset + i * step (official: (i + 1) * step).
    offset = step if offset is None else offset
    video_grid = TimeGrid(step=step, offset=offset, duration=offset + n * step)
    if video_start_sec >= video_grid.duration:
        raise DataError(
            source, "rows", f"features covering the clip [{video_start_sec:.3f}, {video_end_sec:.3f}] s; the "
            f"{n} vectors end at {video_grid.duration:.3f} s"
        )
    eps = 1e-6
    first = max(0, math.ceil(video_grid.to_grid(max(video_start_sec, 0.0)) - eps))
    last = min(n - 1, math.floor(video_grid.to_grid(video_end_sec) + eps))
    if first > last:
        middle = 0.5 * (video_start_sec + video_end_sec)
        first = last = min(n - 1, max(0, round(video_grid.to_grid(middle))))
    first_centre = video_grid.to_seconds(float(first), clamp=False) - video_start_sec
    return feats[first : last + 1], float(first_centre)


def clip_rows(source: SourceConfig, feats: torch.Tensor, start: float, end: float, path: str | Path
              ) -> tuple[torch.Tensor, float]:
    """One source's rows ``[M, D]`` of the clip ``[start, end]`` (video seconds) and the clip time of the first row's centre.

    A per-video file (``layout: video``) is sliced to the clip; a per-clip file is the clip.
    A file of stated timing must not be shorter than what it covers (:func:`check_rows`).
    """
    timing = source_timing(source)
    if source.fps > 0:
        check_rows(timing, feats.shape[0], end if source.layout == "video" else end - start, path)
    if source.layout == "video":
        return slice_video_features(feats, start, end, step=timing.step, source=path, offset=timing.first_centre)
    return feats, timing.first_centre


# ----------------------------------------------------------------------------- alignment


class ClipLike(Protocol):
    """Anything that names a clip: :class:`MQClip` and :class:`NLQQuery` both qualify."""

    clip_uid: str
    video_uid: str
    video_start_sec: float
    video_end_sec: float


@dataclass
class ClipFeatures:
    """Aligned features of one clip.

    Attributes:
        feats: ``(C_total, T)`` float32, sources concatenated along channels in config order.
        grid: where the ``T`` cells lie in clip seconds.
    """

    feats: torch.Tensor
    grid: TimeGrid


class ClipFeatureLoader:
    """Loads every configured source of a clip, checks it and aligns them on one grid.

    Feature folders are ``root / data_cfg.features / (source.dir or source.name)``. With
    ``data_cfg.cache_dir`` set (relative to ``root`` unless absolute), the aligned tensor is
    stored in float16 per clip and settings, and later reads never touch the source files.
    With the cache on, the returned features are always the float16-rounded values, so a
    first read and a cached read give identical tensors.
    """

    def __init__(self, data_cfg: DataConfig, root: str | Path):
        if not data_cfg.sources:
            raise EgoaslError("config key data.sources: at least one feature source is needed")
        if data_cfg.max_seq_len <= 0:
            raise EgoaslError(f"config key data.max_seq_len: expected a positive integer, got {data_cfg.max_seq_len}")
        self.cfg = data_cfg
        self.root = Path(root)
        self.feature_root = self.root / data_cfg.features
        self.cache_dir: Path | None = None
        if data_cfg.cache_dir:
            cache = Path(data_cfg.cache_dir)
            self.cache_dir = cache if cache.is_absolute() else self.root / cache
        self.settings_hash = self._settings_hash()

    @property
    def channels(self) -> int:
        """Total number of channels ``C_total`` of the aligned features."""
        return sum(s.dim for s in self.cfg.sources)

    def source_dir(self, source: SourceConfig) -> Path:
        """The folder holding ``source``'s files."""
        return self.feature_root / (source.dir or source.name)

    def load_clip(self, clip: ClipLike) -> ClipFeatures:
        """Aligned features of an :class:`MQClip` or :class:`NLQQuery`'s clip."""
        return self.load(clip.clip_uid, clip.video_uid, clip.video_start_sec, clip.video_end_sec)

    def load(self, clip_uid: str, video_uid: str, video_start_sec: float, video_end_sec: float) -> ClipFeatures:
        """Aligned ``(C_total, T)`` features and their :class:`TimeGrid` for one clip."""
        duration = float(video_end_sec) - float(video_start_sec)
        if not duration > 0:
            raise EgoaslError(
                f"clip {clip_uid}: video_end_sec ({video_end_sec}) must be greater than video_start_sec ({video_start_sec})"
            )
        cache_path = self._cache_path(clip_uid, video_start_sec, video_end_sec)
        if cache_path is not None:
            cached = self._read_cache(cache_path, duration)
            if cached is not None:
                return cached
        result = self._align(clip_uid, video_uid, float(video_start_sec), float(video_end_sec), duration)
        if cache_path is not None:
            result = self._write_cache(cache_path, result)
        return result

    # -- loading and aligning

    def _load_source(self, source: SourceConfig, clip_uid: str, video_uid: str, start: float, end: float
                     ) -> tuple[torch.Tensor, float]:
        """One source's ``[M, D]`` rows for the clip and the clip time of its first row's centre."""
        stem = source.prefix + (video_uid if source.layout == "video" else clip_uid)
        path = self._find_file(self.source_dir(source), stem, source)
        return clip_rows(source, load_feature_file(path, expected_dim=source.dim), start, end, path)

    @staticmethod
    def _find_file(folder: Path, stem: str, source: SourceConfig) -> Path:
        for suffix in FEATURE_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
        raise DataError(
            folder / f"{stem}.pt", "",
            f"a feature file for source {source.name!r} (layout {source.layout}) named {stem}.pt or {stem}.npy; no such file"
        )

    def _align(self, clip_uid: str, video_uid: str, start: float, end: float, duration: float) -> ClipFeatures:
        loaded = [self._load_source(s, clip_uid, video_uid, start, end) for s in self.cfg.sources]
        return align_sources(loaded, self.cfg, duration)

    # -- cache

    def _settings_hash(self) -> str:
        settings = {
            "format": _CACHE_FORMAT,
            "features": str(self.cfg.features),
            "sources": [[s.name, s.dir or s.name, s.layout, float(s.rate), int(s.dim)]
                        + ([float(s.fps), float(s.stride), float(s.window)] if s.fps > 0 else [])
                        + ([s.prefix] if s.prefix else [])
                        for s in self.cfg.sources],
            "max_seq_len": int(self.cfg.max_seq_len),
            "resize": bool(self.cfg.resize),
            **({"resize_mode": self.cfg.resize_mode} if self.cfg.resize_mode != "linear" else {}),
        }
        return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def _cache_path(self, clip_uid: str, start: float, end: float) -> Path | None:
        if self.cache_dir is None:
            return None
        bounds = hashlib.sha1(f"{float(start)!r},{float(end)!r}".encode()).hexdigest()[:8]
        return self.cache_dir / f"{clip_uid}.{self.settings_hash}.{bounds}.pt"

    def _read_cache(self, path: Path, duration: float) -> ClipFeatures | None:
        """The cached entry, or None when absent or unusable (it is then rebuilt)."""
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            feats = entry["feats"]
            grid = TimeGrid(step=float(entry["step"]), offset=float(entry["offset"]), duration=duration)
        except Exception:  # a damaged or foreign cache entry is rebuilt from the sources
            return None
        if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[0] != self.channels:
            return None
        return ClipFeatures(feats.to(torch.float32), grid)

    def _write_cache(self, path: Path, result: ClipFeatures) -> ClipFeatures:
        if result.feats.abs().max() > _FLOAT16_MAX:
            raise DataError(
                path, "", f"feature values within the float16 range (|x| <= {_FLOAT16_MAX:g}) to cache them; "
                "unset data.cache_dir for these features"
            )
        half = result.feats.to(torch.float16).contiguous()
        entry = {"feats": half, "step": float(result.grid.step), "offset": float(result.grid.offset)}
        write_atomic(path, lambda tmp: torch.save(entry, tmp))
        return ClipFeatures(half.to(torch.float32), result.grid)


def align_sources(loaded: list[tuple[torch.Tensor, float]], data_cfg: DataConfig, duration: float) -> ClipFeatures:
    """Align each source's clip rows ``[M_i, D_i]`` (with the clip time of its first row's centre) on one grid.

    ``data_cfg.resize``: every source is resized to ``max_seq_len`` cells spanning the clip.
    Otherwise the first source's native grid is kept, the others are resampled onto it by
    time, and a sequence longer than ``max_seq_len`` is resized down to it.
    """
    max_len = data_cfg.max_seq_len
    if data_cfg.resize:
        parts = [resize_sequence(rows.t(), max_len, data_cfg.resize_mode) for rows, _ in loaded]
        return ClipFeatures(torch.cat(parts, dim=0).contiguous(), TimeGrid.resized(duration, max_len))

    first_rows, first_offset = loaded[0]
    grid = TimeGrid(step=source_timing(data_cfg.sources[0]).step, offset=first_offset, duration=duration)
    num_cells = first_rows.shape[0]
    centres_sec = grid.to_seconds(torch.arange(num_cells, dtype=torch.float64), clamp=False)
    parts = [first_rows.t()]
    for source, (rows, offset) in zip(data_cfg.sources[1:], loaded[1:]):
        source_grid = TimeGrid(step=source_timing(source).step, offset=offset, duration=duration)
        parts.append(_resample(rows, source_grid.to_grid(centres_sec)))
    feats = torch.cat(parts, dim=0)
    if num_cells > max_len:
        feats = resize_sequence(feats, max_len, data_cfg.resize_mode)
        scale = num_cells / max_len
        grid = TimeGrid(step=grid.step * scale, offset=grid.offset + 0.5 * (scale - 1.0) * grid.step, duration=duration)
    return ClipFeatures(feats.contiguous(), grid)


RESIZE_MODE_MEANING = {
    "auto": "area averaging where a clip has more vectors than cells, linear interpolation where it has fewer",
    "area": "each cell averages the vectors it spans",
    "linear": "linear interpolation, two vectors per cell (the release)",
}
"""What each ``data.resize_mode`` does, in words (the trainer logs it)."""


def resize_sequence(feats: torch.Tensor, num_cells: int, mode: str = "auto") -> torch.Tensor:
    """``(C, T)`` -> ``(C, num_cells)``, cell ``i`` centred at input row ``(i + 0.5) * T / num_cells - 0.5``.

    ``mode`` (``data.resize_mode``):

    - ``linear``: linear interpolation with ``align_corners=False`` (the release). Each output
      cell reads its two nearest rows only: down-sampling silently drops the other rows.
    - ``area``: each cell is the mean of the input over its span ``[i, i + 1) * T / num_cells``
      (rows weighted by how much of them the span covers; row ``j`` spans ``[j, j + 1)``),
      so every row counts and the mean of the sequence is kept.
    - ``auto``: ``area`` when down-sampling (``num_cells < T``), ``linear`` when up-sampling.
    """
    length = feats.shape[1]
    if length == num_cells:
        return feats
    if mode == "auto":
        mode = "area" if num_cells < length else "linear"
    if mode == "linear":
        return F.interpolate(feats[None], size=num_cells, mode="linear", align_corners=False)[0]
    if mode != "area":
        raise EgoaslError(f"config key data.resize_mode: expected 'linear', 'area' or 'auto', got {mode!r}")
    # the integral of the piecewise-constant input at each cell edge, then differences
    x = feats.to(torch.float64)
    cumulative = F.pad(torch.cumsum(x, dim=1), (1, 0))  # (C, T + 1): integral up to row edge j
    edges = torch.arange(num_cells + 1, dtype=torch.float64) * (length / num_cells)
    whole = edges.floor().long().clamp(max=length)
    frac = edges - whole.to(torch.float64)
    integral = cumulative[:, whole] + frac * x[:, whole.clamp(max=length - 1)]
    return ((integral[:, 1:] - integral[:, :-1]) * (num_cells / length)).to(feats.dtype)


def _resample(rows: torch.Tensor, positions: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Linear interpolation of ``rows [M, D]`` at fractional row ``positions`` -> ``(D, len(positions))``.

    Positions outside ``[0, M - 1]`` take the value of the nearest end row.
    """
    pos = torch.as_tensor(positions, dtype=torch.float64).clamp(0.0, rows.shape[0] - 1)
    lower = pos.floor().long()
    upper = (lower + 1).clamp(max=rows.shape[0] - 1)
    weight = (pos - lower.to(torch.float64)).to(rows.dtype)[:, None]
    values = rows[lower] * (1.0 - weight) + rows[upper] * weight
    return values.t()
