"""The synthetic feature files: every source's vectors of a video and the NLQ query token features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egoasl.data.synthetic.plan import VideoPlan
from egoasl.data.synthetic.timeline import latent_timeline, source_features
from egoasl.data.synthetic.timing import (
    clip_feature_count,
    clip_feature_times,
    frame_of,
    official_feature_count,
    video_feature_times,
)
from egoasl.data.synthetic.vocabulary import MAX_QUERY_TOKENS, tokenize_query
from egoasl.data.synthetic.world import SyntheticWorld

TEXT_SOURCE = "text"
"""Folder under ``features/`` that holds the NLQ query token features."""
_TEXT_NOISE = 0.1


def _save(tensor_data: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.from_numpy(np.array(tensor_data, dtype=np.float32, copy=True)), path)


def write_video_features(
    out: Path, world: SyntheticWorld, rng: np.random.Generator, plan: VideoPlan
) -> dict[str, int]:
    """Render the latent timeline and write every source's files and the query token features."""
    windowed, t0 = latent_timeline(world, rng, plan)
    written: dict[str, int] = {}
    num_vectors = official_feature_count(frame_of(plan.duration))
    for source in world.sources:
        if source.layout == "video":
            feats = source_features(world, rng, source, windowed, t0, video_feature_times(num_vectors))
            _save(feats, out / "features" / source.name / f"{plan.video_uid}.pt")
            written[source.name] = written.get(source.name, 0) + 1
            continue
        for clip_uid, video_start, duration in plan.clip_spans:
            times = video_start + clip_feature_times(clip_feature_count(duration))
            feats = source_features(world, rng, source, windowed, t0, times)
            _save(feats, out / "features" / source.name / f"{clip_uid}.pt")
            written[source.name] = written.get(source.name, 0) + 1
    for clip_uid, annotation_uid, query_idx, text in plan.texts:
        tokens = tokenize_query(text)
        if not 0 < len(tokens) <= MAX_QUERY_TOKENS:
            raise AssertionError(f"synthetic query {text!r} has {len(tokens)} tokens, expected 1..{MAX_QUERY_TOKENS}")
        rows = np.stack([world.word_embedding(token) for token in tokens])
        rows = rows + _TEXT_NOISE * rng.standard_normal(rows.shape)
        _save(rows, out / "features" / TEXT_SOURCE / clip_uid / f"{annotation_uid}_{query_idx}.pt")
        written[TEXT_SOURCE] = written.get(TEXT_SOURCE, 0) + 1
    return written


