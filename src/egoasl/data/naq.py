"""Narrations as queries (NaQ): (query, window) pairs from narrations inside episodic-memory clips.

The rule (NaQ, Ramakrishnan et al., CVPR 2023, ``srama2512/NaQ: utils/create_naq_dataset.py``;
GroundNLQ's ``create_pretrain_data_from_egoclip.py`` does the same):

1. every narration gets a window in video seconds by the **EgoClip rule** (EgoVLP, Lin et al.,
   NeurIPS 2022, Eq. 1): ``[t - beta_v / (2 alpha), t + beta_v / (2 alpha)]``, where ``t`` is its
   timestamp, ``beta_v`` the mean gap between consecutive narrations of its video (here: of its
   video *and pass*, the two passes being two independent narrators) and ``alpha`` the mean of
   ``beta_v`` over all videos (4.9 s over EgoClip; here over the given ``narration.json``, or
   ``--alpha``). A video pass with a single narration takes ``beta = alpha`` (a 1 s window).
   ``--window-rule fixed --window-sec W`` centres a ``W``-second window on ``t`` instead;
2. a pair is kept for every given clip (same video) that contains its window entirely
   (``video_start_sec <= start`` and ``end <= video_end_sec``), with the window made clip-relative;
   clips named by several files (an NLQ and an MQ clip with the same uid) are used once;
3. the query is the normalised narration text (:func:`egoasl.data.narrations.normalize_narration`).

Only **train** clips may be given: a clips file with a video whose ``split`` is not ``train``
is refused unless ``allow_eval_clips`` (then its pairs are counted as ``from eval clips``), so
narration pre-training never sees a val/test clip. The output is the official NLQ nesting
(``nlq_*.json``) with one annotation per clip and pass (``annotation_uid`` ``naq_narration_pass_1``
etc.; ``query_idx`` = position in the pass's pairs of that clip), so every NLQ reader, ``egoasl
data check`` and ``egoasl text encode`` read it unchanged. The build is deterministic: videos
and clips in the order of the clips files, pairs by timestamp.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from egoasl.data.ego4d import SPLITS
from egoasl.data.json_reader import JsonReader, describe
from egoasl.data.narrations import PASSES, Narration, NarrationFile
from egoasl.errors import EgoaslError

WINDOW_RULES = ("egoclip", "fixed")
FPS = 30.0


@dataclass(frozen=True)
class EMClip:
    """One episodic-memory clip of a clips file (MQ, NLQ or VQ official nesting)."""

    clip_uid: str
    video_uid: str
    split: str
    video_start_sec: float
    video_end_sec: float
    source: str  # the clips file it came from


def read_em_clips(path: str | Path) -> list[EMClip]:
    """The clips of an official ``moments_*.json`` / ``nlq_*.json`` / ``vq_*.json`` file, in file order."""
    reader = JsonReader(path, None)
    data, _ = reader.read_json()
    if not isinstance(data, dict) or "videos" not in data:
        raise reader.error("", "an object with a 'videos' list (an official episodic-memory file)", describe(data))
    clips = []
    for vi, video in enumerate(reader.array(data, "videos", "")):
        where = f"videos[{vi}]"
        video = reader.obj(video, where)
        video_uid = reader.text(video, "video_uid", where)
        split = reader.text(video, "split", where)
        if split not in SPLITS:
            raise reader.error(f"{where}.split", "one of " + ", ".join(repr(s) for s in SPLITS), split)
        for ci, clip in enumerate(reader.array(video, "clips", where)):
            c_where = f"{where}.clips[{ci}]"
            clip = reader.obj(clip, c_where)
            start = reader.number(clip, "video_start_sec", c_where)
            end = reader.number(clip, "video_end_sec", c_where)
            if not end > start:
                raise reader.error(f"{c_where}.video_end_sec", f"greater than video_start_sec ({start})", end)
            clips.append(EMClip(reader.text(clip, "clip_uid", c_where), video_uid, split, start, end, str(path)))
    return clips


@dataclass
class NaQSummary:
    """What a build read, kept and skipped (printed by ``egoasl naq build``)."""

    narrations: int = 0  # usable narrations read (after the reader's skips)
    skipped_no_text: int = 0
    skipped_unsure: int = 0
    videos_without_pass: int = 0
    not_in_clips_videos: int = 0  # narrations of videos that have no given clip
    outside_clips: int = 0  # narrations whose window lies in no given clip of their video
    pairs: int = 0
    pairs_from_eval_clips: int = 0
    clips: int = 0  # clips given
    clips_with_pairs: int = 0
    eval_clips: int = 0  # given clips of a val/test video
    alpha: float = 0.0
    rule: str = "egoclip"
    mean_window_sec: float = 0.0
    by_pass: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The summary as readable lines."""
        skipped = ", ".join([f"{self.skipped_no_text} without text", f"{self.skipped_unsure} #unsure",
                             f"{self.not_in_clips_videos} of videos without a given clip",
                             f"{self.outside_clips} with a window in no given clip"])
        rule = f"egoclip (alpha {self.alpha:.3f} s)" if self.rule == "egoclip" else "fixed"
        return [
            f"narrations: {self.narrations} usable; skipped {skipped}; {self.videos_without_pass} videos without a pass",
            f"window rule {rule}: mean window {self.mean_window_sec:.2f} s",
            (f"pairs: {self.pairs} in {self.clips_with_pairs} of {self.clips} clips "
             f"({', '.join(f'{k}: {v}' for k, v in self.by_pass.items())})"),
            f"leakage check: {self.eval_clips} val/test clips given, {self.pairs_from_eval_clips} pairs from them",
        ]


def narration_windows(narrations: NarrationFile, rule: str = "egoclip", alpha: float | None = None,
                      window_sec: float = 1.0) -> tuple[list[tuple[float, float]], float]:
    """The video-time window of every narration (in file order), and the ``alpha`` used (see the module docstring)."""
    if rule not in WINDOW_RULES:
        raise EgoaslError(f"--window-rule: expected one of {', '.join(WINDOW_RULES)}, got {rule!r}")
    if rule == "fixed":
        if not window_sec > 0:
            raise EgoaslError(f"--window-sec: expected a positive number of seconds, got {window_sec}")
        half = window_sec / 2
        return [(n.timestamp - half, n.timestamp + half) for n in narrations.narrations], 0.0
    groups: dict[tuple[str, str], list[float]] = {}
    for n in narrations.narrations:
        groups.setdefault((n.video_uid, n.pass_name), []).append(n.timestamp)
    betas = {}
    for key, times in groups.items():
        if len(times) > 1:
            times = sorted(times)
            betas[key] = (times[-1] - times[0]) / (len(times) - 1)
    if alpha is None:
        positive = [b for b in betas.values() if b > 0]
        alpha = sum(positive) / len(positive) if positive else 1.0
    if not alpha > 0:
        raise EgoaslError(f"--alpha: expected a positive number of seconds, got {alpha}")
    windows = []
    for n in narrations.narrations:
        half = betas.get((n.video_uid, n.pass_name), alpha) / (2 * alpha)
        windows.append((n.timestamp - half, n.timestamp + half))
    return windows, alpha


def build_naq(narrations: NarrationFile, clips: list[EMClip], rule: str = "egoclip", alpha: float | None = None,
              window_sec: float = 1.0, allow_eval_clips: bool = False) -> tuple[dict, NaQSummary]:
    """The NaQ pairs in the official NLQ layout, and the build's summary (see the module docstring)."""
    eval_clips = [c for c in clips if c.split != "train"]
    if eval_clips and not allow_eval_clips:
        first = eval_clips[0]
        raise EgoaslError(
            f"{first.source}: clip {first.clip_uid} belongs to a {first.split!r} video ({len(eval_clips)} val/test "
            "clips in all): narration pairs must come from train clips only; pass --allow-eval-clips to build them anyway"
        )
    windows, alpha = narration_windows(narrations, rule, alpha, window_sec)
    summary = NaQSummary(narrations=len(narrations.narrations), skipped_no_text=narrations.skipped_no_text,
                         skipped_unsure=narrations.skipped_unsure, videos_without_pass=narrations.videos_without_pass,
                         alpha=alpha, rule=rule, by_pass={name: 0 for name in PASSES})
    unique: dict[str, EMClip] = {}
    for clip in clips:
        known = unique.setdefault(clip.clip_uid, clip)
        if not (math.isclose(known.video_start_sec, clip.video_start_sec, abs_tol=1e-3)
                and math.isclose(known.video_end_sec, clip.video_end_sec, abs_tol=1e-3)):
            raise EgoaslError(f"{clip.source}: clip {clip.clip_uid} has other bounds than in {known.source}")
    summary.clips = len(unique)
    summary.eval_clips = sum(c.split != "train" for c in unique.values())
    by_video: dict[str, list[EMClip]] = {}
    for clip in unique.values():
        by_video.setdefault(clip.video_uid, []).append(clip)
    pairs: dict[str, list[tuple[Narration, float, float]]] = {uid: [] for uid in unique}
    for n, (start, end) in zip(narrations.narrations, windows):
        video_clips = by_video.get(n.video_uid)
        if video_clips is None:
            summary.not_in_clips_videos += 1
            continue
        inside = [c for c in video_clips if c.video_start_sec <= start and end <= c.video_end_sec]
        if not inside:
            summary.outside_clips += 1
        for clip in inside:
            pairs[clip.clip_uid].append((n, start - clip.video_start_sec, end - clip.video_start_sec))
    videos: dict[str, dict] = {}
    lengths = []
    for clip in unique.values():
        found = sorted(pairs[clip.clip_uid], key=lambda p: (p[0].pass_name, p[0].timestamp, p[0].index))
        if not found:
            continue
        summary.clips_with_pairs += 1
        summary.pairs += len(found)
        summary.pairs_from_eval_clips += len(found) if clip.split != "train" else 0
        annotations = []
        for pass_name in PASSES:
            entries = [_query_entry(clip, n, s, e) for n, s, e in found if n.pass_name == pass_name]
            summary.by_pass[pass_name] += len(entries)
            lengths += [q["clip_end_sec"] - q["clip_start_sec"] for q in entries]
            if entries:
                annotations.append({"annotation_uid": f"naq_{pass_name}", "language_queries": entries})
        video = videos.setdefault(clip.video_uid, {"video_uid": clip.video_uid, "split": clip.split, "clips": []})
        video["clips"].append(_clip_entry(clip, annotations))
    summary.mean_window_sec = sum(lengths) / len(lengths) if lengths else 0.0
    data = {
        "version": "v2",
        "date": "",
        "description": f"Narrations as queries (egoasl naq build, window rule {rule})",
        "videos": list(videos.values()),
    }
    return data, summary


def _frames(video_start: float, video_end: float) -> dict:
    return {"video_start_frame": math.floor(video_start * FPS), "video_end_frame": math.ceil(video_end * FPS)}


def _query_entry(clip: EMClip, n: Narration, start: float, end: float) -> dict:
    video_start, video_end = clip.video_start_sec + start, clip.video_start_sec + end
    return {
        "clip_start_sec": round(start, 6), "clip_end_sec": round(end, 6),
        "video_start_sec": round(video_start, 6), "video_end_sec": round(video_end, 6),
        **_frames(video_start, video_end),
        "template": None, "query": n.text, "narration_timestamp_sec": n.timestamp,
        "narration_annotation_uid": n.annotation_uid,
    }


def _clip_entry(clip: EMClip, annotations: list[dict]) -> dict:
    return {
        "clip_uid": clip.clip_uid,
        "video_start_sec": clip.video_start_sec, "video_end_sec": clip.video_end_sec,
        **_frames(clip.video_start_sec, clip.video_end_sec),
        "clip_start_sec": 0.0, "clip_end_sec": round(clip.video_end_sec - clip.video_start_sec, 6),
        "annotations": annotations,
    }


def dump_naq(data: dict) -> str:
    """The NaQ file's text (stable key order, one space indent)."""
    return json.dumps(data, indent=1) + "\n"
