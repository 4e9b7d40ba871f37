"""The ``--scale`` presets of the synthetic dataset: how many videos, classes and dimensions."""

from __future__ import annotations

from dataclasses import dataclass

from egoasl.errors import EgoaslError


@dataclass(frozen=True)
class ScaleSpec:
    """Defaults of one ``--scale``: sizes of the dataset and of the features."""

    videos: int
    classes: int
    mq_clips_per_video: int
    nlq_clips_per_video: int
    clip_seconds: tuple[float, float]
    source_dims: tuple[int, int, int]  # slowfast, omnivore, egovlp
    text_dim: int
    hidden_dim: int  # size of the hidden space shared by entity words and entity video prototypes
    objects: int
    places: int
    zero_length_train: int  # NLQ train queries with a zero-length window
    null_query_val: bool  # a `query: null` entry in val too (there is always one in train)
    negative_clip_start: bool  # one train clip starts 0.0123 s before its video, like real ones
    annotations_per_nlq_clip: tuple[int, int] = (1, 3)
    queries_per_annotation: tuple[int, int] = (2, 5)


SCALES: dict[str, ScaleSpec] = {
    "tiny": ScaleSpec(videos=5, classes=6, mq_clips_per_video=1, nlq_clips_per_video=1, clip_seconds=(40.0, 60.0),
                      source_dims=(24, 16, 12), text_dim=16, hidden_dim=8, objects=12, places=4,
                      zero_length_train=0, null_query_val=False, negative_clip_start=False),
    "demo": ScaleSpec(videos=24, classes=8, mq_clips_per_video=2, nlq_clips_per_video=2, clip_seconds=(120.0, 200.0),
                      source_dims=(48, 32, 24), text_dim=32, hidden_dim=12, objects=16, places=4,
                      zero_length_train=2, null_query_val=True, negative_clip_start=True),
    "full": ScaleSpec(videos=30, classes=110, mq_clips_per_video=2, nlq_clips_per_video=2, clip_seconds=(480.0, 480.0),
                      source_dims=(2304, 1536, 256), text_dim=768, hidden_dim=64, objects=30, places=8,
                      zero_length_train=2, null_query_val=True, negative_clip_start=True),
}  # fmt: skip
"""``tiny``: unit tests; ``demo``: the CPU demo (learnable in minutes); ``full``: real sizes for benchmarks."""


def scale_spec(scale: str) -> ScaleSpec:
    """The preset called ``scale``, or an :class:`EgoaslError` naming the known ones."""
    if scale not in SCALES:
        raise EgoaslError(f"unknown synthetic scale {scale!r}: expected one of {', '.join(SCALES)}")
    return SCALES[scale]


