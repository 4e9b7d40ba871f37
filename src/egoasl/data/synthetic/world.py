"""The hidden generative model of one seed: classes, entities and each source's prototypes.

How the world shapes the features is described in the package docstring of
:mod:`egoasl.data.synthetic` ("The signal").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from egoasl.data.synthetic.difficulty import DIFFICULTIES, Difficulty, difficulty_spec
from egoasl.data.synthetic.scales import scale_spec
from egoasl.data.synthetic.seeding import random_uid, seeded_rng
from egoasl.data.synthetic.timing import SourceSpec
from egoasl.data.synthetic.vocabulary import OBJECTS, OFFICIAL_MQ_LABELS, PLACES
from egoasl.errors import EgoaslError

SCENE_CHANNELS = 4
"""Latent channels of slowly drifting scene (background shared by all sources)."""
NUISANCE_CHANNELS = 8
"""Latent channels of white noise (background shared by all sources)."""
_SOURCE_BIAS_STD = 0.2
_TEXT_ENTITY_NOISE = 0.25
_SOURCE_NAMES = ("slowfast", "omnivore", "egovlp")
_SOURCE_LAYOUTS = ("video", "video", "clip")
_SOURCE_SCALE = {"slowfast": 1.0, "omnivore": 0.6, "egovlp": 1.5}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass
class SyntheticWorld:
    """The hidden generative model of one seed: classes, entities and every source's map.

    Latent channel layout: ``[0, K)`` action classes, ``K`` start, ``K + 1`` end,
    ``[K + 2, K + 2 + E)`` entities, then scene and nuisance channels. ``maps[name]`` is the
    ``[channels, dim]`` matrix of a source, with unit-norm rows: row ``k`` is the prototype of
    class ``k`` in that source. Features are ``scale * latent @ map + bias + noise``.
    """

    seed: int
    labels: list[str]
    entities: list[str]
    num_objects: int
    sources: list[SourceSpec]
    text_dim: int
    maps: dict[str, np.ndarray]
    scales: dict[str, float]
    biases: dict[str, np.ndarray]
    entity_text: np.ndarray  # [E, text_dim] unit text embeddings of the entity words
    annotators: list[str]
    difficulty: Difficulty = DIFFICULTIES["normal"]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def start_channel(self) -> int:
        return self.num_classes

    @property
    def end_channel(self) -> int:
        return self.num_classes + 1

    def entity_channel(self, entity: int) -> int:
        return self.num_classes + 2 + entity

    @property
    def scene_channels(self) -> slice:
        first = self.num_classes + 2 + len(self.entities)
        return slice(first, first + SCENE_CHANNELS)

    @property
    def nuisance_channels(self) -> slice:
        first = self.scene_channels.stop
        return slice(first, first + NUISANCE_CHANNELS)

    @property
    def num_channels(self) -> int:
        return self.nuisance_channels.stop

    def class_prototype(self, source: str, label: str | int) -> np.ndarray:
        """Unit vector of a class (label string or index) in a source's feature space."""
        k = self.labels.index(label) if isinstance(label, str) else int(label)
        return self.maps[source][k]

    def boundary_prototype(self, source: str, which: str) -> np.ndarray:
        """Unit vector of the class-shared ``"start"`` or ``"end"`` pattern in a source."""
        return self.maps[source][self.start_channel if which == "start" else self.end_channel]

    def entity_prototype(self, source: str, entity: str) -> np.ndarray:
        """Unit vector of an NLQ entity (object or place word) in a source's feature space."""
        return self.maps[source][self.entity_channel(self.entities.index(entity))]

    def word_embedding(self, word: str) -> np.ndarray:
        """Noise-free text embedding of one token (entity words share the hidden space)."""
        if word in self.entities:
            return self.entity_text[self.entities.index(word)]
        digest = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
        return _unit(seeded_rng(self.seed, "word", digest).standard_normal(self.text_dim))


def build_world(seed: int = 0, classes: int | None = None, scale: str = "demo",
                difficulty: str = "normal") -> SyntheticWorld:
    """The hidden model behind :func:`~egoasl.data.synthetic.generate_synthetic` for the same arguments.

    Tests and notebooks use it to look at prototypes; the generator never writes it to disk.
    """
    spec = scale_spec(scale)
    hardness = difficulty_spec(difficulty)
    num_classes = _check_classes(spec.classes if classes is None else classes)
    rng = seeded_rng(seed, "world")
    quoted = [label for label in OFFICIAL_MQ_LABELS if label.startswith('"')]
    picked = list(rng.choice(quoted, size=2, replace=False))
    others = [label for label in OFFICIAL_MQ_LABELS if label not in picked]
    picked += list(rng.choice(others, size=num_classes - 2, replace=False))
    labels = [str(label) for label in rng.permutation(np.array(picked, dtype=object))]
    objects = [str(o) for o in rng.choice(OBJECTS, size=spec.objects, replace=False)]
    places = [str(p) for p in rng.choice(PLACES, size=spec.places, replace=False)]
    entities = objects + places
    hidden = _unit(rng.standard_normal((len(entities), spec.hidden_dim)))
    sources = [SourceSpec(n, d, layout) for n, d, layout in zip(_SOURCE_NAMES, spec.source_dims, _SOURCE_LAYOUTS)]
    maps, biases = {}, {}
    for source in sources:
        dim = source.dim
        mixing = rng.standard_normal((spec.hidden_dim, dim))
        maps[source.name] = np.concatenate(
            [
                _random_prototypes(rng, num_classes + 2, dim),  # class, start and end prototypes
                _unit(hidden @ mixing),  # entity prototypes: images of the hidden vectors
                _unit(rng.standard_normal((SCENE_CHANNELS + NUISANCE_CHANNELS, dim))),
            ]
        ).astype(np.float32)
        biases[source.name] = (_SOURCE_BIAS_STD * rng.standard_normal(dim)).astype(np.float32)
    if hardness.prototype_overlap > 0:
        _share_class_component(maps, num_classes, hardness.prototype_overlap, seeded_rng(seed, "overlap"))
    text_mixing = rng.standard_normal((spec.hidden_dim, spec.text_dim))
    entity_text = _unit(
        _unit(hidden @ text_mixing) + _TEXT_ENTITY_NOISE * _unit(rng.standard_normal((len(entities), spec.text_dim)))
    )
    return SyntheticWorld(
        seed=seed,
        labels=labels,
        entities=entities,
        num_objects=len(objects),
        sources=sources,
        text_dim=spec.text_dim,
        maps=maps,
        scales={source.name: _SOURCE_SCALE[source.name] for source in sources},
        biases=biases,
        entity_text=entity_text,
        annotators=[random_uid(rng) for _ in range(16)],
        difficulty=hardness,
    )


def _share_class_component(maps: dict[str, np.ndarray], num_classes: int, overlap: float,
                           rng: np.random.Generator) -> None:
    """Give every class prototype of every source a common unit component holding ``overlap`` of its energy."""
    for name, matrix in maps.items():
        common = _unit(rng.standard_normal(matrix.shape[1]))
        mixed = np.sqrt(1.0 - overlap) * matrix[:num_classes] + np.sqrt(overlap) * common
        matrix[:num_classes] = _unit(mixed).astype(np.float32)


def _random_prototypes(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """``count`` random unit vectors, mutually orthogonal when ``dim >= count``."""
    vectors = rng.standard_normal((count, dim))
    if dim >= count:
        q, r = np.linalg.qr(vectors.T)
        vectors = (q * np.sign(np.diag(r))).T
    return _unit(vectors)


def _check_classes(classes: int) -> int:
    if not 2 <= classes <= len(OFFICIAL_MQ_LABELS):
        raise EgoaslError(f"--classes must be between 2 and {len(OFFICIAL_MQ_LABELS)}, got {classes}")
    return classes


