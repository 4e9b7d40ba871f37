"""The synthetic dataset in the ActivityNet layout (``egoasl synth --format anet``).

The same generator as the Ego4D layout (:func:`~egoasl.data.synthetic.generate_synthetic`),
rewritten the way THUMOS14 or ActivityNet are distributed: every MQ clip becomes one *video*
of that name, spanning ``[0, duration]`` seconds. ``out`` receives::

    annotations/anet.json      {"version", "database": {video_id: {"subset": training|validation|testing,
                               "duration", "fps": 30, "annotations": [{"label", "segment": [s, e]}]}}}
    features/<video_id>.npy    float32 [N, D]: the per-clip source, row j over frames [16 j, 16 j + 16)
                               at 30 fps (fps 30, stride 16, window 16)
    synthetic.json             what the generator drew (classes, seed, scale)

Each video keeps the labels of its first annotator (one annotation set, as in ActivityNet);
testing videos have ``annotations: []``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egoasl.data.anet import anet_subset
from egoasl.data.ego4d import SPLITS, load_mq_annotations
from egoasl.data.features import load_feature_file
from egoasl.data.synthetic.generate import MQ_FILES, _prepare_out, generate_synthetic
from egoasl.data.synthetic.timing import FPS, VIDEO_STRIDE_FRAMES
from egoasl.io.atomic import write_atomic, write_text_atomic

ANET_FILE = "annotations/anet.json"
"""Where the annotation file lies under ``out``."""
FEATURE_DIR = "features"
"""The folder of the per-video feature files under ``out``."""


@dataclass
class AnetSummary:
    """What :func:`generate_synthetic_anet` wrote."""

    videos: dict[str, int]
    classes: list[str]
    dim: int
    fps: float = FPS
    stride: float = VIDEO_STRIDE_FRAMES
    window: float = VIDEO_STRIDE_FRAMES

    def describe(self) -> str:
        counts = ", ".join(f"{anet_subset(split)} {n}" for split, n in self.videos.items())
        return (f"{sum(self.videos.values())} videos ({counts}), {len(self.classes)} classes; "
                f"features {self.dim}-d at fps {self.fps:g}, stride {self.stride:g}, window {self.window:g}")


def generate_synthetic_anet(
    out: str | Path, seed: int = 0, videos: int | None = None, classes: int | None = None, scale: str = "demo",
    progress: bool = False,
) -> AnetSummary:  # fmt: skip
    """Write the synthetic dataset of :func:`generate_synthetic` (same arguments) in the ActivityNet layout."""
    out = Path(out)
    _prepare_out(out)
    (out / FEATURE_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="egoasl-synth-") as tmp:
        ego4d = Path(tmp)
        drawn = generate_synthetic(ego4d, seed=seed, videos=videos, classes=classes, scale=scale, progress=progress)
        source = next(s for s in drawn.sources if s.layout == "clip")
        database: dict[str, dict] = {}
        counts = {split: 0 for split in SPLITS}
        for split in SPLITS:
            for clip in load_mq_annotations(ego4d / "annotations" / MQ_FILES[split]).split(split):
                first = clip.instances[0].annotator if clip.instances else None
                database[clip.clip_uid] = {
                    "subset": anet_subset(split),
                    "duration": round(clip.duration, 3),
                    "fps": FPS,
                    "annotations": [{"label": inst.label, "segment": [inst.start, inst.end]}
                                    for inst in clip.instances if inst.annotator == first],
                }
                feats = load_feature_file(ego4d / "features" / source.name / f"{clip.clip_uid}.pt")
                _save_npy(out / FEATURE_DIR / f"{clip.clip_uid}.npy", feats.numpy())
                counts[split] += 1
        shutil.copyfile(ego4d / "synthetic.json", out / "synthetic.json")
    header = {"version": f"SYNTHETIC (egoasl synth --format anet, scale {scale}, seed {seed})"}
    text = json.dumps({**header, "database": database}, indent=1, ensure_ascii=False) + "\n"
    write_text_atomic(out / ANET_FILE, text)
    return AnetSummary(videos=counts, classes=list(drawn.classes), dim=source.dim)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    write_atomic(path, write)
