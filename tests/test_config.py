import pytest
import yaml

from egoasl.config import Config, config_from_dict, dump_config, load_config
from egoasl.errors import EgoaslError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_round_trip_through_yaml():
    cfg = Config()
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg


def test_inheritance_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", {"model": {"width": 64, "n_head": 4}, "train": {"lr": 0.01, "epochs": 3}})
    write(tmp_path / "child.yaml", {"base": "base.yaml", "train": {"epochs": 7}})
    cfg = load_config(tmp_path / "child.yaml", ["model.num_levels=4", "data.root=/x", "train.amp=bf16"])
    assert cfg.model.width == 64 and cfg.model.n_head == 4  # inherited
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.01  # child over base
    assert cfg.model.num_levels == 4 and cfg.data.root == "/x" and cfg.train.amp == "bf16"


def test_lists_are_replaced_not_merged(tmp_path):
    write(tmp_path / "base.yaml", {"data": {"train_splits": ["train", "val"]}})
    write(tmp_path / "child.yaml", {"base": "base.yaml", "data": {"train_splits": ["train"]}})
    assert load_config(tmp_path / "child.yaml").data.train_splits == ["train"]


def test_unknown_key_names_the_path(tmp_path):
    write(tmp_path / "c.yaml", {"model": {"num_levles": 3}})
    with pytest.raises(EgoaslError, match=r"model\.num_levles: unknown key"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(EgoaslError, match=r"trian: unknown key"):
        load_config(tmp_path / "c.yaml", ["trian.lr=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.num_levels=three", r"model\.num_levels: expected an integer, got 'three'"),
        ("model.num_levels=2.5", r"model\.num_levels: expected an integer"),
        ("train.lr=[1]", r"train\.lr: expected a number"),
        ("train.amp=fp8", r"train\.amp: expected one of 'none', 'bf16', 'fp16'"),
        ("asl.class_gaussians=1", r"asl\.class_gaussians: expected true or false"),
        ("data.crop_ratio=[0.5]", r"data\.crop_ratio: expected a list of 2 items"),
        ("model.width=30", r"model\.width: 30 is not divisible by n_head=16"),
        ("novalue", r"expected KEY=VALUE"),
    ],
)
def test_wrong_types_rejected_with_key_path(tmp_path, override, message):
    write(tmp_path / "c.yaml", {})
    with pytest.raises(EgoaslError, match=message):
        load_config(tmp_path / "c.yaml", [override])


def test_sources_are_typed(tmp_path):
    write(tmp_path / "c.yaml", {"data": {"sources": [{"name": "egovlp", "dim": 256, "proj_dim": 256, "layout": "clip"}]}})
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.data.sources[0].layout == "clip" and cfg.data.sources[0].rate == 1.875
    with pytest.raises(EgoaslError, match=r"data\.sources\[0\]\.layout"):
        load_config(tmp_path / "c.yaml", ["data.sources=[{name: a, dim: 1, proj_dim: 1, layout: frames}]"])


def test_missing_config_and_loops(tmp_path):
    with pytest.raises(EgoaslError, match="neither a file nor a built-in preset"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(EgoaslError, match="loops back"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(EgoaslError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
