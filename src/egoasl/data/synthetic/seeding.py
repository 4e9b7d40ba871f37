"""Random streams and uids: every draw of the generator comes from a ``(seed, purpose, index)`` stream."""

from __future__ import annotations

import uuid

import numpy as np


def seeded_rng(seed: int, purpose: str, index: int = 0) -> np.random.Generator:
    """An independent random stream for ``(seed, purpose, index)``."""
    code = int.from_bytes(purpose.encode("ascii")[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, code, index]))


def random_uid(rng: np.random.Generator) -> str:
    """A uuid4 string drawn from ``rng`` (real Ego4D uids are uuid4 strings)."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))

