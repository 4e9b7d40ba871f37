"""NLQ through the CLI: train, predict a split, merge two models' submissions by score, evaluate."""

from __future__ import annotations

import json

from egoasl.cli import main
from egoasl.data.ego4d import load_nlq_annotations
from egoasl.io.submission import errors_only, validate_nlq_submission

from conftest import TESTS, clip_feature_files

CONFIG = TESTS / "configs" / "tiny_nlq.yaml"


def test_train_predict_merge_eval(tiny_data, tmp_path, capsys):
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"run{seed}"
        assert main(["train", str(CONFIG), f"data.root={tiny_data}", f"train.seed={seed}", "--run", str(run),
                     "--no-progress"]) == 0
        assert main(["predict", str(run), "--split", "val", "--no-progress"]) == 0
        runs.append(run)
    annotations = tiny_data / "annotations" / "nlq_val.json"
    queries = load_nlq_annotations(annotations).queries
    submissions = [run / "predictions" / "val_submission.json" for run in runs]
    for path in submissions:
        obj = json.loads(path.read_text())
        assert not errors_only(validate_nlq_submission(obj, queries))
        assert path.with_name("val_scores.json").is_file()
    assert not (runs[0] / "predictions" / "val_raw.safetensors").exists()  # raw outputs are for MQ ensembles

    merged = tmp_path / "merged.json"
    capsys.readouterr()
    assert main(["ensemble", "--task", "nlq", *map(str, submissions), "--out", str(merged),
                 "--annotations", str(annotations)]) == 0
    out = capsys.readouterr().out
    assert f"merged 2 submissions: {len(queries)} queries, top 5 windows each" in out
    obj = json.loads(merged.read_text())
    assert len(obj["results"]) == len(queries)
    assert all(len(r["predicted_times"]) == 5 for r in obj["results"])
    # each query's merged windows are the best of both members' pools, scores non-increasing
    def top_scores(path):
        rows = json.loads(path.read_text())["results"]
        return {(r["clip_uid"], r["annotation_uid"], r["query_idx"]): r["scores"] for r in rows}

    merged_scores = top_scores(merged.with_name("merged_scores.json"))
    members = [top_scores(path.with_name("val_scores.json")) for path in submissions]
    for key, scores in merged_scores.items():
        assert scores == sorted(scores, reverse=True)
        assert scores[0] == max(m[key][0] for m in members)
    assert main(["eval", "nlq", "--annotations", str(annotations), "--predictions", str(merged), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["evaluated"] == len(queries) and metrics["missing_queries"] == 0


def test_answer_one_question_on_one_clip(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(CONFIG), f"data.root={tiny_data}", "train.epochs=1", "train.eval_start_epoch=-1",
                 "--run", str(run), "--no-progress"]) == 0
    query = load_nlq_annotations(tiny_data / "annotations" / "nlq_val.json").queries[0]
    files = clip_feature_files(tiny_data, query, tmp_path)
    tokens = tiny_data / "features" / "text" / query.clip_uid / f"{query.annotation_uid}_{query.query_idx}.pt"
    out = tmp_path / "answer.json"
    capsys.readouterr()
    assert main(["predict", str(run), "--checkpoint", "last", "--features", *map(str, files),
                 "--duration", str(query.duration), "--query-features", str(tokens), "--out", str(out)]) == 0
    answer = json.loads(out.read_text())
    windows = answer["windows"]
    assert len(windows) == 5
    assert [w["score"] for w in windows] == sorted((w["score"] for w in windows), reverse=True)
    assert all(0.0 <= w["start"] <= w["end"] <= query.duration for w in windows)
    # a question needs text: a clear error without it, and an encoder of the wrong size is refused
    assert main(["predict", str(run), "--checkpoint", "last", "--features", *map(str, files)]) == 2
    assert "give --query TEXT or --query-features FILE" in capsys.readouterr().err
    assert main(["predict", str(run), "--checkpoint", "last", "--features", *map(str, files),
                 "--query", "where is the cup?", "--text-encoder", "hashed", "--out", str(tmp_path / "q.json")]) == 0
    assert len(json.loads((tmp_path / "q.json").read_text())["windows"]) == 5  # hashed follows data.text_dim
