"""``synthetic.json``: what :func:`~egoasl.data.synthetic.generate_synthetic` wrote."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from egoasl import __version__
from egoasl.data.ego4d import SPLITS
from egoasl.data.synthetic.timing import SourceSpec
from egoasl.errors import EgoaslError


def _split_counts() -> dict[str, int]:
    return {split: 0 for split in SPLITS}


@dataclass
class SyntheticSummary:
    """What :func:`~egoasl.data.synthetic.generate_synthetic` wrote; also saved as ``synthetic.json``.

    Count fields map a split name to a number. ``mq_instances`` counts the true (hidden)
    action instances, test included; ``mq_primary_labels`` counts the primary labels of all
    annotators (what the benchmark scores). ``nlq_queries`` counts queries with text;
    ``nlq_null_queries`` the ``query: null`` entries.
    """

    scale: str
    seed: int
    classes: list[str]
    sources: list[SourceSpec]
    text_dim: int
    videos: dict[str, int] = field(default_factory=_split_counts)
    mq_clips: dict[str, int] = field(default_factory=_split_counts)
    mq_instances: dict[str, int] = field(default_factory=_split_counts)
    mq_primary_labels: dict[str, int] = field(default_factory=_split_counts)
    mq_non_primary_labels: dict[str, int] = field(default_factory=_split_counts)
    nlq_clips: dict[str, int] = field(default_factory=_split_counts)
    nlq_annotations: dict[str, int] = field(default_factory=_split_counts)
    nlq_queries: dict[str, int] = field(default_factory=_split_counts)
    nlq_null_queries: dict[str, int] = field(default_factory=_split_counts)
    nlq_zero_length: dict[str, int] = field(default_factory=_split_counts)
    feature_files: dict[str, int] = field(default_factory=dict)
    video_durations: dict[str, float] = field(default_factory=dict)  # video_uid -> seconds (like ego4d.json)
    difficulty: str = "normal"  # egoasl synth --difficulty (synthetic/difficulty.py)
    generator: str = f"egoasl synth {__version__}"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sources"] = [source.to_dict() for source in self.sources]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticSummary:
        data = dict(data)
        data["sources"] = [SourceSpec(**source) for source in data["sources"]]
        return cls(**data)

    def describe(self) -> str:
        """A short multi-line table of the counts per split."""
        rows = [
            ("videos", self.videos), ("MQ clips", self.mq_clips), ("MQ instances", self.mq_instances),
            ("MQ primary labels", self.mq_primary_labels), ("NLQ clips", self.nlq_clips),
            ("NLQ queries", self.nlq_queries), ("NLQ null queries", self.nlq_null_queries),
            ("NLQ zero-length", self.nlq_zero_length),
        ]  # fmt: skip
        lines = [f"{'':18s}" + "".join(f"{split:>8s}" for split in SPLITS)]
        lines += [f"{name:18s}" + "".join(f"{counts[split]:8d}" for split in SPLITS) for name, counts in rows]
        sources = ", ".join(f"{s.name} ({s.layout}, {s.dim})" for s in self.sources)
        lines.append(f"{len(self.classes)} classes; sources: {sources}; text dim {self.text_dim}")
        return "\n".join(lines)


def load_summary(root: str | Path) -> SyntheticSummary:
    """Read ``synthetic.json`` of a folder written by :func:`~egoasl.data.synthetic.generate_synthetic`."""
    path = Path(root) / "synthetic.json"
    if not path.is_file():
        raise EgoaslError(f"{path}: not found; is {root} a folder written by `egoasl synth`?")
    try:
        return SyntheticSummary.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise EgoaslError(f"{path}: not a valid synthetic.json ({exc})") from None


