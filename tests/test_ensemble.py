"""Ensembling raw outputs: the elementwise mean, and the safetensors round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from egoasl.engine.ensemble import (
    load_raw_metadata,
    load_raw_outputs,
    mean_raw_outputs,
    save_raw_outputs,
)
from egoasl.errors import DataError, EgoaslError


def raw(seed: int, lengths=(8, 4, 2), num_classes: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    points = torch.cat(
        [torch.stack([torch.arange(n) * 2.0**lvl, torch.zeros(n), torch.full((n,), 4.0 * 2**lvl), torch.full((n,), 2.0**lvl)], 1)
         for lvl, n in enumerate(lengths)]
    )
    return {
        "cls_logits": [torch.randn(n, num_classes, generator=g) for n in lengths],
        "offsets": [torch.rand(n, 2, generator=g) * 3 for n in lengths],
        "masks": [torch.arange(n) < n - 1 for n in lengths],
        "points": points,
    }


def test_mean_of_two_members_is_the_hand_average():
    a, b = raw(0), raw(1)
    out = mean_raw_outputs([a, b])
    for lvl in range(3):
        assert torch.equal(out["cls_logits"][lvl], (a["cls_logits"][lvl] + b["cls_logits"][lvl]) / 2)
        assert torch.equal(out["offsets"][lvl], (a["offsets"][lvl] + b["offsets"][lvl]) / 2)
        assert torch.equal(out["masks"][lvl], a["masks"][lvl])
    assert torch.equal(out["points"], a["points"])
    assert "meta" not in out
    a["meta"] = {"duration": 480.0}
    assert mean_raw_outputs([a, b])["meta"] == {"duration": 480.0}
    # a hand-written value: logits 1 and 3 average to 2 (pre-sigmoid, not probabilities)
    a["cls_logits"][0][0, 0], b["cls_logits"][0][0, 0] = 1.0, 3.0
    assert mean_raw_outputs([a, b])["cls_logits"][0][0, 0].item() == 2.0


def test_mean_of_three_and_of_one():
    members = [raw(i) for i in range(3)]
    out = mean_raw_outputs(members)
    expected = (members[0]["offsets"][1] + members[1]["offsets"][1] + members[2]["offsets"][1]) / 3
    torch.testing.assert_close(out["offsets"][1], expected, rtol=0, atol=1e-6)
    single = mean_raw_outputs([members[0]])
    assert torch.equal(single["cls_logits"][2], members[0]["cls_logits"][2])


def test_shape_mismatch_names_member_and_level():
    a, b, c = raw(0), raw(1), raw(2)
    c["cls_logits"][1] = torch.zeros(4, 5)
    with pytest.raises(EgoaslError, match=r"member 2: cls_logits level 1.*\(4, 5\).*\(4, 3\)"):
        mean_raw_outputs([a, b, c])
    with pytest.raises(EgoaslError, match=r"member 'ckpt_b'.*offsets.*levels"):
        b["offsets"] = b["offsets"][:2]
        mean_raw_outputs([a, b], names=["ckpt_a", "ckpt_b"])
    d = raw(3)
    d["masks"][0] = torch.ones(8, dtype=torch.bool)
    with pytest.raises(EgoaslError, match=r"member 1: masks level 0"):
        mean_raw_outputs([a, d])
    with pytest.raises(EgoaslError, match="at least one"):
        mean_raw_outputs([])


def test_points_may_differ_only_in_regression_ranges():
    a, b = raw(0), raw(1)
    b["points"][:, 2] = 99.0
    assert torch.equal(mean_raw_outputs([a, b])["points"], a["points"])
    b["points"][0, 0] = 0.5
    with pytest.raises(EgoaslError, match=r"member 1: points"):
        mean_raw_outputs([a, b])


def test_save_load_round_trip(tmp_path):
    outputs = {"clip-a": raw(0), "9f2c7c2e-0000-4d3e-b6d2-1234567890ab": raw(1, lengths=(16, 8, 4, 2), num_classes=1)}
    outputs["clip-a"]["cls_logits"][0] = outputs["clip-a"]["cls_logits"][0].to(torch.bfloat16)
    outputs["clip-a"]["meta"] = {"grid_step": 0.46875, "grid_offset": 0.234375, "duration": 480.0}
    path = tmp_path / "val_raw.safetensors"
    save_raw_outputs(path, outputs, metadata={"members": ["run1/ckpt.safetensors"], "split": "val"})
    loaded = load_raw_outputs(path)
    assert list(loaded) == list(outputs)
    for uid, original in outputs.items():
        for key in ("cls_logits", "offsets", "masks"):
            assert len(loaded[uid][key]) == len(original[key])
            for got, want in zip(loaded[uid][key], original[key]):
                assert got.dtype == want.dtype and torch.equal(got, want)
        assert torch.equal(loaded[uid]["points"], original["points"])
        assert loaded[uid].get("meta") == original.get("meta")
    assert load_raw_metadata(path) == {"members": ["run1/ckpt.safetensors"], "split": "val"}
    # plain safetensors: the documented key layout, no pickle
    tensors = load_file(str(path))
    assert torch.equal(tensors["clip-a/off/2"], outputs["clip-a"]["offsets"][2])
    assert tensors["clip-a/mask/0"].dtype == torch.bool
    # atomic rewrite: no temporary file left behind, and the new content replaces the old
    save_raw_outputs(path, {"clip-b": raw(5)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val_raw.safetensors"]
    assert list(load_raw_outputs(path)) == ["clip-b"] and load_raw_metadata(path) == {}


def test_save_views_of_one_storage(tmp_path):
    # level tensors are often views of one padded tensor; safetensors refuses shared storage
    big = torch.randn(14, 3)
    out = raw(0)
    out["cls_logits"] = [big[:8], big[8:12], big[12:]]
    save_raw_outputs(tmp_path / "x.safetensors", {"c": out})
    assert torch.equal(load_raw_outputs(tmp_path / "x.safetensors")["c"]["cls_logits"][1], big[8:12])


def test_bad_files_and_keys(tmp_path):
    with pytest.raises(DataError, match="missing.safetensors"):
        load_raw_outputs(tmp_path / "missing.safetensors")
    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(DataError, match="weights.safetensors"):
        load_raw_outputs(foreign)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="broken.safetensors"):
        load_raw_outputs(broken)
    # metadata that lists a clip whose tensors are missing
    lying = tmp_path / "lying.safetensors"
    meta = {"format": "egoasl-raw-outputs", "version": 1, "clips": {"c": {"levels": 1}}, "metadata": {}}
    save_file({"c/cls/0": torch.zeros(2, 1)}, str(lying), metadata={"egoasl": json.dumps(meta)})
    with pytest.raises(DataError, match="c/off/0"):
        load_raw_outputs(lying)
    meta["clips"] = {"c": 1}  # an older or foreign layout
    save_file({"c/cls/0": torch.zeros(2, 1)}, str(lying), metadata={"egoasl": json.dumps(meta)})
    with pytest.raises(DataError, match="clips.c"):
        load_raw_outputs(lying)
    with pytest.raises(EgoaslError, match="clip uid"):
        save_raw_outputs(tmp_path / "y.safetensors", {"a/b": raw(0)})
    with pytest.raises(EgoaslError, match="points"):
        incomplete = raw(0)
        del incomplete["points"]
        save_raw_outputs(tmp_path / "y.safetensors", {"a": incomplete})
    assert not (tmp_path / "y.safetensors").exists()
