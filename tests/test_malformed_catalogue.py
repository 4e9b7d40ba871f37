"""The malformed-input catalogue: every case exits non-zero, names the file and the field, prints no traceback.

Each case writes one bad input and runs the `egoasl` command a user would run on it. Cases run
through ``egoasl.cli.main`` in this process (the code the console script runs), and the cases
marked ``subprocess`` (two) also as a real ``python -m egoasl.cli`` process; ``EGOASL_CATALOGUE_SUBPROCESS=1``
runs every case as a subprocess. tests/MALFORMED_INPUTS.md lists the cases for users; a test keeps
the two in step. The second half feeds a pickle that would create a marker file to every loader.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MQ_CONFIG
from fuzzing import mq_official, mq_submission, nlq_official, nlq_submission

from egoasl.cli import main
from egoasl.config import load_config
from egoasl.data.features import load_feature_file
from egoasl.engine.ensemble import load_raw_outputs
from egoasl.engine.tasks import build_task
from egoasl.engine.train import train
from egoasl.errors import EgoaslError
from egoasl.io.checkpoint import load_checkpoint

TESTS = Path(__file__).resolve().parent
ALL_AS_SUBPROCESSES = os.environ.get("EGOASL_CATALOGUE_SUBPROCESS") == "1"


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A trained tiny MQ run (one epoch) for the predict and resume cases."""
    run_dir = tmp_path_factory.mktemp("catalogue") / "run"
    cfg = load_config(TINY_MQ_CONFIG, [f"data.root={tiny_data}", "train.epochs=1", "train.eval_start_epoch=-1"])
    train(cfg, build_task(cfg, run_dir), run_dir, progress=False)
    return run_dir


@dataclass
class Context:
    folder: Path  # where the case writes its files
    data: Path  # the tiny synthetic dataset (valid annotations and features)
    run: Path  # a trained tiny MQ run

    def json(self, name: str, obj: object) -> Path:
        return self.text(name, json.dumps(obj))

    def text(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def tensor(self, name: str, value: torch.Tensor) -> Path:
        path = self.folder / name
        torch.save(value, path)
        return path

    @property
    def moments_val(self) -> Path:
        return self.data / "annotations" / "moments_val.json"

    @property
    def nlq_val(self) -> Path:
        return self.data / "annotations" / "nlq_val.json"


@dataclass(frozen=True)
class Case:
    """One bad input: what it is, how to make it and run it, and what the message must name."""

    name: str
    what: str
    command: Callable[[Context], tuple[list, Path | str]]  # argv and the file the message must name
    field: str  # a regular expression the message must match (the field, key or place)
    subprocess: bool = False


def _mq(edit: Callable[[dict], None]) -> dict:
    data = mq_official()
    edit(data)
    return data


def _label(data: dict) -> dict:
    return data["videos"][0]["clips"][0]["annotations"][0]["labels"][0]


def _eval_mq_annotations(name: str, obj_or_text) -> Callable[[Context], tuple[list, Path]]:
    def command(ctx: Context) -> tuple[list, Path]:
        path = ctx.text(name, obj_or_text) if isinstance(obj_or_text, str) else ctx.json(name, obj_or_text)
        return ["eval", "mq", "--annotations", path, "--predictions", ctx.json("sub.json", mq_submission())], path
    return command


def _check_mq_submission(edit: Callable[[dict], None]) -> Callable[[Context], tuple[list, Path]]:
    def command(ctx: Context) -> tuple[list, Path]:
        sub = mq_submission()
        edit(sub)
        path = ctx.json("submission.json", sub)
        annotations = ctx.json("moments_val.json", mq_official())
        return ["submission", "check", "--task", "mq", "--annotations", annotations, "--labels-from", annotations,
                path], path
    return command


def _check_nlq_submission(edit: Callable[[dict], None]) -> Callable[[Context], tuple[list, Path]]:
    def command(ctx: Context) -> tuple[list, Path]:
        sub = nlq_submission()
        edit(sub)
        path = ctx.json("submission.json", sub)
        return ["submission", "check", "--task", "nlq", "--annotations", ctx.json("nlq_val.json", nlq_official()),
                path], path
    return command


def _ensemble_member(edit: Callable[[dict], None]) -> Callable[[Context], tuple[list, Path]]:
    def command(ctx: Context) -> tuple[list, Path]:
        sub = nlq_submission()
        edit(sub)
        path = ctx.json("member_b.json", sub)
        return ["ensemble", "--task", "nlq", ctx.json("member_a.json", nlq_submission()), path, "--out",
                ctx.folder / "merged.json"], path
    return command


def _predict_features(make: Callable[[Context], Path]) -> Callable[[Context], tuple[list, Path]]:
    """``predict RUN --features`` with the bad file as the first (egovlp, dim 12) source."""
    def command(ctx: Context) -> tuple[list, Path]:
        bad = make(ctx)
        good = [ctx.tensor(f"{name}.pt", torch.rand(40, dim)) for name, dim in (("slowfast", 24), ("omnivore", 16))]
        return ["predict", ctx.run, "--features", bad, *good, "--duration", "30", "--out", ctx.folder / "m.json"], bad
    return command


def _config(text: str, *overrides: str) -> Callable[[Context], tuple[list, Path | str]]:
    def command(ctx: Context) -> tuple[list, Path | str]:
        path = ctx.text("config.yaml", text)
        return ["train", path, "--run", ctx.folder / "run", "--no-progress", *overrides], (overrides[0].split("=")[0] if overrides else path)
    return command


def _set(path: list, value) -> Callable[[dict], None]:
    def edit(obj: dict) -> None:
        node = obj
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _del(path: list) -> Callable[[dict], None]:
    def edit(obj: dict) -> None:
        node = obj
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


def _duplicate_clip(data: dict) -> None:
    clips = data["videos"][0]["clips"]
    clips.append(copy.deepcopy(clips[0]))


def _npy_pickle(ctx: Context) -> Path:
    path = ctx.folder / "egovlp.npy"
    np.save(path, np.array([{"not": "features"}], dtype=object), allow_pickle=True)
    return path


def _pt_object(ctx: Context) -> Path:
    path = ctx.folder / "egovlp.pt"
    path.write_bytes(pickle.dumps(Marker(ctx.folder / "never.txt")))
    return path


def _missing_features(ctx: Context) -> tuple[list, str]:
    features = ctx.folder / "features" / "slowfast"
    features.mkdir(parents=True)
    needed = json.loads(ctx.moments_val.read_text())["videos"][0]["video_uid"]
    for path in (ctx.data / "features" / "slowfast").iterdir():
        if path.stem != needed:
            (features / path.name).write_bytes(path.read_bytes())
    return ["data", "check", "--annotations", ctx.moments_val, "--features", features.parent, "--sources",
            "slowfast:24:video", "--no-progress"], needed


def _corrupt_checkpoint(ctx: Context) -> tuple[list, Path]:
    run = ctx.folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_bytes((ctx.run / "config.yaml").read_bytes())
    bad = run / "checkpoints" / "last.safetensors"
    bad.write_bytes((ctx.run / "checkpoints" / "last.safetensors").read_bytes()[:200])
    return ["predict", run, "--split", "val", "--checkpoint", "last", "--no-progress"], bad


def _resume_without_state(ctx: Context) -> tuple[list, Path]:
    weights = ctx.folder / "best.safetensors"
    weights.write_bytes((ctx.run / "checkpoints" / "last.safetensors").read_bytes())
    return ["train", TINY_MQ_CONFIG, f"data.root={ctx.data}", "--resume", weights, "--run", ctx.folder / "r",
            "--no-progress"], weights


def _spaces_and_unicode(ctx: Context) -> tuple[list, Path]:
    path = ctx.json("dir with spaces/ännotations ☃ val.json", _mq(_set(["videos", 0, "clips", 0, "video_end_sec"], "x")))
    return ["eval", "mq", "--annotations", path, "--predictions", ctx.json("sub.json", mq_submission())], path


def _wrong_task_submission(ctx: Context) -> tuple[list, Path]:
    path = ctx.json("nlq_submission.json", nlq_submission())
    return ["eval", "mq", "--annotations", ctx.json("moments_val.json", mq_official()), "--predictions", path], path


def _nlq_annotations_for_mq(ctx: Context) -> tuple[list, Path]:
    path = ctx.json("nlq_val.json", nlq_official())
    return ["eval", "mq", "--annotations", path, "--predictions", ctx.json("sub.json", mq_submission())], path


def _no_run_folder(ctx: Context) -> tuple[list, Path]:
    path = ctx.folder / "no such run"
    return ["predict", path, "--split", "val"], path


def _missing_annotation_file(ctx: Context) -> tuple[list, Path]:
    path = ctx.folder / "moments_vla.json"
    return ["eval", "mq", "--annotations", path, "--predictions", ctx.json("sub.json", mq_submission())], path


def _not_utf8(ctx: Context) -> tuple[list, Path]:
    path = ctx.folder / "moments_val.json"
    path.write_bytes(json.dumps(mq_official()).replace("use_phone", "use_ph\u00f6ne").encode("latin-1"))
    return ["eval", "mq", "--annotations", path, "--predictions", ctx.json("sub.json", mq_submission())], path


def _nan_score(ctx: Context) -> tuple[list, Path]:
    text = json.dumps(mq_submission()).replace('"score": 0.9', '"score": NaN', 1)
    path = ctx.text("submission.json", text)
    annotations = ctx.json("moments_val.json", mq_official())
    return ["submission", "check", "--task", "mq", "--annotations", annotations, path], path


def _duplicate_key(ctx: Context) -> tuple[list, Path]:
    rows = json.dumps(mq_submission()["detect_results"]["clip-a1"])
    text = json.dumps(mq_submission()).replace('"detect_results": {', f'"detect_results": {{"clip-a1": {rows}, ', 1)
    path = ctx.text("submission.json", text)
    annotations = ctx.json("moments_val.json", mq_official())
    return ["submission", "check", "--task", "mq", "--annotations", annotations, path], path


CASES = [
    Case("truncated_json", "annotation file cut off mid-way", _eval_mq_annotations(
        "moments_val.json", json.dumps(mq_official())[:500]), r"line 1, column \d+: expected valid JSON .*truncated",
        subprocess=True),
    Case("invalid_json", "a trailing comma", _eval_mq_annotations("moments_val.json", '{"videos": [],}'),
         r"line 1, column \d+: expected valid JSON"),
    Case("empty_file", "a 0-byte annotation file", _eval_mq_annotations("moments_val.json", ""),
         r"line 1, column 1: expected valid JSON"),
    Case("not_utf8", "Latin-1 bytes in a UTF-8 file", _not_utf8, r"expected a UTF-8 text file, got an undecodable byte at offset \d+"),
    Case("top_level_list", "a list instead of an object", _eval_mq_annotations("moments_val.json", "[]"),
         r"expected an object: the official"),
    Case("wrong_nesting", "videos is an object, not a list", _eval_mq_annotations(
        "moments_val.json", {"videos": {"clips": []}}), r"videos: expected a list"),
    Case("missing_clip_uid", "a clip without clip_uid", _eval_mq_annotations(
        "moments_val.json", _mq(_del(["videos", 0, "clips", 0, "clip_uid"]))),
        r"videos\[0\]\.clips\[0\]\.clip_uid: expected"),
    Case("time_wrong_type", "a start time given as a string", _eval_mq_annotations(
        "moments_val.json", _mq(lambda d: _label(d).update(start_time="12.5"))),
        r"videos\[0\]\.clips\[0\]\.annotations\[0\]\.labels\[0\]\.start_time: expected a number, got '12.5'"),
    Case("nan_time", "a NaN end time", _eval_mq_annotations(
        "moments_val.json", json.dumps(mq_official()).replace('"end_time": 5.0', '"end_time": NaN', 1)),
        r"labels\[0\]\.end_time: expected a finite number, got nan"),
    Case("start_after_end", "an instance ending before it starts", _eval_mq_annotations(
        "moments_val.json", _mq(lambda d: _label(d).update(start_time=50.0, end_time=10.0))),
        r"labels\[0\]\.start_time: expected at most end_time \(10\.0\), got 50\.0"),
    Case("time_outside_clip", "an instance ending after the clip", _eval_mq_annotations(
        "moments_val.json", _mq(lambda d: _label(d).update(end_time=900.0))), r"labels\[0\]\.end_time: expected"),
    Case("duplicate_clip_uid", "one clip uid twice", _eval_mq_annotations("moments_val.json", _mq(_duplicate_clip)),
         r"videos\[0\]\.clips\[2\]\.clip_uid: expected a clip uid not already used"),
    Case("huge_integer", "a 400-digit integer time", _eval_mq_annotations(
        "moments_val.json", json.dumps(mq_official()).replace('"video_start_sec": 10.0', '"video_start_sec": ' + "9" * 400)),
        r"clips\[0\]\.video_start_sec: expected a finite number, got an integer of 400 digits"),
    Case("deep_nesting", "100 000 nested lists", _eval_mq_annotations("moments_val.json", "[" * 100000 + "]" * 100000),
         r"expected JSON nested at most a few hundred levels deep"),
    Case("nlq_file_for_mq", "an NLQ annotation file given to eval mq", _nlq_annotations_for_mq,
         r"videos\[0\]\.clips\[0\]\.annotations\[0\]: expected .*language_queries"),
    Case("missing_annotation_file", "a misspelt path", _missing_annotation_file, r"expected a readable file"),
    Case("unknown_label", "a label outside the taxonomy", _check_mq_submission(
        lambda s: s["detect_results"]["clip-a1"][0].update(label="use_phone_")),
        r"detect_results\['clip-a1'\]\[0\]\.label: unknown label 'use_phone_'"),
    Case("submission_reversed_segment", "a predicted segment with start > end", _check_mq_submission(
        _set(["detect_results", "clip-a2", 0, "segment"], [41.0, 19.0])),
        r"detect_results\['clip-a2'\]\[0\]\.segment: reversed"),
    Case("submission_score_string", "a score written as a string", _check_mq_submission(
        _set(["retrieve_results", "clip-b1", 0, "score"], "0.6")), r"retrieve_results\['clip-b1'\]\[0\]\.score"),
    Case("submission_missing_clip", "a clip of the split left out", _check_mq_submission(
        _del(["retrieve_results", "clip-b1"])), r"retrieve_results\['clip-b1'\]: missing clip of the split"),
    Case("submission_nan_score", "NaN as a score", _nan_score, r"detect_results\['clip-a1'\]\[0\]\.score: "
         r"score is nan"),
    Case("submission_duplicate_key", "a clip uid twice in one object", _duplicate_key,
         r"'clip-a1': key appears twice in one JSON object"),
    Case("submission_wrong_task", "an NLQ submission given to eval mq", _wrong_task_submission,
         r"challenge: expected 'ego4d_moment_queries', got 'ego4d_nlq_challenge'"),
    Case("nlq_flat_window", "predicted_times a flat [s, e]", _check_nlq_submission(
        _set(["results", 0, "predicted_times"], [30.0, 40.0])), r"results\[0\]\.predicted_times: a flat \[start, end\]"),
    Case("nlq_unknown_query", "a query that is not in the annotations", _check_nlq_submission(
        _set(["results", 2, "query_idx"], 7)), r"results\[2\]: no such query"),
    Case("ensemble_null_time", "null as a window time in an NLQ ensemble member", _ensemble_member(
        _set(["results", 0, "predicted_times", 0], [None, 40.0])),
        r"results\[0\]\.predicted_times: expected a list of \[start, end\] windows of numbers"),
    Case("missing_feature_file", "a video's feature file absent", _missing_features,
         r"expected the slowfast features of video \S+ \(needed by clip \S+\) \(\S+\.pt or \.npy\); no such file"),
    Case("empty_tensor", "a feature file with 0 rows", _predict_features(
        lambda ctx: ctx.tensor("egovlp.pt", torch.zeros(0, 12))), r"shape: expected a non-empty \[N, D\] tensor"),
    Case("nan_tensor", "NaN values in features", _predict_features(
        lambda ctx: ctx.tensor("egovlp.pt", torch.full((40, 12), float("nan")))),
        r"values: expected finite numbers; found 480 NaN"),
    Case("wrong_dim_tensor", "features of dimension 13 for a 12-d source", _predict_features(
        lambda ctx: ctx.tensor("egovlp.pt", torch.rand(40, 13))), r"shape: expected \[N, 12\]"),
    Case("ambiguous_orientation", "a 12 x 12 array: [N, D] or [D, N]?", _predict_features(
        lambda ctx: ctx.tensor("egovlp.pt", torch.rand(12, 12))), r"shape: expected one axis of size 12; .*ambiguous"),
    Case("int_tensor", "integer features", _predict_features(
        lambda ctx: ctx.tensor("egovlp.pt", torch.ones(40, 12, dtype=torch.int64))),
        r"dtype: expected floating-point features"),
    Case("npy_pickle", "a .npy holding pickled objects", _predict_features(_npy_pickle), r"pickled objects"),
    Case("pt_arbitrary_object", "a .pt pickling an arbitrary object", _predict_features(_pt_object),
         r"expected a plain tensor saved with torch.save", subprocess=True),
    Case("config_unknown_key", "a misspelt config key", _config("base: mq/egovlp\nmodel:\n  widht: 64\n"),
         r"config key model\.widht: unknown key"),
    Case("config_wrong_type", "a number written as text", _config("base: mq/egovlp\ntrain:\n  lr: fast\n"),
         r"config key train\.lr: expected a number, got 'fast'"),
    Case("config_missing_base", "a base that does not exist", _config("base: mq/egovlpp\n"),
         r"config key base: config 'mq/egovlpp' is neither a file nor a built-in preset"),
    Case("config_bad_override", "an override of an unknown key", _config("base: mq/egovlp\n", "model.nope=1"),
         r"model\.nope"),
    Case("run_folder_missing", "predict on a run folder that does not exist", _no_run_folder,
         r"not a run folder \(no config\.yaml\)"),
    Case("corrupt_checkpoint", "a truncated checkpoint", _corrupt_checkpoint, r"expected a safetensors checkpoint"),
    Case("resume_without_state", "--resume a checkpoint with no training state", _resume_without_state,
         r"has no training state"),
    Case("spaces_and_unicode_path", "a bad file under a path with spaces and non-ASCII letters", _spaces_and_unicode,
         r"clips\[0\]\.video_end_sec: expected a number, got 'x'"),
]


def _run(argv: list[str], as_subprocess: bool, capsys) -> tuple[int, str]:
    if as_subprocess:
        proc = subprocess.run([sys.executable, "-m", "egoasl.cli", *argv], capture_output=True, text=True, check=False,
                              timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return proc.returncode, proc.stdout + proc.stderr
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.filterwarnings("ignore:.*no scores sidecar")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_input_is_refused_by_name(case, tiny_data, tiny_run, tmp_path, capsys):
    argv, named = case.command(Context(tmp_path, tiny_data, tiny_run))
    argv = [str(a) for a in argv]
    for as_subprocess in sorted({False, case.subprocess or ALL_AS_SUBPROCESSES}):
        code, output = _run(argv, as_subprocess, capsys)
        assert code != 0, output
        assert "Traceback" not in output, output
        assert str(named) in output or Path(named).name in output, output
        assert re.search(case.field, output), output
    assert not (tmp_path / "never.txt").exists()


def test_the_catalogue_has_30_cases_and_the_table_lists_each():
    assert len(CASES) >= 30
    table = (TESTS / "MALFORMED_INPUTS.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.MULTILINE)
    assert listed == [c.name for c in CASES]


# ------------------------------------------------------------------------------------- malicious pickles


class Marker:
    """Unpickling this calls ``open(path, "w")``: the marker file appears if a loader unpickles freely."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickle_file(path: Path, marker: Path, container: str) -> Path:
    """A file at ``path`` whose unpickling creates ``marker``: a plain pickle or a torch.save zip."""
    if container == "pickle":
        path.write_bytes(pickle.dumps(Marker(marker)))
    else:
        torch.save(Marker(marker), path)
    return path


def _copy_run(ctx: Context) -> Path:
    run = ctx.folder / "copied_run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "checkpoints/last.safetensors", "checkpoints/last.state.pt"):
        (run / name).write_bytes((ctx.run / name).read_bytes())
    return run


def _load_state(ctx: Context, evil: Callable[[Path], Path]) -> None:
    run = _copy_run(ctx)
    evil(run / "checkpoints" / "last.state.pt")
    load_checkpoint(run / "checkpoints" / "last.safetensors", with_state=True)


def _resume(ctx: Context, evil: Callable[[Path], Path]) -> None:
    run = _copy_run(ctx)
    evil(run / "checkpoints" / "last.state.pt")
    _cli(["train", TINY_MQ_CONFIG, f"data.root={ctx.data}", "train.epochs=2", "train.eval_start_epoch=-1",
          "--resume", run, "--run", ctx.folder / "resumed", "--no-progress"])


def _init_from(ctx: Context, evil: Callable[[Path], Path]) -> None:
    weights = evil(ctx.folder / "pretrained.safetensors")
    _cli(["train", TINY_MQ_CONFIG, f"data.root={ctx.data}", "train.epochs=1", "train.eval_start_epoch=-1",
          f"train.init_from={weights}", "--run", ctx.folder / "fine", "--no-progress"])


def _predict_weights(ctx: Context, evil: Callable[[Path], Path]) -> None:
    run = _copy_run(ctx)
    evil(run / "checkpoints" / "last.safetensors")
    _cli(["predict", run, "--split", "val", "--checkpoint", "last", "--no-progress"])


def _feature_pt(ctx: Context, evil: Callable[[Path], Path]) -> None:
    bad = evil(ctx.folder / "egovlp.pt")
    good = [ctx.tensor(f"{name}.pt", torch.rand(40, dim)) for name, dim in (("slowfast", 24), ("omnivore", 16))]
    _cli(["predict", ctx.run, "--features", bad, *good, "--duration", "30", "--out", ctx.folder / "m.json"])


def _feature_npy(ctx: Context, evil: Callable[[Path], Path]) -> None:
    path = ctx.folder / "egovlp.npy"
    np.save(path, np.array([Marker(ctx.folder / "never.txt")], dtype=object), allow_pickle=True)
    load_feature_file(path, expected_dim=12)


def _text_feature(ctx: Context, evil: Callable[[Path], Path]) -> None:
    load_feature_file(evil(ctx.folder / "an-1_0.pt"), expected_dim=8)  # what the NLQ dataset reads a query with


def _raw_outputs(ctx: Context, evil: Callable[[Path], Path]) -> None:
    load_raw_outputs(evil(ctx.folder / "val_raw.safetensors"))


def _cli(argv: list) -> None:
    code = main([str(a) for a in argv])
    if code != 0:
        raise EgoaslError(f"exit code {code}")


LOADERS = {"checkpoint_state": _load_state, "resume": _resume, "init_from": _init_from,
           "checkpoint_weights": _predict_weights, "feature_pt": _feature_pt, "feature_npy": _feature_npy,
           "text_feature": _text_feature, "raw_outputs": _raw_outputs}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("container", ["pickle", "torch_zip"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_malicious_pickle_is_refused_by_every_loader(loader, container, tiny_data, tiny_run, tmp_path, capsys):
    marker = tmp_path / "never.txt"
    with pytest.raises(EgoaslError):
        LOADERS[loader](Context(tmp_path, tiny_data, tiny_run), lambda path: _pickle_file(path, marker, container))
    assert not marker.exists()
    assert "Traceback" not in "".join(capsys.readouterr())
