"""MQ / NLQ dataset items, training filter and crop, and collate (hand-worked grid values).

Common setup: 10 s clips, one per-clip source at 2 vectors/s (20 rows). With
``max_seq_len=20`` and resizing, the grid has step 0.5 s and offset 0.25 s, so
``g = (sec - 0.25) / 0.5`` and the clip extent is [-0.5, 19.5].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from egoasl.config import DataConfig, SourceConfig
from egoasl.data.datasets import MQDataset, NLQDataset, collate, random_crop
from egoasl.data.features import ClipFeatureLoader
from egoasl.data.records import MQClip, MQInstance, NLQQuery
from egoasl.data.taxonomy import Taxonomy
from egoasl.data.timegrid import TimeGrid
from egoasl.errors import DataError, EgoaslError

DIM = 4
TAXONOMY = Taxonomy(["a", "b"])


def _write_clip(root: Path, clip_uid: str, rows: int = 20) -> torch.Tensor:
    x = torch.arange(rows * DIM, dtype=torch.float32).reshape(rows, DIM)
    path = root / "features" / "src" / f"{clip_uid}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(x, path)
    return x


def _cfg(**kwargs) -> DataConfig:
    base = dict(
        sources=[SourceConfig("src", dim=DIM, proj_dim=DIM, layout="clip", rate=2.0)],
        max_seq_len=20,
        crop_ratio=(1.0, 1.0),
    )
    base.update(kwargs)
    return DataConfig(**base)


def _clip(uid: str, instances: list[tuple[str, float, float]], split: str = "train") -> MQClip:
    return MQClip(uid, "vid", split, 50.0, 60.0, [MQInstance(lbl, s, e) for lbl, s, e in instances])


def _mq(tmp_path: Path, clips: list[MQClip], training: bool, seed: int = 0, **cfg_kwargs) -> MQDataset:
    for clip in clips:
        _write_clip(tmp_path, clip.clip_uid)
    cfg = _cfg(**cfg_kwargs)
    return MQDataset(clips, ClipFeatureLoader(cfg, tmp_path), TAXONOMY, cfg, training=training, seed=seed)


def _grid(meta: dict) -> TimeGrid:
    return TimeGrid(meta["grid_step"], meta["grid_offset"], meta["duration"])


GT = [("a", 2.0, 4.0), ("b", 8.0, 11.0), ("a", 9.0, 14.0), ("b", 10.0, 12.0)]


# ----------------------------------------------------------------------------- MQ


def test_mq_eval_item_shapes_and_grid_values(tmp_path):
    ds = _mq(tmp_path, [_clip("c1", GT, split="val")], training=False)
    item = ds[0]
    assert item["feats"].dtype == torch.float32 and item["feats"].shape == (DIM, 20)
    assert item["segments"].dtype == torch.float32
    # Every GT kept in evaluation, clamped to the clip extent [-0.5, 19.5].
    assert item["segments"].tolist() == [[3.5, 7.5], [15.5, 19.5], [17.5, 19.5], [19.5, 19.5]]
    assert item["labels"].dtype == torch.long and item["labels"].tolist() == [0, 1, 0, 1]
    meta = item["meta"]
    assert (meta["clip_uid"], meta["video_uid"], meta["duration"]) == ("c1", "vid", 10.0)
    assert (meta["grid_step"], meta["grid_offset"]) == (0.5, 0.25)


def test_mq_training_filter(tmp_path):
    ds = _mq(tmp_path, [_clip("c1", GT)], training=True)
    item = ds[0]
    # [8, 11] keeps 2/3 of its length -> kept and clamped to 19.5; [9, 14] keeps 1/5 < 0.3 -> dropped;
    # [10, 12] starts at the clip end -> dropped.
    assert item["segments"].tolist() == [[3.5, 7.5], [15.5, 19.5]]
    assert item["labels"].tolist() == [0, 1]


def test_mq_training_clip_without_gt_left_is_still_returned(tmp_path):
    ds = _mq(tmp_path, [_clip("c1", [("a", 9.8, 14.0)])], training=True)
    item = ds[0]
    assert item["feats"].shape == (DIM, 20)
    assert item["segments"].shape == (0, 2) and item["labels"].shape == (0,)


def test_mq_test_clip_has_empty_ground_truth(tmp_path):
    ds = _mq(tmp_path, [_clip("c1", [], split="test")], training=False)
    item = ds[0]
    assert item["segments"].shape == (0, 2) and item["segments"].dtype == torch.float32
    assert item["labels"].shape == (0,) and item["labels"].dtype == torch.long


def test_mq_duplicates_removed_only_in_training(tmp_path):
    gt = [("a", 2.0, 4.0), ("a", 2.0005, 3.9995), ("a", 2.0, 4.002), ("b", 2.0, 4.0)]
    train = _mq(tmp_path, [_clip("c1", gt)], training=True)[0]
    assert train["labels"].tolist() == [0, 0, 1]
    torch.testing.assert_close(train["segments"], torch.tensor([[3.5, 7.5], [3.5, 7.504], [3.5, 7.5]]))
    evaluation = _mq(tmp_path, [_clip("c1", gt, split="val")], training=False)[0]
    assert evaluation["labels"].tolist() == [0, 0, 0, 1]
    off = _mq(tmp_path, [_clip("c1", gt)], training=True, remove_duplicates=False)[0]
    assert off["labels"].tolist() == [0, 0, 0, 1]


def test_mq_crop_keeps_seconds_consistent(tmp_path):
    # Crop length round(0.5 * 20) = 10 cells; the window starting at cell s spans seconds [s/2, s/2 + 5].
    ds = _mq(tmp_path, [_clip("c1", [("a", 4.0, 6.0)])], training=True, crop_ratio=(0.5, 0.5))
    full = ClipFeatureLoader(ds.cfg, tmp_path).load("c1", "vid", 50.0, 60.0).feats
    starts, whole = set(), 0
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        s = item["meta"]["crop_start"]
        starts.add(s)
        assert item["feats"].shape == (DIM, 10)
        assert torch.equal(item["feats"], full[:, s : s + 10])
        assert item["labels"].tolist() == [0]  # the one GT always keeps >= 0.3 of its length
        seconds = _grid(item["meta"]).to_seconds(item["segments"][0].double())
        expected = torch.tensor([max(4.0, s / 2), min(6.0, s / 2 + 5)], dtype=torch.float64)
        torch.testing.assert_close(seconds, expected, atol=1e-5, rtol=0)
        if 2 <= s <= 8:  # [4, 6] s lies entirely inside the window: exactly the original seconds
            whole += 1
            torch.testing.assert_close(seconds, torch.tensor([4.0, 6.0], dtype=torch.float64), atol=1e-5, rtol=0)
            assert item["segments"][0].tolist() == [7.5 - s, 11.5 - s]
    assert len(starts) > 2 and whole > 0


def test_mq_crop_is_deterministic_per_seed_epoch_index(tmp_path):
    clips = [_clip("c1", GT), _clip("c2", [("a", 1.0, 9.0)])]
    ds = _mq(tmp_path, clips, training=True, crop_ratio=(0.6, 0.9), seed=3)
    ds.set_epoch(4)
    first = [ds[i] for i in range(2)]
    ds.set_epoch(5)
    ds[0]
    ds.set_epoch(4)
    again = [ds[i] for i in range(2)]
    for a, b in zip(first, again):
        assert a["meta"]["crop_start"] == b["meta"]["crop_start"]
        assert torch.equal(a["feats"], b["feats"]) and torch.equal(a["segments"], b["segments"])
    crops = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        item = ds[0]
        crops.add((item["meta"]["crop_start"], item["feats"].shape[1]))
        assert 12 <= item["feats"].shape[1] <= 18  # round(0.6 * 20) .. round(0.9 * 20)
    assert len(crops) > 1
    other_seed = _mq(tmp_path, clips, training=True, crop_ratio=(0.6, 0.9), seed=4)
    seen = set()
    for epoch in range(8):
        other_seed.set_epoch(epoch)
        item = other_seed[0]
        seen.add((item["meta"]["crop_start"], item["feats"].shape[1]))
    assert seen != crops


def test_mq_eval_never_crops(tmp_path):
    ds = _mq(tmp_path, [_clip("c1", GT, split="val")], training=False, crop_ratio=(0.5, 0.5))
    item = ds[0]
    assert item["feats"].shape == (DIM, 20) and item["meta"]["crop_start"] == 0


# ----------------------------------------------------------------------------- NLQ

TEXT_DIM = 6


def _query(clip: str, ann: str, idx: int, start: float | None, end: float | None, split: str = "train") -> NLQQuery:
    return NLQQuery(clip, "vid", ann, idx, f"where is {ann}{idx}?", split, 100.0, 110.0, start, end)


def _write_text(text_root: Path, q: NLQQuery, length: int, dim: int = TEXT_DIM) -> torch.Tensor:
    x = torch.randn(length, dim)
    path = text_root / q.clip_uid / f"{q.annotation_uid}_{q.query_idx}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(x, path)
    return x


class _CountingLoader(ClipFeatureLoader):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loaded: list[str] = []

    def load(self, clip_uid, video_uid, video_start_sec, video_end_sec):
        self.loaded.append(clip_uid)
        return super().load(clip_uid, video_uid, video_start_sec, video_end_sec)


def _nlq(tmp_path: Path, queries: list[NLQQuery], training: bool, text_len: int = 5, **cfg_kwargs):
    cfg = _cfg(resize=False, max_seq_len=64, text_dim=TEXT_DIM, max_text_len=4, **cfg_kwargs)
    texts = {}
    for q in queries:
        _write_clip(tmp_path, q.clip_uid)
        texts[q.key] = _write_text(tmp_path / "text", q, text_len)
    loader = _CountingLoader(cfg, tmp_path)
    return NLQDataset(queries, loader, cfg, training=training, text_root=tmp_path / "text"), loader, texts


def test_nlq_items_text_and_clip_cache(tmp_path):
    queries = [_query("c1", "ann", 0, 2.0, 4.0), _query("c1", "ann", 2, 8.0, 11.0), _query("c2", "x", 0, 0.0, 1.0)]
    ds, loader, texts = _nlq(tmp_path, queries, training=False)
    items = [ds[i] for i in range(3)]
    assert loader.loaded == ["c1", "c2"]  # the second query on c1 reuses its features
    # Native grid: 2 vectors/s from the clip start, step 0.5, offset 0.25; extent [-0.5, 19.5].
    assert items[0]["feats"].shape == (DIM, 20)
    assert items[0]["segments"].tolist() == [[3.5, 7.5]]
    assert items[1]["segments"].tolist() == [[15.5, 19.5]]  # end 11 s clamped to the clip end
    assert items[2]["segments"].tolist() == [[-0.5, 1.5]]
    assert items[0]["labels"].dtype == torch.long and items[0]["labels"].tolist() == [0]
    assert items[0]["text"].shape == (4, TEXT_DIM)  # 5 tokens truncated to max_text_len = 4
    assert torch.equal(items[0]["text"], texts[queries[0].key][:4])
    meta = items[1]["meta"]
    assert (meta["clip_uid"], meta["annotation_uid"], meta["query_idx"], meta["query"]) == ("c1", "ann", 2, "where is ann2?")
    assert (meta["duration"], meta["grid_step"], meta["grid_offset"]) == (10.0, 0.5, 0.25)


def test_nlq_training_skips_zero_length_and_filters(tmp_path):
    queries = [_query("c1", "a", 0, 2.0, 4.0), _query("c1", "a", 1, 5.0, 5.0), _query("c1", "a", 2, 9.0, 14.0)]
    ds, _, _ = _nlq(tmp_path, queries, training=True)
    assert len(ds) == 2 and ds.skipped_zero_length == 1
    assert ds[0]["segments"].tolist() == [[3.5, 7.5]]
    # [9, 14] keeps 1/5 of its length inside the clip, below trunc_thresh 0.3: no GT, item still returned.
    assert ds[1]["segments"].shape == (0, 2) and ds[1]["labels"].shape == (0,)
    evaluation, _, _ = _nlq(tmp_path, queries, training=False)
    assert len(evaluation) == 3 and evaluation.skipped_zero_length == 0
    assert evaluation[1]["segments"].tolist() == [[9.5, 9.5]]


def test_nlq_training_crop_keeps_seconds(tmp_path):
    queries = [_query("c1", "a", 0, 4.0, 6.0)]
    ds, _, _ = _nlq(tmp_path, queries, training=True, crop_ratio=(0.5, 0.5))
    starts = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        item = ds[0]
        s = item["meta"]["crop_start"]
        starts.add(s)
        seconds = _grid(item["meta"]).to_seconds(item["segments"][0].double())
        expected = torch.tensor([max(4.0, s / 2), min(6.0, s / 2 + 5)], dtype=torch.float64)
        torch.testing.assert_close(seconds, expected, atol=1e-5, rtol=0)
    assert len(starts) > 1


def test_nlq_test_query_has_no_segments(tmp_path):
    ds, _, _ = _nlq(tmp_path, [_query("c1", "a", 0, None, None, split="test")], training=False)
    item = ds[0]
    assert item["segments"].shape == (0, 2) and item["labels"].shape == (0,)
    with pytest.raises(EgoaslError, match=r"training needs annotated windows.*clip c1, annotation a, query 0"):
        _nlq(tmp_path, [_query("c1", "a", 0, None, None, split="test")], training=True)


def test_nlq_text_errors(tmp_path):
    q = _query("c1", "ann", 3, 2.0, 4.0)
    ds, _, _ = _nlq(tmp_path, [q], training=False)
    path = tmp_path / "text" / "c1" / "ann_3.pt"
    path.unlink()
    with pytest.raises(DataError, match=r"c1/ann_3\.pt: expected the text features of query 3 .*no such file"):
        ds[0]
    torch.save(torch.zeros(5, TEXT_DIM + 1), path)
    with pytest.raises(DataError, match=r"ann_3\.pt: shape: expected \[N, 6\]"):
        ds[0]
    torch.save(torch.zeros(0, TEXT_DIM), path)
    with pytest.raises(DataError, match=r"ann_3\.pt: shape: expected a non-empty"):
        ds[0]


# ----------------------------------------------------------------------------- collate


def _item(length: int, channels: int = 3, text_len: int | None = None, uid: str = "c") -> dict:
    item = {
        "feats": torch.ones(channels, length),
        "segments": torch.zeros(1, 2),
        "labels": torch.zeros(1, dtype=torch.long),
        "meta": {"clip_uid": uid},
    }
    if text_len is not None:
        item["text"] = torch.ones(text_len, 2)
    return item


def test_collate_pads_and_masks():
    batch = collate([_item(5, uid="x"), _item(3, uid="y")])
    assert batch["feats"].shape == (2, 3, 5)
    assert batch["masks"].dtype == torch.bool
    assert batch["masks"].tolist() == [[True] * 5, [True, True, True, False, False]]
    assert batch["feats"][1, :, 3:].abs().sum() == 0 and batch["feats"][1, :, :3].min() == 1
    assert [m["clip_uid"] for m in batch["meta"]] == ["x", "y"]
    assert len(batch["segments"]) == 2 and len(batch["labels"]) == 2
    assert "text" not in batch


def test_collate_pad_to():
    batch = collate([_item(5), _item(3)], pad_to=8)
    assert batch["feats"].shape == (2, 3, 8)
    assert batch["masks"].sum(dim=1).tolist() == [5, 3]
    with pytest.raises(EgoaslError, match=r"clip long has 5 time steps, more than pad_to=4"):
        collate([_item(5, uid="long"), _item(3)], pad_to=4)


def test_collate_text():
    batch = collate([_item(4, text_len=2), _item(4, text_len=3)])
    assert batch["text"].shape == (2, 3, 2)
    assert batch["text_masks"].tolist() == [[True, True, False], [True, True, True]]
    assert batch["text"][0, 2].abs().sum() == 0
    with pytest.raises(EgoaslError, match=r"1 of 2 items have text"):
        collate([_item(4, text_len=2), _item(4)])


def test_collate_with_real_items(tmp_path):
    clips = [_clip("c1", GT), _clip("c2", [("b", 1.0, 3.0)])]
    ds = _mq(tmp_path, clips, training=True, crop_ratio=(0.6, 0.9))
    items = [ds[0], ds[1]]
    batch = collate(items, pad_to=20)
    assert batch["feats"].shape == (2, DIM, 20)
    assert batch["masks"].sum(dim=1).tolist() == [items[0]["feats"].shape[1], items[1]["feats"].shape[1]]


def test_crop_at_clip_start_keeps_clip_extent_not_half_cell():
    # Native grid whose first cell is centred 0.4 s into the clip (step 0.5): the clip starts at
    # grid -0.8, beyond the first cell's half-cell edge (-0.5). A crop window at cell 0 must keep
    # a GT that starts at 0 s at exactly 0 s.
    grid = TimeGrid(step=0.5, offset=0.4, duration=10.0)
    feats = torch.zeros(1, 20)
    segments = grid.to_grid(torch.tensor([[0.0, 2.0]], dtype=torch.float64))
    labels = torch.zeros(1, dtype=torch.long)
    for seed in range(50):
        out = random_crop(feats, segments, labels, grid, (0.5, 0.5), 0.3, np.random.default_rng(seed))
        if out.start == 0:
            break
    assert out.start == 0
    assert out.segments[0].tolist() == pytest.approx([-0.8, 3.2])
    assert out.grid.to_seconds(out.segments[0]).tolist() == pytest.approx([0.0, 2.0])
