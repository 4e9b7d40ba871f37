"""`egoasl data check`: statistics of annotation files and a check of the feature files they need.

Annotations are read in collect-all mode, so every problem of every file is listed, each
starting with the file it is in. Feature folders are checked against the clips of the
annotations: ``<features>/<source>/<video_uid>.pt|.npy`` for per-video sources (the official
Ego4D features) and ``<features>/<source>/<clip_uid>.pt|.npy`` for per-clip sources. Each file
is read with :func:`egoasl.data.features.load_feature_file` (shape, dimension, NaN/Inf), and a
per-video file must cover each of its clips: with ``N`` vectors every 16/30 s, ``N * 16/30``
must reach ``video_end_sec`` within one step (the last window of the official features ends
one step after its start). A source with a stated timing (fps, stride, window: ActivityNet-style
data) must hold the windows that fit in what it covers, less one
(:func:`egoasl.data.features.check_rows`). MQ files may be ActivityNet-style
(:mod:`egoasl.data.mq_formats`); :func:`check_config` checks what a training config points at.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from egoasl.config import Config
from egoasl.data.ego4d import SPLITS, TASKS, find_annotation_files, load_nlq_annotations
from egoasl.data.features import FEATURE_SUFFIXES, check_rows, load_feature_file, source_timing
from egoasl.data.mq_formats import load_mq_file
from egoasl.data.records import MQAnnotations, NLQAnnotations
from egoasl.data.timegrid import OFFICIAL_FEATURE_STEP, FeatureTiming
from egoasl.errors import DataError, EgoaslError

LAYOUTS = ("video", "clip")
PERCENTILES = (1, 10, 25, 50, 75, 90, 99)
SKIPPED_FOLDERS = ("text",)  # NLQ query features live next to the video sources


@dataclass(frozen=True)
class FeatureSource:
    """One feature folder to check. ``dim``/``layout`` None: taken from the files themselves.
    ``timing``: the rows' stated timing (ActivityNet-style sources), checked against each clip;
    ``prefix``: file names are ``<prefix><uid>``; ``label``: the name shown, when ``name`` is a folder path."""

    name: str
    dim: int | None = None
    layout: str | None = None
    timing: FeatureTiming | None = None
    prefix: str = ""
    label: str = ""


@dataclass(frozen=True)
class ClipSpan:
    """What the feature check needs to know about one clip."""

    clip_uid: str
    video_uid: str
    video_start_sec: float
    video_end_sec: float


@dataclass
class CheckReport:
    """The outcome of a check: readable statistics lines, every problem found and the MQ files read."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    mq: list[MQAnnotations] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_source(text: str) -> FeatureSource:
    """Parse ``NAME:DIM[:video|clip]`` (the ``--sources`` syntax of ``egoasl data check``)."""
    parts = text.split(":")
    usage = f"--sources {text!r}: expected NAME:DIM or NAME:DIM:video|clip (e.g. slowfast:2304:video)"
    if len(parts) not in (2, 3) or not parts[0]:
        raise EgoaslError(usage)
    try:
        dim = int(parts[1])
    except ValueError:
        raise EgoaslError(usage) from None
    if dim <= 0:
        raise EgoaslError(f"--sources {text!r}: the dimension must be a positive integer")
    layout = parts[2] if len(parts) == 3 else None
    if layout is not None and layout not in LAYOUTS:
        raise EgoaslError(f"--sources {text!r}: the layout must be 'video' or 'clip', got {layout!r}")
    return FeatureSource(parts[0], dim, layout)


# ---------------------------------------------------------------------------------------------
# Annotations


def load_for_check(
    locations: Sequence[str | Path], task: str | None = None, format: str = "auto"
) -> tuple[list[MQAnnotations], list[NLQAnnotations], list[str]]:
    """Read every annotation file at ``locations`` in collect-all mode.

    A location is a file or a folder (every split of the task found there, see
    :func:`~egoasl.data.ego4d.find_annotation_files`). Without ``task``, a file whose name
    starts with ``nlq`` is NLQ and any other file MQ; a folder is searched for both tasks.
    ``format`` is the MQ files' (:func:`~egoasl.data.mq_formats.load_mq_file`).

    Returns:
        ``(mq, nlq, problems)``: what could be read, and one line per problem.
    """
    if task is not None and task not in TASKS:
        raise EgoaslError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    files: list[tuple[str, Path]] = []
    problems: list[str] = []
    for location in map(Path, locations):
        if location.is_file():
            files.append((task or ("nlq" if location.name.lower().startswith("nlq") else "mq"), location))
        elif location.is_dir():
            found, misses = [], []
            for name in [task] if task else TASKS:
                try:
                    found += [(name, path) for path in find_annotation_files(location, name).values()]
                except EgoaslError as exc:
                    misses.append(str(exc))
            files += found
            if not found:
                problems += misses
        else:
            problems.append(f"{location}: no such file or folder")
    mq, nlq = [], []
    for name, path in dict.fromkeys(files):
        errors: list[DataError] = []
        if name == "mq":
            mq.append(load_mq_file(path, format, errors=errors))
        else:
            nlq.append(load_nlq_annotations(path, errors=errors))
        problems += [str(err) for err in errors]
    problems += _clips_in_several_files([(a.path, a.clips) for a in mq])
    problems += _clips_in_several_files([(a.path, {q.clip_uid for q in a.queries}) for a in nlq])
    return mq, nlq, problems


def _clips_in_several_files(files: Iterable[tuple[str, Iterable[str]]]) -> list[str]:
    """One problem per pair of files sharing clips (their statistics would count those clips twice)."""
    first: dict[str, str] = {}
    shared: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path, uids in files:
        for uid in dict.fromkeys(uids):
            if uid in first:
                shared[(path, first[uid])].append(uid)
            else:
                first[uid] = path
    problems = []
    for (path, other), uids in shared.items():
        examples = ", ".join(uids[:3]) + (", ..." if len(uids) > 3 else "")
        problems.append(f"{path}: expected each clip in one file only; {len(uids)} clip(s) are also in {other} "
                        f"({examples})")
    return problems


def _summary(values: Sequence[float], percentiles: Sequence[int] = ()) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    out = {"min": float(array.min())}
    out.update({f"p{p}": float(np.percentile(array, p)) for p in percentiles})
    if not percentiles:
        out["median"] = float(np.median(array))
    out["max"] = float(array.max())
    return out


def mq_statistics(annotations: Sequence[MQAnnotations]) -> dict:
    """Counts and distributions over MQ annotation files (instances include every annotator's copy).

    Keys: ``splits`` (per split: ``clips``, ``videos``, ``instances``, ``classes``), ``classes``
    (over all splits), ``clip_duration`` (min/median/max s), ``instance_length`` (min, p1..p99,
    max s), ``ends_after_clip`` (instances ending more than 1 microsecond after their clip's end),
    ``non_primary_skipped`` and ``dropped_unlabelled``.
    """
    clips = [clip for ann in annotations for clip in ann.clips.values()]
    splits = {}
    for split in SPLITS:
        members = [clip for clip in clips if clip.split == split]
        if members:
            splits[split] = {
                "clips": len(members),
                "videos": len({clip.video_uid for clip in members}),
                "instances": sum(len(clip.instances) for clip in members),
                "classes": len({inst.label for clip in members for inst in clip.instances}),
            }
    return {
        "splits": splits,
        "classes": len({inst.label for clip in clips for inst in clip.instances}),
        "clip_duration": _summary([clip.duration for clip in clips]),
        "instance_length": _summary([i.end - i.start for clip in clips for i in clip.instances], PERCENTILES),
        "ends_after_clip": sum(i.end > clip.duration + 1e-6 for clip in clips for i in clip.instances),
        "non_primary_skipped": sum(ann.non_primary_skipped for ann in annotations),
        "dropped_unlabelled": sum(ann.dropped_unlabelled for ann in annotations),
    }


def nlq_statistics(annotations: Sequence[NLQAnnotations]) -> dict:
    """Counts and distributions over NLQ annotation files.

    Keys: ``splits`` (per split: ``clips``, ``videos``, ``queries``, ``zero_length``),
    ``clip_duration`` (min/median/max s, one value per clip), ``window_length`` (min, p1..p99,
    max s over annotated queries), ``zero_length`` and ``skipped_empty``.
    """
    queries = [q for ann in annotations for q in ann.queries]
    splits = {}
    for split in SPLITS:
        members = [q for q in queries if q.split == split]
        if members:
            splits[split] = {
                "clips": len({q.clip_uid for q in members}),
                "videos": len({q.video_uid for q in members}),
                "queries": len(members),
                "zero_length": sum(q.zero_length for q in members),
            }
    durations = {q.clip_uid: q.duration for q in queries}
    return {
        "splits": splits,
        "clip_duration": _summary(list(durations.values())),
        "window_length": _summary([q.end - q.start for q in queries if q.start is not None], PERCENTILES),
        "zero_length": sum(q.zero_length for q in queries),
        "skipped_empty": sum(ann.skipped_empty for ann in annotations),
    }


def _format_summary(name: str, summary: dict[str, float]) -> str:
    if not summary:
        return f"  {name}: none"
    return f"  {name}: " + ", ".join(f"{key} {value:.2f}" for key, value in summary.items())


def _format_table(header: Sequence[str], splits: dict[str, dict[str, int]]) -> list[str]:
    rows = [["split", *header]] + [[split, *(str(counts[key]) for key in header)] for split, counts in splits.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                             enumerate(zip(row, widths))) for row in rows]


def format_mq_statistics(annotations: Sequence[MQAnnotations]) -> list[str]:
    """Readable lines for :func:`mq_statistics`, one line per file first."""
    stats = mq_statistics(annotations)
    lines = [f"MQ annotations ({len(annotations)} file{'s' if len(annotations) != 1 else ''}):"]
    lines += [f"  {ann.path}: {ann.format} format, {len(ann.clips)} clips" for ann in annotations]
    lines += _format_table(["clips", "videos", "instances", "classes"], stats["splits"])
    lines.append(f"  classes over all splits: {stats['classes']}")
    lines.append(_format_summary("clip duration (s)", stats["clip_duration"]))
    lines.append(_format_summary("instance length (s)", stats["instance_length"]))
    lines.append(f"  instances ending after their clip: {stats['ends_after_clip']}")
    lines.append(f"  non-primary labels skipped: {stats['non_primary_skipped']}")
    lines.append(f"  train/val clips dropped for having no primary label: {stats['dropped_unlabelled']}")
    return lines


def format_nlq_statistics(annotations: Sequence[NLQAnnotations]) -> list[str]:
    """Readable lines for :func:`nlq_statistics`, one line per file first."""
    stats = nlq_statistics(annotations)
    lines = [f"NLQ annotations ({len(annotations)} file{'s' if len(annotations) != 1 else ''}):"]
    lines += [f"  {ann.path}: {len(ann.queries)} queries" for ann in annotations]
    lines += _format_table(["clips", "videos", "queries", "zero_length"], stats["splits"])
    lines.append(_format_summary("clip duration (s)", stats["clip_duration"]))
    lines.append(_format_summary("window length (s)", stats["window_length"]))
    lines.append(f"  zero-length windows: {stats['zero_length']}")
    lines.append(f"  queries skipped for missing or empty text: {stats['skipped_empty']}")
    return lines


# ---------------------------------------------------------------------------------------------
# Features


def check_features(
    clips: Sequence[ClipSpan],
    features_dir: str | Path,
    sources: Sequence[FeatureSource] | None = None,
    progress: bool = False,
) -> tuple[list[str], list[str]]:
    """Check that every clip has a loadable, finite, covering feature file in every source.

    Args:
        clips: the clips the annotations need.
        features_dir: the folder holding one sub-folder per source.
        sources: the sources to check; None: every sub-folder holding ``.pt``/``.npy`` files,
            except ``text`` (so the ``annotations/`` folder of a download is skipped). A missing
            ``dim`` is read from the first file (by name) the clips need, a missing
            ``layout`` is ``clip`` if a file is named after a clip uid, else ``video``.
        progress: show a progress bar on stderr.

    Returns:
        ``(lines, problems)``: one summary line per source, and one line per problem.
    """
    features_dir = Path(features_dir)
    if not features_dir.is_dir():
        return [], [f"{features_dir}: expected a folder of feature sources (one sub-folder each), no such folder"]
    if sources is None:
        sources = [FeatureSource(p.name) for p in sorted(features_dir.iterdir())
                   if p.is_dir() and p.name not in SKIPPED_FOLDERS and not p.name.startswith(".") and _feature_files(p)]
        if not sources:
            return [], [f"{features_dir}: expected one sub-folder of .pt/.npy files per feature source, found none"]
    lines: list[str] = []
    problems: list[str] = []
    for source in sources:
        folder = features_dir / source.name
        if not folder.is_dir():
            problems.append(f"{folder}: expected the folder of feature source {source.name!r}, no such folder")
            continue
        files = _feature_files(folder)
        layout = source.layout or _detect_layout(files, clips, source.prefix)
        if layout is None:
            problems.append(f"{folder}: expected feature files named <clip_uid> or <video_uid> (.pt or .npy) "
                            f"for the {len(clips)} clips of the annotations, found none")
            continue
        stems = _needed_stems(clips, layout, source.prefix)
        dim = source.dim
        if dim is None:
            first = next((files[stem] for stem in sorted(stems) if stem in files), None)
            if first is None:
                problems.append(f"{folder}: expected at least one of the feature files the clips need, found none")
                continue
            try:
                dim = int(load_feature_file(first).shape[1])
            except DataError as err:
                problems.append(f"{err} (while reading the feature dimension of source {source.name!r})")
                continue
        found = _check_source(folder, files, stems, layout, dim, source, progress)
        problems += found.problems
        lines.append(f"  {source.label or source.name}: layout {layout}, dim {dim}, {found.checked} files read, "
                     f"{len(found.problems)} problem(s)" + found.note)
    return lines, problems


def _feature_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for suffix in FEATURE_SUFFIXES:
        for path in folder.glob(f"*{suffix}"):
            files.setdefault(path.stem, path)
    return files


def _detect_layout(files: dict[str, Path], clips: Sequence[ClipSpan], prefix: str = "") -> str | None:
    if any(prefix + clip.clip_uid in files for clip in clips):
        return "clip"
    if any(prefix + clip.video_uid in files for clip in clips):
        return "video"
    return None


def _needed_stems(clips: Sequence[ClipSpan], layout: str, prefix: str = "") -> dict[str, list[ClipSpan]]:
    stems: dict[str, list[ClipSpan]] = defaultdict(list)
    for clip in clips:
        stems[prefix + (clip.video_uid if layout == "video" else clip.clip_uid)].append(clip)
    return stems


@dataclass
class _SourceResult:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    note: str = ""


def _check_source(folder: Path, files: dict[str, Path], stems: dict[str, list[ClipSpan]], layout: str,
                  dim: int, source: FeatureSource, progress: bool) -> _SourceResult:
    result = _SourceResult()
    name = source.name
    rates = []
    bar = tqdm(stems.items(), desc=f"features {name}", unit="file", leave=False, disable=None if progress else True)
    for stem, members in bar:
        path = files.get(stem)
        if path is None:
            owner = f"clip {stem}"
            if layout == "video":
                more = f" and {len(members) - 1} more" if len(members) > 1 else ""
                owner = f"video {stem} (needed by clip {members[0].clip_uid}{more})"
            expected = f"the {name} features of {owner} ({stem}.pt or .npy); no such file"
            result.problems.append(str(DataError(folder / f"{stem}.pt", "", expected)))
            continue
        try:
            feats = load_feature_file(path, expected_dim=dim)
        except DataError as err:
            result.problems.append(str(err))
            continue
        result.checked += 1
        count = int(feats.shape[0])
        if source.timing is not None:
            for clip in members:
                covered = clip.video_end_sec if layout == "video" else clip.video_end_sec - clip.video_start_sec
                try:
                    check_rows(source.timing, count, covered, path)
                except DataError as err:
                    result.problems.append(str(err))
            continue
        if layout == "clip":
            rates.append(count / (members[0].video_end_sec - members[0].video_start_sec))
            continue
        covered = count * OFFICIAL_FEATURE_STEP
        for clip in members:
            if covered + OFFICIAL_FEATURE_STEP < clip.video_end_sec:
                result.problems.append(str(DataError(
                    path, "rows", f"features reaching the end of clip {clip.clip_uid} ({clip.video_end_sec:.2f} s) "
                    f"within one step; {count} vectors x 16/30 s reach {covered:.2f} s")))
    if rates:
        result.note = "; vectors per second min {:.3f}, median {:.3f}, max {:.3f}".format(
            min(rates), float(np.median(rates)), max(rates))
    return result


# ---------------------------------------------------------------------------------------------
# The whole check


def clip_spans(mq: Sequence[MQAnnotations], nlq: Sequence[NLQAnnotations]) -> list[ClipSpan]:
    """Every distinct clip of the annotations, in file order (MQ clips first)."""
    spans: dict[str, ClipSpan] = {}
    for ann in mq:
        for clip in ann.clips.values():
            span = ClipSpan(clip.clip_uid, clip.video_uid, clip.video_start_sec, clip.video_end_sec)
            spans.setdefault(clip.clip_uid, span)
    for ann in nlq:
        for q in ann.queries:
            spans.setdefault(q.clip_uid, ClipSpan(q.clip_uid, q.video_uid, q.video_start_sec, q.video_end_sec))
    return list(spans.values())


def run_data_check(
    annotations: Sequence[str | Path],
    features: str | Path | None = None,
    sources: Sequence[FeatureSource] | None = None,
    task: str | None = None,
    progress: bool = False,
    format: str = "auto",
) -> CheckReport:
    """Read the annotations (and check the features when ``features`` is given); list every problem."""
    mq, nlq, problems = load_for_check(annotations, task, format)
    report = CheckReport(problems=problems, mq=mq)
    if mq:
        report.lines += format_mq_statistics(mq)
    if nlq:
        report.lines += format_nlq_statistics(nlq)
    if features is not None:
        spans = clip_spans(mq, nlq)
        if not spans:
            report.problems.append(f"{features}: no clips were read from the annotations, so no feature was checked")
        else:
            lines, feature_problems = check_features(spans, features, sources, progress)
            report.lines += [f"features in {features} ({len(spans)} clips):", *lines]
            report.problems += feature_problems
    return report


def check_config(cfg: Config, progress: bool = False) -> CheckReport:
    """Check the annotations and feature sources a training config points at.

    Uses ``data.root``, ``data.annotations``, ``data.format``, ``data.features`` and every
    source's folder, dimension, layout and stated timing; for MQ, ``model.num_classes`` must
    equal the number of classes in the train and val annotations (the run's taxonomy).
    """
    data = cfg.data
    root = Path(data.root or ".")
    annotations = Path(data.annotations)
    annotations = annotations if annotations.is_absolute() else root / annotations
    sources = [FeatureSource(s.dir or s.name, s.dim, s.layout, source_timing(s) if s.fps > 0 else None, s.prefix,
                             s.name if s.dir else "") for s in data.sources]
    report = run_data_check([annotations], root / data.features, sources or None, data.task, progress, data.format)
    if data.task == "mq":
        labels = {i.label for ann in report.mq for clip in ann.clips.values()
                  if clip.split in ("train", "val") for i in clip.instances}
        if labels and len(labels) != cfg.model.num_classes:
            report.problems.append(f"config key model.num_classes: expected {len(labels)} (the classes of the train "
                                   f"and val annotations), got {cfg.model.num_classes}")
    return report
