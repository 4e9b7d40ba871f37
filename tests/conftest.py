"""Shared fixtures: tiny synthetic Ego4D-format datasets, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
TINY_MQ_CONFIG = TESTS / "configs" / "tiny_mq.yaml"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests run with one intra-op thread: predictable on the 2-core CI machine."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """`egoasl synth --scale tiny --videos 10`: 6 classes, three feature sources, MQ and NLQ."""
    from egoasl.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("tiny_data")
    generate_synthetic(root, seed=0, scale="tiny", videos=10)
    return root
