"""An egoasl MQ dataset in ActionFormer's Ego4D input format, and its config at egoasl's size and budget.

ActionFormer (``happyharrycn/actionformer_release``) reads one converted annotation JSON
(``{"database": {clip_uid: {"subset", "duration", "fps", "annotations": [{"label", "segment",
"label_id"}]}}}``) and one ``<clip_uid>.npy`` per clip, ``[T, C]``. The features written here are
exactly what egoasl's own MQ dataset feeds its model: every configured source loaded, sliced and
resized to ``data.max_seq_len`` cells by :class:`egoasl.data.features.ClipFeatureLoader`, then
concatenated along channels.

Time: egoasl's resized grid puts cell ``i`` of a clip of ``D`` seconds at ``(i + 0.5) * D / T``
(``egoasl.data.timegrid``). ActionFormer maps seconds to cells as
``sec * fps / feat_stride - 0.5 * num_frames / feat_stride`` and back as
``(cell * feat_stride + 0.5 * num_frames) / fps``. With ``fps = T / D`` per clip,
``feat_stride = 1`` and ``num_frames = 1`` both mappings are egoasl's, so the peer learns and
predicts on the same grid.

Annotations follow ActionFormer's own Ego4D converter (``tools/convert_ego4d_trainval.py``):
every primary label of every annotator (duplicates kept), instances shorter than 0.25 s left
out, training clips left without any instance dropped. Validation clips are all kept (with
empty annotation lists where needed), so every clip of the split gets predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from egoasl.config import Config, load_config
from egoasl.data.features import ClipFeatureLoader
from egoasl.data.records import MQClip
from egoasl.data.taxonomy import Taxonomy
from egoasl.data.timegrid import TimeGrid
from egoasl.engine.annotations import mq_clips
from egoasl.errors import EgoaslError
from egoasl.io.atomic import write_atomic, write_text_atomic

RESIZE_MODES = ("linear", "area", "auto")
"""Values of egoasl's ``data.resize_mode``: how each source is resampled to the grid."""
MIN_INSTANCE_SEC = 0.25
"""ActionFormer's Ego4D converter drops instances shorter than this."""
SUBSETS = {"train": "training", "val": "validation"}
ANNOTATION_FILE = "ego4d_converted.json"
FEATURE_DIR = "features"

# The parts of ActionFormer's own Ego4D recipe (configs/ego4d_*.yaml and libs/core/config.py)
# that are its method rather than size or budget; they are kept as the peer ships them.
PEER_ATTENTION_WINDOW = 9
PEER_DROPOUT = 0.1
PEER_DROPPATH = 0.1
PEER_MAX_BUFFER_LEN_FACTOR = 4.0
PEER_TEST_CFG = {
    "pre_nms_thresh": 0.001,
    "pre_nms_topk": 5000,
    "iou_threshold": 0.1,
    "nms_method": "soft",
    "duration_thresh": 0.05,
    "max_seg_num": 2000,
    "min_score": 0.001,
    "nms_sigma": 0.9,
    "multiclass_nms": True,
    "voting_thresh": 0.95,
}


@dataclass
class ConvertedDataset:
    """Where a conversion wrote its files and what the peer's config needs to know about them."""

    annotation_file: Path
    feature_dir: Path
    taxonomy: Taxonomy
    input_dim: int
    val_clips: list[MQClip]


def egoasl_config(data_dir: str | Path, resize: str, base: str = "demo/mq", overrides: list[str] | None = None) -> Config:
    """The egoasl config whose input and budget the peer gets: ``base`` on ``data_dir`` with ``resize``.

    Raises:
        EgoaslError: for an unknown ``resize``.
    """
    if resize not in RESIZE_MODES:
        raise EgoaslError(f"--resize: expected one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    return load_config(base, [f"data.root={Path(data_dir)}", *(overrides or []), f"data.resize_mode={resize}"])


def _clip_entry(clip: MQClip, subset: str, taxonomy: Taxonomy, num_cells: int) -> dict:
    annotations = [
        {"label": inst.label, "segment": [inst.start, inst.end], "label_id": taxonomy.id(inst.label)}
        for inst in clip.instances
        if inst.end - inst.start >= MIN_INSTANCE_SEC
    ]
    return {"subset": subset, "duration": clip.duration, "fps": num_cells / clip.duration, "annotations": annotations}


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    write_atomic(path, write)


def convert_dataset(cfg: Config, out_dir: str | Path) -> ConvertedDataset:
    """Write ``cfg``'s train and val clips as ActionFormer input under ``out_dir``.

    Raises:
        EgoaslError: when the config does not resize clips to a fixed grid (``data.resize``
            false), or a clip's features do not lie on the resized grid.
    """
    if not cfg.data.resize:
        raise EgoaslError("config key data.resize: the ActionFormer conversion needs MQ clips resized to a fixed grid")
    out_dir = Path(out_dir)
    feature_dir = out_dir / FEATURE_DIR
    clips = {split: mq_clips(cfg, split) for split in SUBSETS}
    taxonomy = Taxonomy(sorted({inst.label for split_clips in clips.values() for clip in split_clips
                                for inst in clip.instances}))
    loader = ClipFeatureLoader(cfg.data, cfg.data.root)
    database: dict[str, dict] = {}
    for split, subset in SUBSETS.items():
        for clip in clips[split]:
            aligned = loader.load_clip(clip)
            num_cells = aligned.feats.shape[1]
            if aligned.grid != TimeGrid.resized(clip.duration, num_cells):
                raise EgoaslError(f"clip {clip.clip_uid}: its features are not on the resized grid of {num_cells} cells")
            entry = _clip_entry(clip, subset, taxonomy, num_cells)
            if split == "train" and not entry["annotations"]:
                continue
            _save_npy(feature_dir / f"{clip.clip_uid}.npy", aligned.feats.t().contiguous().numpy())
            database[clip.clip_uid] = entry
    annotation_file = out_dir / ANNOTATION_FILE
    write_text_atomic(annotation_file, json.dumps({"version": "egoasl-synthetic", "database": database}))
    input_dim = sum(source.dim for source in cfg.data.sources)
    return ConvertedDataset(annotation_file, feature_dir, taxonomy, input_dim, clips["val"])


def peer_config(cfg: Config, data: ConvertedDataset, seed: int) -> dict:
    """ActionFormer's config at ``cfg``'s size and budget (width, levels, cells, epochs, batch, lr, EMA...).

    Size, budget, regression ranges, crop and loss settings come from the egoasl config; the
    attention window, dropout, buffer length and test-time settings are the peer's own Ego4D
    recipe. ``opt.epochs`` excludes the warm-up in ActionFormer, so it is egoasl's total minus
    the warm-up. ``harness.ema_decay`` is read by the harness's training driver.
    """
    model, train = cfg.model, cfg.train
    if train.epochs <= train.warmup_epochs:
        raise EgoaslError(f"config key train.epochs: expected more than train.warmup_epochs ({train.warmup_epochs}), "
                          f"got {train.epochs}")
    return {
        "dataset_name": "ego4d",
        "model_name": "LocPointTransformer",
        "train_split": ["training"],
        "val_split": ["validation"],
        "init_rand_seed": int(seed),
        "dataset": {
            "json_file": str(data.annotation_file),
            "feat_folder": [str(data.feature_dir)],
            "file_prefix": None,
            "file_ext": ".npy",
            "num_classes": len(data.taxonomy),
            "input_dim": data.input_dim,
            "feat_stride": 1,
            "num_frames": 1,
            "default_fps": None,
            "downsample_rate": 1,
            "trunc_thresh": cfg.data.trunc_thresh,
            "crop_ratio": [float(x) for x in cfg.data.crop_ratio],
            "max_seq_len": cfg.data.max_seq_len,
            "force_upsampling": False,
        },
        "loader": {"batch_size": train.batch_size, "num_workers": 1},
        "model": {
            "backbone_type": "convTransformer",
            "fpn_type": "identity",
            "backbone_arch": [model.embd_layers, model.stem_layers, model.num_levels - 1],
            "scale_factor": 2,
            "regression_range": [[float(lo), float(hi)] for lo, hi in model.regression_ranges[: model.num_levels]],
            "n_head": model.n_head,
            "n_mha_win_size": PEER_ATTENTION_WINDOW,
            "embd_kernel_size": model.embd_kernel,
            "embd_dim": model.width,
            "embd_with_ln": True,
            "fpn_dim": model.width,
            "fpn_with_ln": True,
            "fpn_start_level": 0,
            "head_dim": model.width,
            "head_kernel_size": model.head_kernel,
            "head_num_layers": model.head_layers,
            "head_with_ln": True,
            "max_buffer_len_factor": PEER_MAX_BUFFER_LEN_FACTOR,
            "use_abs_pe": model.use_abs_pe,
            "use_rel_pe": False,
        },
        "train_cfg": {
            "center_sample": "radius" if model.center_sample else "none",
            "center_sample_radius": model.center_sample_radius,
            "loss_weight": cfg.loss.reg_weight,
            "cls_prior_prob": model.cls_prior,
            "init_loss_norm": cfg.loss.init_loss_norm,
            "clip_grad_l2norm": train.clip_grad_norm,
            "dropout": PEER_DROPOUT,
            "droppath": PEER_DROPPATH,
            "label_smoothing": cfg.loss.label_smoothing,
        },
        "test_cfg": dict(PEER_TEST_CFG),
        "opt": {
            "type": "AdamW",
            "learning_rate": train.lr,
            "weight_decay": train.weight_decay,
            "epochs": train.epochs - train.warmup_epochs,
            "warmup": True,
            "warmup_epochs": train.warmup_epochs,
            "schedule_type": "cosine",
        },
        "harness": {"ema_decay": train.ema_decay},
    }


def apply_peer_overrides(config: dict, overrides: list[str]) -> dict:
    """Set ``section.key=value`` items (YAML values) in a peer config, e.g. ``model.n_mha_win_size=-1``.

    Raises:
        EgoaslError: for an item without ``=`` or a key the config does not have.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise EgoaslError(f"peer override {item!r}: expected KEY=VALUE, e.g. train_cfg.dropout=0.0")
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise EgoaslError(f"peer override {item!r}: the peer config has no section {part!r}")
            node = node[part]
        if parts[-1] not in node:
            raise EgoaslError(f"peer override {item!r}: the peer config has no key {key!r}")
        node[parts[-1]] = yaml.safe_load(text)
    return config


def write_peer_config(path: str | Path, config: dict) -> Path:
    """Write an ActionFormer YAML config atomically."""
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
    return Path(path)
