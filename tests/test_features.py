"""Feature files, clip slicing, source alignment and the float16 cache (hand-worked numbers)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from egoasl.config import DataConfig, SourceConfig
from egoasl.data.features import ClipFeatureLoader, load_feature_file, resize_sequence, slice_video_features
from egoasl.data.timegrid import OFFICIAL_FEATURE_STEP, TimeGrid
from egoasl.errors import DataError

STEP = OFFICIAL_FEATURE_STEP  # 16 / 30 s


class _OpensFileWhenUnpickled:
    """A payload that creates a file if it is ever unpickled unsafely."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


# ----------------------------------------------------------------------------- load_feature_file


def test_load_pt_returns_float32_copy(tmp_path):
    x = torch.arange(15, dtype=torch.float32).reshape(5, 3)
    torch.save(x, tmp_path / "a.pt")
    out = load_feature_file(tmp_path / "a.pt", expected_dim=3)
    assert out.dtype == torch.float32 and out.shape == (5, 3)
    assert torch.equal(out, x)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.pt.*no such file"):
        load_feature_file(tmp_path / "nothere.pt")


def test_unknown_suffix_refused(tmp_path):
    (tmp_path / "a.txt").write_text("1 2 3")
    with pytest.raises(DataError, match=r"a\.txt.*\.pt or \.npy"):
        load_feature_file(tmp_path / "a.txt")


def test_truncated_pt_refused(tmp_path):
    torch.save(torch.randn(50, 4), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.pt.*unreadable or truncated"):
        load_feature_file(tmp_path / "cut.pt", expected_dim=4)


def test_pickled_dict_of_tensors_refused(tmp_path):
    torch.save({"feats": torch.zeros(3, 4)}, tmp_path / "d.pt")
    with pytest.raises(DataError, match=r"d\.pt.*plain tensor.*got 'dict'"):
        load_feature_file(tmp_path / "d.pt", expected_dim=4)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickled_code_is_never_run(tmp_path, writer):
    marker = tmp_path / "pwned.txt"
    payload = _OpensFileWhenUnpickled(marker)
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=r"evil\.pt.*plain tensor.*never loads"):
        load_feature_file(path, expected_dim=4)
    assert not marker.exists()
    # The payload is real: unsafe unpickling does run it.
    proof = tmp_path / "proof.txt"
    pickle.loads(pickle.dumps(_OpensFileWhenUnpickled(proof))).close()
    assert proof.exists()


def test_one_dimensional_refused(tmp_path):
    torch.save(torch.zeros(7), tmp_path / "v.pt")
    with pytest.raises(DataError, match=r"v\.pt: shape: expected a 2-D \[N, D\] tensor, got \(7,\)"):
        load_feature_file(tmp_path / "v.pt")


def test_empty_refused(tmp_path):
    torch.save(torch.zeros(0, 4), tmp_path / "e.pt")
    with pytest.raises(DataError, match=r"e\.pt: shape: expected a non-empty .*got \(0, 4\)"):
        load_feature_file(tmp_path / "e.pt")


def test_nan_and_inf_counted_with_first_row(tmp_path):
    x = torch.zeros(6, 3)
    x[2, 1] = float("nan")
    x[4, 0] = float("nan")
    x[4, 2] = float("inf")
    torch.save(x, tmp_path / "n.pt")
    with pytest.raises(DataError, match=r"n\.pt: values: .*2 NaN and 1 Inf .*first in row 2"):
        load_feature_file(tmp_path / "n.pt", expected_dim=3)


def test_inf_only_row_reported_after_transpose(tmp_path):
    x = torch.zeros(6, 3)
    x[5, 2] = -float("inf")
    torch.save(x.t().contiguous(), tmp_path / "i.pt")  # stored [D, N]
    with pytest.raises(DataError, match=r"0 NaN and 1 Inf .*first in row 5"):
        load_feature_file(tmp_path / "i.pt", expected_dim=3)


def test_wrong_dim_refused(tmp_path):
    torch.save(torch.zeros(5, 4), tmp_path / "w.pt")
    with pytest.raises(DataError, match=r"w\.pt: shape: expected \[N, 3\].*got \(5, 4\)"):
        load_feature_file(tmp_path / "w.pt", expected_dim=3)


def test_ambiguous_orientation_refused(tmp_path):
    torch.save(torch.zeros(3, 3), tmp_path / "s.pt")
    with pytest.raises(DataError, match=r"s\.pt: shape: .*size 3.*ambiguous.*got \(3, 3\)"):
        load_feature_file(tmp_path / "s.pt", expected_dim=3)


def test_dim_first_orientation_is_transposed(tmp_path):
    x = torch.arange(15, dtype=torch.float32).reshape(5, 3)
    torch.save(x.t().contiguous(), tmp_path / "t.pt")
    out = load_feature_file(tmp_path / "t.pt", expected_dim=3)
    assert out.shape == (5, 3)
    assert torch.equal(out, x)
    # Without an expected dim the file is taken as [N, D] as stored.
    assert load_feature_file(tmp_path / "t.pt").shape == (3, 5)


def test_float16_converted(tmp_path):
    x = torch.tensor([[0.5, 1.25], [-2.0, 3.0], [0.1, 0.2]], dtype=torch.float16)
    torch.save(x, tmp_path / "h.pt")
    out = load_feature_file(tmp_path / "h.pt", expected_dim=2)
    assert out.dtype == torch.float32
    assert torch.equal(out, x.float())


def test_integer_tensor_refused(tmp_path):
    torch.save(torch.zeros(4, 2, dtype=torch.int64), tmp_path / "int.pt")
    with pytest.raises(DataError, match=r"int\.pt: dtype: expected floating-point"):
        load_feature_file(tmp_path / "int.pt")


def test_npy_read_and_transposed(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)  # [D=3, N=4]
    np.save(tmp_path / "a.npy", x)
    out = load_feature_file(tmp_path / "a.npy", expected_dim=3)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.from_numpy(x.T).float())


def test_npy_object_array_and_truncation_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy.*unreadable, truncated or holds pickled"):
        load_feature_file(tmp_path / "obj.npy")
    np.save(tmp_path / "full.npy", np.zeros((10, 4), dtype=np.float32))
    data = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-20])
    with pytest.raises(DataError, match=r"cut\.npy.*unreadable, truncated"):
        load_feature_file(tmp_path / "cut.npy", expected_dim=4)


# ----------------------------------------------------------------------------- slice_video_features

# Vector i is centred at (i + 1) * 16/30 s: 0.5333, 1.0667, 1.6, 2.1333, 2.6667, 3.2, 3.7333, ...
ROWS = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2)


def _rows(clip: torch.Tensor) -> list[int]:
    return clip[:, 0].long().tolist()


def test_slice_centres_inside_clip():
    clip, first = slice_video_features(ROWS, 1.0, 3.0)
    assert _rows(clip) == [1, 2, 3, 4]
    assert first == pytest.approx(16 / 15 - 1.0)


def test_slice_boundaries_are_inclusive():
    clip, first = slice_video_features(ROWS, 1.6, 3.2)  # exactly the centres of rows 2 and 5
    assert _rows(clip) == [2, 3, 4, 5]
    assert first == pytest.approx(0.0, abs=1e-9)


def test_slice_negative_start():
    clip, first = slice_video_features(ROWS, -0.3, 1.2)
    assert _rows(clip) == [0, 1]
    assert first == pytest.approx(16 / 30 + 0.3)


def test_slice_clip_running_past_the_features():
    clip, first = slice_video_features(ROWS[:6], 2.0, 10.0)  # last centre 3.2 s
    assert _rows(clip) == [3, 4, 5]
    assert first == pytest.approx(32 / 15 - 2.0)


def test_slice_short_clip_takes_nearest_row():
    clip, first = slice_video_features(ROWS, 1.1, 1.5)  # no centre inside; middle 1.3 s is nearest row 1
    assert _rows(clip) == [1]
    assert first == pytest.approx(16 / 15 - 1.1)


def test_slice_other_rate():
    clip, first = slice_video_features(ROWS, 0.9, 2.1, step=0.25)  # centres 0.25 (i + 1)
    assert _rows(clip) == [3, 4, 5, 6, 7]
    assert first == pytest.approx(0.1)


def test_slice_clip_after_features_end_refused():
    with pytest.raises(DataError, match=r"vid\.pt: rows: .*6 vectors end at 3\.733"):
        slice_video_features(ROWS[:6], 5.0, 9.0, source="vid.pt")


# ----------------------------------------------------------------------------- ClipFeatureLoader


def _cfg(sources: list[SourceConfig], **kwargs) -> DataConfig:
    return DataConfig(sources=sources, features="features", **kwargs)


def _write(root: Path, folder: str, stem: str, x: torch.Tensor, ext: str = ".pt") -> Path:
    path = root / "features" / folder / f"{stem}{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".pt":
        torch.save(x, path)
    else:
        np.save(path, x.numpy())
    return path


def _step_at(centres: torch.Tensor, t: float, dim: int) -> torch.Tensor:
    """[N, dim] features: 0 for rows centred before t seconds, 1 from t on."""
    return (centres >= t).float()[:, None].repeat(1, dim)


def _crossing(values: torch.Tensor) -> float:
    """Fractional index where a rising 0 -> 1 sequence crosses 0.5 (linear between samples)."""
    k = int((values >= 0.5).nonzero()[0, 0])
    lo, hi = float(values[k - 1]), float(values[k])
    return k - 1 + (0.5 - lo) / (hi - lo)


def test_resize_puts_step_at_the_right_cell(tmp_path):
    # 10 s clip, 2 vectors/s, row j centred at (j + 0.5) * 0.5 s: rows 0..11 before 6 s, 12.. after.
    centres = (torch.arange(20) + 0.5) * 0.5
    _write(tmp_path, "a", "clip1", _step_at(centres, 6.0, 3))
    loader = ClipFeatureLoader(_cfg([SourceConfig("a", dim=3, proj_dim=3, layout="clip", rate=2.0)], max_seq_len=40), tmp_path)
    out = loader.load("clip1", "vid", 100.0, 110.0)
    assert out.feats.shape == (3, 40)
    assert out.grid == TimeGrid(step=0.25, offset=0.125, duration=10.0)
    # Resized cell i samples source position i/2 - 0.25: cells 22..25 read 0, 0.25, 0.75, 1.
    assert out.feats[0, 21:27].tolist() == [0.0, 0.0, 0.25, 0.75, 1.0, 1.0]
    assert _crossing(out.feats[0]) == pytest.approx(23.5)
    assert out.grid.to_grid(6.0) == pytest.approx(23.5)


def test_resize_two_rates_and_a_video_source(tmp_path):
    # Source a: per clip, 2 / s; source b: per clip, 4 / s; source v: per video, official rate.
    a_centres = (torch.arange(20) + 0.5) * 0.5
    b_centres = (torch.arange(40) + 0.5) * 0.25
    _write(tmp_path, "a", "clip1", _step_at(a_centres, 6.0, 2))
    _write(tmp_path, "bdir", "clip1", _step_at(b_centres, 6.0, 3).t().contiguous(), ext=".npy")  # [D, N] npy
    start = 3.0
    v_centres = (torch.arange(40) + 1) * STEP - start
    _write(tmp_path, "v", "vid7", _step_at(v_centres, 6.0, 4))
    sources = [
        SourceConfig("a", dim=2, proj_dim=2, layout="clip", rate=2.0),
        SourceConfig("b", dim=3, proj_dim=3, dir="bdir", layout="clip", rate=4.0),
        SourceConfig("v", dim=4, proj_dim=4, layout="video", rate=1.875),
    ]
    loader = ClipFeatureLoader(_cfg(sources, max_seq_len=40), tmp_path)
    out = loader.load("clip1", "vid7", start, start + 10.0)
    assert out.feats.shape == (9, 40)
    assert loader.channels == 9
    assert out.grid.to_grid(6.0) == pytest.approx(23.5)
    assert _crossing(out.feats[0]) == pytest.approx(23.5)  # source a
    assert _crossing(out.feats[2]) == pytest.approx(23.5)  # source b (already 40 rows, 23 -> 0, 24 -> 1)
    assert out.feats[2, 23].item() == 0.0 and out.feats[2, 24].item() == 1.0
    # The video source holds rows 5..23 (19 rows, clip centres 0.2 + k * 16/30 s); its edge lies between
    # rows 10 (5.533 s) and 11 (6.067 s). Resized cell i samples row position (i + 0.5) * 19/40 - 0.5:
    # cell 22 -> 10.1875 (0.1875), cell 23 -> 10.6625 (0.6625), so it crosses 0.5 at 22 + 0.3125/0.475.
    v = out.feats[5]
    assert float(v[22]) == pytest.approx(0.1875) and float(v[23]) == pytest.approx(0.6625)
    assert _crossing(v) == pytest.approx(22 + 0.3125 / 0.475)
    assert torch.equal(out.feats[5], out.feats[8])  # channels of one source stay together, in order


def test_native_grid_two_rates_aligned_by_time(tmp_path):
    # Clip [2, 12] s of a video. Source v (official, first): rows 3..21, centres (i + 1) * 16/30 - 2
    # = 0.1333 + k * 0.5333 clip seconds. Source c (per clip, 3.75 / s): 37 rows centred (j + 0.5) * 8/30.
    # Each row's value is its own centre time, so after alignment both channels must read the cell time.
    start, end = 2.0, 12.0
    v_centres = (torch.arange(30) + 1) * STEP - start
    c_centres = (torch.arange(37) + 0.5) * (8 / 30)
    _write(tmp_path, "v", "vid", v_centres[:, None].repeat(1, 2).double())
    _write(tmp_path, "c", "clipA", c_centres[:, None].repeat(1, 3))
    sources = [
        SourceConfig("v", dim=2, proj_dim=2, layout="video", rate=1.875),
        SourceConfig("c", dim=3, proj_dim=3, layout="clip", rate=3.75),
    ]
    loader = ClipFeatureLoader(_cfg(sources, max_seq_len=64, resize=False), tmp_path)
    out = loader.load("clipA", "vid", start, end)
    assert out.feats.shape == (5, 19)
    assert out.grid.step == pytest.approx(16 / 30)
    assert out.grid.offset == pytest.approx(2 / 15)
    cell_times = out.grid.to_seconds(torch.arange(19, dtype=torch.float64), clamp=False).float()
    torch.testing.assert_close(out.feats[0], cell_times, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.feats[2], cell_times, atol=1e-5, rtol=0)

    # A step edge at 5.8 s in both sources: first cell at or after the edge is 11 (6.0 s) in both.
    _write(tmp_path, "v", "vid2", _step_at(v_centres, 5.8, 2))
    _write(tmp_path, "c", "clipB", _step_at(c_centres, 5.8, 3))
    edge = loader.load("clipB", "vid2", start, end)
    first_high = [int((edge.feats[ch] >= 0.5).nonzero()[0, 0]) for ch in (0, 2)]
    assert first_high == [11, 11]
    assert int(edge.grid.to_grid(5.8)) + 1 == 11


def test_native_longer_than_max_seq_len_is_resized_with_its_grid(tmp_path):
    start, end = 2.0, 12.0
    v_centres = (torch.arange(30) + 1) * STEP - start
    _write(tmp_path, "v", "vid", v_centres[:, None].repeat(1, 2))
    sources = [SourceConfig("v", dim=2, proj_dim=2, layout="video", rate=1.875)]
    for mode, tolerance in (("linear", 1e-5), ("auto", 0.125 * STEP)):
        loader = ClipFeatureLoader(_cfg(sources, max_seq_len=10, resize=False, resize_mode=mode), tmp_path)
        out = loader.load("clipA", "vid", start, end)
        # 19 rows -> 10 cells: step 16/30 * 1.9, offset 2/15 + 0.45 * 16/30, in both modes
        assert out.feats.shape == (2, 10)
        assert out.grid.step == pytest.approx(16 / 30 * 1.9)
        assert out.grid.offset == pytest.approx(2 / 15 + 0.45 * 16 / 30)
        cell_times = out.grid.to_seconds(torch.arange(10, dtype=torch.float64), clamp=False).float()
        # rows holding their own centre time: linear lands on each cell's time; area (auto) averages
        # whole rows, within an eighth of a row of it
        torch.testing.assert_close(out.feats[0], cell_times, atol=tolerance, rtol=0)


def test_missing_source_file_named(tmp_path):
    sources = [SourceConfig("a", dim=3, proj_dim=3, layout="clip", rate=2.0)]
    loader = ClipFeatureLoader(_cfg(sources, max_seq_len=8), tmp_path)
    with pytest.raises(DataError, match=r"features/a/clipX\.pt.*source 'a'.*no such file"):
        loader.load("clipX", "vid", 0.0, 5.0)


def test_source_dimension_checked(tmp_path):
    _write(tmp_path, "a", "clip1", torch.zeros(10, 5))
    loader = ClipFeatureLoader(_cfg([SourceConfig("a", dim=3, proj_dim=3, layout="clip", rate=2.0)], max_seq_len=8), tmp_path)
    with pytest.raises(DataError, match=r"clip1\.pt: shape: expected \[N, 3\]"):
        loader.load("clip1", "vid", 0.0, 5.0)


def test_cache_hit_without_source_files(tmp_path):
    x = torch.randn(20, 3) * 3
    src = _write(tmp_path, "a", "clip1", x)
    sources = [SourceConfig("a", dim=3, proj_dim=3, layout="clip", rate=2.0)]
    cfg = _cfg(sources, max_seq_len=16, cache_dir="cache")
    first = ClipFeatureLoader(cfg, tmp_path).load("clip1", "vid", 0.0, 10.0)
    written = list((tmp_path / "cache").iterdir())
    assert [p.name.startswith("clip1.") and p.suffix == ".pt" for p in written] == [True]
    src.unlink()
    second = ClipFeatureLoader(cfg, tmp_path).load("clip1", "vid", 0.0, 10.0)
    assert torch.equal(first.feats, second.feats)
    assert first.grid == second.grid == TimeGrid.resized(10.0, 16)
    # The values are the float16-rounded resized features on both reads.
    assert second.feats.dtype == torch.float32
    torch.testing.assert_close(second.feats, resize_sequence(x.t(), 16, cfg.resize_mode).half().float())
    # Other settings are another key: a miss, which needs the (deleted) source again.
    with pytest.raises(DataError, match=r"clip1\.pt"):
        ClipFeatureLoader(_cfg(sources, max_seq_len=8, cache_dir="cache"), tmp_path).load("clip1", "vid", 0.0, 10.0)


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    _write(tmp_path, "a", "clip1", torch.ones(20, 3))
    cfg = _cfg([SourceConfig("a", dim=3, proj_dim=3, layout="clip", rate=2.0)], max_seq_len=8, cache_dir=str(tmp_path / "c"))
    loader = ClipFeatureLoader(cfg, tmp_path)
    loader.load("clip1", "vid", 0.0, 10.0)
    (entry,) = list((tmp_path / "c").iterdir())
    entry.write_bytes(b"garbage")
    out = loader.load("clip1", "vid", 0.0, 10.0)
    assert torch.equal(out.feats, torch.ones(3, 8))
    assert torch.load(entry, weights_only=True)["feats"].dtype == torch.float16
