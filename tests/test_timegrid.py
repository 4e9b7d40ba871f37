import numpy as np
import pytest
import torch

from egoasl.data.timegrid import OFFICIAL_FEATURE_STEP, TimeGrid


def test_resized_grid_cell_centres():
    grid = TimeGrid.resized(duration=480.0, num_cells=1024)
    # cell i is centred at (i + 0.5) * D / T
    assert grid.to_seconds(0.0) == pytest.approx(0.5 * 480 / 1024)
    assert grid.to_seconds(1023.0) == pytest.approx(1023.5 * 480 / 1024)
    assert grid.to_grid(240.0) == pytest.approx(240 * 1024 / 480 - 0.5)


def test_round_trip_scalar_array_tensor():
    grid = TimeGrid.resized(duration=193.25, num_cells=256)
    seconds = np.array([0.0, 0.37, 12.5, 100.0, 193.25])
    back = grid.to_seconds(grid.to_grid(seconds))
    np.testing.assert_allclose(back, seconds, atol=1e-9)
    tensor = torch.tensor(seconds, dtype=torch.float64)
    torch.testing.assert_close(grid.to_seconds(grid.to_grid(tensor)), tensor)
    assert grid.to_seconds(grid.to_grid(12.5)) == pytest.approx(12.5)


def test_native_grid_official_step():
    # official features: vector j of a clip centred at offset + j * 16/30
    grid = TimeGrid(step=OFFICIAL_FEATURE_STEP, offset=16 / 30, duration=60.0)
    assert grid.to_seconds(2.0) == pytest.approx((2 * 16 + 16) / 30)
    assert grid.to_grid((5 * 16 + 16) / 30) == pytest.approx(5.0)


def test_seconds_are_clamped_to_clip():
    grid = TimeGrid.resized(duration=100.0, num_cells=100)
    assert grid.to_seconds(-10.0) == 0.0
    assert grid.to_seconds(500.0) == 100.0
    np.testing.assert_array_equal(grid.to_seconds(np.array([-3.0, 1000.0])), [0.0, 100.0])
    assert grid.to_seconds(torch.tensor([-3.0, 1000.0])).tolist() == [0.0, 100.0]
    assert grid.to_seconds(-10.0, clamp=False) == pytest.approx(-9.5)


def test_invalid_grids_rejected():
    with pytest.raises(ValueError):
        TimeGrid(step=0.0, offset=0.0, duration=1.0)
    with pytest.raises(ValueError):
        TimeGrid.resized(duration=0.0, num_cells=10)
