"""data.resize_mode: area averaging keeps every row when down-sampling; linear drops rows."""

from __future__ import annotations

import pytest
import torch

from egoasl.data.features import resize_sequence
from egoasl.errors import EgoaslError


def test_area_by_an_integer_factor_is_the_mean_of_each_block():
    x = torch.arange(12, dtype=torch.float32)[None]  # (1, 12)
    out = resize_sequence(x, 4, "area")
    assert torch.equal(out, torch.tensor([[1.0, 4.0, 7.0, 10.0]]))


def test_area_weights_rows_by_the_part_of_them_a_cell_covers():
    # 3 rows -> 2 cells: cell 0 spans rows [0, 1.5), cell 1 spans [1.5, 3)
    out = resize_sequence(torch.tensor([[2.0, 4.0, 8.0]]), 2, "area")
    torch.testing.assert_close(out, torch.tensor([[(2.0 + 0.5 * 4.0) / 1.5, (0.5 * 4.0 + 8.0) / 1.5]]))


def test_area_keeps_the_mean_and_constants():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 899, generator=gen, dtype=torch.float64)
    out = resize_sequence(x, 256, "area")
    torch.testing.assert_close(out.mean(dim=1), x.mean(dim=1), rtol=0, atol=1e-12)
    ones = resize_sequence(torch.ones(3, 899), 256, "area")
    torch.testing.assert_close(ones, torch.ones(3, 256))


def test_a_short_burst_of_evidence_survives_area_but_not_linear_down_sampling():
    """An 899-row signal (a 480 s clip at 1.875 vectors/s) with one-row bursts of evidence,
    resized to 256 cells: linear interpolation reads two rows per cell and misses about half
    of the bursts entirely; area averaging keeps every burst's mass."""
    length, cells = 899, 256
    x = torch.zeros(1, length)
    starts = torch.arange(7, length - 2, 37)
    for s in starts:
        x[0, s] = 1.0
    ratio = length / cells
    area = resize_sequence(x, cells, "area")
    linear = resize_sequence(x, cells, "linear")
    torch.testing.assert_close(area.sum() * ratio, x.sum(), rtol=1e-5, atol=0)  # all the evidence is there
    # every burst leaves at least 1/ratio of its rows' mean in some cell under area
    for s in starts:
        first, last = int(s / ratio), int((s + 1) / ratio)
        assert area[0, first:last + 1].sum() * ratio == pytest.approx(1.0, abs=1e-5)
    missed = sum(float(linear[0, int(s / ratio) - 1:int((s + 1) / ratio) + 2].max()) < 0.05 for s in starts)
    assert missed >= len(starts) // 3, "linear down-sampling was expected to miss bursts"


def test_auto_averages_when_down_sampling_and_interpolates_when_up_sampling():
    gen = torch.Generator().manual_seed(1)
    long, short = torch.randn(4, 900, generator=gen), torch.randn(4, 700, generator=gen)
    assert torch.equal(resize_sequence(long, 256, "auto"), resize_sequence(long, 256, "area"))
    assert torch.equal(resize_sequence(short, 1024, "auto"), resize_sequence(short, 1024, "linear"))
    assert resize_sequence(short, 700, "area") is short


def test_area_and_linear_put_cell_centres_at_the_same_times():
    """A ramp lands on the cell centres, row (i + 0.5) T / n - 0.5: exactly under linear; under
    area within the rounding of averaging whole rows (each row is constant over its span)."""
    length, cells = 900, 256
    ramp = torch.arange(length, dtype=torch.float64)[None]
    centres = (torch.arange(cells, dtype=torch.float64) + 0.5) * length / cells - 0.5
    torch.testing.assert_close(resize_sequence(ramp, cells, "area")[0], centres, rtol=0, atol=0.125)
    torch.testing.assert_close(resize_sequence(ramp, cells, "linear")[0], centres)


def test_an_unknown_mode_is_refused():
    with pytest.raises(EgoaslError, match="data.resize_mode"):
        resize_sequence(torch.zeros(1, 10), 5, "cubic")
