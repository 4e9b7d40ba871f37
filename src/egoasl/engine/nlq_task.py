"""The Natural Language Queries task: queries, the ASL grounder, its losses and the official R@k.

One item is one query with its clip's features (native rate) and its token features
(``data.text_features``). A batch is zero-padded to its longest clip rounded up to the
pyramid's multiple ``2**(num_levels-1)``, which gives the same outputs as padding to
``data.max_seq_len`` (every layer masks the padding) in less time; only a model whose channel
attention reads the padding (``channel_attention`` without ``masked_channel_attention``), whose
convolutions or skip pooling read it (``mask_conv_inputs`` or ``masked_skip_pool`` off, the
release's behaviour) or with the MQ rel-pos layer is padded to ``data.max_seq_len``, as its
function depends on it.

Training queries are those of ``data.train_splits`` (a seeded random ``data.train_queries`` of
them when set: the few-label setting) plus every query of the ``data.train_annotations`` files
(narrations as queries, ``egoasl naq build``), whose windows ``data.window_scale`` and
``data.window_shift`` jitter. Prediction decodes
every query class-agnostically (one class; Soft-NMS without labels, then segment voting when
``test.voting_thresh > 0``), converts to seconds through the item's grid and keeps the
``test.top_k`` best windows with their scores. A query with fewer candidates is filled up
with the whole clip ``[0, duration]`` at score 0, so that every entry has ``top_k`` windows
as the challenge format asks. Predictions are written as the official submission plus a
scores sidecar (:mod:`egoasl.engine.nlq_merge`), which merging models needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from egoasl.config import Config
from egoasl.data.datasets import NLQDataset, collate
from egoasl.data.ego4d import load_nlq_annotations
from egoasl.data.features import ClipFeatureLoader
from egoasl.data.records import NLQQuery
from egoasl.data.timegrid import TimeGrid
from egoasl.engine.annotations import data_path, nlq_queries
from egoasl.engine.decode import decode_clip, to_seconds
from egoasl.engine.ensemble import raw_output_of
from egoasl.engine.nlq_merge import NLQPredictions, ScoredWindow, prediction_entries, write_nlq_predictions
from egoasl.engine.task import EvalResult
from egoasl.io.atomic import write_text_atomic
from egoasl.metrics.nlq import evaluate_nlq
from egoasl.model.grounder import NLQGrounder


class NLQTask:
    """Natural Language Queries: the window of a clip that answers a free-text question."""

    name = "nlq"
    main_metric = "mean_R1"

    def __init__(self, cfg: Config, run_dir: Path | None = None):
        """``run_dir`` is accepted for the task interface; NLQ keeps nothing in it."""
        self.cfg = cfg
        self.loader = ClipFeatureLoader(cfg.data, Path(cfg.data.root or "."))
        self.text_root = data_path(cfg, cfg.data.text_features)

    def dataset(self, split: str, training: bool) -> NLQDataset:
        """The queries of ``split`` (training: crops, zero-length windows skipped)."""
        return NLQDataset(nlq_queries(self.cfg, split), self.loader, self.cfg.data, training, self.text_root,
                          seed=self.cfg.train.seed)

    def train_queries(self) -> list[NLQQuery]:
        """The training queries of ``data.train_splits`` then of ``data.train_annotations`` (see the module docstring)."""
        data = self.cfg.data
        queries = [q for split in data.train_splits for q in nlq_queries(self.cfg, split)]
        if 0 < data.train_queries < len(queries):
            keep = np.random.default_rng(self.cfg.train.seed).choice(len(queries), data.train_queries, replace=False)
            queries = [queries[i] for i in sorted(keep.tolist())]
        for relative in data.train_annotations:
            queries += load_nlq_annotations(data_path(self.cfg, relative)).queries
        return queries

    def train_dataset(self) -> NLQDataset:
        return NLQDataset(self.train_queries(), self.loader, self.cfg.data, True, self.text_root, seed=self.cfg.train.seed)

    def collate(self, items: list[dict]) -> dict:
        m = self.cfg.model
        reads_padding = (m.channel_attention and not m.masked_channel_attention) or m.rel_global_layer
        if reads_padding or not (m.mask_conv_inputs and m.masked_skip_pool):
            return collate(items, pad_to=self.cfg.data.max_seq_len)
        return collate(items, multiple=2 ** (m.num_levels - 1))

    def build_model(self) -> nn.Module:
        return NLQGrounder(self.cfg)

    def training_losses(self, model: NLQGrounder, batch: dict, device: torch.device,
                        autocast: Callable[[], AbstractContextManager]) -> dict[str, torch.Tensor]:
        with autocast():
            out = model(batch["feats"].to(device, non_blocking=True), batch["masks"].to(device, non_blocking=True),
                        batch["text"].to(device, non_blocking=True), batch["text_masks"].to(device, non_blocking=True))
        segments = [s.to(device) for s in batch["segments"]]
        labels = [lab.to(device) for lab in batch["labels"]]
        return model.losses(out, segments, labels)

    @torch.no_grad()
    def predict(self, model: NLQGrounder, split: str, device: torch.device, progress: bool, batch_size: int = 8) -> NLQPredictions:
        """The ``test.top_k`` best windows (seconds, with scores) of every query of ``split``, in file order."""
        from egoasl.engine.precision import autocast_context

        dataset = self.dataset(split, training=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=self.collate)
        autocast = autocast_context(self.cfg.train.amp, device, training=False)
        model.eval()
        predictions: NLQPredictions = {}
        with autocast():  # one autocast region: nn.Linear weights are cast once, not once per batch (views are not cached)
            for batch in tqdm(loader, desc=f"predict {split}", disable=None if progress else True, leave=False,
                              dynamic_ncols=True):
                out = model(batch["feats"].to(device, non_blocking=True), batch["masks"].to(device, non_blocking=True),
                            batch["text"].to(device, non_blocking=True), batch["text_masks"].to(device, non_blocking=True))
                for b, meta in enumerate(batch["meta"]):
                    raw = raw_output_of(out, b)
                    predictions[(meta["clip_uid"], meta["annotation_uid"], meta["query_idx"])] = self.decode(raw, meta)
        return predictions

    def decode(self, raw: dict, meta: dict) -> list[ScoredWindow]:
        """Raw outputs of one query -> exactly ``test.top_k`` windows in seconds, best first."""
        det = decode_clip(raw["cls_logits"], raw["offsets"], raw["masks"], raw["points"], self.cfg.test, 1)
        grid = TimeGrid(step=meta["grid_step"], offset=meta["grid_offset"], duration=meta["duration"])
        segments, scores, _ = to_seconds(det, grid)
        windows = [ScoredWindow(float(s), float(e), float(p)) for (s, e), p in zip(segments.tolist(), scores.tolist())]
        fill = ScoredWindow(0.0, float(meta["duration"]), 0.0)
        return windows + [fill] * (self.cfg.test.top_k - len(windows))

    def evaluate(self, model: NLQGrounder, split: str, device: torch.device, progress: bool) -> EvalResult:
        """Predictions of ``split`` and, when every query has a window, the official metrics (percent)."""
        predictions = self.predict(model, split, device, progress)
        queries = nlq_queries(self.cfg, split)
        if any(q.start is None or q.end is None for q in queries):
            return EvalResult(metrics={}, main=float("nan"), submission=predictions)
        metrics = evaluate_nlq(queries, prediction_entries(predictions)).to_json()
        return EvalResult(metrics=metrics, main=float(metrics[self.main_metric]), submission=predictions)

    def write_predictions(self, result: EvalResult, out_dir: Path, split: str) -> list[Path]:
        """``<split>_submission.json`` (validated against the split's queries), ``<split>_scores.json``
        and, with metrics, ``<split>_metrics.json``."""
        written = write_nlq_predictions(out_dir / f"{split}_submission.json", result.submission,
                                        queries=nlq_queries(self.cfg, split), num_windows=self.cfg.test.top_k)
        if result.metrics:
            metrics_path = out_dir / f"{split}_metrics.json"
            write_text_atomic(metrics_path, json.dumps(result.metrics, indent=1))
            written.append(metrics_path)
        return written
