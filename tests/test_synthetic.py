"""The synthetic Ego4D-format dataset: layout, schema, determinism, shapes and the planted signal."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from egoasl.cli import main
from egoasl.data.synthetic import (
    MQ_FILES,
    NLQ_FILES,
    OFFICIAL_MQ_LABELS,
    SPLITS,
    build_world,
    clip_feature_count,
    generate_synthetic,
    load_summary,
    official_feature_count,
    tokenize_query,
)
from egoasl.errors import EgoaslError

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"

# Field sets of the official files, as in shared/examples/{moments,nlq}_sample.json.
TOP_KEYS = {"version", "date", "description", "manifest", "videos"}
VIDEO_KEYS = {"video_uid", "split", "clips"}
CLIP_KEYS = {
    "clip_uid", "source_clip_uid", "video_start_sec", "video_end_sec", "video_start_frame", "video_end_frame",
    "clip_start_sec", "clip_end_sec", "clip_start_frame", "clip_end_frame", "annotations",
}  # fmt: skip
MQ_ANNOTATION_KEYS = {"annotator_uid", "labels"}
MQ_LABEL_KEYS = {
    "label", "start_time", "end_time", "video_start_time", "video_end_time", "video_start_frame",
    "video_end_frame", "primary",
}  # fmt: skip
NLQ_ANNOTATION_KEYS = {"annotation_uid", "language_queries"}
NLQ_QUERY_KEYS = {
    "query", "template", "slot_x", "verb_x", "slot_y", "verb_y", "raw_tags", "clip_start_sec", "clip_end_sec",
    "video_start_sec", "video_end_sec", "video_start_frame", "video_end_frame",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    generate_synthetic(root, seed=0, scale="tiny")
    return root


def _json(root: Path, name: str) -> dict:
    return json.loads((root / "annotations" / name).read_text(encoding="utf-8"))


def _clips(data: dict):
    for video in data["videos"]:
        for clip in video["clips"]:
            yield video, clip


def _queries(data: dict):
    for video, clip in _clips(data):
        for annotation in clip["annotations"]:
            for idx, query in enumerate(annotation["language_queries"]):
                yield video, clip, annotation, idx, query


def _world(root: Path):
    """The hidden model behind a generated folder."""
    summary = load_summary(root)
    return build_world(seed=summary.seed, classes=len(summary.classes), scale=summary.scale)


def _slice_video(feats: torch.Tensor, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a per-video tensor centred inside [start, end] (video s) and their centres."""
    centres = (16 * np.arange(feats.shape[0]) + 16) / 30
    keep = (centres >= start) & (centres <= end)
    return feats.numpy()[keep], centres[keep]


# ----------------------------------------------------------------------------- layout and schema


def test_layout_has_the_official_file_names(tiny: Path) -> None:
    summary = load_summary(tiny)
    names = sorted(p.name for p in (tiny / "annotations").iterdir())
    assert names == sorted([*MQ_FILES.values(), *NLQ_FILES.values(), "narration.json"])
    assert sorted(p.name for p in (tiny / "features").iterdir()) == ["egovlp", "omnivore", "slowfast", "text"]
    video_uids, clip_uids = set(), set()
    for name in list(MQ_FILES.values()) + list(NLQ_FILES.values()):
        for video, clip in _clips(_json(tiny, name)):
            video_uids.add(video["video_uid"])
            clip_uids.add(clip["clip_uid"])
    for source in ("slowfast", "omnivore"):
        assert {p.stem for p in (tiny / "features" / source).glob("*.pt")} == video_uids
    assert {p.stem for p in (tiny / "features" / "egovlp").glob("*.pt")} == clip_uids
    assert len(video_uids) == sum(summary.videos.values()) == 5
    assert [(s.name, s.layout) for s in summary.sources] == [
        ("slowfast", "video"), ("omnivore", "video"), ("egovlp", "clip"),
    ]  # fmt: skip
    assert [s.dim for s in summary.sources] == [24, 16, 12] and summary.text_dim == 16
    assert all(s.rate == 1.875 for s in summary.sources)
    # MQ and NLQ clips share the videos but never a clip uid
    mq = {c["clip_uid"] for n in MQ_FILES.values() for _, c in _clips(_json(tiny, n))}
    nlq = {c["clip_uid"] for n in NLQ_FILES.values() for _, c in _clips(_json(tiny, n))}
    assert mq and nlq and not mq & nlq


def test_text_files_exist_for_every_query_with_text_only(tiny: Path) -> None:
    expected = set()
    for name in NLQ_FILES.values():
        for _, clip, annotation, idx, query in _queries(_json(tiny, name)):
            if query.get("query"):
                expected.add(f"{clip['clip_uid']}/{annotation['annotation_uid']}_{idx}.pt")
    found = {f"{p.parent.name}/{p.name}" for p in (tiny / "features" / "text").glob("*/*.pt")}
    assert found == expected
    assert load_summary(tiny).feature_files["text"] == len(expected)


def test_mq_fields_match_the_official_schema(tiny: Path) -> None:
    for split in SPLITS:
        data = _json(tiny, MQ_FILES[split])
        assert set(data) == TOP_KEYS
        for video, clip in _clips(data):
            assert set(video) == VIDEO_KEYS and video["split"] == split
            if split == "test":
                assert set(clip) == CLIP_KEYS - {"annotations"}
                continue
            assert set(clip) == CLIP_KEYS
            assert 2 <= len(clip["annotations"]) <= 3
            for annotation in clip["annotations"]:
                assert set(annotation) == MQ_ANNOTATION_KEYS
                for label in annotation["labels"]:
                    assert set(label) == MQ_LABEL_KEYS


def test_nlq_fields_match_the_official_schema(tiny: Path) -> None:
    for split in SPLITS:
        data = _json(tiny, NLQ_FILES[split])
        assert set(data) == TOP_KEYS
        for video, clip in _clips(data):
            assert set(video) == VIDEO_KEYS and video["split"] == split
            assert set(clip) == CLIP_KEYS
            assert 1 <= len(clip["annotations"]) <= 3
            for annotation in clip["annotations"]:
                assert set(annotation) == NLQ_ANNOTATION_KEYS
                assert 2 <= len(annotation["language_queries"]) <= 5
        for *_, query in _queries(data):
            assert set(query) == ({"query"} if split == "test" else NLQ_QUERY_KEYS)


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="shared/examples is not checked out next to the repository")
def test_field_sets_equal_the_shared_example_files() -> None:
    moments = json.loads((EXAMPLES / "moments_sample.json").read_text(encoding="utf-8"))
    nlq = json.loads((EXAMPLES / "nlq_sample.json").read_text(encoding="utf-8"))
    for data in (moments, nlq):
        assert set(data) == TOP_KEYS
        for video, clip in _clips(data):
            assert set(video) == VIDEO_KEYS and set(clip) == CLIP_KEYS
    for _, clip in _clips(moments):
        for annotation in clip["annotations"]:
            assert set(annotation) == MQ_ANNOTATION_KEYS
            assert all(set(label) == MQ_LABEL_KEYS for label in annotation["labels"])
    for *_, annotation, _, query in _queries(nlq):
        assert set(annotation) == NLQ_ANNOTATION_KEYS and set(query) == NLQ_QUERY_KEYS


def test_times_frames_and_types_are_consistent(tiny: Path) -> None:
    for split in ("train", "val"):
        for _, clip in _clips(_json(tiny, MQ_FILES[split])):
            assert clip["clip_start_sec"] == 0 and isinstance(clip["clip_start_sec"], int)
            assert clip["clip_start_frame"] == 0
            duration = clip["video_end_sec"] - clip["video_start_sec"]
            assert clip["clip_end_sec"] == pytest.approx(duration, abs=1e-6)
            assert clip["clip_end_frame"] == round(clip["clip_end_sec"] * 30)
            assert clip["video_start_frame"] == round(clip["video_start_sec"] * 30)
            assert clip["video_end_frame"] == round(clip["video_end_sec"] * 30)
            for annotation in clip["annotations"]:
                for label in annotation["labels"]:
                    assert isinstance(label["primary"], bool)
                    assert isinstance(label["start_time"], float) and isinstance(label["video_start_frame"], int)
                    assert 0.0 <= label["start_time"] < label["end_time"] <= clip["clip_end_sec"] + 0.5
                    expected = clip["video_start_sec"] + label["start_time"]
                    assert label["video_start_time"] == pytest.approx(expected, abs=1e-6)
                    assert label["video_end_frame"] == round(label["video_end_time"] * 30)
        for *_, clip, _, _, query in _queries(_json(tiny, NLQ_FILES[split])):
            assert 0.0 <= query["clip_start_sec"] <= query["clip_end_sec"] <= clip["clip_end_sec"]
            expected = clip["video_start_sec"] + query["clip_end_sec"]
            assert query["video_end_sec"] == pytest.approx(expected, abs=1e-6)
            assert query["video_start_frame"] == round(query["video_start_sec"] * 30)


def test_uids_look_like_uuid4(tiny: Path) -> None:
    import uuid

    data = _json(tiny, MQ_FILES["train"])
    video, clip = next(_clips(data))
    for uid in (video["video_uid"], clip["clip_uid"], clip["source_clip_uid"], clip["annotations"][0]["annotator_uid"]):
        assert uuid.UUID(uid).version == 4 and str(uuid.UUID(uid)) == uid


# ----------------------------------------------------------------------------- labels and special cases


def test_labels_are_official_strings_including_quoted_ones(tiny: Path) -> None:
    summary = load_summary(tiny)
    assert len(summary.classes) == 6 and set(summary.classes) <= set(OFFICIAL_MQ_LABELS)
    for split in ("train", "val"):
        primary = [
            label["label"]
            for _, clip in _clips(_json(tiny, MQ_FILES[split]))
            for annotation in clip["annotations"]
            for label in annotation["labels"]
            if label["primary"]
        ]
        assert set(primary) == set(summary.classes)  # every class in train and in val
        quoted = {label for label in primary if label.startswith('"') and label.endswith('"') and "," in label}
        assert len(quoted) >= 2
    raw = (tiny / "annotations" / MQ_FILES["train"]).read_text(encoding="utf-8")
    for label in quoted:  # written escaped, read back as the exact official string
        assert json.dumps(label) in raw and label in OFFICIAL_MQ_LABELS
    assert sum(label.startswith('"') for label in OFFICIAL_MQ_LABELS) == 7 and len(OFFICIAL_MQ_LABELS) == 110


def test_annotators_repeat_each_instance_with_jitter_and_non_primary_labels_exist(tiny: Path) -> None:
    non_primary = 0
    for _, clip in _clips(_json(tiny, MQ_FILES["train"])):
        per_annotator = [[lab for lab in ann["labels"] if lab["primary"]] for ann in clip["annotations"]]
        non_primary += sum(not lab["primary"] for ann in clip["annotations"] for lab in ann["labels"])
        assert len({len(labels) for labels in per_annotator}) == 1
        for copies in zip(*per_annotator):
            assert len({c["label"] for c in copies}) == 1
            starts = [c["start_time"] for c in copies]
            assert max(starts) - min(starts) < 2.0
        assert any(len({c["start_time"] for c in copies}) > 1 for copies in zip(*per_annotator))
    assert non_primary >= 1 and load_summary(tiny).mq_non_primary_labels["train"] == non_primary


def test_a_null_query_keeps_the_query_index_numbering(tiny: Path) -> None:
    nulls = [
        (annotation, idx, query)
        for *_, annotation, idx, query in _queries(_json(tiny, NLQ_FILES["train"]))
        if query["query"] is None
    ]
    assert len(nulls) == 1
    annotation, idx, query = nulls[0]
    assert idx == 1 and annotation["language_queries"][0]["query"]  # a query with text comes before it
    assert query["template"] is None and query["slot_x"] is None and query["verb_y"] == "[verb_not_applicable]"
    assert query["raw_tags"] == [None] * 5 + ["[verb_not_applicable]"]
    assert load_summary(tiny).nlq_null_queries == {"train": 1, "val": 0, "test": 0}


def test_null_query_has_no_text_file_but_its_neighbours_do(tiny: Path) -> None:
    for *_, clip, annotation, idx, query in _queries(_json(tiny, NLQ_FILES["train"])):
        if query["query"] is not None:
            continue
        folder = tiny / "features" / "text" / clip["clip_uid"]
        assert not (folder / f"{annotation['annotation_uid']}_{idx}.pt").exists()
        assert (folder / f"{annotation['annotation_uid']}_{idx - 1}.pt").is_file()
        if idx + 1 < len(annotation["language_queries"]):
            assert (folder / f"{annotation['annotation_uid']}_{idx + 1}.pt").is_file()


def test_demo_scale_has_zero_length_windows_negative_start_and_val_null(tmp_path: Path) -> None:
    summary = generate_synthetic(tmp_path / "demo", seed=1, scale="demo")
    assert summary.nlq_zero_length == {"train": 2, "val": 0, "test": 0}
    assert summary.nlq_null_queries == {"train": 1, "val": 1, "test": 0}
    assert sum(summary.videos.values()) == 24 and all(n >= 1 for n in summary.videos.values())
    assert summary.videos["train"] == 14 and len(summary.classes) == 8
    starts = [clip["video_start_sec"] for _, clip in _clips(_json(tmp_path / "demo", MQ_FILES["train"]))]
    assert min(starts) < 0 and min(starts) > -0.1
    durations = [clip["clip_end_sec"] for _, clip in _clips(_json(tmp_path / "demo", MQ_FILES["val"]))]
    assert all(120 <= d <= 200 for d in durations)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b" / "nested"
    first = generate_synthetic(a, seed=7, scale="tiny")
    generate_synthetic(b, seed=7, scale="tiny")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) > 40
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    second = generate_synthetic(tmp_path / "c", seed=8, scale="tiny")
    assert first.classes != second.classes or first.mq_instances != second.mq_instances
    assert (tmp_path / "a/annotations/moments_train.json").read_bytes() != (
        tmp_path / "c/annotations/moments_train.json"
    ).read_bytes()


def test_regenerating_into_a_synthetic_folder_replaces_it(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "d", seed=0, scale="tiny", videos=6)
    summary = generate_synthetic(tmp_path / "d", seed=0, scale="tiny", videos=3)
    assert len(list((tmp_path / "d" / "features" / "slowfast").glob("*.pt"))) == 3 == sum(summary.videos.values())


def test_overrides_and_bad_arguments(tmp_path: Path) -> None:
    summary = generate_synthetic(tmp_path / "e", seed=2, scale="tiny", videos=7, classes=3)
    assert sum(summary.videos.values()) == 7 and summary.videos["train"] >= 3
    assert min(summary.videos.values()) >= 1 and len(summary.classes) == 3
    assert sum(label.startswith('"') for label in summary.classes) >= 2
    with pytest.raises(EgoaslError, match="at least 3"):
        generate_synthetic(tmp_path / "f", videos=2, scale="tiny")
    with pytest.raises(EgoaslError, match="between 2 and 110"):
        generate_synthetic(tmp_path / "f", classes=1, scale="tiny")
    with pytest.raises(EgoaslError, match="unknown synthetic scale"):
        generate_synthetic(tmp_path / "f", scale="huge")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "notes.txt").write_text("mine")
    with pytest.raises(EgoaslError, match="not empty"):
        generate_synthetic(tmp_path / "g", scale="tiny")
    assert (tmp_path / "g" / "notes.txt").read_text() == "mine"


def test_cli_writes_the_dataset_and_reports_errors(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--out", str(tmp_path / "cli"), "--scale", "tiny", "--videos", "3", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "MQ clips" in out and "tiny synthetic dataset" in out
    assert load_summary(tmp_path / "cli").seed == 4
    assert main(["synth", "--out", str(tmp_path / "cli2"), "--scale", "tiny", "--videos", "2"]) == 2
    assert "at least 3" in capsys.readouterr().err


# ----------------------------------------------------------------------------- feature shapes


def test_official_feature_count_formula() -> None:
    assert [official_feature_count(f) for f in (1, 31, 32, 33, 47, 48, 49, 64)] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert official_feature_count(14400) == 899  # a 480 s video: 1.873 vectors per second
    for frames in range(32, 400):
        n = official_feature_count(frames)
        assert 16 * (n - 2) + 32 < frames <= 16 * (n - 1) + 32  # the last window is back-padded


def test_feature_files_have_the_right_shapes(tiny: Path) -> None:
    summary = load_summary(tiny)
    dims = {s.name: s.dim for s in summary.sources}
    assert len(summary.video_durations) == 5
    for video_uid, duration in summary.video_durations.items():
        n = official_feature_count(round(duration * 30))
        for source in ("slowfast", "omnivore"):
            feats = torch.load(tiny / "features" / source / f"{video_uid}.pt", weights_only=True)
            assert feats.dtype == torch.float32 and tuple(feats.shape) == (n, dims[source])
            assert (16 * (n - 1) + 16) / 30 <= duration  # the last centre lies inside the video
    for name in list(MQ_FILES.values()) + list(NLQ_FILES.values()):
        for video, clip in _clips(_json(tiny, name)):
            feats = torch.load(tiny / "features" / "egovlp" / f"{clip['clip_uid']}.pt", weights_only=True)
            duration = clip["video_end_sec"] - clip["video_start_sec"]
            assert tuple(feats.shape) == (math.floor(duration * 1.875), dims["egovlp"]) == (
                clip_feature_count(duration), 12,
            )  # fmt: skip
            assert clip["video_end_sec"] <= summary.video_durations[video["video_uid"]]
    for name in NLQ_FILES.values():
        for *_, clip, annotation, idx, query in _queries(_json(tiny, name)):
            if not query.get("query"):
                continue
            path = tiny / "features" / "text" / clip["clip_uid"] / f"{annotation['annotation_uid']}_{idx}.pt"
            feats = torch.load(path, weights_only=True)
            assert tuple(feats.shape) == (len(tokenize_query(query["query"])), 16) and feats.shape[0] <= 48


def test_tokenizer() -> None:
    tokens = ["where", "is", "the", "knife", "before", "i", "cook", "?"]
    assert tokenize_query("Where is the knife before I cook?") == tokens


# ----------------------------------------------------------------------------- the planted signal


def _mq_clip_rows(root: Path, source: str = "slowfast"):
    """Per train/val MQ clip: (rows of a per-video source inside the clip [T, D], bias removed and
    unscaled; their clip times; the clip; its first annotator's primary labels)."""
    world = _world(root)
    durations = load_summary(root).video_durations
    for split in ("train", "val"):
        for video, clip in _clips(_json(root, MQ_FILES[split])):
            feats = torch.load(root / "features" / source / f"{video['video_uid']}.pt", weights_only=True)
            assert feats.shape[0] == official_feature_count(round(durations[video["video_uid"]] * 30))
            rows, centres = _slice_video(feats, clip["video_start_sec"], clip["video_end_sec"])
            rows = (rows - world.biases[source]) / world.scales[source]
            labels = [lab for lab in clip["annotations"][0]["labels"] if lab["primary"]]
            yield rows, centres - clip["video_start_sec"], clip, labels


def test_class_evidence_is_inside_instances_and_strongest_in_their_middle(tiny: Path) -> None:
    world = _world(tiny)
    protos = np.stack([world.class_prototype("slowfast", k) for k in range(world.num_classes)])  # [K, D]
    middle, edges, outside = [], [], []
    for rows, times, _, labels in _mq_clip_rows(tiny):
        proj = rows @ protos.T  # [T, K]
        for k, label in enumerate(world.labels):
            far = np.ones(len(times), dtype=bool)
            for lab in labels:
                if lab["label"] != label:
                    continue
                start, end = lab["start_time"], lab["end_time"]
                far &= (times < start - 2.0) | (times > end + 2.0)
                if end - start < 5.0:
                    continue
                u = (times - start) / (end - start)
                middle += proj[(u > 0.35) & (u < 0.65), k].tolist()
                edges += proj[((u > 0.05) & (u < 0.15)) | ((u > 0.85) & (u < 0.95)), k].tolist()
            outside += proj[far, k].tolist()
    assert len(middle) >= 10 and len(edges) >= 5 and len(outside) > 100
    assert np.mean(middle) > np.mean(edges) + 0.3
    assert np.mean(edges) > np.mean(outside) + 0.1
    assert np.mean(middle) > np.mean(outside) + 0.6


def test_boundary_patterns_mark_starts_and_ends(tiny: Path) -> None:
    world = _world(tiny)
    protos = np.stack([world.boundary_prototype("slowfast", "start"), world.boundary_prototype("slowfast", "end")])
    at_start, at_end, elsewhere = [], [], []
    for rows, times, _, labels in _mq_clip_rows(tiny):
        score = rows @ protos.T  # [T, 2]: start and end pattern
        d_start = np.abs(times[:, None] - np.array([lab["start_time"] for lab in labels])[None]).min(1)
        d_end = np.abs(times[:, None] - np.array([lab["end_time"] for lab in labels])[None]).min(1)
        at_start += score[(d_start < 0.4) & (d_end > 2.0)].tolist()
        at_end += score[(d_end < 0.4) & (d_start > 2.0)].tolist()
        elsewhere += score[(d_start > 2.5) & (d_end > 2.5)].tolist()
    at_start, at_end, elsewhere = np.array(at_start), np.array(at_end), np.array(elsewhere)
    assert len(at_start) >= 5 and len(at_end) >= 5
    assert at_start[:, 0].mean() > elsewhere[:, 0].mean() + 0.25 and at_start[:, 0].mean() > at_end[:, 0].mean() + 0.2
    assert at_end[:, 1].mean() > elsewhere[:, 1].mean() + 0.25 and at_end[:, 1].mean() > at_start[:, 1].mean() + 0.2


def test_video_and_clip_sources_agree_in_time(tiny: Path) -> None:
    """The boundary pulses of the per-clip source line up with the per-video source at zero lag."""
    world = _world(tiny)
    shifts = (-1.5, -0.75, 0.0, 0.75, 1.5)
    correlations = []  # one row per (clip, pattern): correlation at each shift of the clip source
    for rows, times, clip, _ in _mq_clip_rows(tiny):
        egovlp = torch.load(tiny / "features" / "egovlp" / f"{clip['clip_uid']}.pt", weights_only=True).numpy()
        egovlp_times = (np.arange(len(egovlp)) + 0.5) / 1.875
        for which in ("start", "end"):
            a = rows @ world.boundary_prototype("slowfast", which)
            b = (egovlp - world.biases["egovlp"]) @ world.boundary_prototype("egovlp", which)
            correlations.append([np.corrcoef(a, np.interp(times + s, egovlp_times, b))[0, 1] for s in shifts])
    mean = np.mean(correlations, axis=0)
    assert int(np.argmax(mean)) == 2 and mean[2] > 0.15  # weak per source (12 dims), but peaked at zero lag
    assert mean[2] > max(mean[0], mean[4]) + 0.1


def test_query_entity_appears_in_its_window_and_its_word_is_linked(tiny: Path) -> None:
    world = _world(tiny)
    inside, outside, word_match = [], [], []
    for video, clip, annotation, idx, query in _queries(_json(tiny, NLQ_FILES["train"])):
        if not query["query"]:
            continue
        entity = query["slot_x"]
        feats = torch.load(tiny / "features" / "egovlp" / f"{clip['clip_uid']}.pt", weights_only=True).numpy()
        times = (np.arange(len(feats)) + 0.5) / 1.875
        score = (feats - world.biases["egovlp"]) / world.scales["egovlp"] @ world.entity_prototype("egovlp", entity)
        start, end = query["clip_start_sec"], query["clip_end_sec"]
        inside += score[(times > start + 0.6) & (times < end - 0.6)].tolist()
        outside.append(score[(times < start - 3.0) | (times > end + 3.0)].mean())
        path = tiny / "features" / "text" / clip["clip_uid"] / f"{annotation['annotation_uid']}_{idx}.pt"
        text = torch.load(path, weights_only=True).numpy()
        row = text[tokenize_query(query["query"]).index(entity)]
        sims = world.entity_text @ row
        word_match.append(int(np.argmax(sims)) == world.entities.index(entity))
    assert len(inside) > 20
    assert np.mean(inside) > np.mean(outside) + 0.5
    assert np.mean(word_match) > 0.95


# ----------------------------------------------------------------------------- the official readers


def test_official_readers_load_the_files_and_find_the_counts(tiny: Path) -> None:
    if importlib.util.find_spec("egoasl.data.ego4d") is None:
        pytest.skip("egoasl.data.ego4d (the official readers) is not written yet")
    from egoasl.data.ego4d import load_mq_annotations, load_nlq_annotations

    summary = load_summary(tiny)
    for split in SPLITS:
        mq = load_mq_annotations(tiny / "annotations" / MQ_FILES[split])
        assert len(mq.clips) == summary.mq_clips[split]
        assert sum(len(clip.instances) for clip in mq.clips.values()) == summary.mq_primary_labels[split]
        assert all(clip.split == split for clip in mq.clips.values())
        assert mq.non_primary_skipped == summary.mq_non_primary_labels[split]
        nlq = load_nlq_annotations(tiny / "annotations" / NLQ_FILES[split])
        assert len(nlq.queries) == summary.nlq_queries[split]
        assert nlq.skipped_empty == summary.nlq_null_queries[split]
        assert nlq.zero_length == summary.nlq_zero_length[split]
    labels = load_mq_annotations(tiny / "annotations" / MQ_FILES["train"]).labels(("train",))
    assert sorted(labels) == sorted(summary.classes)
