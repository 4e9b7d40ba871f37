"""egoasl synth --difficulty hard: class-specific evidence profiles, overlapping prototypes,
more noise and annotator jitter; normal stays what the demo was."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from egoasl.data.synthetic import generate_synthetic
from egoasl.data.synthetic.difficulty import DIFFICULTIES, difficulty_spec
from egoasl.data.synthetic.world import build_world
from egoasl.errors import EgoaslError


def test_hard_classes_peak_at_onset_centre_or_offset():
    hard = DIFFICULTIES["hard"]
    u = np.linspace(0.0, 1.0, 101)
    peaks = [float(u[np.argmax(hard.class_profile(k, u))]) for k in range(6)]
    assert peaks == [0.2, 0.5, 0.8, 0.2, 0.5, 0.8]
    assert [hard.profile_name(k) for k in range(3)] == ["onset", "centre", "offset"]
    assert hard.class_profile(0, np.array([0.8]))[0] < 0.15  # almost only the floor far from its peak


def test_normal_is_the_demo_bump_for_every_class():
    normal = DIFFICULTIES["normal"]
    u = np.linspace(0.0, 1.0, 11)
    for k in range(4):
        np.testing.assert_array_equal(normal.class_profile(k, u), 0.25 + 0.75 * np.sin(np.pi * u) ** 2)


def test_hard_class_prototypes_share_half_their_energy():
    normal, hard = build_world(0, 8, "demo"), build_world(0, 8, "demo", "hard")
    for source in normal.sources:
        cos_normal = [float(normal.maps[source.name][a] @ normal.maps[source.name][b]) for a, b in combinations(range(8), 2)]
        cos_hard = [float(hard.maps[source.name][a] @ hard.maps[source.name][b]) for a, b in combinations(range(8), 2)]
        assert max(abs(c) for c in cos_normal) < 1e-5  # orthogonal
        assert np.mean(cos_hard) == pytest.approx(0.5, abs=0.1)
        # only the class rows change: boundaries, entities and background are the same
        np.testing.assert_array_equal(hard.maps[source.name][8:], normal.maps[source.name][8:])


def _label_spread(root) -> float:
    """Mean absolute difference between two annotators' starts of the same instance."""
    data = json.loads((root / "annotations" / "moments_train.json").read_text())
    gaps = []
    for video in data["videos"]:
        for clip in video["clips"]:
            first, second = clip["annotations"][0]["labels"], clip["annotations"][1]["labels"]
            first = [x for x in first if x["primary"]]
            second = [x for x in second if x["primary"]]
            gaps += [abs(a["start_time"] - b["start_time"]) for a, b in zip(first, second)]
    return float(np.mean(gaps))


def test_hard_annotators_disagree_more_and_features_are_noisier(tmp_path):
    normal = generate_synthetic(tmp_path / "normal", seed=1, scale="tiny", videos=4)
    hard = generate_synthetic(tmp_path / "hard", seed=1, scale="tiny", videos=4, difficulty="hard")
    assert normal.difficulty == "normal" and hard.difficulty == "hard"
    assert json.loads((tmp_path / "hard" / "synthetic.json").read_text())["difficulty"] == "hard"
    # N(0, 0.25) vs N(0, 0.8) on both ends: the gap between two annotators is about 0.28 vs 0.9 s
    assert _label_spread(tmp_path / "normal") < 0.45 < 0.6 < _label_spread(tmp_path / "hard")


def test_an_unknown_difficulty_is_refused():
    with pytest.raises(EgoaslError, match="--difficulty must be one of normal, hard"):
        difficulty_spec("extreme")


def test_clip_seconds_overrides_the_scales_clip_lengths(tmp_path):
    generate_synthetic(tmp_path / "long", seed=0, scale="tiny", videos=3, clip_seconds=(100.0, 100.0))
    data = json.loads((tmp_path / "long" / "annotations" / "moments_train.json").read_text())
    durations = [clip["video_end_sec"] - clip["video_start_sec"] for v in data["videos"] for clip in v["clips"]]
    assert durations and all(d == pytest.approx(100.0) for d in durations)
    with pytest.raises(EgoaslError, match="--clip-seconds"):
        generate_synthetic(tmp_path / "bad", seed=0, scale="tiny", videos=3, clip_seconds=(50.0, 20.0))
