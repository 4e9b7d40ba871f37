"""The override grammar: scientific numbers, bool words only on bool fields, list items by index or name."""

import pytest
import yaml

from egoasl.config import dump_config, load_config
from egoasl.config_overrides import apply_overrides, parse_yaml
from egoasl.engine.runs import load_run_config
from egoasl.errors import EgoaslError

SOURCES = [
    {"name": "slowfast", "dim": 8, "proj_dim": 8},
    {"name": "omnivore", "dim": 4, "proj_dim": 4, "dir": "omni"},
]


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"sources": SOURCES}}))
    return path


@pytest.mark.parametrize("text, value", [("1e-4", 1e-4), ("2.5E3", 2500.0), ("-1e+2", -100.0), ("1.0e-4", 1e-4),
                                         (".5", 0.5), ("3", 3)])
def test_scientific_notation_is_a_number(cfg_file, text, value):
    assert parse_yaml(text) == value
    assert load_config(cfg_file, [f"train.lr={text}"]).train.lr == pytest.approx(value)


def test_scientific_notation_in_a_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  lr: 3e-4\n  eta_min: 1e-8\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.eta_min == pytest.approx(1e-8)


@pytest.mark.parametrize("word, value", [("on", True), ("off", False), ("yes", True), ("No", False), ("true", True)])
def test_bool_words_only_on_bool_fields(cfg_file, word, value):
    cfg = load_config(cfg_file, [f"train.ema={word}", f"data.val_split={word}", f"name={word}"])
    assert cfg.train.ema is value
    assert cfg.data.val_split == word and cfg.name == word  # string fields keep the text


def test_string_field_keeps_digits_and_null_text(cfg_file):
    cfg = load_config(cfg_file, ["name=123", "data.cache_dir=null", "data.root="])
    assert cfg.name == "123" and cfg.data.cache_dir == "null" and cfg.data.root == ""


def test_bool_word_in_a_list_of_strings_stays_a_string(cfg_file):
    assert load_config(cfg_file, ["data.train_splits=[train, on]"]).data.train_splits == ["train", "on"]


def test_list_item_by_index_and_by_name(cfg_file):
    cfg = load_config(cfg_file, ["data.sources.0.dir=/x/sf", "data.sources.omnivore.rate=2.5e0"])
    assert cfg.data.sources[0].dir == "/x/sf" and cfg.data.sources[0].name == "slowfast"
    assert cfg.data.sources[1].rate == 2.5 and cfg.data.sources[1].dir == "omni"


def test_list_item_of_a_default_list(cfg_file):
    assert load_config(cfg_file, ["data.train_splits.0=val"]).data.train_splits == ["val"]
    assert load_config(cfg_file, ["model.regression_ranges.0=[0, 3]"]).model.regression_ranges[0] == (0, 3)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.sources.2.dir=x", r"config key data\.sources\.2: index out of range; data\.sources has 2 items"),
        ("data.sources.egovlp.dir=x",
         r"config key data\.sources\.egovlp: expected an index 0\.\.1 or an item name: slowfast, omnivore"),
        ("data.sources.0.dri=x", r"config key data\.sources\.0\.dri: unknown key; valid keys under data\.sources\.0"),
        ("data.sources.0.dim=big", r"data\.sources\[0\]\.dim: expected an integer, got 'big'"),
        ("train.lr.x=1", r"config key train\.lr\.x: train\.lr holds a single value"),
        ("train.ema=maybe", r"config key train\.ema: expected true or false, got 'maybe'"),
        ("train.lr=1e-4x", r"config key train\.lr: expected a number, got '1e-4x'"),
        ("model..width=3", r"expected KEY=VALUE"),
    ],
)
def test_override_errors_name_the_key_path(cfg_file, override, message):
    with pytest.raises(EgoaslError, match=message):
        load_config(cfg_file, [override])


def test_untyped_overrides_parse_yaml():
    tree = apply_overrides({"a": [{"name": "x", "v": 1}]}, ["a.x.v=1e-3", "b.c=off"])
    assert tree == {"a": [{"name": "x", "v": 1e-3}], "b": {"c": "off"}}


def test_load_run_config_applies_overrides_like_train(cfg_file, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config(cfg_file)))
    cfg = load_run_config(run, ["data.root=/moved", "test.nms_sigma=0.5", "data.sources.slowfast.dir=sf2"])
    assert cfg.data.root == "/moved" and cfg.test.nms_sigma == 0.5 and cfg.data.sources[0].dir == "sf2"
    for bad, message in [("tset.nms_sigma=1", r"config key tset: unknown key"),
                         ("test.nms_sigma=wide", r"config key test\.nms_sigma: expected a number")]:
        with pytest.raises(EgoaslError, match=message):
            load_run_config(run, [bad])
        with pytest.raises(EgoaslError, match=message):
            load_config(cfg_file, [bad])
    with pytest.raises(EgoaslError, match="not a run folder"):
        load_run_config(tmp_path)
