"""The Python API: egoasl.load_run with overrides, Run.predict_clip / Run.answer, evaluate_mq / evaluate_nlq."""

from __future__ import annotations

import json

import numpy as np
import pytest

import egoasl
from egoasl.api import override_strings
from egoasl.cli import main
from egoasl.data.ego4d import load_mq_annotations, load_nlq_annotations
from egoasl.data.features import load_feature_file
from egoasl.errors import EgoaslError

from conftest import TESTS, TINY_MQ_CONFIG, clip_feature_files


@pytest.fixture(scope="module")
def mq_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("api") / "mq"
    assert main(["train", str(TINY_MQ_CONFIG), f"data.root={tiny_data}", "--run", str(run), "--no-progress",
                 "train.epochs=2", "train.eval_start_epoch=2"]) == 0
    return run


def test_overrides_as_keywords_or_dotted_keys():
    assert override_strings({"test__nms_sigma": 0.5, "data.val_split": "on", "train__ema": False,
                             "test__tious": [0.3, 0.5], "train__lr": 1e-05}) == [
        "test.nms_sigma=0.5", "data.val_split=on", "train.ema=false", "test.tious=[0.3, 0.5]", "train.lr=1e-05"]


def test_load_run_applies_overrides_and_refuses_bad_ones(mq_run):
    run = egoasl.load_run(mq_run, device="cpu", test__nms_sigma=0.5, **{"test.max_seg_num": 7})
    assert isinstance(run, egoasl.Run) and run.config.test.nms_sigma == 0.5 and run.config.test.max_seg_num == 7
    assert not run.model.training and len(run.labels) == 6
    with pytest.raises(EgoaslError, match="config key test.nms_sigmaa: unknown key"):
        egoasl.load_run(mq_run, test__nms_sigmaa=0.5)
    with pytest.raises(EgoaslError, match="config key test.max_seg_num: expected an integer"):
        egoasl.load_run(mq_run, test__max_seg_num="many")


def test_predict_clip_equals_the_cli_and_accepts_arrays(mq_run, tiny_data, tmp_path):
    clip = load_mq_annotations(tiny_data / "annotations" / "moments_val.json").split("val")[0]
    files = clip_feature_files(tiny_data, clip, tmp_path)
    run = egoasl.load_run(mq_run, device="cpu")
    moments = run.predict_clip(*files, duration=clip.duration, top=30)
    assert len(moments) == 30 and all(isinstance(m, egoasl.Moment) for m in moments)
    assert [m.score for m in moments] == sorted((m.score for m in moments), reverse=True)
    assert all(m.label in run.labels and 0.0 <= m.start <= m.end <= clip.duration for m in moments)
    out = tmp_path / "moments.json"
    assert main(["predict", str(mq_run), "--features", *map(str, files), "--duration", str(clip.duration),
                 "--top", "30", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["moments"] == [m.to_dict() for m in moments]
    arrays = [load_feature_file(f).numpy() for f in files]
    arrays[0] = np.ascontiguousarray(arrays[0].T)  # [D, N] is transposed
    assert run.predict_clip(*arrays, duration=clip.duration, top=30) == moments
    with pytest.raises(EgoaslError, match="needs 3 files, one per source in order"):
        run.predict_clip(files[0])
    with pytest.raises(EgoaslError, match="an MQ run finds moments"):
        run.answer(*files, query="where?")


def test_evaluate_mq_gives_the_numbers_of_eval(mq_run, tiny_data, capsys):
    assert main(["predict", str(mq_run), "--split", "val", "--no-progress", "--no-raw"]) == 0
    annotations = tiny_data / "annotations" / "moments_val.json"
    predictions = mq_run / "predictions" / "val_submission.json"
    capsys.readouterr()
    assert main(["eval", "mq", "--annotations", str(annotations), "--predictions", str(predictions), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert egoasl.evaluate_mq(annotations, predictions).to_json() == cli
    # loaded objects: the annotations folder, the submission object, the detections mapping
    submission = json.loads(predictions.read_text())
    assert egoasl.evaluate_mq(tiny_data / "annotations", submission).to_json() == cli
    clips = load_mq_annotations(annotations).split("val")
    result = egoasl.evaluate_mq(clips, submission["detect_results"], tious=[0.5])
    assert result.tious == (0.5,) and result.average_mAP == pytest.approx(cli["mAP"]["0.5"] / 100)


def test_answer_and_evaluate_nlq(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "nlq"
    assert main(["train", str(TESTS / "configs" / "tiny_nlq.yaml"), f"data.root={tiny_data}", "train.epochs=1",
                 "train.eval_start_epoch=-1", "--run", str(run_dir), "--no-progress"]) == 0
    run = egoasl.load_run(run_dir, checkpoint="last", device="cpu")
    query = load_nlq_annotations(tiny_data / "annotations" / "nlq_val.json").queries[0]
    files = clip_feature_files(tiny_data, query, tmp_path)
    tokens = tiny_data / "features" / "text" / query.clip_uid / f"{query.annotation_uid}_{query.query_idx}.pt"
    windows = run.answer(*files, query_features=tokens, duration=query.duration)
    assert len(windows) == 5 and all(w.label is None and 0 <= w.start <= w.end <= query.duration for w in windows)
    assert [w.score for w in windows] == sorted((w.score for w in windows), reverse=True)
    assert run.answer(*files, query="where is the cup?", text_encoder="hashed", duration=query.duration)
    with pytest.raises(EgoaslError, match="give query=TEXT or query_features=FILE"):
        run.answer(*files)

    assert main(["predict", str(run_dir), "--split", "val", "--checkpoint", "last", "--no-progress"]) == 0
    annotations = tiny_data / "annotations" / "nlq_val.json"
    predictions = run_dir / "predictions" / "val_submission.json"
    capsys.readouterr()
    assert main(["eval", "nlq", "--annotations", str(annotations), "--predictions", str(predictions), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert egoasl.evaluate_nlq(annotations, predictions).to_json() == cli
    results = json.loads(predictions.read_text())["results"]
    assert egoasl.evaluate_nlq(load_nlq_annotations(annotations).queries, results).to_json() == cli
