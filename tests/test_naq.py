"""Narrations: the narration.json reader, `egoasl naq build` (window rule, leakage check) and the synthetic narrations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from egoasl.cli import main
from egoasl.data.check import run_data_check
from egoasl.data.ego4d import load_nlq_annotations
from egoasl.data.naq import build_naq, dump_naq, narration_windows, read_em_clips
from egoasl.data.narrations import load_narrations, normalize_narration
from egoasl.data.synthetic import build_world, load_summary, tokenize_query
from egoasl.data.text_encoders import build_text_encoder
from egoasl.errors import DataError, EgoaslError


def narration(t: float, text: str | None, uid: str = "n") -> dict:
    return {"timestamp_sec": t, "timestamp_frame": round(t * 30), "narration_text": text, "annotation_uid": uid}


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def clips_file(path: Path, split: str, clips: list[tuple[str, str, float, float]]) -> Path:
    videos: dict[str, dict] = {}
    for video_uid, clip_uid, start, end in clips:
        video = videos.setdefault(video_uid, {"video_uid": video_uid, "split": split, "clips": []})
        video["clips"].append({"clip_uid": clip_uid, "video_start_sec": start, "video_end_sec": end, "annotations": []})
    return write(path, {"version": "v2", "videos": list(videos.values())})


@pytest.fixture
def narrations_json(tmp_path) -> Path:
    """Video v1: pass 1 every 2 s from 10 s (beta 2), pass 2 every 4 s (beta 4); video v2 has no pass."""
    pass1 = [narration(10.0 + 2 * i, f"#C C picks up the cup {i}") for i in range(5)]
    pass1.append(narration(30.0, "#C C drops #unsure"))
    pass1.append(narration(31.0, None))
    pass2 = [narration(12.0 + 4 * i, f"#O man X looks at #C C {i}") for i in range(3)]
    pass2 = [pass2[2], pass2[0], pass2[1]]  # file order is not time order
    return write(tmp_path / "narration.json", {
        "v1": {"status": "complete", "narration_pass_1": {"narrations": pass1, "summaries": []},
               "narration_pass_2": {"narrations": pass2, "summaries": []}},
        "v2": {"status": "redacted"},
    })


def test_text_rule():
    assert normalize_narration("#C C picks up the knife ") == "I picks up the knife"
    assert normalize_narration("#c c opens the door") == "I opens the door"
    assert normalize_narration("#O The woman B hands #C a cup") == "The woman B hands I a cup"
    assert normalize_narration("#C C #summary") == "I"
    assert normalize_narration("  #O  ") == ""


def test_reader_counts_skips_and_keeps_file_order(narrations_json):
    read = load_narrations(narrations_json)
    assert read.videos == 2 and read.videos_without_pass == 1
    assert read.skipped_unsure == 1 and read.skipped_no_text == 1
    assert len(read.narrations) == 8
    first = read.narrations[0]
    assert (first.video_uid, first.pass_name, first.index, first.timestamp, first.text) == (
        "v1", "narration_pass_1", 0, 10.0, "I picks up the cup 0")
    assert [n.timestamp for n in read.by_video()["v1"][5:]] == [20.0, 12.0, 16.0]


@pytest.mark.parametrize(("data", "field", "expected"), [
    ([1, 2], "", "an object keyed by video uid"),
    ({"v1": []}, "v1", "an object"),
    ({"v1": {"narration_pass_1": {"summaries": []}}}, "v1.narration_pass_1.narrations", "a list"),
    ({"v1": {"narration_pass_2": {"narrations": [narration(-1.0, "x")]}}},
     "v1.narration_pass_2.narrations[0].timestamp_sec", "a video time >= 0 s"),
    ({"v1": {"narration_pass_1": {"narrations": [narration(1.0, 5)]}}},
     "v1.narration_pass_1.narrations[0].narration_text", "a string"),
    ({"v1": {"narration_pass_1": {"narrations": [{"narration_text": "x"}]}}},
     "v1.narration_pass_1.narrations[0].timestamp_sec", "a number"),
])
def test_reader_errors_name_the_file_and_the_field(tmp_path, data, field, expected):
    path = write(tmp_path / "narration.json", data)
    with pytest.raises(DataError) as info:
        load_narrations(path)
    assert info.value.path == str(path) and info.value.field == field and expected in info.value.expected
    errors: list[DataError] = []
    load_narrations(path, errors)  # collect mode: listed, not raised
    assert [e.field for e in errors] == [field]


def test_truncated_file_is_reported_as_such(narrations_json):
    narrations_json.write_text(narrations_json.read_text()[:-40])
    with pytest.raises(DataError, match="truncated"):
        load_narrations(narrations_json)


def test_egoclip_window_rule(narrations_json):
    read = load_narrations(narrations_json)
    windows, alpha = narration_windows(read)
    assert alpha == pytest.approx(3.0)  # mean of the passes' betas 2 and 4
    half1, half2 = 2 / (2 * 3.0), 4 / (2 * 3.0)
    assert windows[0] == pytest.approx((10.0 - half1, 10.0 + half1))
    assert windows[5] == pytest.approx((20.0 - half2, 20.0 + half2))
    windows, alpha = narration_windows(read, alpha=4.9)
    assert windows[0] == pytest.approx((10.0 - 2 / 9.8, 10.0 + 2 / 9.8))
    windows, _ = narration_windows(read, rule="fixed", window_sec=3.0)
    assert windows[0] == pytest.approx((8.5, 11.5))
    with pytest.raises(EgoaslError, match="--window-rule"):
        narration_windows(read, rule="nearest")


def test_build_keeps_windows_inside_train_clips_only(narrations_json, tmp_path):
    read = load_narrations(narrations_json)
    # c1 holds 10..14 s of pass 1 (window half-width 1/3 s) and 12 s of pass 2; c1 again in another file; v3 unnarrated
    train = clips_file(tmp_path / "nlq_train.json", "train", [("v1", "c1", 9.5, 14.5), ("v3", "c3", 0.0, 50.0)])
    mq = clips_file(tmp_path / "moments_train.json", "train", [("v1", "c1", 9.5, 14.5), ("v1", "c2", 15.5, 25.0)])
    clips = read_em_clips(train) + read_em_clips(mq)
    data, summary = build_naq(read, clips)
    assert (summary.clips, summary.clips_with_pairs, summary.pairs) == (3, 2, 7)
    assert summary.outside_clips == 1  # pass 2 at 16 s: 16 +- 2/3 s starts before c2 (15.5 s)
    assert summary.by_pass == {"narration_pass_1": 5, "narration_pass_2": 2}
    assert summary.eval_clips == summary.pairs_from_eval_clips == 0
    path = write(tmp_path / "naq_train.json", data)
    queries = load_nlq_annotations(path).queries
    assert len(queries) == 7 and {q.split for q in queries} == {"train"}
    c1 = [q for q in queries if q.clip_uid == "c1"]
    assert [(q.annotation_uid, q.query_idx) for q in c1] == [("naq_narration_pass_1", i) for i in range(3)] + [
        ("naq_narration_pass_2", 0)]
    assert c1[0].query == "I picks up the cup 0"
    assert c1[0].start == pytest.approx(0.5 - 1 / 3, abs=1e-6) and c1[0].end == pytest.approx(0.5 + 1 / 3, abs=1e-6)
    assert dump_naq(build_naq(read, clips)[0]) == dump_naq(data)  # deterministic
    report = run_data_check([path], task="nlq")
    assert report.ok, report.problems


def test_eval_clips_are_refused_unless_allowed_and_then_counted(narrations_json, tmp_path):
    read = load_narrations(narrations_json)
    val = read_em_clips(clips_file(tmp_path / "nlq_val.json", "val", [("v1", "c9", 0.0, 40.0)]))
    with pytest.raises(EgoaslError, match="train clips only.*--allow-eval-clips"):
        build_naq(read, val)
    _, summary = build_naq(read, val, allow_eval_clips=True)
    assert summary.eval_clips == 1 and summary.pairs_from_eval_clips == summary.pairs == 8
    assert "1 val/test clips given, 8 pairs from them" in summary.lines()[-1]


def test_clips_with_other_bounds_under_one_uid_are_an_error(narrations_json, tmp_path):
    a = clips_file(tmp_path / "a.json", "train", [("v1", "c1", 9.5, 14.5)])
    b = clips_file(tmp_path / "b.json", "train", [("v1", "c1", 9.5, 20.0)])
    with pytest.raises(EgoaslError, match="other bounds"):
        build_naq(load_narrations(narrations_json), read_em_clips(a) + read_em_clips(b))


# ----------------------------------------------------------------------------- on the synthetic data


def test_synthetic_narrations_name_each_nlq_entity_while_it_shows(tiny_data):
    read = load_narrations(tiny_data / "annotations" / "narration.json")
    summary = load_summary(tiny_data)
    assert read.videos == len(summary.video_durations) and read.skipped_no_text == 0
    by_video = read.by_video()
    train = load_nlq_annotations(tiny_data / "annotations" / "nlq_train.json").queries
    assert len(read.narrations) > 5 * len(train)
    world = build_world(summary.seed, len(summary.classes), summary.scale)
    checked = 0
    for q in train:
        word = next(w for w in tokenize_query(q.query) if w in world.entities)
        if q.zero_length:
            continue
        start, end = q.video_start_sec + q.start, q.video_start_sec + q.end
        times = [n.timestamp for n in by_video[q.video_uid] if n.text.endswith(f" {word}")]
        inside = [t for t in times if start <= t <= end]
        assert inside, f"no narration names {word!r} inside its answer window"
        checked += 1
    assert checked > 10


def test_naq_build_cli_on_synthetic_data_then_encode_and_check(tiny_data, tmp_path, capsys):
    ann = tiny_data / "annotations"
    out = tmp_path / "naq_train.json"
    assert main(["naq", "build", "--narrations", str(ann / "narration.json"), "--clips", str(ann / "nlq_train.json"),
                 str(ann / "moments_train.json"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "leakage check: 0 val/test clips given, 0 pairs from them" in printed
    queries = load_nlq_annotations(out).queries
    train_clips = {c.clip_uid for name in ("nlq_train.json", "moments_train.json") for c in read_em_clips(ann / name)}
    eval_clips = {c.clip_uid for name in ("nlq_val.json", "moments_val.json") for c in read_em_clips(ann / name)}
    assert queries and {q.clip_uid for q in queries} <= train_clips and not {q.clip_uid for q in queries} & eval_clips
    assert run_data_check([out], task="nlq").ok
    # refused for a val clips file
    assert main(["naq", "build", "--narrations", str(ann / "narration.json"), "--clips", str(ann / "nlq_val.json"),
                 "--out", str(tmp_path / "leak.json")]) == 2
    assert "--allow-eval-clips" in capsys.readouterr().err and not (tmp_path / "leak.json").exists()
    # token features through `egoasl text encode`, aligned with the generated query features
    feats = tmp_path / "text"
    assert main(["text", "encode", "--annotations", str(out), "--out", str(feats), "--encoder", "synthetic",
                 "--weights", str(tiny_data)]) == 0
    q = queries[0]
    tokens = torch.load(feats / q.clip_uid / f"{q.annotation_uid}_{q.query_idx}.pt", weights_only=True)
    assert tokens.shape == (len(tokenize_query(q.query)), 16)


def test_synthetic_encoder_matches_the_generated_query_features(tiny_data):
    q = load_nlq_annotations(tiny_data / "annotations" / "nlq_train.json").queries[0]
    generated = torch.load(tiny_data / "features" / "text" / q.clip_uid / f"{q.annotation_uid}_{q.query_idx}.pt",
                           weights_only=True)
    (encoded,) = build_text_encoder("synthetic", str(tiny_data)).encode([q.query], 48)
    assert encoded.shape == generated.shape
    assert (encoded - generated).abs().max() < 0.6  # the generator adds N(0, 0.1) noise per value
    cos = torch.nn.functional.cosine_similarity(encoded, generated, dim=1)
    assert (cos > 0.5).all()
