"""Fuzzing every public reader: a mutated input file is accepted or refused with an EgoaslError, nothing else.

The budget per target is ``fuzzing.SUITE_EXAMPLES`` derandomised cases; ``EGOASL_FUZZ_EXAMPLES=600``
runs 600 random ones (see tests/fuzzing.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fuzzing import (
    FUZZ,
    anet,
    mq_converted,
    mq_official,
    mq_submission,
    mutated_bytes,
    mutated_json,
    narrations,
    nlq_official,
    nlq_submission,
)
from hypothesis import given
from hypothesis import strategies as st

from egoasl.config import load_config
from egoasl.data.anet import load_anet_annotations
from egoasl.data.ego4d import load_mq_annotations, load_nlq_annotations
from egoasl.data.features import load_feature_file
from egoasl.data.naq import read_em_clips
from egoasl.data.narrations import load_narrations
from egoasl.errors import EgoaslError
from egoasl.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from egoasl.io.submission import (
    build_mq_results,
    read_mq_submission,
    read_nlq_submission,
    read_submission,
    validate_mq_submission,
    validate_nlq_submission,
)
from egoasl.metrics.mq import evaluate_mq
from egoasl.metrics.nlq import evaluate_nlq

TESTS = Path(__file__).resolve().parent


def _refused_or_read(call, *args) -> None:
    """Run a reader; egoasl's own error is a correct refusal, any other exception fails the test."""
    try:
        call(*args)
    except EgoaslError as err:
        assert str(err), "an EgoaslError must say what is wrong"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def mq_clips(tmp_path):
    path = tmp_path / "moments_val.json"
    path.write_text(json.dumps(mq_official()))
    return load_mq_annotations(path).split("val")


@pytest.fixture
def nlq_queries(tmp_path):
    path = tmp_path / "nlq_val.json"
    path.write_text(json.dumps(nlq_official()))
    return load_nlq_annotations(path).queries


@FUZZ
@given(data=mutated_json(mq_official()), collect=st.booleans())
def test_mq_official_annotations(tmp_path, data, collect):
    path = _write(tmp_path, "moments_val.json", data)
    _refused_or_read(lambda: load_mq_annotations(path, errors=[] if collect else None))


@FUZZ
@given(data=mutated_json(mq_converted()), collect=st.booleans())
def test_mq_converted_annotations(tmp_path, data, collect):
    path = _write(tmp_path, "ego4d_clip_annotations.json", data)
    _refused_or_read(lambda: load_mq_annotations(path, errors=[] if collect else None))


@FUZZ
@given(data=mutated_json(nlq_official()), collect=st.booleans())
def test_nlq_annotations(tmp_path, data, collect):
    path = _write(tmp_path, "nlq_val.json", data)
    _refused_or_read(lambda: load_nlq_annotations(path, errors=[] if collect else None))


@FUZZ
@given(data=mutated_json(mq_submission()))
def test_mq_submission_read_validate_and_score(tmp_path, mq_clips, data):
    path = _write(tmp_path, "sub.json", data)

    def read_and_use():
        obj, _ = read_submission(path)
        validate_mq_submission(obj, mq_clips, {"use_phone"})
        detections, retrievals = read_mq_submission(path)
        evaluate_mq(mq_clips, detections, retrievals, where=str(path))

    _refused_or_read(read_and_use)


@FUZZ
@given(data=mutated_json(nlq_submission()))
def test_nlq_submission_read_validate_and_score(tmp_path, nlq_queries, data):
    path = _write(tmp_path, "sub.json", data)

    def read_and_use():
        obj, _ = read_submission(path)
        validate_nlq_submission(obj, nlq_queries)
        evaluate_nlq(nlq_queries, read_nlq_submission(path), where=str(path))

    _refused_or_read(read_and_use)


_YAML_HOSTILE = st.sampled_from([
    "base: mq/egovlp\nmodel: &a [*a]\n",
    "a: &a [*a, *a]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\nmodel: [*d, *d]\n",
    "model: !!python/object/apply:os.system ['true']\n",
    "base: [1, 2]\n",
    "base: nowhere/at_all\n",
    "model: {width: 1e400}\n",
    "train: {epochs: 99999999999999999999999999999999}\n",
    "model: " + "[" * 5000 + "]" * 5000 + "\n",
    "data:\n  sources:\n    - {name: x, dim: .nan}\n",
    "\t- tab\n",
])


@FUZZ
@given(data=st.one_of(mutated_json(yaml.safe_load((TESTS / "configs" / "tiny_mq.yaml").read_text())),
                      _YAML_HOSTILE.map(str.encode)),
       override=st.sampled_from([[], ["model.width=1e999"], ["model=[]"], ["train.lr=[[[[1]]]]"], ["=1"]]))
def test_config(tmp_path, data, override):
    path = _write(tmp_path, "config.yaml", data)
    _refused_or_read(load_config, path, override)


def _tensor_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@FUZZ
@given(data=st.one_of(mutated_bytes(_tensor_bytes(torch.rand(6, 4))), mutated_bytes(_tensor_bytes({"a": 1}))),
       dim=st.sampled_from([None, 4]))
def test_pt_feature_file(tmp_path, data, dim):
    _refused_or_read(load_feature_file, _write(tmp_path, "clip.pt", data), dim)


@FUZZ
@given(data=mutated_bytes(_npy_bytes(np.random.default_rng(0).random((6, 4), dtype=np.float32))),
       dim=st.sampled_from([None, 4]))
def test_npy_feature_file(tmp_path, data, dim):
    _refused_or_read(load_feature_file, _write(tmp_path, "clip.npy", data), dim)


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("ckpt")
    state = {"optimizer": {"state": {0: {"step": torch.tensor(3.0)}}}, "epoch": 1, "best": 0.5}
    save_checkpoint(folder, "last", Checkpoint(model={"w": torch.rand(3, 2)}, ema={"w": torch.rand(3, 2)},
                                               meta={"epoch": 1}, state=state))
    return {"weights": (folder / "last.safetensors").read_bytes(), "state": (folder / "last.state.pt").read_bytes()}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@FUZZ
@given(which=st.sampled_from(["weights", "state"]), data=st.data())
def test_checkpoint(tmp_path, checkpoint_files, which, data):
    files = dict(checkpoint_files)
    files[which] = data.draw(mutated_bytes(files[which]))
    _write(tmp_path, "last.safetensors", files["weights"])
    _write(tmp_path, "last.state.pt", files["state"])
    _refused_or_read(load_checkpoint, tmp_path / "last.safetensors", True)


# ------------------------------------------------------------------------------ what the fuzzer found


def test_an_integer_no_float_holds_is_refused_by_name(tmp_path):
    text = json.dumps(mq_official()).replace('"video_start_sec": 10.0', '"video_start_sec": ' + "9" * 400, 1)
    path = _write(tmp_path, "moments_val.json", text.encode())
    with pytest.raises(EgoaslError, match=r"videos\[0\]\.clips\[0\]\.video_start_sec: expected a finite number, "
                                          r"got an integer of 400 digits \(too large for a 64-bit float\)"):
        load_mq_annotations(path)


def test_deep_nesting_is_refused_and_a_bom_is_read(tmp_path):
    deep = _write(tmp_path, "deep.json", b"[" * 100000 + b"]" * 100000)
    with pytest.raises(EgoaslError, match="deep.json: expected JSON nested at most a few hundred levels deep"):
        read_submission(deep)
    bom = _write(tmp_path, "bom.json", b"\xef\xbb\xbf" + json.dumps(mq_submission()).encode())
    assert read_submission(bom)[0] == mq_submission()


def test_nan_and_huge_times_in_a_submission_are_located(tmp_path, mq_clips):
    text = json.dumps(mq_submission()).replace("[1.2, 5.5]", "[NaN, 5.5]").replace("[98.0, 301.0]", "[1, " + "9" * 500 + "]")
    obj, _ = read_submission(_write(tmp_path, "sub.json", text.encode()))
    problems = {p.location: p.message for p in validate_mq_submission(obj, mq_clips)}
    assert problems["detect_results['clip-a1'][0].segment"] == "non-finite time in [nan, 5.5]"
    assert problems["detect_results['clip-a1'][1].segment"].startswith("non-finite time in [1, an integer of 500 digits")


@FUZZ
@given(data=mutated_json(anet()), collect=st.booleans(), taxonomy=st.sampled_from([None, ["jump", "run"]]))
def test_anet_annotations(tmp_path, data, collect, taxonomy):
    path = _write(tmp_path, "activity_net.json", data)
    _refused_or_read(lambda: load_anet_annotations(path, taxonomy, errors=[] if collect else None))


@FUZZ
@given(data=mutated_json(narrations()), collect=st.booleans())
def test_narrations(tmp_path, data, collect):
    path = _write(tmp_path, "narration.json", data)
    _refused_or_read(lambda: load_narrations(path, errors=[] if collect else None))


@FUZZ
@given(data=mutated_json(nlq_official()))
def test_em_clips(tmp_path, data):
    _refused_or_read(read_em_clips, _write(tmp_path, "nlq_val.json", data))


def test_python_integers_no_float_holds_are_refused_by_the_api(mq_clips, nlq_queries):
    huge = 10**400
    sub = mq_submission()
    sub["detect_results"]["clip-a1"][0]["score"] = huge
    sub["retrieve_results"]["clip-a2"][0]["segment"] = [1, huge]
    problems = {p.location: p.message for p in validate_mq_submission(sub, mq_clips)}
    assert problems["detect_results['clip-a1'][0].score"].startswith("score is 1000000")
    assert problems["retrieve_results['clip-a2'][0].segment"].startswith("non-finite time in [1, 1000000")
    with pytest.raises(EgoaslError, match=r"detect_results\['clip-a1'\]\[0\]\.score: expected a number, finite"):
        evaluate_mq(mq_clips, sub["detect_results"], sub["retrieve_results"], where="api")
    with pytest.raises(EgoaslError, match=r"detect_results\['clip-a1'\]: expected numeric scores"):
        build_mq_results(sub["detect_results"], name="detect_results")
    nlq = nlq_submission()["results"]
    nlq[1]["predicted_times"][2] = [0, huge]
    with pytest.raises(EgoaslError, match=r"results\[1\]\.predicted_times\[2\]: expected numbers a 64-bit float holds"):
        evaluate_nlq(nlq_queries, nlq, where="api")
