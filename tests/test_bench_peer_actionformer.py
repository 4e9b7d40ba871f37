"""The ActionFormer peer harness's conversion (bench/peer): same features, same grid, same budget.

Training the peer needs its checkout (bench/peer/README.md); these tests need only egoasl.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from egoasl.data.features import ClipFeatureLoader
from egoasl.data.timegrid import TimeGrid
from egoasl.engine.annotations import mq_clips
from egoasl.errors import EgoaslError

from conftest import TINY_MQ_CONFIG

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "peer"))
import actionformer_convert as conv  # noqa: E402


@pytest.fixture(scope="module")
def converted(tiny_data, tmp_path_factory):
    cfg = conv.egoasl_config(tiny_data, "linear", str(TINY_MQ_CONFIG))
    out = tmp_path_factory.mktemp("actionformer_input")
    return cfg, conv.convert_dataset(cfg, out)


def _peer_to_grid(seconds, entry):
    """ActionFormer's ego4d dataset: seconds * fps / feat_stride - 0.5 * num_frames / feat_stride."""
    return seconds * entry["fps"] / 1 - 0.5 * 1 / 1


def _peer_to_seconds(cells, entry):
    """ActionFormer's post-processing: (cells * feat_stride + 0.5 * num_frames) / fps."""
    return (cells * 1 + 0.5 * 1) / entry["fps"]


def test_features_are_what_egoasl_feeds_its_model(converted):
    cfg, data = converted
    loader = ClipFeatureLoader(cfg.data, cfg.data.root)
    clip = mq_clips(cfg, "val")[0]
    written = np.load(data.feature_dir / f"{clip.clip_uid}.npy", allow_pickle=False)
    expected = loader.load_clip(clip).feats
    assert written.shape == (cfg.data.max_seq_len, data.input_dim)
    assert torch.equal(torch.from_numpy(written), expected.t())


def test_peer_time_mapping_is_egoasls_grid(converted):
    cfg, data = converted
    database = json.loads(data.annotation_file.read_text(encoding="utf-8"))["database"]
    clip = mq_clips(cfg, "train")[0]
    entry = database[clip.clip_uid]
    grid = TimeGrid.resized(clip.duration, cfg.data.max_seq_len)
    seconds = np.array([0.0, 1.3, clip.duration / 3, clip.duration])
    np.testing.assert_allclose(_peer_to_grid(seconds, entry), grid.to_grid(seconds), atol=1e-9)
    cells = np.array([-0.5, 0.0, 17.25, cfg.data.max_seq_len - 0.5])
    np.testing.assert_allclose(_peer_to_seconds(cells, entry), grid.to_seconds(cells, clamp=False), atol=1e-9)


def test_annotations_follow_the_peers_converter(converted):
    cfg, data = converted
    database = json.loads(data.annotation_file.read_text(encoding="utf-8"))["database"]
    val = mq_clips(cfg, "val")
    assert {uid for uid, e in database.items() if e["subset"] == "validation"} == {c.clip_uid for c in val}
    for clip in mq_clips(cfg, "train"):
        kept = [i for i in clip.instances if i.end - i.start >= conv.MIN_INSTANCE_SEC]
        if not kept:
            assert clip.clip_uid not in database
            continue
        entry = database[clip.clip_uid]
        assert entry["subset"] == "training"
        assert [(a["label"], a["segment"]) for a in entry["annotations"]] == [(i.label, [i.start, i.end]) for i in kept]
        assert all(data.taxonomy.label(a["label_id"]) == a["label"] for a in entry["annotations"])


def test_peer_config_has_egoasls_size_and_budget(converted):
    cfg, data = converted
    peer = conv.peer_config(cfg, data, seed=3)
    assert peer["init_rand_seed"] == 3
    assert peer["model"]["backbone_arch"] == [cfg.model.embd_layers, cfg.model.stem_layers, cfg.model.num_levels - 1]
    assert peer["model"]["embd_dim"] == peer["model"]["fpn_dim"] == peer["model"]["head_dim"] == cfg.model.width
    assert len(peer["model"]["regression_range"]) == cfg.model.num_levels
    assert peer["opt"]["epochs"] + peer["opt"]["warmup_epochs"] == cfg.train.epochs
    assert peer["opt"]["learning_rate"] == cfg.train.lr and peer["loader"]["batch_size"] == cfg.train.batch_size
    assert peer["harness"]["ema_decay"] == cfg.train.ema_decay
    assert peer["dataset"]["num_classes"] == len(data.taxonomy) == cfg.model.num_classes
    assert peer["dataset"]["input_dim"] == sum(s.dim for s in cfg.data.sources)


def test_peer_overrides_set_known_keys_and_refuse_others(converted):
    cfg, data = converted
    peer = conv.apply_peer_overrides(conv.peer_config(cfg, data, 0), ["model.n_mha_win_size=-1"])
    assert peer["model"]["n_mha_win_size"] == -1
    with pytest.raises(EgoaslError, match="no key 'model.n_mha_window'"):
        conv.apply_peer_overrides(peer, ["model.n_mha_window=3"])
    with pytest.raises(EgoaslError, match="KEY=VALUE"):
        conv.apply_peer_overrides(peer, ["model.n_head"])


def test_unknown_resize_mode_is_refused(tiny_data):
    with pytest.raises(EgoaslError, match="--resize"):
        conv.egoasl_config(tiny_data, "cubic", str(TINY_MQ_CONFIG))
