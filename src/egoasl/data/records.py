"""Annotation records: what the official readers produce and everything downstream reads.

All times are seconds relative to the clip start (the benchmark's frame of reference).
Label strings are kept exactly as in the official files; integer ids exist only inside
models, through :class:`egoasl.data.taxonomy.Taxonomy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MQInstance:
    """One ground-truth moment: a primary label from one annotator."""

    label: str
    start: float
    end: float
    annotator: str = ""


@dataclass
class MQClip:
    """One Moment Queries clip with its ground truth (empty for the test split).

    ``instances`` holds every primary label of every annotator in file order, with
    duplicates kept: the official metric counts each annotator's copy.
    """

    clip_uid: str
    video_uid: str
    split: str
    video_start_sec: float
    video_end_sec: float
    instances: list[MQInstance] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Clip duration in seconds (``video_end_sec - video_start_sec``)."""
        return self.video_end_sec - self.video_start_sec


@dataclass
class MQAnnotations:
    """All clips of one MQ annotation file (official nesting or the converted per-clip format)."""

    path: str
    format: str  # "official" or "converted"
    clips: dict[str, MQClip]
    non_primary_skipped: int = 0  # labels with primary == false (not part of the benchmark GT)
    dropped_unlabelled: int = 0  # train/val clips without any primary label (dropped, as the official converter does)

    def split(self, name: str) -> list[MQClip]:
        """Clips whose split equals ``name`` (``train``, ``val`` or ``test``), in file order."""
        return [clip for clip in self.clips.values() if clip.split == name]

    def labels(self, splits: tuple[str, ...] = ("train", "val")) -> list[str]:
        """Sorted set of the label strings present in the given splits."""
        return sorted({inst.label for clip in self.clips.values() if clip.split in splits for inst in clip.instances})


@dataclass(frozen=True)
class NLQQuery:
    """One natural-language query, identified by ``(clip_uid, annotation_uid, query_idx)``.

    ``query_idx`` is the raw index into the annotation's ``language_queries`` list,
    including entries that were skipped for having no text. ``start``/``end`` are the
    answer window in clip seconds, or ``None`` on the unannotated test split.
    """

    clip_uid: str
    video_uid: str
    annotation_uid: str
    query_idx: int
    query: str
    split: str
    video_start_sec: float
    video_end_sec: float
    start: float | None = None
    end: float | None = None
    template: str | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.clip_uid, self.annotation_uid, self.query_idx)

    @property
    def duration(self) -> float:
        """Duration of the clip the query belongs to, in seconds."""
        return self.video_end_sec - self.video_start_sec

    @property
    def zero_length(self) -> bool:
        """True for a ground-truth window of zero length (it can never be a hit)."""
        return self.start is not None and self.end is not None and self.end <= self.start


@dataclass
class NLQAnnotations:
    """All queries of one NLQ annotation file."""

    path: str
    queries: list[NLQQuery]
    skipped_empty: int = 0  # language_queries entries with missing or empty text

    def split(self, name: str) -> list[NLQQuery]:
        return [q for q in self.queries if q.split == name]

    @property
    def zero_length(self) -> int:
        return sum(q.zero_length for q in self.queries)
