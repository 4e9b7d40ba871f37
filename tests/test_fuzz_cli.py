"""Fuzzing the commands that take files: a mutated file gives an exit code and a one-line error, never a crash.

Each case runs ``egoasl.cli.main`` in-process (the same code a subprocess runs, without the
start-up cost); any exception escaping it is a failure. The budget per target is
``fuzzing.SUITE_EXAMPLES`` derandomised cases, or ``EGOASL_FUZZ_EXAMPLES`` random ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fuzzing import FUZZ, anet, mq_official, mq_submission, mutated_json, narrations, nlq_official, nlq_submission
from hypothesis import given
from hypothesis import strategies as st

from egoasl.cli import main

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    """Valid annotation and submission files to pair with the mutated one."""
    folder = tmp_path_factory.mktemp("valid")
    files = {"moments_val.json": mq_official(), "nlq_val.json": nlq_official(), "mq_sub.json": mq_submission(),
             "nlq_sub.json": nlq_submission()}
    for name, obj in files.items():
        (folder / name).write_text(json.dumps(obj))
    return {name: folder / name for name in files}


def _exit_code(capsys, argv: list[str]) -> int:
    """Run one command; it must return an exit code and, on error, print one line naming the command."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code in (0, 1, 2), code
    if code == 2:
        assert err.startswith(f"egoasl {argv[0]}: error: "), err[:300]
    return code


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.one_of(mutated_json(mq_official()), mutated_json(nlq_official())))
def test_data_check(tmp_path, capsys, data):
    path = _write(tmp_path, "annotations.json", data)
    for task in ("mq", "nlq"):
        _exit_code(capsys, ["data", "check", "--annotations", path, "--task", task, "--no-progress"])


@FUZZ
@given(case=st.one_of(st.tuples(st.just("predictions"), mutated_json(mq_submission())),
                      st.tuples(st.just("annotations"), mutated_json(mq_official()))))
def test_eval_mq(tmp_path, capsys, valid, case):
    files = {"annotations": valid["moments_val.json"], "predictions": valid["mq_sub.json"]}
    mutated, data = case
    files[mutated] = _write(tmp_path, f"{mutated}.json", data)
    _exit_code(capsys, ["eval", "mq", "--annotations", files["annotations"], "--predictions", files["predictions"],
                        "--json"])


@FUZZ
@given(data=st.one_of(mutated_json(nlq_submission()), mutated_json(nlq_official())))
def test_eval_nlq(tmp_path, capsys, valid, data):
    path = _write(tmp_path, "file.json", data)
    _exit_code(capsys, ["eval", "nlq", "--annotations", valid["nlq_val.json"], "--predictions", path])
    _exit_code(capsys, ["eval", "nlq", "--annotations", path, "--predictions", valid["nlq_sub.json"]])


@FUZZ
@given(data=mutated_json(mq_submission()), json_out=st.booleans())
def test_submission_check_mq(tmp_path, capsys, valid, data, json_out):
    path = _write(tmp_path, "sub.json", data)
    argv = ["submission", "check", "--task", "mq", "--annotations", valid["moments_val.json"], path]
    _exit_code(capsys, argv + (["--json"] if json_out else []))


@FUZZ
@given(data=mutated_json(nlq_submission()), json_out=st.booleans())
def test_submission_check_nlq(tmp_path, capsys, valid, data, json_out):
    path = _write(tmp_path, "sub.json", data)
    argv = ["submission", "check", "--task", "nlq", "--annotations", valid["nlq_val.json"], path]
    _exit_code(capsys, argv + (["--json"] if json_out else []))


@pytest.mark.filterwarnings("ignore:.*no scores sidecar")
@FUZZ
@given(data=mutated_json(nlq_submission()))
def test_ensemble_nlq(tmp_path, capsys, valid, data):
    path = _write(tmp_path, "member.json", data)
    _exit_code(capsys, ["ensemble", "--task", "nlq", valid["nlq_sub.json"], path, "--out", tmp_path / "merged.json",
                        "--annotations", valid["nlq_val.json"]])


@FUZZ
@given(data=mutated_json(nlq_official()))
def test_text_encode(tmp_path, capsys, data):
    path = _write(tmp_path, "nlq_val.json", data)
    _exit_code(capsys, ["text", "encode", "--annotations", path, "--out", tmp_path / "text", "--encoder", "hashed",
                        "--dim", "8"])


@FUZZ
@given(data=mutated_json(yaml.safe_load((TESTS / "configs" / "tiny_mq.yaml").read_text())))
def test_train_config(tmp_path, capsys, data):
    path = _write(tmp_path, "config.yaml", data)
    _exit_code(capsys, ["train", path, "--run", tmp_path / "run", "--no-progress", f"data.root={tmp_path / 'none'}"])


@FUZZ
@given(data=mutated_json(anet()))
def test_data_check_anet(tmp_path, capsys, data):
    path = _write(tmp_path, "activity_net.json", data)
    _exit_code(capsys, ["data", "check", "--annotations", path, "--task", "mq", "--format", "anet", "--no-progress"])


@FUZZ
@given(case=st.one_of(st.tuples(st.just("narrations"), mutated_json(narrations())),
                      st.tuples(st.just("clips"), mutated_json(nlq_official()))))
def test_naq_build(tmp_path, capsys, valid, case):
    mutated, data = case
    files = {"narrations": tmp_path / "narration.json", "clips": valid["nlq_val.json"]}
    files["narrations"].write_text(json.dumps(narrations()))
    files[mutated] = _write(tmp_path, f"{mutated}.json", data)
    _exit_code(capsys, ["naq", "build", "--narrations", files["narrations"], "--clips", files["clips"],
                        "--out", tmp_path / "naq_train.json", "--allow-eval-clips"])
