"""The egoasl Python API: open a trained run, find the moments of a new clip, answer a question, score predictions.

::

    import egoasl

    run = egoasl.load_run("runs/mine", test__nms_sigma=0.5)          # KEY=VALUE overrides of RUN/config.yaml
    for m in run.predict_clip("video.npy", duration=120.0)[:5]:       # MQ: one feature file per source
        print(m.label, m.start, m.end, m.score)                        # seconds from the clip start, exact labels
    result = egoasl.evaluate_mq("anet.json", "runs/mine/predictions/val_results.json", split="val")
    print(result.average_mAP)                                          # a fraction; result.to_json() is `eval --json`

Overrides are keyword arguments whose ``__`` stands for the dot of a dotted key
(``test__nms_sigma=0.5`` is ``test.nms_sigma=0.5``; ``data__sources__0__dir="/x"`` works too), or
dotted keys unpacked from a dict (``**{"test.nms_sigma": 0.5}``). Values are Python values; they
follow the grammar and checks of ``egoasl train``'s ``KEY=VALUE`` (an unknown key or a wrong
type is the same error). The command line is built on these functions: ``egoasl predict RUN
--features ...`` is :meth:`Run.predict_clip` / :meth:`Run.answer` and ``egoasl eval mq|nlq`` is
:func:`evaluate_mq` / :func:`evaluate_nlq`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from egoasl.config import Config
from egoasl.data.ego4d import find_annotation_file, load_nlq_annotations
from egoasl.data.features import align_sources, clip_rows, load_feature_file, source_timing
from egoasl.data.mq_formats import load_mq_file
from egoasl.data.records import MQAnnotations, MQClip, NLQAnnotations, NLQQuery
from egoasl.engine.task import Task
from egoasl.errors import EgoaslError
from egoasl.io.submission import read_mq_submission, read_nlq_submission
from egoasl.metrics.mq import DEFAULT_TIOUS, DEFAULT_TOPK, MQResult
from egoasl.metrics.mq import evaluate_mq as _score_mq
from egoasl.metrics.nlq import DEFAULT_NLQ_TIOUS, DEFAULT_NLQ_TOPK, NLQResult
from egoasl.metrics.nlq import evaluate_nlq as _score_nlq

FeatureInput = str | os.PathLike | torch.Tensor | np.ndarray
"""One source's features of a clip: a ``.pt``/``.npy`` file, or an ``[N, D]`` tensor or array."""


@dataclass(frozen=True)
class Moment:
    """One predicted moment: seconds from the clip start, a score, and for MQ the exact label string."""

    start: float
    end: float
    score: float
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """MQ: ``{label, score, segment: [start, end]}`` (the submission's form); NLQ: ``{start, end, score}``."""
        if self.label is None:
            return {"start": self.start, "end": self.end, "score": self.score}
        return {"label": self.label, "score": self.score, "segment": [self.start, self.end]}


class Run:
    """A trained run opened for prediction (see :func:`load_run`).

    Attributes:
        path: the run folder.
        config: its resolved config, overrides applied.
        task: the MQ or NLQ task object (taxonomy, decoding).
        model: the network with the checkpoint's EMA weights, in eval mode on ``device``.
        device: where the model runs.
    """

    def __init__(self, path: str | Path, config: Config, task: Task, model: nn.Module, device: torch.device):
        self.path = Path(path)
        self.config = config
        self.task = task
        self.model = model
        self.device = device

    @property
    def labels(self) -> list[str]:
        """MQ: the class labels, in the model's id order. NLQ: empty."""
        taxonomy = getattr(self.task, "taxonomy", None)
        return list(taxonomy.labels) if taxonomy is not None else []

    def predict_clip(self, *features: FeatureInput, duration: float | None = None, top: int = 0) -> list[Moment]:
        """Every moment an MQ run finds in one clip, best first.

        Args:
            features: one per source of the run's config, in config order (``[N, D]``; a
                per-video source covers the clip from its start).
            duration: the clip's duration in seconds; default: rows of the first source x its step.
            top: keep only the ``top`` best moments (0: all, up to ``test.max_seg_num``).
        """
        if self.config.data.task != "mq":
            raise EgoaslError(f"{self.path}: an NLQ run answers questions: use run.answer(..., query=...)")
        feats, masks, meta = self._clip_inputs(features, duration)
        with torch.no_grad():
            out = self.model(feats.to(self.device), masks.to(self.device))
        moments = [Moment(float(m["segment"][0]), float(m["segment"][1]), float(m["score"]), m["label"])
                   for m in self.task.decode(_raw_output(out), meta)]
        return moments[:top] if top > 0 else moments

    def answer(
        self,
        *features: FeatureInput,
        query: str | None = None,
        query_features: FeatureInput | None = None,
        duration: float | None = None,
        text_encoder: str = "clip",
        text_weights: str | None = None,
    ) -> list[Moment]:
        """The ``test.top_k`` best windows of an NLQ run for one question on one clip, best first.

        Args:
            features: one per source of the run's config, in config order.
            query: the question, encoded with ``text_encoder`` (the encoder the run's text
                features were made with; local ``text_weights``, never downloaded) ...
            query_features: ... or its token features ``[L, text_dim]``.
            duration: the clip's duration in seconds; default: rows of the first source x its step.
        """
        if self.config.data.task != "nlq":
            raise EgoaslError(f"{self.path}: an MQ run finds moments: use run.predict_clip(...)")
        feats, masks, meta = self._clip_inputs(features, duration)
        tokens = self._query_tokens(query, query_features, text_encoder, text_weights)
        text_masks = torch.ones(1, tokens.shape[0], dtype=torch.bool)
        with torch.no_grad():
            out = self.model(feats.to(self.device), masks.to(self.device), tokens[None].to(self.device),
                             text_masks.to(self.device))
        return [Moment(float(w.start), float(w.end), float(w.score)) for w in self.task.decode(_raw_output(out), meta)]

    def default_duration(self, first_source: FeatureInput) -> float:
        """The clip duration assumed when none is given: rows of the first source x its step (seconds)."""
        source = self.config.data.sources[0]
        return _feature_rows(first_source, source.dim, source.name).shape[0] * source_timing(source).step

    def _clip_inputs(self, features: Sequence[FeatureInput], duration: float | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Feature files of one clip -> padded ``feats (1, C, T)``, ``masks (1, T)`` and the grid meta."""
        data = self.config.data
        sources = data.sources
        if len(features) != len(sources):
            names = ", ".join(f"{s.name} ({s.dim})" for s in sources)
            raise EgoaslError(f"features: this run needs {len(sources)} files, one per source in order: {names}")
        rows = [_feature_rows(f, s.dim, s.name) for f, s in zip(features, sources)]
        if duration is None:
            duration = self.default_duration(rows[0])
        if not duration > 0:
            raise EgoaslError(f"duration: expected a clip duration in seconds greater than 0, got {duration}")
        loaded = [clip_rows(s, r, 0.0, duration, _name(f, s.name)) for f, s, r in zip(features, sources, rows)]
        clip = align_sources(loaded, data, duration)
        feats = torch.zeros(1, clip.feats.shape[0], data.max_seq_len)
        feats[0, :, : clip.feats.shape[1]] = clip.feats
        masks = torch.zeros(1, data.max_seq_len, dtype=torch.bool)
        masks[0, : clip.feats.shape[1]] = True
        return feats, masks, {"grid_step": clip.grid.step, "grid_offset": clip.grid.offset, "duration": duration}

    def _query_tokens(self, query: str | None, query_features: FeatureInput | None, text_encoder: str,
                      text_weights: str | None) -> torch.Tensor:
        data = self.config.data
        if query_features is not None:
            tokens = _feature_rows(query_features, data.text_dim, "query_features")
        elif query:
            from egoasl.data.text_encoders import build_text_encoder

            encoder = build_text_encoder(text_encoder, text_weights, dim=data.text_dim)
            if encoder.dim != data.text_dim:
                raise EgoaslError(f"text encoder {text_encoder} gives {encoder.dim}-d tokens; this run was trained on "
                                  f"{data.text_dim}-d text features (data.text_dim): use the encoder that made them")
            tokens = encoder.encode([query], data.max_text_len)[0]
        else:
            raise EgoaslError("an NLQ run answers a question: give query=TEXT or query_features=FILE")
        return tokens[: data.max_text_len]


def load_run(path: str | Path, checkpoint: str = "best", device: str = "auto", **overrides: Any) -> Run:
    """Open a run folder of ``egoasl train`` for prediction.

    Args:
        path: the run folder (``config.yaml`` and ``checkpoints/``).
        checkpoint: ``best`` (falls back to ``last``) or ``last``; the EMA weights are used.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        overrides: config overrides, ``section__key=value`` or dotted keys from a dict (module docstring).
    """
    from egoasl.engine.distributed import DistInfo, resolve_device
    from egoasl.engine.runs import load_run as open_run

    torch_device = resolve_device(device, DistInfo())
    cfg, task, model = open_run(Path(path), checkpoint, torch_device, override_strings(overrides))
    return Run(path, cfg, task, model, torch_device)


def override_strings(overrides: Mapping[str, Any]) -> list[str]:
    """``{"test__nms_sigma": 0.5}`` -> ``["test.nms_sigma=0.5"]``: Python values as ``KEY=VALUE`` text.

    Strings are kept as written (a string field keeps its text); paths become strings; every
    other value is written as JSON (``true``, ``1e-05``, ``[0.3, 0.5]``), which the override
    grammar reads back as the same value.
    """
    out = []
    for key, value in overrides.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        text = value if isinstance(value, str) else json.dumps(value)
        out.append(f"{key.replace('__', '.')}={text}")
    return out


def load_mq_ground_truth(annotations: str | Path | MQAnnotations | Sequence[MQClip], split: str = "val",
                         format: str = "auto") -> list[MQClip]:
    """The clips of ``split`` with their ground truth.

    ``annotations``: an MQ file (official, converted or ActivityNet-style, see ``format``), a
    folder of ``moments_*.json``, an :class:`MQAnnotations` or the clips themselves (used as given).
    """
    if isinstance(annotations, (str, os.PathLike)):
        path = find_annotation_file(annotations, "mq", split) if Path(annotations).is_dir() else Path(annotations)
        annotations = load_mq_file(path, format, training_taxonomy=False)
    if isinstance(annotations, MQAnnotations):
        clips = annotations.split(split)
        if not clips:
            present = sorted({c.split for c in annotations.clips.values()})
            raise EgoaslError(f"{annotations.path}: no clip of split {split!r} (splits present: {present})")
        return clips
    return list(annotations)


def evaluate_mq(
    annotations: str | Path | MQAnnotations | Sequence[MQClip],
    predictions: str | Path | Mapping[str, Any],
    split: str = "val",
    tious: Sequence[float] = DEFAULT_TIOUS,
    topk: Sequence[int] = DEFAULT_TOPK,
    format: str = "auto",
) -> MQResult:
    """Score MQ predictions like ``egoasl eval mq`` (the official Ego4D evaluator's numbers).

    Args:
        annotations: see :func:`load_mq_ground_truth`.
        predictions: a file (an Ego4D submission, ``{"results": ...}`` or the ActivityNet result
            format), a loaded submission object, or ``clip_uid -> [{label, score, segment}]``.
        split: the annotations' split to score.
        tious: mAP thresholds (ActivityNet: 0.5:0.05:0.95, THUMOS14: 0.3:0.1:0.7).
        topk: the ``k`` of Recall@kx.
        format: the annotations' format (``auto``, ``ego4d`` or ``anet``).

    Returns:
        An :class:`MQResult` (fractions; ``.to_json()`` is ``egoasl eval mq --json``).
    """
    clips = load_mq_ground_truth(annotations, split, format)
    where = "predictions"
    if isinstance(predictions, (str, os.PathLike)):
        where = str(predictions)
        detections, retrievals = read_mq_submission(predictions)
    elif isinstance(predictions.get("detect_results"), Mapping):
        detections, retrievals = predictions["detect_results"], predictions.get("retrieve_results")
    elif isinstance(predictions.get("results"), Mapping):
        detections = retrievals = predictions["results"]
    else:
        detections = retrievals = predictions
    return _score_mq(clips, detections, retrievals, tious=tious, topk=topk, where=where)


def evaluate_nlq(
    annotations: str | Path | NLQAnnotations | Sequence[NLQQuery],
    predictions: str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    tious: Sequence[float] = DEFAULT_NLQ_TIOUS,
    topk: Sequence[int] = DEFAULT_NLQ_TOPK,
) -> NLQResult:
    """Score NLQ predictions like ``egoasl eval nlq`` (the official Ego4D evaluator's numbers).

    Args:
        annotations: an ``nlq_*.json`` file, an :class:`NLQAnnotations` or the queries.
        predictions: a submission file, a loaded submission object or its ``results`` list.
    """
    if isinstance(annotations, (str, os.PathLike)):
        annotations = load_nlq_annotations(annotations)
    queries = annotations.queries if isinstance(annotations, NLQAnnotations) else list(annotations)
    where = "predictions"
    if isinstance(predictions, (str, os.PathLike)):
        where = str(predictions)
        results = read_nlq_submission(predictions)
    elif isinstance(predictions, Mapping):
        results = predictions.get("results", [])
    else:
        results = predictions
    return _score_nlq(queries, results, tious=tious, topk=topk, where=where)


def _feature_rows(value: FeatureInput, dim: int, name: str) -> torch.Tensor:
    """One source's ``[N, dim]`` float32 rows from a file, a tensor or an array (``[dim, N]`` is transposed)."""
    if isinstance(value, (str, os.PathLike)):
        return load_feature_file(value, expected_dim=dim)
    rows = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).to(torch.float32)
    if rows.dim() == 2 and rows.shape[1] != dim and rows.shape[0] == dim:
        rows = rows.t()
    if rows.dim() != 2 or rows.shape[1] != dim or rows.shape[0] == 0:
        raise EgoaslError(f"features of {name}: expected an [N, {dim}] array, got shape {tuple(rows.shape)}")
    if not bool(torch.isfinite(rows).all()):
        raise EgoaslError(f"features of {name}: expected finite numbers, found NaN or Inf")
    return rows.contiguous()


def _name(value: FeatureInput, source: str) -> str:
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else f"<features of {source}>"


def _raw_output(out: dict) -> dict:
    from egoasl.engine.ensemble import raw_output_of

    return raw_output_of(out, 0)
