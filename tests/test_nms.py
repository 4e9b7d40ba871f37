"""Soft-NMS and segment voting against slow, obviously-correct references.

Two references live here, both plain Python loops in float32 arithmetic:

* ``ref_softnms_release``: a line-by-line transcription of the release's C++ op
  (``softnms_1d_cpu``, Gaussian method): swap the maximum into slot ``i``, decay every
  later slot, and remove a slot that falls below ``min_score`` by moving the last slot
  into it. It breaks ties by the *current buffer position*, which depends on the history
  of swaps.
* ``ref_softnms_lowest_index``: the same arithmetic written as "pick the highest current
  score; among equal scores the lowest input index; decay the rest; drop those below
  min_score" (the documented tie rule of :func:`egoasl.engine.nms.soft_nms`).

Without ties the two agree, and the fast implementation must equal both.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from egoasl.engine import nms as nms_module
from egoasl.engine.nms import segment_voting, soft_nms

F32 = np.float32


def _areas(segs: np.ndarray) -> list:
    return [F32(F32(x2) - F32(x1)) + F32(1e-6) for x1, x2 in segs.astype(np.float32)]


def _decay(a1, a2, aarea, b1, b2, barea, sigma) -> np.float32:
    inter = max(F32(0.0), F32(min(a2, b2) - max(a1, b1)))
    ovr = F32(inter / F32(F32(aarea + barea) - inter))
    return F32(np.exp(F32(-(ovr * ovr) / F32(sigma))))


def ref_softnms_release(segs: np.ndarray, scores: np.ndarray, sigma: float, min_score: float) -> list:
    """Transcription of the release's C++ Soft-NMS. Returns [(input index, score)] in pick order."""
    x1 = [F32(v) for v in segs[:, 0]]
    x2 = [F32(v) for v in segs[:, 1]]
    area = _areas(segs)
    sc = [F32(v) for v in scores]
    inds = list(range(len(sc)))
    n = len(sc)
    picks = []
    i = 0
    while i < n:
        max_score, max_pos = sc[i], i
        for pos in range(i + 1, n):
            if max_score < sc[pos]:
                max_score, max_pos = sc[pos], pos
        for buf in (x1, x2, sc, area, inds):
            buf[i], buf[max_pos] = buf[max_pos], buf[i]
        picks.append((inds[i], float(sc[i])))
        pos = i + 1
        while pos < n:
            sc[pos] = F32(sc[pos] * _decay(x1[i], x2[i], area[i], x1[pos], x2[pos], area[pos], sigma))
            if sc[pos] < F32(min_score):
                for buf in (x1, x2, sc, area, inds):
                    buf[pos] = buf[n - 1]
                n -= 1
                pos -= 1
            pos += 1
        i += 1
    return picks


def ref_softnms_lowest_index(
    segs: np.ndarray, scores: np.ndarray, sigma: float, min_score: float, max_picks: int | None = None
) -> list:
    """Set-based Soft-NMS with the lowest-index tie rule. Returns [(input index, score)]."""
    x1 = [F32(v) for v in segs[:, 0]]
    x2 = [F32(v) for v in segs[:, 1]]
    area = _areas(segs)
    current = {j: F32(s) for j, s in enumerate(scores)}
    picks = []
    while current and (max_picks is None or len(picks) < max_picks):
        best = max(current.values())
        p = min(j for j, s in current.items() if s == best)
        picks.append((p, float(current.pop(p))))
        for j in list(current):
            current[j] = F32(current[j] * _decay(x1[p], x2[p], area[p], x1[j], x2[j], area[j], sigma))
            if current[j] < F32(min_score):
                del current[j]
    return picks


def ref_batched(segs, scores, labels, sigma, min_score, max_num, single=ref_softnms_release) -> list:
    """The release's batched_nms around one Soft-NMS: per class (ascending id), cap each class,
    merge, stable sort by descending score, global cap. Returns [(index, score, label)]."""
    if labels is None:
        groups = [np.arange(len(scores))]
    else:
        groups = [np.nonzero(labels == c)[0] for c in np.unique(labels)]
    merged = []
    for idx in groups:
        picks = single(segs[idx], scores[idx], sigma, min_score)[:max_num]
        merged += [(int(idx[j]), s, -1 if labels is None else int(labels[idx[j]])) for j, s in picks]
    merged.sort(key=lambda item: -item[1])  # list.sort is stable
    return merged[:max_num]


def random_case(seed: int, n: int, num_classes: int | None, ties: bool = False):
    g = np.random.default_rng(seed)
    if ties:
        starts = g.integers(0, 12, n).astype(np.float32)
        segs = np.stack([starts, starts + g.integers(1, 6, n)], 1).astype(np.float32)
        scores = g.choice(np.array([0.3, 0.5, 0.9], np.float32), n)
    else:
        starts = g.uniform(0, 100, n)
        segs = np.stack([starts, starts + g.uniform(0.5, 30, n)], 1).astype(np.float32)
        scores = g.permutation(np.linspace(0.02, 0.99, n)).astype(np.float32)  # all distinct
    labels = None if num_classes is None else g.integers(0, num_classes, n)
    return segs, scores, labels


def run_fast(segs, scores, labels, sigma, min_score, max_num, multiclass=True):
    lab = None if labels is None else torch.from_numpy(labels)
    return soft_nms(torch.from_numpy(segs), torch.from_numpy(scores), sigma, min_score, max_num, lab, multiclass)


def assert_matches(result, expected, segs, labels) -> None:
    got_idx = result.indices.tolist()
    assert got_idx == [e[0] for e in expected]
    np.testing.assert_allclose(result.scores.numpy(), [e[1] for e in expected], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(result.segments.numpy(), segs[got_idx].reshape(-1, 2))
    if labels is not None:
        assert result.labels.tolist() == [e[2] for e in expected]
    assert result.scores.dtype == torch.float32 and result.labels.dtype == torch.long


@pytest.fixture(params=["one-bucket", "bucket-per-size"], autouse=True)
def bucketing(request, monkeypatch):
    """Run every test with all rows in one padded bucket and with one bucket per row size."""
    monkeypatch.setattr(nms_module, "STEP_COST", 1e12 if request.param == "one-bucket" else 0)
    return request.param


# --------------------------------------------------------------------------- hand-worked


def test_hand_worked_three_segments():
    # A=[0,10] 0.9, B=[5,15] 0.8, C=[10,20] 0.75, sigma 1. IoU(A,B)=IoU(B,C)=1/3, IoU(A,C)=0.
    # Pick A: B -> 0.8 e^{-1/9} = 0.715871, C unchanged 0.75. Pick C (now the max):
    # B -> 0.8 e^{-2/9} = 0.640590. Pick B.
    segs = torch.tensor([[0.0, 10.0], [5.0, 15.0], [10.0, 20.0]])
    scores = torch.tensor([0.9, 0.8, 0.75])
    out = soft_nms(segs, scores, sigma=1.0, min_score=1e-4, max_num=10)
    assert out.indices.tolist() == [0, 2, 1]
    np.testing.assert_allclose(out.scores.numpy(), [0.9, 0.75, 0.8 * math.exp(-2 / 9)], atol=1e-6)
    assert out.segments.tolist() == [[0.0, 10.0], [10.0, 20.0], [5.0, 15.0]]
    assert out.labels.tolist() == [0, 0, 0]
    # min_score between B's decayed scores: B is dropped after the second decay
    out = soft_nms(segs, scores, sigma=1.0, min_score=0.65, max_num=10)
    assert out.indices.tolist() == [0, 2]
    # cap
    out = soft_nms(segs, scores, sigma=1.0, min_score=1e-4, max_num=2)
    assert out.indices.tolist() == [0, 2]
    # per class: B alone in class 1 is never decayed
    out = soft_nms(segs, scores, 1.0, 1e-4, 10, labels=torch.tensor([0, 1, 0]))
    assert out.indices.tolist() == [0, 1, 2]
    np.testing.assert_allclose(out.scores.numpy(), [0.9, 0.8, 0.75], atol=1e-7)
    assert out.labels.tolist() == [0, 1, 0]


def test_no_factor_two_in_gaussian():
    # identical segments: IoU = 1 up to the 1e-6 length term, decay exp(-1/sigma)
    segs = torch.tensor([[0.0, 4.0], [0.0, 4.0]])
    out = soft_nms(segs, torch.tensor([1.0, 0.5]), sigma=0.5, min_score=0.0, max_num=5)
    np.testing.assert_allclose(out.scores.numpy(), [1.0, 0.5 * math.exp(-2.0)], atol=1e-6)


def test_length_term_of_one_millionth():
    # two identical segments 1e-6 long: lengths 2e-6 with the release's +1e-6, so
    # IoU = 1e-6 / (2e-6 + 2e-6 - 1e-6) = 1/3 (it would be 1 with plain lengths)
    segs = torch.tensor([[0.0, 1e-6], [0.0, 1e-6]])
    out = soft_nms(segs, torch.tensor([1.0, 0.5]), sigma=1.0, min_score=0.0, max_num=5)
    np.testing.assert_allclose(out.scores.numpy(), [1.0, 0.5 * math.exp(-1 / 9)], atol=1e-6)
    # zero-length segments never overlap
    segs = torch.tensor([[3.0, 3.0], [3.0, 3.0]])
    out = soft_nms(segs, torch.tensor([1.0, 0.5]), sigma=1.0, min_score=0.0, max_num=5)
    assert out.scores.tolist() == [1.0, 0.5]


def test_first_pick_is_kept_below_min_score_like_the_release():
    # the release never tests the first pick against min_score; later picks are tested
    segs = torch.tensor([[0.0, 1.0], [5.0, 6.0]])
    out = soft_nms(segs, torch.tensor([0.05, 0.04]), sigma=0.9, min_score=0.1, max_num=5)
    assert out.indices.tolist() == [0]
    assert ref_batched(segs.numpy(), np.array([0.05, 0.04], np.float32), None, 0.9, 0.1, 5) == [(0, 0.05000000074505806, -1)]


def test_empty_and_single_input():
    out = soft_nms(torch.zeros(0, 2), torch.zeros(0), 0.9, 1e-3, 10, labels=torch.zeros(0, dtype=torch.long))
    assert out.segments.shape == (0, 2) and out.scores.shape == (0,) and out.labels.shape == (0,)
    out = soft_nms(torch.tensor([[1.0, 2.0]]), torch.tensor([0.3]), 0.9, 1e-3, 10)
    assert out.indices.tolist() == [0] and out.scores.tolist() == pytest.approx([0.3])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="segments"):
        soft_nms(torch.zeros(3, 3), torch.zeros(3), 0.9, 1e-3, 10)
    with pytest.raises(ValueError, match="scores"):
        soft_nms(torch.zeros(3, 2), torch.zeros(4), 0.9, 1e-3, 10)
    with pytest.raises(ValueError, match="labels"):
        soft_nms(torch.zeros(3, 2), torch.zeros(3), 0.9, 1e-3, 10, labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="sigma"):
        soft_nms(torch.zeros(3, 2), torch.zeros(3), 0.0, 1e-3, 10)
    with pytest.raises(ValueError, match="max_num"):
        soft_nms(torch.zeros(3, 2), torch.zeros(3), 0.9, 1e-3, 0)
    with pytest.raises(ValueError, match="finite"):
        soft_nms(torch.zeros(3, 2), torch.tensor([0.1, float("nan"), 0.2]), 0.9, 1e-3, 10)


# --------------------------------------------------------------------------- random parity


def test_references_agree_without_ties():
    for seed in range(6):
        segs, scores, _ = random_case(seed, 40, None)
        assert ref_softnms_release(segs, scores, 0.7, 0.05) == ref_softnms_lowest_index(segs, scores, 0.7, 0.05)


@pytest.mark.parametrize("seed", range(12))
def test_multiclass_matches_release_reference(seed):
    g = np.random.default_rng(1000 + seed)
    n = int(g.integers(1, 160))
    num_classes = int(g.integers(1, 12))
    sigma = float(g.choice([0.5, 0.9, 0.99]))
    min_score = float(g.choice([1e-4, 0.05, 0.3]))
    max_num = int(g.choice([3, 10, 200]))
    segs, scores, labels = random_case(seed, n, num_classes)
    expected = ref_batched(segs, scores, labels, sigma, min_score, max_num)
    assert_matches(run_fast(segs, scores, labels, sigma, min_score, max_num), expected, segs, labels)


@pytest.mark.parametrize("seed", range(8))
def test_class_agnostic_matches_release_reference(seed):
    g = np.random.default_rng(2000 + seed)
    n = int(g.integers(1, 200))
    segs, scores, labels = random_case(seed, n, 5)
    max_num = int(g.choice([5, 50, 400]))
    expected = ref_batched(segs, scores, None, 0.9, 1e-3, max_num)
    # no labels at all, and labels given but multiclass=False: both class-agnostic
    assert_matches(run_fast(segs, scores, None, 0.9, 1e-3, max_num), expected, segs, None)
    out = run_fast(segs, scores, labels, 0.9, 1e-3, max_num, multiclass=False)
    assert_matches(out, [(i, s, int(labels[i])) for i, s, _ in expected], segs, labels)


def test_large_group_first_picks_match_reference():
    # 2500 candidates in one group. The first k picks do not depend on later ones, so a reference stopped after k picks is exact.
    segs, scores, _ = random_case(77, 2500, None)
    expected = ref_softnms_lowest_index(segs, scores, 0.9, 1e-3, max_picks=25)
    assert_matches(run_fast(segs, scores, None, 0.9, 1e-3, 25), [(i, s, -1) for i, s in expected], segs, None)


@pytest.mark.parametrize("seed", range(10))
def test_ties_follow_lowest_index_rule(seed):
    g = np.random.default_rng(3000 + seed)
    n = int(g.integers(2, 90))
    segs, scores, labels = random_case(seed, n, int(g.integers(1, 4)), ties=True)
    max_num = int(g.choice([4, 100]))
    min_score = float(g.choice([1e-4, 0.2]))
    expected = ref_batched(segs, scores, labels, 0.8, min_score, max_num, single=ref_softnms_lowest_index)
    assert_matches(run_fast(segs, scores, labels, 0.8, min_score, max_num), expected, segs, labels)
    expected = ref_batched(segs, scores, None, 0.8, min_score, max_num, single=ref_softnms_lowest_index)
    assert_matches(run_fast(segs, scores, None, 0.8, min_score, max_num), expected, segs, None)


def test_documented_tie_difference_from_release():
    # The release breaks ties by buffer position. Here candidate 1 is removed in round 0 and
    # the last candidate (4) moves into its slot, ahead of candidate 2; 2 and 4 then tie.
    segs = np.array([[0, 10], [2, 12], [20, 30], [24, 34], [40, 50]], np.float32)
    scores = np.array([0.9, 0.05, 0.5, 0.45, 0.5], np.float32)
    sigma, min_score = 0.5, 0.1
    release = ref_softnms_release(segs, scores, sigma, min_score)
    ours = ref_softnms_lowest_index(segs, scores, sigma, min_score)
    assert [i for i, _ in release][:2] == [0, 4] and [i for i, _ in ours][:2] == [0, 2]
    out = run_fast(segs, scores, None, sigma, min_score, 10)
    assert_matches(out, [(i, s, -1) for i, s in ours], segs, None)


def test_input_dtypes_and_order_are_not_modified():
    segs, scores, labels = random_case(5, 50, 3)
    s64, sc64 = torch.from_numpy(segs).double(), torch.from_numpy(scores).double()
    before = sc64.clone()
    out = soft_nms(s64, sc64, 0.9, 1e-3, 20, torch.from_numpy(labels))
    assert torch.equal(sc64, before)
    assert_matches(out, ref_batched(segs, scores, labels, 0.9, 1e-3, 20), segs, labels)
    s32, sc32 = torch.from_numpy(segs), torch.from_numpy(scores)  # float32 inputs share memory with NumPy
    before_segs, before_scores = s32.clone(), sc32.clone()
    soft_nms(s32, sc32, 0.9, 1e-3, 20, torch.from_numpy(labels))
    assert torch.equal(s32, before_segs) and torch.equal(sc32, before_scores)


# --------------------------------------------------------------------------- voting


def test_segment_voting_hand_worked():
    kept = torch.tensor([[0.0, 10.0], [50.0, 60.0]])
    cands = torch.tensor([[0.0, 10.0], [0.0, 11.0], [1.0, 10.0], [30.0, 40.0], [50.0, 60.0]])
    cand_scores = torch.tensor([0.6, 0.3, 0.1, 0.9, 0.5])
    # IoU([0,10],[0,11]) = 10/11 = 0.909 >= 0.9; IoU([0,10],[1,10]) = 0.9 >= 0.9
    voted, scores = segment_voting(kept, torch.tensor([0.6, 0.5]), cands, cand_scores, 0.9)
    expected0 = (0.6 * torch.tensor([0.0, 10.0]) + 0.3 * torch.tensor([0.0, 11.0]) + 0.1 * torch.tensor([1.0, 10.0])) / 1.0
    torch.testing.assert_close(voted[0], expected0)
    torch.testing.assert_close(voted[1], torch.tensor([50.0, 60.0]))
    assert scores.tolist() == pytest.approx([0.6, 0.5])
    # a stricter threshold keeps only exact matches
    voted, _ = segment_voting(kept, torch.tensor([0.6, 0.5]), cands, cand_scores, 0.95)
    torch.testing.assert_close(voted, kept)


def test_segment_voting_by_label_and_zero_weight_fallback():
    kept = torch.tensor([[0.0, 10.0]])
    cands = torch.tensor([[0.0, 10.0], [0.0, 10.5]])
    voted, _ = segment_voting(
        kept, torch.tensor([0.5]), cands, torch.tensor([0.5, 0.5]), 0.9,
        kept_labels=torch.tensor([1]), all_labels=torch.tensor([1, 2]),
    )
    torch.testing.assert_close(voted, kept)
    # no neighbour with positive weight: the kept segment stays where it is
    voted, _ = segment_voting(kept, torch.tensor([0.5]), cands + 100.0, torch.tensor([0.5, 0.5]), 0.9)
    torch.testing.assert_close(voted, kept)
