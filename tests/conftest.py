"""Shared fixtures: tiny synthetic Ego4D-format datasets, generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
TINY_MQ_CONFIG = TESTS / "configs" / "tiny_mq.yaml"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests run with one intra-op thread: predictable on the 2-core CI machine. OMP_NUM_THREADS
    also keeps train.threads=0 on that thread (no timing-driven thread changes in tests)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """`egoasl synth --scale tiny --videos 10`: 6 classes, three feature sources, MQ and NLQ."""
    from egoasl.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("tiny_data")
    generate_synthetic(root, seed=0, scale="tiny", videos=10)
    return root


def clip_feature_files(data_root: Path, clip, out_dir: Path) -> list[Path]:
    """One clip's feature files in the tiny configs' source order (egovlp, slowfast, omnivore),
    with the per-video sources sliced to the clip: what a user passes to `predict --features`."""
    from egoasl.data.features import load_feature_file, slice_video_features

    feats = data_root / "features"
    files = [feats / "egovlp" / f"{clip.clip_uid}.pt"]
    for name in ("slowfast", "omnivore"):
        rows, _ = slice_video_features(load_feature_file(feats / name / f"{clip.video_uid}.pt"),
                                       clip.video_start_sec, clip.video_end_sec)
        torch.save(rows, out_dir / f"{name}.pt")
        files.append(out_dir / f"{name}.pt")
    return files
