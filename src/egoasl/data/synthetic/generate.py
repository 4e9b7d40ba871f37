"""Writing a whole synthetic dataset: :func:`generate_synthetic`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from tqdm import tqdm

from egoasl.data.ego4d import SPLITS, annotation_file_name
from egoasl.data.synthetic.features import write_video_features
from egoasl.data.synthetic.narrations import NARRATION_FILE, narrate_video
from egoasl.data.synthetic.plan import VideoPlan
from egoasl.data.synthetic.scales import scale_spec
from egoasl.data.synthetic.seeding import seeded_rng
from egoasl.data.synthetic.summary import SyntheticSummary
from egoasl.data.synthetic.videos import assign_splits, plan_video, video_flags
from egoasl.data.synthetic.world import build_world
from egoasl.errors import EgoaslError

MQ_FILES = {split: annotation_file_name("mq", split) for split in SPLITS}
"""Annotation file name of each split's MQ file, e.g. ``moments_test_unannotated.json``."""
NLQ_FILES = {split: annotation_file_name("nlq", split) for split in SPLITS}
"""Annotation file name of each split's NLQ file, e.g. ``nlq_val.json``."""


def _prepare_out(out: Path) -> None:
    """Create ``out``, or clear what an earlier ``egoasl synth`` wrote there; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise EgoaslError(f"{out}: exists and is not a folder; --out needs a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "synthetic.json").is_file():
            found = sorted(p.name for p in out.iterdir())[:5]
            raise EgoaslError(
                f"{out}: folder is not empty (holds {', '.join(found)}) and has no synthetic.json from an earlier "
                "`egoasl synth`; choose a new or empty folder"
            )
        for name in ("annotations", "features"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        (out / "synthetic.json").unlink()
    (out / "annotations").mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _header(task: str, split: str, seed: int, scale: str) -> dict:
    name = "Moments Queries annotations" if task == "mq" else "NLQ Annotations"
    kind = "test, unannotated" if split == "test" else split
    return {
        "version": "v2",
        "date": "230101",
        "description": f"{name} ({kind}) -- SYNTHETIC (egoasl synth, scale {scale}, seed {seed})",
        "manifest": "s3://ego4d-consortium-sharing/public/v2/full_scale/manifest.csv",
    }


def _count(summary: SyntheticSummary, plan: VideoPlan) -> None:
    """Add one video's clips, labels and queries to the counts of its split."""
    split = plan.split
    summary.videos[split] += 1
    summary.mq_clips[split] += len(plan.mq_clips)
    summary.mq_instances[split] += plan.instances
    for clip in plan.mq_clips:
        for annotation in clip.get("annotations", []):
            for label in annotation["labels"]:
                key = summary.mq_primary_labels if label["primary"] else summary.mq_non_primary_labels
                key[split] += 1
    summary.nlq_clips[split] += len(plan.nlq_clips)
    for clip in plan.nlq_clips:
        summary.nlq_annotations[split] += len(clip["annotations"])
        for annotation in clip["annotations"]:
            for query in annotation["language_queries"]:
                if query.get("query"):
                    summary.nlq_queries[split] += 1
                else:
                    summary.nlq_null_queries[split] += 1
                if "clip_end_sec" in query and query["clip_end_sec"] == query["clip_start_sec"]:
                    summary.nlq_zero_length[split] += 1


def generate_synthetic(
    out: str | Path,
    seed: int = 0,
    videos: int | None = None,
    classes: int | None = None,
    scale: str = "demo",
    progress: bool = False,
    difficulty: str = "normal",
    clip_seconds: tuple[float, float] | None = None,
) -> SyntheticSummary:
    """Write a synthetic Ego4D MQ + NLQ dataset in the official layout under ``out``.

    Args:
        out: a new or empty folder, or one written by an earlier call (its ``annotations/``,
            ``features/`` and ``synthetic.json`` are replaced; nothing else is touched).
        seed: the same seed gives byte-identical files.
        videos: number of canonical videos (at least 3: one per split); default per scale.
        classes: number of MQ classes (2-110), taken from the official labels; default per scale.
        scale: ``"tiny"``, ``"demo"`` or ``"full"`` (see :data:`~egoasl.data.synthetic.SCALES`).
        progress: show a progress bar over the videos.
        difficulty: ``"normal"`` or ``"hard"`` (class-specific evidence profiles, overlapping
            prototypes, more noise and annotator jitter; :mod:`~egoasl.data.synthetic.difficulty`).
        clip_seconds: ``(low, high)`` clip durations in seconds instead of the scale's (e.g. 480 s
            clips, the real MQ length, at demo sizes).

    Returns:
        The counts and feature sources, also written to ``out/synthetic.json``.
    """
    spec = scale_spec(scale)
    if clip_seconds is not None:
        low, high = (float(x) for x in clip_seconds)
        if not 10.0 <= low <= high:
            raise EgoaslError(f"--clip-seconds must be two durations with 10 <= low <= high, got {low:g} {high:g}")
        spec = dataclasses.replace(spec, clip_seconds=(low, high))
    num_videos = spec.videos if videos is None else int(videos)
    if num_videos < 3:
        raise EgoaslError(f"--videos must be at least 3 (one video per split), got {num_videos}")
    if seed < 0:
        raise EgoaslError(f"--seed must be a non-negative integer, got {seed}")
    world = build_world(seed, classes, scale, difficulty)
    out = Path(out)
    _prepare_out(out)
    splits = assign_splits(seed, num_videos)
    flags = video_flags(spec, splits, world.num_classes, seed)
    summary = SyntheticSummary(
        scale=scale, seed=seed, classes=list(world.labels), sources=list(world.sources), text_dim=world.text_dim,
        difficulty=difficulty,
    )
    mq_videos: dict[str, list[dict]] = {split: [] for split in SPLITS}
    nlq_videos: dict[str, list[dict]] = {split: [] for split in SPLITS}
    durations: dict[str, float] = {}
    narrations: dict[str, dict] = {}
    for i in tqdm(range(num_videos), desc="synthetic videos", unit="video", disable=None if progress else True):
        rng = seeded_rng(seed, "video", i)
        plan = plan_video(world, spec, rng, splits[i], flags[i])
        for name, count in write_video_features(out, world, rng, plan).items():
            summary.feature_files[name] = summary.feature_files.get(name, 0) + count
        mq_videos[plan.split].append({"video_uid": plan.video_uid, "split": plan.split, "clips": plan.mq_clips})
        nlq_videos[plan.split].append({"video_uid": plan.video_uid, "clips": plan.nlq_clips, "split": plan.split})
        durations[plan.video_uid] = plan.duration
        narrations[plan.video_uid] = narrate_video(world, plan, seeded_rng(seed, "narrate", i))
        _count(summary, plan)
    for split in SPLITS:
        mq = {**_header("mq", split, seed, scale), "videos": mq_videos[split]}
        _write_json(out / "annotations" / MQ_FILES[split], mq)
        nlq = {**_header("nlq", split, seed, scale), "videos": nlq_videos[split]}
        _write_json(out / "annotations" / NLQ_FILES[split], nlq)
    _write_json(out / "annotations" / NARRATION_FILE, narrations)
    summary.video_durations = durations
    _write_json(out / "synthetic.json", summary.to_dict())
    return summary
