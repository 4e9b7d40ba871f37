"""Frame-query NCE on hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch

from egoasl.errors import EgoaslError
from egoasl.model.nce import frame_query_nce


def one_clip() -> dict:
    """C = 2, P = 5: points 0-1 positive, 2-3 negative, 4 padded; 2 text tokens + 1 padded.

    Tokens (2, 0) and (0, 3) normalise to e1 and e2, so ŵ = (0.5, 0.5); the padded token
    (100, -7) must be ignored. With τ = 0.5:
    v0 = (3, 0) -> e1: s0 = 0.5 / 0.5 = 1;  v1 = (1, 1): s1 = (1 / √2) / 0.5 = √2;
    v2 = (-1, 0): s2 = -1;  v3 = (0, -2): s3 = -1;  v4 = (1, 1) padded, would be √2.
    """
    feats = torch.tensor([[3.0, 1.0, -1.0, 0.0, 1.0], [0.0, 1.0, 0.0, -2.0, 1.0]])[None]  # (1, 2, 5)
    text = torch.tensor([[2.0, 0.0, 100.0], [0.0, 3.0, -7.0]])[None]  # (1, 2, 3)
    return {
        "point_feats": feats,
        "valid": torch.tensor([[True, True, True, True, False]]),
        "positive": torch.tensor([[True, True, False, False, False]]),
        "text": text,
        "text_mask": torch.tensor([[True, True, False]]),
        "tau": 0.5,
    }


def hand_value() -> float:
    """L = ½ [-log(e^1 / (e^1 + 2e^-1)) - log(e^√2 / (e^√2 + 2e^-1))]."""
    s0, s1, neg = 1.0, math.sqrt(2.0), -1.0
    term0 = -math.log(math.exp(s0) / (math.exp(s0) + 2 * math.exp(neg)))
    term1 = -math.log(math.exp(s1) / (math.exp(s1) + 2 * math.exp(neg)))
    return 0.5 * (term0 + term1)


def test_hand_worked_value():
    assert frame_query_nce(**one_clip()).item() == pytest.approx(hand_value(), rel=1e-6)
    assert hand_value() == pytest.approx(0.5 * (math.log(1 + 2 * math.exp(-2)) + math.log(1 + 2 * math.exp(-1 - math.sqrt(2)))))


def test_padded_points_and_tokens_are_excluded():
    case = one_clip()
    case["point_feats"][0, :, 4] = torch.tensor([50.0, 50.0])  # would be the strongest negative
    case["text"][0, :, 2] = torch.tensor([-3.0, 9.0])
    case["positive"][0, 4] = True  # a padded point is never a positive either
    assert frame_query_nce(**case).item() == pytest.approx(hand_value(), rel=1e-6)
    # counting the padded point as a negative (S4's quirk) would change the value
    case["valid"][0, 4] = True
    case["positive"][0, 4] = False
    assert frame_query_nce(**case).item() > hand_value() + 0.1


def test_scale_invariance_and_batch_sum():
    case = one_clip()
    scaled = dict(case, point_feats=case["point_feats"] * torch.tensor([1.0, 7.0, 0.1, 3.0, 1.0]))
    assert frame_query_nce(**scaled).item() == pytest.approx(hand_value(), rel=1e-6)
    # a second clip without positives adds nothing; two copies add up
    batch = {k: (torch.cat([v, v]) if isinstance(v, torch.Tensor) else v) for k, v in case.items()}
    assert frame_query_nce(**batch).item() == pytest.approx(2 * hand_value(), rel=1e-6)
    batch["positive"][1] = False
    assert frame_query_nce(**batch).item() == pytest.approx(hand_value(), rel=1e-6)


def test_gradient_finite_also_without_negatives_or_positives():
    case = one_clip()
    feats = case["point_feats"].repeat(3, 1, 1).requires_grad_(True)
    text = case["text"].repeat(3, 1, 1).requires_grad_(True)
    valid = case["valid"].repeat(3, 1)
    positive = case["positive"].repeat(3, 1)
    positive[1, :4] = True  # clip 1: every valid point positive, no negative (loss 0)
    positive[2] = False  # clip 2: no positive
    loss = frame_query_nce(feats, valid, positive, text, case["text_mask"].repeat(3, 1), 0.5)
    assert loss.item() == pytest.approx(hand_value(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(feats.grad).all() and torch.isfinite(text.grad).all()
    assert feats.grad[0, :, :4].abs().sum() > 0 and (feats.grad[:, :, 4] == 0).all()
    assert (feats.grad[1:] == 0).all()  # clips 1 and 2 contribute nothing


def test_no_positive_anywhere_is_zero_with_a_graph():
    case = one_clip()
    case["point_feats"].requires_grad_(True)
    case["positive"][:] = False
    loss = frame_query_nce(**case)
    assert loss.item() == 0.0 and loss.requires_grad


def test_errors():
    case = one_clip()
    with pytest.raises(EgoaslError, match="nce_tau"):
        frame_query_nce(**dict(case, tau=0.0))
    with pytest.raises(EgoaslError, match="valid and positive"):
        frame_query_nce(**dict(case, valid=case["valid"][:, :4]))
    with pytest.raises(EgoaslError, match="text"):
        frame_query_nce(**dict(case, text=case["text"][:, :1]))
