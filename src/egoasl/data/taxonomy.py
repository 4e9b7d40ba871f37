"""The MQ class taxonomy: exact label strings <-> contiguous integer ids."""

from __future__ import annotations

from collections.abc import Iterable

from egoasl.errors import EgoaslError


class Taxonomy:
    """An ordered list of label strings; the id of a label is its position.

    The default order is Python's sorted order of the strings (the ActionFormer label map
    order). Strings are never normalised: seven official labels contain ``"`` and ``,``.
    """

    def __init__(self, labels: Iterable[str]):
        self.labels: list[str] = list(labels)
        self._ids = {label: i for i, label in enumerate(self.labels)}
        if len(self._ids) != len(self.labels):
            dupes = sorted({label for label in self.labels if self.labels.count(label) > 1})
            raise EgoaslError(f"taxonomy has duplicate labels: {dupes}")

    @classmethod
    def from_annotations(cls, annotations, splits: tuple[str, ...] = ("train", "val")) -> "Taxonomy":
        """The sorted set of labels present in ``splits`` of an :class:`MQAnnotations`."""
        labels = annotations.labels(splits)
        if not labels:
            raise EgoaslError(f"{annotations.path}: no labels found in splits {list(splits)} to build a taxonomy from")
        return cls(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: str) -> bool:
        return label in self._ids

    def id(self, label: str) -> int:
        try:
            return self._ids[label]
        except KeyError:
            raise EgoaslError(f"unknown label {label!r}: not among the {len(self)} classes of the taxonomy") from None

    def label(self, idx: int) -> str:
        return self.labels[idx]
