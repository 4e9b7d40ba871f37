"""The NLQ task on synthetic Ego4D-format data: prediction, files, and a learning test."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
import torch

from egoasl.config import Config, config_from_dict
from egoasl.config_loader import deep_merge
from egoasl.data.datasets import collate
from egoasl.data.synthetic import generate_synthetic
from egoasl.engine.annotations import nlq_queries
from egoasl.engine.ensemble import raw_output_of
from egoasl.engine.nlq_merge import read_member
from egoasl.engine.nlq_task import NLQTask
from egoasl.engine.tasks import build_task
from egoasl.engine.train import train
from egoasl.io.submission import errors_only, read_submission, validate_nlq_submission
from egoasl.metrics.nlq import hull_iou

CPU = torch.device("cpu")


def tiny_cfg(root, **sections) -> Config:
    """A width-32 grounder for `scale="tiny"` data (clips of 40-60 s: at most 113 cells at 1.875/s)."""
    tree = {
        "data": {
            "task": "nlq", "root": str(root), "resize": False, "max_seq_len": 128, "text_dim": 16, "trunc_thresh": 0.6,
            "sources": [
                {"name": "egovlp", "dim": 12, "proj_dim": 16, "layout": "clip"},
                {"name": "slowfast", "dim": 24, "proj_dim": 16, "layout": "video"},
                {"name": "omnivore", "dim": 16, "proj_dim": 16, "layout": "video"},
            ],
        },
        "model": {
            "num_classes": 1, "width": 32, "n_head": 4, "embd_layers": 1, "embd_kernel": 1, "stem_layers": 1,
            "num_levels": 4, "rel_global_layer": False, "channel_attention": False, "text_layers": 1,
            "fusion_layers": 1, "dropout": 0.0, "droppath": 0.0, "head_layers": 2, "center_sample_radius": 3.0,
            "regression_ranges": [[0, 8], [4, 16], [8, 32], [16, 10000]],
        },
        "asl": {"arg_norm": "len", "al_weight": 0.0},
        "loss": {"focal_alpha": 0.5, "label_smoothing": 0.2, "nce_weight": 5.0, "init_loss_norm": 30.0},
        "train": {"batch_size": 8, "lr": 0.003, "ema": False, "device": "cpu", "seed": 0},
        "test": {"pre_nms_topk": 2000, "duration_thresh": 0.1, "multiclass_nms": False, "nms_sigma": 0.9,
                 "min_score": 0.001, "max_seg_num": 100, "voting_thresh": 0.95, "top_k": 5},
    }
    return config_from_dict(deep_merge(tree, sections))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nlq_tiny")
    generate_synthetic(root, scale="tiny")
    return root


def untrained(cfg: Config) -> tuple[NLQTask, torch.nn.Module]:
    torch.manual_seed(0)
    task = NLQTask(cfg)
    return task, task.build_model()


def test_predict_top_k_windows_best_first_in_seconds(tiny_root):
    cfg = tiny_cfg(tiny_root)
    task, model = untrained(cfg)
    predictions = task.predict(model, "val", CPU, progress=False, batch_size=3)
    queries = nlq_queries(cfg, "val")
    assert list(predictions) == [q.key for q in queries]  # every query with text, in file order
    for q in queries:
        windows = predictions[q.key]
        assert len(windows) == cfg.test.top_k
        scores = [w.score for w in windows]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert all(0.0 <= w.start <= w.end <= q.duration for w in windows)
        assert any(w.end - w.start < q.duration for w in windows)  # real candidates, not only the filler


def test_written_submission_passes_the_validator(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root)
    task, model = untrained(cfg)
    result = task.evaluate(model, "val", CPU, progress=False)
    assert set(result.metrics) >= {"R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5", "mean_R1", "mIoU"}
    assert result.main == pytest.approx(result.metrics["mean_R1"])
    assert result.main == pytest.approx((result.metrics["R1@0.3"] + result.metrics["R1@0.5"]) / 2)
    paths = task.write_predictions(result, tmp_path, "val")
    assert [p.name for p in paths] == ["val_submission.json", "val_scores.json", "val_metrics.json"]
    obj, duplicates = read_submission(paths[0])
    assert not duplicates and not errors_only(validate_nlq_submission(obj, nlq_queries(cfg, "val")))
    assert read_member(paths[0]) == result.submission
    assert json.loads(paths[2].read_text())["mean_R1"] == pytest.approx(result.main)


def test_test_split_has_predictions_but_no_metrics(tiny_root, tmp_path):
    cfg = tiny_cfg(tiny_root)
    task, model = untrained(cfg)
    result = task.evaluate(model, "test", CPU, progress=False)
    assert result.metrics == {} and math.isnan(result.main)
    assert len(result.submission) == len(nlq_queries(cfg, "test"))
    paths = task.write_predictions(result, tmp_path, "test")
    assert [p.name for p in paths] == ["test_submission.json", "test_scores.json"]


def test_too_few_candidates_are_filled_with_the_whole_clip(tiny_root):
    cfg = tiny_cfg(tiny_root, test={"pre_nms_thresh": 0.999})
    task, model = untrained(cfg)
    predictions = task.predict(model, "val", CPU, progress=False)
    q = nlq_queries(cfg, "val")[0]
    assert [tuple(w) for w in predictions[q.key]] == [(0.0, q.duration, 0.0)] * 5


def test_build_task_and_several_training_splits(tiny_root):
    cfg = tiny_cfg(tiny_root, data={"train_splits": ["train", "val"]})
    task = build_task(cfg)
    assert isinstance(task, NLQTask) and task.main_metric == "mean_R1"
    dataset = task.train_dataset()
    assert len(dataset) == len(nlq_queries(cfg, "train")) + len(nlq_queries(cfg, "val"))
    items = [dataset[0], dataset[len(dataset) - 1]]
    batch = task.collate(items)
    longest = max(item["feats"].shape[-1] for item in items)
    assert batch["feats"].shape[-1] == -(-longest // 8) * 8 <= 128  # the longest clip, rounded to 2**(levels-1)
    assert batch["text"].shape[-1] == 16
    losses = task.training_losses(untrained(cfg)[1], batch, CPU, contextlib.nullcontext)
    assert torch.isfinite(losses["loss"]) and "nce" in losses


def random_window_r1(queries, train_queries, iou: float = 0.3, draws: int = 2000, seed: int = 0) -> float:
    """Expected R@1 at ``iou`` of one random window per query: length drawn from the training
    windows, start uniform over the positions that keep it inside the clip."""
    rng = np.random.default_rng(seed)
    lengths = np.array([q.end - q.start for q in train_queries if q.end > q.start])
    hits = []
    for q in queries:
        length = np.minimum(rng.choice(lengths, draws), q.duration)
        start = rng.uniform(0.0, q.duration - length)
        hits.append(np.mean(hull_iou(np.stack([start, start + length], axis=1), q.start, q.end) > iou))
    return float(np.mean(hits))


def test_learning_beats_random_windows(tmp_path):
    """Train through the real trainer for 3 short epochs (111 steps, ~10 CPU seconds), then
    compare val R@1@0.3 with the random-window baseline."""
    root = tmp_path / "data"
    generate_synthetic(root, scale="tiny", videos=80)  # ~300 train and ~120 val queries
    cfg = tiny_cfg(root, train={"epochs": 3, "warmup_epochs": 1, "eval_start_epoch": 3})
    summary = train(cfg, NLQTask(cfg), tmp_path / "run", progress=False)
    r1 = summary.last_metrics["R1@0.3"] / 100.0
    baseline = random_window_r1(nlq_queries(cfg, "val"), nlq_queries(cfg, "train"))
    assert 0.1 < baseline < 0.2
    assert r1 >= baseline + 0.1, f"R@1@0.3 {r1:.3f} vs random windows {baseline:.3f}"
    predictions = tmp_path / "run" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == ["val_metrics.json", "val_scores.json", "val_submission.json"]


def test_padding_a_batch_to_its_longest_clip_predicts_as_padding_to_max_seq_len(tiny_root):
    """Batches are padded to the longest clip rounded to 2**(levels-1) (faster); the predictions are
    those of padding to data.max_seq_len, to float tolerance (channel attention and local windows on)."""
    cfg = tiny_cfg(tiny_root, model={"channel_attention": True, "masked_channel_attention": True, "attn_window": 9,
                                     "stem_layers": 2})
    task, model = untrained(cfg)
    dataset = task.dataset("val", training=False)
    items = [dataset[i] for i in range(4)]
    short, full = task.collate(items), collate(items, pad_to=cfg.data.max_seq_len)
    assert short["feats"].shape[-1] < full["feats"].shape[-1] == 128
    assert short["feats"].shape[-1] % 8 == 0 and short["feats"].shape[-1] - 8 < max(i["feats"].shape[-1] for i in items)
    model.eval()
    with torch.no_grad():
        outs = [model(b["feats"], b["masks"], b["text"], b["text_masks"]) for b in (short, full)]
    for a, b, m in zip(outs[0].cls_logits, outs[1].cls_logits, outs[0].masks):
        torch.testing.assert_close(a[m], b[:, : a.shape[1]][m], rtol=1e-4, atol=1e-4)
    for a, b, m in zip(outs[0].offsets, outs[1].offsets, outs[0].masks):
        torch.testing.assert_close(a[m], b[:, : a.shape[1]][m], rtol=1e-4, atol=1e-4)
    for b, meta in enumerate(short["meta"]):
        ours, theirs = task.decode(raw_output_of(outs[0], b), meta), task.decode(raw_output_of(outs[1], b), meta)
        for w, v in zip(ours, theirs):
            assert w.start == pytest.approx(v.start, abs=1e-3) and w.end == pytest.approx(v.end, abs=1e-3)
            assert w.score == pytest.approx(v.score, abs=1e-4)


@pytest.mark.parametrize("model", [{"channel_attention": True, "masked_channel_attention": False},
                                   {"mask_conv_inputs": False}, {"masked_skip_pool": False}])
def test_models_that_read_the_padding_keep_padding_to_max_seq_len(tiny_root, model):
    cfg = tiny_cfg(tiny_root, model=model)
    task = NLQTask(cfg)
    dataset = task.dataset("val", training=False)
    assert task.collate([dataset[0]])["feats"].shape[-1] == cfg.data.max_seq_len
