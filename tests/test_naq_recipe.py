"""The narration pre-training recipe: extra training files, few-label subsets, window jittering, and
a learning test (pre-train on narrations -> fine-tune beats from scratch at the same fine-tune budget)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_nlq_task import tiny_cfg

from egoasl.cli import main
from egoasl.commands.demo_naq import FINETUNE as FINETUNE_PRESET
from egoasl.commands.demo_naq import NAQ_FILE, PRETRAIN, prepare_naq
from egoasl.config import load_config
from egoasl.data.datasets import jitter_window
from egoasl.data.ego4d import load_nlq_annotations
from egoasl.data.synthetic import generate_synthetic
from egoasl.data.text_encoders import text_feature_path
from egoasl.engine.annotations import nlq_queries
from egoasl.engine.nlq_task import NLQTask
from egoasl.engine.train import train
from egoasl.errors import EgoaslError

FINETUNE = {"data": {"train_queries": 16},
            "train": {"epochs": 10, "warmup_epochs": 1, "eval_start_epoch": 10, "lr": 0.001}}


def build_naq(root, clips=("nlq_train.json",)) -> str:
    """`egoasl naq build` on the synthetic narrations, then their token features; returns the file (relative)."""
    ann = root / "annotations"
    assert main(["naq", "build", "--narrations", str(ann / "narration.json"),
                 "--clips", *[str(ann / name) for name in clips], "--out", str(ann / "naq_train.json")]) == 0
    assert main(["text", "encode", "--annotations", str(ann / "naq_train.json"), "--out", str(root / "features" / "text"),
                 "--encoder", "synthetic", "--weights", str(root)]) == 0
    return "annotations/naq_train.json"


def test_jitter_scales_and_shifts_windows_inside_the_clip():
    rng = np.random.default_rng(0)
    windows = torch.tensor([[10.0, 12.0], [0.0, 1.0], [55.0, 59.0]], dtype=torch.float64)
    lengths, centres = [], []
    for _ in range(200):
        out = jitter_window(windows, 60.0, (2.0, 4.0), 0.5, rng)
        assert (out[:, 0] >= 0).all() and (out[:, 1] <= 60.0).all()
        lengths.append((out[:, 1] - out[:, 0]).numpy())
        centres.append(out[0].mean().item())
    lengths = np.stack(lengths)
    assert (lengths >= [4.0, 2.0, 8.0]).all() and (lengths <= [8.0, 4.0, 16.0]).all()  # x U(2, 4), shifted not cut
    assert 10.0 < min(centres) < 11.0 < max(centres) < 12.0  # centre 11 +- 0.5 x 2 s
    assert torch.equal(jitter_window(windows, 60.0, (1.0, 1.0), 0.0, rng), windows)
    with pytest.raises(EgoaslError, match="window_scale"):
        load_config("demo/nlq", ["data.window_scale=[2.0,1.0]"])


def test_training_set_few_labels_plus_narration_files(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)  # the session's data stays as generated
    naq = build_naq(root)
    cfg = tiny_cfg(root, data={"train_queries": 7, "train_annotations": [naq], "window_scale": [2.0, 3.0]})
    task = NLQTask(cfg)
    queries = task.train_queries()
    train_split = nlq_queries(cfg, "train")
    narrations = load_nlq_annotations(root / naq).queries
    assert queries[7:] == narrations and set(queries[:7]) <= set(train_split)
    assert queries[:7] == NLQTask(cfg).train_queries()[:7]  # seeded
    dataset = task.train_dataset()
    assert len(dataset) == 7 + len(narrations) - sum(q.zero_length for q in queries[:7])
    item = dataset[len(dataset) - 1]  # a narration: its ~1 s window is stretched 2-3x
    q = dataset.queries[-1]
    length = (item["segments"][0, 1] - item["segments"][0, 0]).item() * item["meta"]["grid_step"]
    assert 2.0 * (q.end - q.start) - 0.6 <= length <= 3.0 * (q.end - q.start) + 0.6


def test_narration_pretraining_then_finetuning_beats_training_from_scratch(tmp_path):
    """Few NLQ labels (16 train queries): the same 10-epoch fine-tuning from a 1-epoch narration
    pre-training (~900 pairs, windows stretched 4-12x) versus from scratch, val R@1@0.3."""
    root = tmp_path / "data"
    generate_synthetic(root, scale="tiny", videos=30)
    naq = build_naq(root)
    scratch = train(tiny_cfg(root, **FINETUNE), NLQTask(tiny_cfg(root, **FINETUNE)), tmp_path / "scratch",
                    progress=False)
    pre_cfg = tiny_cfg(root, data={"train_queries": 16, "train_annotations": [naq], "window_scale": [4.0, 12.0]},
                       train={"epochs": 1, "warmup_epochs": 0, "eval_start_epoch": -1})
    train(pre_cfg, NLQTask(pre_cfg), tmp_path / "pre", progress=False)
    init = str(tmp_path / "pre" / "checkpoints" / "last.safetensors")
    ft_cfg = tiny_cfg(root, data=FINETUNE["data"], train={**FINETUNE["train"], "init_from": init})
    finetuned = train(ft_cfg, NLQTask(ft_cfg), tmp_path / "finetune", progress=False)
    before, after = scratch.last_metrics["R1@0.3"], finetuned.last_metrics["R1@0.3"]
    assert after >= before + 10.0, f"R@1@0.3 from scratch {before:.2f}, pre-trained then fine-tuned {after:.2f}"


def test_demo_recipe_prepares_what_its_presets_read(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    prepare_naq(root)
    queries = load_nlq_annotations(root / NAQ_FILE).queries
    assert queries and {q.split for q in queries} == {"train"}
    for q in queries[:20]:
        assert torch.load(text_feature_path(root / "features" / "text", *q.key), weights_only=True).shape[1] == 16
    pretrain, finetune = load_config(PRETRAIN), load_config(FINETUNE_PRESET)
    assert pretrain.data.train_annotations == [NAQ_FILE] and pretrain.data.window_scale == (4.0, 12.0)
    assert pretrain.data.train_queries == finetune.data.train_queries == 40 and not finetune.data.train_annotations
    assert (finetune.train.epochs, finetune.train.lr) == (load_config("demo/nlq").train.epochs, load_config("demo/nlq").train.lr)
