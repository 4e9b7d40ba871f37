"""Decoding raw head outputs into scored segments, on a hand-built 2-level output."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from egoasl import config as egoasl_config
from egoasl.data.timegrid import TimeGrid
from egoasl.engine.decode import Detections, decode_clip, to_seconds, top_k
from egoasl.engine.nms import soft_nms

DECAY_THIRD = math.exp(-(1 / 9) / 0.99)  # exp(-IoU^2/sigma) for IoU 1/3, sigma 0.99
DECAY_ONE = math.exp(-1 / 0.99)  # identical segments


def logits(probs: list[list[float]]) -> torch.Tensor:
    return torch.logit(torch.tensor(probs, dtype=torch.float64)).float()


def two_level_output() -> dict:
    """K = 2 classes; level 0: 4 points, stride 1; level 1: 2 points, stride 2.

    Level 0 probabilities above 0.1 (t2 is masked out): 0.9 (t0,c0), 0.6 (t1,c1),
    0.3 (t1,c0), 0.2 (t3,c0), 0.15 (t3,c1). The top 2 are (t0,c0) -> [0-1, 0+2] = [-1, 2] and
    (t1,c1) -> [1-0.2, 1+0.2], 0.4 long, dropped by duration_thresh 0.5 after the top-k cut.
    Level 1: 0.7 (t0,c1), 0.5 (t0,c0), 0.4 (t2,c0); the top 2 are both at t0 -> [0-1.5*2, 0+3*2].
    """
    return {
        "cls_logits": [
            logits([[0.9, 0.05], [0.3, 0.6], [0.95, 0.99], [0.2, 0.15]]),
            logits([[0.5, 0.7], [0.4, 0.08]]),
        ],
        "offsets": [
            torch.tensor([[1.0, 2.0], [0.2, 0.2], [5.0, 5.0], [1.0, 1.0]]),
            torch.tensor([[1.5, 3.0], [1.0, 1.0]]),
        ],
        "masks": [torch.tensor([True, True, False, True]), torch.tensor([True, True])],
        "points": torch.tensor(
            [[0, 0, 4, 1], [1, 0, 4, 1], [2, 0, 4, 1], [3, 0, 4, 1], [0, 2, 8, 2], [2, 2, 8, 2]], dtype=torch.float32
        ),
    }


def cfg(**overrides) -> egoasl_config.TestConfig:
    base = {"pre_nms_thresh": 0.1, "pre_nms_topk": 2, "duration_thresh": 0.5, "nms": "soft", "multiclass_nms": True,
            "nms_sigma": 0.99, "min_score": 1e-4, "max_seg_num": 100, "voting_thresh": 0.0, "top_k": 5}
    base.update(overrides)
    return egoasl_config.TestConfig(**base)


def decode(test_cfg: egoasl_config.TestConfig, num_classes: int = 2, out: dict | None = None) -> Detections:
    out = out or two_level_output()
    return decode_clip(out["cls_logits"], out["offsets"], out["masks"], out["points"], test_cfg, num_classes)


def test_candidates_without_nms():
    det = decode(cfg(nms="none"))
    assert det.segments.tolist() == [[-1.0, 2.0], [-3.0, 6.0], [-3.0, 6.0]]
    np.testing.assert_allclose(det.scores.numpy(), [0.9, 0.7, 0.5], atol=1e-6)
    assert det.labels.tolist() == [0, 1, 0]
    assert det.labels.dtype == torch.long and det.segments.dtype == torch.float32


def test_per_level_topk_threshold_and_duration():
    # a larger top-k admits level 0's (t3,c0), (t3,c1) -> [3-1, 3+1] and level 1's (t2,c0) -> [2-2, 2+2];
    # level 0's (t1,c0) and (t1,c1) -> [0.8, 1.2] stay out (0.4 long)
    det = decode(cfg(nms="none", pre_nms_topk=10))
    assert det.segments.tolist() == [[-1.0, 2.0], [-3.0, 6.0], [-3.0, 6.0], [0.0, 4.0], [2.0, 4.0], [2.0, 4.0]]
    np.testing.assert_allclose(det.scores.numpy(), [0.9, 0.7, 0.5, 0.4, 0.2, 0.15], atol=1e-6)
    assert det.labels.tolist() == [0, 1, 0, 0, 0, 1]
    # the masked point (probability 0.99) never appears; a stricter threshold removes the low ones
    det = decode(cfg(nms="none", pre_nms_topk=10, pre_nms_thresh=0.45))
    np.testing.assert_allclose(det.scores.numpy(), [0.9, 0.7, 0.5], atol=1e-6)
    # a looser duration threshold keeps the 0.4-long (t1,c1) segment
    det = decode(cfg(nms="none", duration_thresh=0.3))
    assert det.segments[2].tolist() == pytest.approx([0.8, 1.2])
    assert det.labels.tolist() == [0, 1, 1, 0]


def test_multiclass_soft_nms():
    # class 0: [-1,2] (0.9) decays [-3,6] (0.5) by IoU 3/9 = 1/3; class 1 alone
    det = decode(cfg())
    assert det.segments.tolist() == [[-1.0, 2.0], [-3.0, 6.0], [-3.0, 6.0]]
    np.testing.assert_allclose(det.scores.numpy(), [0.9, 0.7, 0.5 * DECAY_THIRD], atol=1e-6)
    assert det.labels.tolist() == [0, 1, 0]


def test_class_agnostic_soft_nms():
    # [-1,2] decays both [-3,6] by 1/3; then 0.7*d decays the identical 0.5*d by IoU 1
    det = decode(cfg(multiclass_nms=False))
    np.testing.assert_allclose(det.scores.numpy(), [0.9, 0.7 * DECAY_THIRD, 0.5 * DECAY_THIRD * DECAY_ONE], atol=1e-6)
    assert det.labels.tolist() == [0, 1, 0]


def test_max_seg_num_caps_and_matches_soft_nms():
    out = two_level_output()
    det = decode(cfg(max_seg_num=2, pre_nms_topk=10), out=out)
    full = decode(cfg(nms="none", pre_nms_topk=10), out=out)
    ref = soft_nms(full.segments, full.scores, 0.99, 1e-4, 2, full.labels)
    torch.testing.assert_close(det.segments, ref.segments)
    torch.testing.assert_close(det.scores, ref.scores)
    assert torch.equal(det.labels, ref.labels) and len(det.scores) == 2
    assert len(decode(cfg(nms="none", max_seg_num=2)).scores) == 2


def test_nlq_single_class_top_k_and_voting():
    # one class; candidates [0,10] 0.8 and [0,10.5] 0.4 (IoU 0.952) and [20,24] 0.6
    out = {
        "cls_logits": [logits([[0.8], [0.6], [0.4]])],
        "offsets": [torch.tensor([[0.0, 10.0], [0.0, 4.0], [0.0, 10.5]])],
        "masks": [torch.tensor([True, True, True])],
        "points": torch.tensor([[0, 0, 1e4, 1], [20, 0, 1e4, 1], [0, 0, 1e4, 1]], dtype=torch.float32),
    }
    nlq = cfg(pre_nms_topk=10, multiclass_nms=True, nms_sigma=0.9, min_score=1e-3, top_k=2)
    det = decode(nlq, num_classes=1, out=out)
    assert det.segments.tolist() == [[0.0, 10.0], [20.0, 24.0]]  # top 2 of 3, by score
    assert det.labels.tolist() == [0, 0]
    np.testing.assert_allclose(det.scores.numpy(), [0.8, 0.6], atol=1e-6)
    voted = decode(dataclasses.replace(nlq, voting_thresh=0.95), num_classes=1, out=out)
    np.testing.assert_allclose(voted.segments.numpy(), [[0.0, (0.8 * 10 + 0.4 * 10.5) / 1.2], [20.0, 24.0]], atol=1e-5)
    np.testing.assert_allclose(voted.scores.numpy(), det.scores.numpy())


def test_empty_output():
    out = two_level_output()
    det = decode(cfg(pre_nms_thresh=0.999), out=out)
    assert det.segments.shape == (0, 2) and det.scores.shape == (0,) and det.labels.shape == (0,)


def test_shape_errors_name_the_level():
    out = two_level_output()
    out["offsets"][1] = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="level 1"):
        decode(cfg(), out=out)
    out = two_level_output()
    with pytest.raises(ValueError, match="num_classes"):
        decode(cfg(), num_classes=3, out=out)
    out = two_level_output()
    out["points"] = out["points"][:5]
    with pytest.raises(ValueError, match="points"):
        decode(cfg(), out=out)


def test_top_k_keeps_best_in_order():
    det = Detections(torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]), torch.tensor([0.9, 0.5, 0.1]), torch.tensor([2, 0, 1]))
    cut = top_k(det, 2)
    assert cut.segments.tolist() == [[0.0, 1.0], [2.0, 3.0]] and cut.labels.tolist() == [2, 0]
    assert top_k(det, 10).scores.tolist() == pytest.approx([0.9, 0.5, 0.1])


def test_to_seconds_converts_and_clamps():
    # a 10 s clip resized to 4 cells: sec = (g + 0.5) * 2.5
    grid = TimeGrid.resized(duration=10.0, num_cells=4)
    det = Detections(
        torch.tensor([[-1.0, 2.0], [-3.0, 6.0], [0.5, 1.5]]), torch.tensor([0.9, 0.7, 0.2]), torch.tensor([0, 1, 0])
    )
    secs, scores, labels = to_seconds(det, grid)
    np.testing.assert_allclose(secs.numpy(), [[0.0, 6.25], [0.0, 10.0], [2.5, 5.0]], atol=1e-6)
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.2]) and labels.tolist() == [0, 1, 0]
    assert secs.dtype == torch.float64  # seconds leave in double precision
