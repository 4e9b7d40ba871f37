"""The MQ detector end to end on a tiny config, the presets, and the optimizer groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from egoasl.config import Config, config_from_dict, load_config
from egoasl.config_loader import PRESET_DIR, deep_merge
from egoasl.errors import EgoaslError
from egoasl.model.assignment import assign_batch
from egoasl.model.blocks import AffineDropPath, ChannelLayerNorm
from egoasl.model.detector import DetectorOutput, MQDetector
from egoasl.model.heads import Scale
from egoasl.model.losses import diou_loss_1d
from egoasl.model.param_groups import param_groups
from egoasl.model.sensitivity import SensitivityWeights

T, K, C_IN = 64, 5, 6 + 10 + 4
LEVEL_LENGTHS = [64, 32, 16, 8]


def tiny_cfg(**sections) -> Config:
    """Width 32, 4 heads, 4 levels, 5 classes, three small sources; ``sections`` deep-merged over it."""
    tree = {
        "data": {"sources": [
            {"name": "a", "dim": 6, "proj_dim": 8},
            {"name": "b", "dim": 10, "proj_dim": 16},
            {"name": "c", "dim": 4, "proj_dim": 8},
        ]},
        "model": {
            "num_classes": K, "width": 32, "n_head": 4, "embd_layers": 2, "stem_layers": 2, "num_levels": 4,
            "rel_global_inner": 64, "regression_ranges": [[0, 4], [2, 8], [4, 16], [8, 10000]],
        },
    }
    return config_from_dict(deep_merge(tree, sections))


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Two clips; clip 0 has a GT in every level's range (level 0: short ... level 3: long)."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, C_IN, T, generator=gen)
    masks = torch.ones(2, T, dtype=torch.bool)
    masks[1, 50:] = False
    segments = [
        torch.tensor([[10.0, 12.0], [20.0, 26.0], [30.0, 44.0], [24.0, 56.0]]),
        torch.tensor([[5.0, 9.0], [30.0, 45.0]]),
    ]
    labels = [torch.tensor([0, 1, 2, 3]), torch.tensor([4, 2])]
    return feats, masks, segments, labels


# ----------------------------------------------------------------------------- forward


def test_forward_shapes_and_points():
    model = MQDetector(tiny_cfg()).eval()
    feats, masks, _, _ = batch()
    out = model(feats, masks)
    assert isinstance(out, DetectorOutput)
    assert [x.shape for x in out.cls_logits] == [(2, n, K) for n in LEVEL_LENGTHS]
    assert [x.shape for x in out.offsets] == [(2, n, 2) for n in LEVEL_LENGTHS]
    assert [x.shape for x in out.masks] == [(2, n) for n in LEVEL_LENGTHS]
    assert [x.shape for x in out.feats] == [(2, 32, n) for n in LEVEL_LENGTHS]
    assert out.points.shape == (sum(LEVEL_LENGTHS), 4)
    assert all((x >= 0).all() for x in out.offsets)
    # clip 1 is valid on 50 steps: level l keeps the steps s with s * 2^l < 50
    assert [int(m[1].sum()) for m in out.masks] == [50, 25, 13, 7]
    assert all((x[1][~m[1]] == 0).all() for x, m in zip(out.cls_logits, out.masks))
    # the cls prior: every logit starts near -log(99)
    valid_logits = torch.cat([x[0] for x in out.cls_logits])
    assert abs(torch.sigmoid(valid_logits).mean().item() - 0.01) < 0.01


def test_length_must_be_a_multiple_of_the_coarsest_stride():
    model = MQDetector(tiny_cfg())
    with pytest.raises(EgoaslError, match=r"T=60 is not a multiple of .* = 8 .*pad the clip to T=64"):
        model(torch.randn(1, C_IN, 60), torch.ones(1, 60, dtype=torch.bool))


def test_wrong_input_dim_names_the_sources():
    model = MQDetector(tiny_cfg())
    with pytest.raises(EgoaslError, match=r"19 feature channels.*expects 20 = a 6 \+ b 10 \+ c 4"):
        model(torch.randn(1, 19, T), torch.ones(1, T, dtype=torch.bool))


def test_mask_must_be_bool_batch_by_time():
    model = MQDetector(tiny_cfg())
    with pytest.raises(EgoaslError, match="bool mask"):
        model(torch.randn(1, C_IN, T), torch.ones(1, 1, T, dtype=torch.bool))


def test_config_mistakes_are_reported():
    with pytest.raises(EgoaslError, match="data.sources"):
        MQDetector(tiny_cfg(data={"sources": []}))
    with pytest.raises(EgoaslError, match="rel_global_layer"):
        MQDetector(tiny_cfg(model={"num_levels": 1}))
    with pytest.raises(EgoaslError, match="ascl_level"):
        MQDetector(tiny_cfg(asl={"ascl_weight": 1.0, "ascl_level": 4}))


# ----------------------------------------------------------------------------- padding


def _perturbed(cfg: Config) -> MQDetector:
    """A model whose biases, norms and layer scales are far from init, so padding has content."""
    torch.manual_seed(0)
    model = MQDetector(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or name.endswith("scale"):
                p.add_(0.3 * torch.randn_like(p))
    return model


def _padded_pair(model: MQDetector) -> tuple[DetectorOutput, DetectorOutput]:
    feats, _, _, _ = batch()
    clip = feats[:1]
    short = model(clip, torch.ones(1, T, dtype=torch.bool))
    tail = torch.cat([clip, 5.0 * torch.randn(1, C_IN, T)], dim=-1)  # garbage in the padded half
    mask = torch.zeros(1, 2 * T, dtype=torch.bool)
    mask[:, :T] = True
    return short, model(tail, mask)


def test_masked_channel_attention_variant_is_padding_invariant():
    model = _perturbed(tiny_cfg(model={"masked_channel_attention": True}))
    short, long = _padded_pair(model)
    for level, n in enumerate(LEVEL_LENGTHS):
        torch.testing.assert_close(long.cls_logits[level][:, :n], short.cls_logits[level], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(long.offsets[level][:, :n], short.offsets[level], atol=1e-5, rtol=1e-5)


def test_release_variant_leaks_padding_through_channel_attention_only():
    """As released, the channel attention sums over padded steps; without it, no leak."""
    short, long = _padded_pair(_perturbed(tiny_cfg()))
    assert (long.cls_logits[0][:, :T] - short.cls_logits[0]).abs().max() > 1e-3
    short, long = _padded_pair(_perturbed(tiny_cfg(model={"channel_attention": False})))
    torch.testing.assert_close(long.cls_logits[0][:, :T], short.cls_logits[0], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- losses


def _assert_every_parameter_trained(model: MQDetector, losses: dict[str, torch.Tensor]) -> None:
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"


def test_every_parameter_receives_a_gradient_release_variant():
    torch.manual_seed(0)
    model = MQDetector(tiny_cfg()).train()
    feats, masks, segments, labels = batch()
    out = model(feats, masks)
    # sanity: the GTs reach every level (so every per-level Scale is trained)
    a = assign_batch(out.points, segments, labels, K, True, 1.5)
    level_of_point = torch.repeat_interleave(torch.arange(4), torch.tensor(LEVEL_LENGTHS))
    assert set(level_of_point[a.positive[0]].tolist()) == {0, 1, 2, 3}
    losses = model.losses(out, segments, labels)
    assert set(losses) == {"loss", "cls", "reg", "al", "loss_norm"}
    _assert_every_parameter_trained(model, losses)


def test_every_parameter_receives_a_gradient_with_all_asl_options():
    torch.manual_seed(0)
    cfg = tiny_cfg(
        model={"masked_channel_attention": True, "attn_window": 9},
        asl={"instance_branch": True, "ascl_weight": 0.5, "ascl_level": 1, "normalize_pos_weights": True,
             "sigma_min": 0.1, "arg_norm": "len"},
        loss={"label_smoothing": 0.1},
    )
    model = MQDetector(cfg).train()
    feats, masks, segments, labels = batch()
    losses = model.losses(model(feats, masks), segments, labels)
    assert {"instance", "ascl"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    _assert_every_parameter_trained(model, losses)


def test_total_is_the_weighted_sum_and_reg_matches_diou_over_positives():
    model = MQDetector(tiny_cfg(asl={"class_gaussians": False}, loss={"reg_weight": 2.0})).train()
    feats, masks, segments, labels = batch()
    out = model(feats, masks)
    losses = model.losses(out, segments, labels)
    a = assign_batch(out.points, segments, labels, K, True, 1.5)
    pos = a.positive & torch.cat(out.masks, dim=1)
    norm = 0.9 * 100.0 + 0.1 * pos.sum().item()
    assert losses["loss_norm"].item() == pytest.approx(norm)
    offsets = torch.cat(out.offsets, dim=1)
    reg = diou_loss_1d(offsets[pos], a.reg_targets[pos]).sum() / norm
    torch.testing.assert_close(losses["reg"], reg)
    torch.testing.assert_close(losses["loss"], losses["cls"] + 2.0 * losses["reg"] + 0.2 * losses["al"])


def test_class_gaussians_reweight_the_positive_losses():
    feats, masks, segments, labels = batch()
    plain = MQDetector(tiny_cfg(asl={"class_gaussians": False})).eval()
    torch.manual_seed(0)
    weighted = MQDetector(tiny_cfg(asl={"arg_norm": "len"})).eval()
    weighted.load_state_dict(plain.state_dict(), strict=False)
    out = plain(feats, masks)
    lp, lw = plain.losses(out, segments, labels), weighted.losses(out, segments, labels)
    # Gaussian weights are <= 1 at init: both positive losses shrink, negatives are untouched
    assert lw["cls"] < lp["cls"] and lw["reg"] < lp["reg"]
    torch.testing.assert_close(lw["al"], lp["al"])


def test_clips_without_ground_truth_give_only_negatives():
    model = MQDetector(tiny_cfg()).train()
    feats, masks, _, _ = batch()
    empty = [torch.zeros(0, 2), torch.zeros(0, 2)]
    none = [torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)]
    losses = model.losses(model(feats, masks), empty, none)
    assert losses["reg"].item() == 0.0 and losses["cls"].item() > 0
    assert losses["loss_norm"].item() == pytest.approx(0.9 * 100 + 0.1 * 1)
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_normaliser_updates_in_training_mode_only_and_is_saved():
    model = MQDetector(tiny_cfg(loss={"init_loss_norm": 150.0}))
    feats, masks, segments, labels = batch()
    model.eval()
    with torch.no_grad():
        model.losses(model(feats, masks), segments, labels)
    assert model.loss_norm.value.item() == 150.0
    model.train()
    with torch.no_grad():
        model.losses(model(feats, masks), segments, labels)
    updated = model.loss_norm.value.item()
    assert updated != 150.0
    state = model.state_dict()
    assert "loss_norm.value" in state
    fresh = MQDetector(tiny_cfg(loss={"init_loss_norm": 150.0}))
    fresh.load_state_dict(state)
    assert fresh.loss_norm.value.item() == updated


def test_losses_reject_mismatched_targets():
    model = MQDetector(tiny_cfg())
    feats, masks, segments, labels = batch()
    out = model(feats, masks)
    with pytest.raises(EgoaslError, match="batch of 2"):
        model.losses(out, segments[:1], labels[:1])
    with pytest.raises(EgoaslError, match="label outside"):
        model.losses(out, segments, [torch.tensor([0, 1, 2, 7]), labels[1]])


def test_sensitivity_parameters_for_logging():
    model = MQDetector(tiny_cfg())
    params = model.sensitivity_parameters()
    assert set(params) == {"mu_cls", "sigma_cls", "mu_loc_start", "sigma_loc_start", "mu_loc_end", "sigma_loc_end"}
    assert all(v.shape == (K,) and not v.requires_grad for v in params.values())
    assert params["mu_loc_start"][0] == 0.5 and params["mu_loc_end"][0] == -0.5
    assert MQDetector(tiny_cfg(asl={"class_gaussians": False})).sensitivity_parameters() == {}


def test_bf16_autocast_forward_and_losses_are_finite():
    model = MQDetector(tiny_cfg()).train()
    feats, masks, segments, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(feats, masks)
    assert all(torch.isfinite(x.float()).all() for x in out.cls_logits + out.offsets)
    losses = model.losses(out, segments, labels)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()


# ----------------------------------------------------------------------------- optimizer groups


@pytest.mark.parametrize("wd_on_gauss", [True, False])
def test_param_groups_cover_every_parameter_once(wd_on_gauss):
    model = MQDetector(tiny_cfg(asl={"instance_branch": True}))
    decay, no_decay = param_groups(model, 0.05, wd_on_gauss)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    in_decay = {id(p) for p in decay["params"]}
    gauss = list(model.sensitivity.parameters())
    assert all((id(p) in in_decay) == wd_on_gauss for p in gauss)
    for module in model.modules():
        if isinstance(module, (ChannelLayerNorm, torch.nn.LayerNorm, Scale, AffineDropPath)):
            assert all(id(p) not in in_decay for p in module.parameters(recurse=False))
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            assert id(module.weight) in in_decay
            assert module.bias is None or id(module.bias) not in in_decay
    rel = model.backbone.rel_layer
    assert id(rel.r_w_bias) not in in_decay and id(rel.r_r_bias) not in in_decay
    assert isinstance(model.sensitivity, SensitivityWeights) and len(gauss) == 6


# ----------------------------------------------------------------------------- presets


def _count(name: str) -> int:
    with torch.device("meta"):
        model = MQDetector(load_config(name))
    assert all(p.requires_grad for p in model.parameters())
    return sum(p.numel() for p in model.parameters())


def test_release_preset_has_the_released_trained_parameter_count():
    """222.07 M: what the release trained; its dead 501.7 M are not built (see detector docstring)."""
    n = _count("mq/release")
    assert abs(n - 222.07e6) / 222.07e6 < 0.02
    assert n == 222_065_422  # proj 1.08 M + embd 9.44 M + stem 75.61 M + rel 9.45 M + branch 113.52 M + heads


def test_report_preset_drops_two_downsampling_blocks():
    # 8 levels: two fewer stride-2 blocks (12.61 M each), two fewer neck norms and Scales
    assert _count("mq/release") - _count("mq/report") == 2 * 12_613_632 + 2 * 2048 + 2


@pytest.mark.parametrize("path", sorted((PRESET_DIR / "mq").glob("*.yaml")), ids=lambda p: Path(p).stem)
def test_every_mq_preset_loads_and_builds(path):
    cfg = load_config(path)
    assert cfg.data.task == "mq" and all(s.layout == "clip" for s in cfg.data.sources)
    with torch.device("meta"):
        MQDetector(cfg)


def test_ensemble_members_differ_from_the_release_as_in_the_table():
    rel = load_config("mq/release")
    diffs = {
        "baseline_1": {"train.seed": 3407},
        "baseline_2": {"train.seed": 34073, "loss.init_loss_norm": 150.0},
        "baseline_3": {"train.seed": 3407122, "train.weight_decay": 0.1},
        "baseline_4": {"train.seed": 42, "train.weight_decay": 0.1, "model.dropout": 0.2, "model.droppath": 0.2},
        "baseline_5": {"train.seed": 100, "model.t_c_alpha": 0.7},
    }
    for name, expected in diffs.items():
        cfg = load_config(f"mq/{name}")
        for key, value in expected.items():
            section, field = key.split(".")
            assert getattr(getattr(cfg, section), field) == value, (name, key)
        assert cfg.model.width == rel.model.width and cfg.data.sources == rel.data.sources
