"""MQ and NLQ datasets: aligned clip features, ground truth in grid units, and batching.

Every item is a dict::

    feats     FloatTensor (C, T)    aligned features (see egoasl.data.features)
    segments  FloatTensor (N, 2)    ground truth [start, end] in grid units
    labels    LongTensor  (N,)      taxonomy ids (MQ) or zeros (NLQ)
    meta      dict                  clip_uid, duration, grid_step, grid_offset, crop_start, ...
    text      FloatTensor (L, D)    NLQ only: token features of the query

Grid units come from the clip's :class:`TimeGrid` (``meta``'s ``grid_step`` and
``grid_offset`` rebuild it: ``TimeGrid(grid_step, grid_offset, duration)``); seconds are
always ``grid.to_seconds(segments)``, also after a training crop, which shifts the grid
offset with the features.

Ground truth handling:

* The **clip extent** in grid units is ``[grid.to_grid(0), grid.to_grid(duration)]``
  (``[-0.5, T - 0.5]`` on a resized grid): cell ``i`` is centred at ``i`` and covers
  ``[i - 0.5, i + 0.5]``. Segments are clamped to this extent, i.e. to ``[0, duration]``
  seconds, so that clamping never moves a boundary that lies inside the clip.
* **Evaluation**: every ground truth is kept and clamped; no deduplication, no crop.
* **Training**: optional exact-duplicate removal (same label, both boundaries within
  1e-3 s), then the filter of the method spec (section 1.5): a segment that starts at or
  after the clip end, has no length, or keeps less than ``trunc_thresh`` of its length
  inside the clip is dropped; the rest are clamped. Then the random crop (section 1.6).
  A clip left with no ground truth is still returned; the model decides what to do.
* Randomness is drawn from a generator seeded by ``(seed, epoch, index)``: call
  :meth:`set_epoch` before each epoch (before creating the DataLoader iterator, so that
  worker processes receive the new epoch).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from egoasl.config import DataConfig
from egoasl.data.features import ClipFeatureLoader, ClipFeatures, load_feature_file
from egoasl.data.records import MQClip, MQInstance, NLQQuery
from egoasl.data.taxonomy import Taxonomy
from egoasl.data.timegrid import TimeGrid
from egoasl.errors import DataError, EgoaslError

DUPLICATE_TOL_SEC = 1e-3
CROP_TRIALS = 200


# ----------------------------------------------------------------------------- ground truth helpers


def remove_duplicates(instances: list[MQInstance], tol: float = DUPLICATE_TOL_SEC) -> list[MQInstance]:
    """Drop instances with the same label as an earlier kept one and both boundaries within ``tol`` s."""
    kept: list[MQInstance] = []
    for inst in instances:
        if not any(
            k.label == inst.label and abs(k.start - inst.start) <= tol and abs(k.end - inst.end) <= tol for k in kept
        ):
            kept.append(inst)
    return kept


def clip_extent(grid: TimeGrid) -> tuple[float, float]:
    """The clip ``[0, duration]`` seconds in grid units."""
    return float(grid.to_grid(0.0)), float(grid.to_grid(grid.duration))


def _kept_fraction(segments: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Fraction of each segment's length inside ``[lo, hi]`` (0 for segments without length)."""
    length = segments[:, 1] - segments[:, 0]
    inter = (segments[:, 1].clamp(max=hi) - segments[:, 0].clamp(min=lo)).clamp(min=0)
    return torch.where(length > 0, inter / length.clamp(min=1e-12), torch.zeros_like(length))


def filter_training_segments(
    segments: torch.Tensor, labels: torch.Tensor, lo: float, hi: float, trunc_thresh: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Method spec section 1.5: drop segments starting at/after ``hi``, without length, or
    keeping less than ``trunc_thresh`` of their length in ``[lo, hi]``; clamp the rest."""
    keep = (segments[:, 0] < hi) & (_kept_fraction(segments, lo, hi) >= trunc_thresh)
    return segments[keep].clamp(lo, hi), labels[keep]


@dataclass
class _Cropped:
    feats: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor
    grid: TimeGrid
    start: int


def random_crop(
    feats: torch.Tensor,
    segments: torch.Tensor,
    labels: torch.Tensor,
    grid: TimeGrid,
    crop_ratio: tuple[float, float],
    trunc_thresh: float,
    rng: np.random.Generator,
) -> _Cropped:
    """Method spec section 1.6: crop ``L ~ U{round(lo*T)..round(hi*T)}`` cells.

    Up to 200 window starts are drawn; the first one where some segment keeps at least
    ``trunc_thresh`` of its length is used (the last draw if none does, or the first draw
    for a clip without segments). Segments keeping at least ``trunc_thresh`` are clamped to
    the window and shifted into it; the returned grid is shifted so seconds are unchanged.
    """
    num_cells = feats.shape[1]
    hi_len = min(num_cells, round(crop_ratio[1] * num_cells))
    lo_len = min(hi_len, max(1, round(crop_ratio[0] * num_cells)))
    length = int(rng.integers(lo_len, hi_len + 1))
    if length >= num_cells:
        return _Cropped(feats, segments, labels, grid, 0)
    clip_lo, clip_hi = clip_extent(grid)

    def window(start: int) -> tuple[float, float]:
        lo = clip_lo if start == 0 else start - 0.5
        hi = clip_hi if start + length == num_cells else start + length - 0.5
        return lo, hi

    for _ in range(CROP_TRIALS):
        start = int(rng.integers(0, num_cells - length + 1))
        lo, hi = window(start)
        fraction = _kept_fraction(segments, lo, hi)
        if segments.shape[0] == 0 or bool((fraction >= trunc_thresh).any()):
            break
    keep = fraction >= trunc_thresh
    new_segments = segments[keep].clamp(lo, hi) - start
    new_grid = TimeGrid(step=grid.step, offset=float(grid.to_seconds(float(start), clamp=False)), duration=grid.duration)
    return _Cropped(feats[:, start : start + length], new_segments, labels[keep], new_grid, start)


def jitter_window(seconds: torch.Tensor, duration: float, scale: tuple[float, float], shift: float,
                  rng: np.random.Generator) -> torch.Tensor:
    """NaQ-style temporal jittering of ``(N, 2)`` windows in seconds (training of narration pairs).

    Each window's length is multiplied by ``U(scale)`` and its centre moved by ``U(-shift, shift)``
    times its length; the result is shifted (never shrunk, unless longer than the clip) to lie in
    ``[0, duration]``.
    """
    out = seconds.clone()
    for i, (start, end) in enumerate(seconds.tolist()):
        length = end - start
        new_length = min(length * float(rng.uniform(*scale)), duration)
        centre = (start + end) / 2 + float(rng.uniform(-shift, shift)) * length
        new_start = min(max(centre - new_length / 2, 0.0), duration - new_length)
        out[i, 0], out[i, 1] = new_start, new_start + new_length
    return out


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]))


def _grid_meta(grid: TimeGrid, crop_start: int) -> dict:
    return {"duration": grid.duration, "grid_step": grid.step, "grid_offset": grid.offset, "crop_start": crop_start}


def _ground_truth(
    feats: torch.Tensor,
    seconds: torch.Tensor,
    labels: torch.Tensor,
    grid: TimeGrid,
    data_cfg: DataConfig,
    training: bool,
    rng: np.random.Generator,
) -> _Cropped:
    """Seconds -> grid units, then the training filter and crop, or the evaluation clamp."""
    segments = grid.to_grid(seconds.to(torch.float64))
    lo, hi = clip_extent(grid)
    if not training:
        return _Cropped(feats, segments.clamp(lo, hi), labels, grid, 0)
    segments, labels = filter_training_segments(segments, labels, lo, hi, data_cfg.trunc_thresh)
    return random_crop(feats, segments, labels, grid, tuple(data_cfg.crop_ratio), data_cfg.trunc_thresh, rng)


# ----------------------------------------------------------------------------- datasets


class MQDataset(Dataset):
    """Moment Queries clips with their features, ground truth in grid units and labels.

    Args:
        clips: the clips of one or more splits (test clips have no instances).
        loader: aligns every configured feature source of a clip.
        taxonomy: label string -> id.
        data_cfg: ``remove_duplicates``, ``crop_ratio`` and ``trunc_thresh`` are read from it.
        training: enables deduplication, filtering and the random crop.
        seed: with the epoch and the index, seeds the crop.
    """

    def __init__(
        self,
        clips: list[MQClip],
        loader: ClipFeatureLoader,
        taxonomy: Taxonomy,
        data_cfg: DataConfig,
        training: bool,
        seed: int = 0,
    ):
        self.clips = list(clips)
        self.loader = loader
        self.taxonomy = taxonomy
        self.cfg = data_cfg
        self.training = training
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops of ``epoch`` (same epoch, same crops)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        aligned = self.loader.load_clip(clip)
        instances = clip.instances
        if self.training and self.cfg.remove_duplicates:
            instances = remove_duplicates(instances)
        seconds = torch.tensor([[inst.start, inst.end] for inst in instances], dtype=torch.float64).reshape(-1, 2)
        labels = torch.tensor([self.taxonomy.id(inst.label) for inst in instances], dtype=torch.long)
        rng = _rng(self.seed, self.epoch, index)
        out = _ground_truth(aligned.feats, seconds, labels, aligned.grid, self.cfg, self.training, rng)
        return {
            "feats": out.feats.to(torch.float32).contiguous(),
            "segments": out.segments.to(torch.float32),
            "labels": out.labels,
            "meta": {"clip_uid": clip.clip_uid, "video_uid": clip.video_uid, **_grid_meta(out.grid, out.start)},
        }


class NLQDataset(Dataset):
    """Natural Language Queries: one item per query, with the clip's features and the query's text.

    Text features are read from ``text_root/<clip_uid>/<annotation_uid>_<query_idx>.pt``
    (``[L, text_dim]``) and truncated to ``data_cfg.max_text_len`` tokens. In training,
    queries with a zero-length window are skipped (counted in ``skipped_zero_length``).
    Aligned clip features are kept for the ``clip_cache_size`` most recently used clips, so
    the queries of one clip load its features once.
    """

    def __init__(
        self,
        queries: list[NLQQuery],
        loader: ClipFeatureLoader,
        data_cfg: DataConfig,
        training: bool,
        text_root: str | Path,
        seed: int = 0,
        clip_cache_size: int = 8,
    ):
        queries = list(queries)
        if training:
            unannotated = [q for q in queries if q.start is None or q.end is None]
            if unannotated:
                q = unannotated[0]
                raise EgoaslError(
                    f"NLQ training needs annotated windows; {len(unannotated)} queries have none, first "
                    f"(clip {q.clip_uid}, annotation {q.annotation_uid}, query {q.query_idx}) of split {q.split!r}"
                )
            kept = [q for q in queries if not q.zero_length]
        else:
            kept = queries
        self.queries = kept
        self.skipped_zero_length = len(queries) - len(kept)
        self.loader = loader
        self.cfg = data_cfg
        self.training = training
        self.text_root = Path(text_root)
        self.seed = seed
        self.epoch = 0
        self.clip_cache_size = max(1, int(clip_cache_size))
        self._clips: OrderedDict[tuple[str, float, float], ClipFeatures] = OrderedDict()

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops of ``epoch`` (same epoch, same crops)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.queries)

    def text_path(self, query: NLQQuery) -> Path:
        """Where the token features of ``query`` are stored."""
        return self.text_root / query.clip_uid / f"{query.annotation_uid}_{query.query_idx}.pt"

    def load_text(self, query: NLQQuery) -> torch.Tensor:
        """``(L, text_dim)`` token features of ``query``, ``L <= max_text_len``."""
        path = self.text_path(query)
        if not path.is_file():
            raise DataError(
                path, "", f"the text features of query {query.query_idx} of annotation {query.annotation_uid} "
                f"(clip {query.clip_uid}) as an [L, {self.cfg.text_dim}] tensor; no such file"
            )
        return load_feature_file(path, expected_dim=self.cfg.text_dim)[: self.cfg.max_text_len]

    def _clip_features(self, query: NLQQuery) -> ClipFeatures:
        key = (query.clip_uid, query.video_start_sec, query.video_end_sec)
        if key in self._clips:
            self._clips.move_to_end(key)
            return self._clips[key]
        aligned = self.loader.load_clip(query)
        self._clips[key] = aligned
        while len(self._clips) > self.clip_cache_size:
            self._clips.popitem(last=False)
        return aligned

    def __getitem__(self, index: int) -> dict:
        query = self.queries[index]
        aligned = self._clip_features(query)
        if query.start is None or query.end is None:
            seconds = torch.zeros(0, 2, dtype=torch.float64)
        else:
            seconds = torch.tensor([[query.start, query.end]], dtype=torch.float64)
        labels = torch.zeros(seconds.shape[0], dtype=torch.long)
        rng = _rng(self.seed, self.epoch, index)
        if self.training and (tuple(self.cfg.window_scale) != (1.0, 1.0) or self.cfg.window_shift > 0):
            seconds = jitter_window(seconds, query.duration, tuple(self.cfg.window_scale), self.cfg.window_shift, rng)
        out = _ground_truth(aligned.feats, seconds, labels, aligned.grid, self.cfg, self.training, rng)
        meta = {
            "clip_uid": query.clip_uid,
            "video_uid": query.video_uid,
            "annotation_uid": query.annotation_uid,
            "query_idx": query.query_idx,
            "query": query.query,
            **_grid_meta(out.grid, out.start),
        }
        return {
            "feats": out.feats.to(torch.float32).contiguous(),
            "segments": out.segments.to(torch.float32),
            "labels": out.labels,
            "text": self.load_text(query),
            "meta": meta,
        }


# ----------------------------------------------------------------------------- batching


def collate(items: list[dict], pad_to: int | None = None, multiple: int = 1) -> dict:
    """Batch dataset items, zero-padding the time axis.

    Returns ``feats (B, C, T)`` with ``T`` the longest item rounded up to ``multiple`` (or
    ``pad_to``), ``masks (B, T)``
    True on valid steps, ``segments``/``labels``/``meta`` as lists, and for NLQ items
    ``text (B, L_max, D)`` zero-padded with ``text_masks (B, L_max)``.

    Raises:
        EgoaslError: for an empty batch, items with different channel counts, an item
            longer than ``pad_to``, or a batch mixing items with and without text.
    """
    if not items:
        raise EgoaslError("collate: the batch is empty")
    channels = {int(item["feats"].shape[0]) for item in items}
    if len(channels) != 1:
        raise EgoaslError(f"collate: items have different channel counts {sorted(channels)}")
    lengths = [int(item["feats"].shape[1]) for item in items]
    num_steps = -(-max(lengths) // multiple) * multiple if pad_to is None else int(pad_to)
    for item, length in zip(items, lengths):
        if length > num_steps:
            uid = item.get("meta", {}).get("clip_uid", "?")
            raise EgoaslError(f"collate: clip {uid} has {length} time steps, more than pad_to={pad_to}")
    feats = items[0]["feats"].new_zeros(len(items), channels.pop(), num_steps)
    masks = torch.zeros(len(items), num_steps, dtype=torch.bool)
    for b, (item, length) in enumerate(zip(items, lengths)):
        feats[b, :, :length] = item["feats"]
        masks[b, :length] = True
    batch = {
        "feats": feats,
        "masks": masks,
        "segments": [item["segments"] for item in items],
        "labels": [item["labels"] for item in items],
        "meta": [item["meta"] for item in items],
    }
    with_text = sum("text" in item for item in items)
    if with_text not in (0, len(items)):
        raise EgoaslError(f"collate: {with_text} of {len(items)} items have text features; expected all or none")
    if with_text:
        dims = {int(item["text"].shape[1]) for item in items}
        if len(dims) != 1:
            raise EgoaslError(f"collate: text features have different dimensions {sorted(dims)}")
        text_lengths = [int(item["text"].shape[0]) for item in items]
        text = items[0]["text"].new_zeros(len(items), max(text_lengths), dims.pop())
        text_masks = torch.zeros(len(items), max(text_lengths), dtype=torch.bool)
        for b, (item, length) in enumerate(zip(items, text_lengths)):
            text[b, :length] = item["text"]
            text_masks[b, :length] = True
        batch["text"] = text
        batch["text_masks"] = text_masks
    return batch
