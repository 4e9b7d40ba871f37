"""The egoasl configuration schema: one typed dataclass per section.

Load with :func:`load_config` (YAML + ``base`` inheritance + dotted overrides). Every
ASL ingredient is a named switch in :class:`ASLConfig`. Defaults reproduce the authors'
release (``specs/asl_method.md``); presets in ``egoasl/configs`` set the paper's sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from egoasl.config_loader import build, load_yaml_tree, resolve_config_path, to_dict
from egoasl.config_overrides import apply_overrides
from egoasl.errors import EgoaslError


@dataclass
class SourceConfig:
    """One pre-extracted feature stream.

    ``layout: video`` means official per-video files ``<dir>/<video_uid>.pt`` of shape
    ``[N, dim]`` at ``rate`` vectors per second, sliced to each clip; ``layout: clip``
    means per-clip files ``<dir>/<clip_uid>.pt`` or ``.npy`` covering exactly the clip.
    """

    name: str
    dim: int
    proj_dim: int
    dir: str = ""  # folder relative to data.root/data.features; defaults to ``name``
    layout: Literal["video", "clip"] = "video"
    rate: float = 1.875  # vectors per second (official: 16-frame stride at 30 fps)
    # ActivityNet-style timing (data.timegrid.FeatureTiming): row j covers frames [j*stride, j*stride+window)
    # at fps; when fps > 0 these replace rate and the layout's own convention
    fps: float = 0.0
    stride: float = 0.0
    window: float = 0.0
    prefix: str = ""  # file names are <prefix><uid>.pt|.npy (ActivityNet features are often "v_" + video id)

    def validate(self, path: str) -> None:
        if self.dim <= 0 or self.proj_dim <= 0:
            raise EgoaslError(f"config key {path}: dim and proj_dim must be positive")
        if self.rate <= 0:
            raise EgoaslError(f"config key {path}.rate: expected a positive number, got {self.rate}")
        if self.fps < 0 or (self.fps > 0 and not (self.stride > 0 and self.window > 0)):
            raise EgoaslError(
                f"config key {path}: fps, stride and window go together (frames per second, frames between rows, "
                f"frames per row), all positive; got fps={self.fps}, stride={self.stride}, window={self.window}"
            )


@dataclass
class DataConfig:
    task: Literal["mq", "nlq"] = "mq"
    root: str = ""  # data root; relative paths below are resolved against it
    annotations: str = "annotations"  # folder of moments_*/nlq_*.json, or a converted MQ file, or an ActivityNet-style file
    format: Literal["auto", "ego4d", "anet"] = "auto"  # MQ annotations; auto: anet for a file with a "database" key
    features: str = "features"  # folder holding one sub-folder per source
    text_features: str = "features/text"  # NLQ: <clip_uid>/<annotation_uid>_<query_idx>.pt, [L, text_dim]
    sources: list[SourceConfig] = field(default_factory=list)
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    val_split: str = "val"
    test_split: str = "test"
    max_seq_len: int = 1024  # MQ: every clip is resized to this many cells; NLQ: padding length
    resize: bool = True  # True: resize to max_seq_len (MQ); False: native rate, padded (NLQ)
    # how a sequence is resized: area (mean over each cell) when down-sampling, linear when up-sampling
    # (auto); linear always reads two rows per cell and drops the rest when down-sampling (the release)
    resize_mode: Literal["auto", "area", "linear"] = "auto"
    crop_ratio: tuple[float, float] = (0.9, 1.0)
    trunc_thresh: float = 0.3
    remove_duplicates: bool = True  # training only: drop exact duplicate GT (tol 1e-3 s)
    cache_dir: str = ""  # optional float16 cache of aligned clip features
    text_dim: int = 768
    max_text_len: int = 48
    num_workers: int = 0
    # NLQ narration pre-training (NaQ): extra NLQ-format files (e.g. `egoasl naq build` output, relative to
    # root) whose queries join the training set; their token features live under text_features too
    train_annotations: list[str] = field(default_factory=list)
    train_queries: int = 0  # NLQ: keep this many random training queries of train_splits (0: all; few-label runs)
    window_scale: tuple[float, float] = (1.0, 1.0)  # NLQ training: window length x U(low, high) (NaQ jittering)
    window_shift: float = 0.0  # NLQ training: window centre moved by U(-s, s) x its length

    def validate(self, path: str) -> None:
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi <= 1:
            raise EgoaslError(f"config key {path}.crop_ratio: expected 0 < low <= high <= 1, got {list(self.crop_ratio)}")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise EgoaslError(f"config key {path}.sources: source names must be unique, got {names}")
        if not 0 < self.window_scale[0] <= self.window_scale[1]:
            raise EgoaslError(f"config key {path}.window_scale: expected 0 < low <= high, got {list(self.window_scale)}")
        if self.window_shift < 0 or self.train_queries < 0:
            raise EgoaslError(f"config key {path}.window_shift and train_queries: expected numbers >= 0")


@dataclass
class ModelConfig:
    num_classes: int = 110  # MQ classes; 1 for NLQ
    width: int = 1024  # embedding / FPN / head width
    n_head: int = 16
    embd_layers: int = 3  # masked conv k3 + LN + ReLU
    embd_kernel: int = 3
    stem_layers: int = 3  # stride-1 transformer blocks
    num_levels: int = 10  # pyramid levels = 1 + number of stride-2 blocks
    attn_window: int = -1  # -1: global attention; >0: local window size
    channel_attention: bool = True  # channel attention in parallel with temporal attention (stem)
    t_c_alpha: float = 0.8  # fusion weight of the temporal path
    masked_channel_attention: bool = False  # variant: mask-aware channel attention, residual on x
    rel_global_layer: bool = True  # relative-position global attention layer on level 0 (release's XLNet)
    rel_global_inner: int = 2048
    use_abs_pe: bool = True
    dropout: float = 0.1
    droppath: float = 0.1
    rel_dropout: float = 0.1
    # how dropout masks are drawn: torch (nn.Dropout's bernoulli_, the release's random stream) or fast
    # (16 random bits per element from one 64-bit draw; same p within 8e-6, ~0.5 s less per full-size CPU step)
    dropout_sampler: Literal["torch", "fast"] = "torch"
    head_layers: int = 3
    head_kernel: int = 3
    cls_prior: float = 0.01
    regression_ranges: list[tuple[float, float]] = field(
        default_factory=lambda: [
            (0, 4), (2, 8), (4, 16), (8, 32), (16, 64), (32, 128), (64, 256), (128, 512), (256, 1024), (512, 10000)
        ]
    )
    center_sample: bool = True
    center_sample_radius: float = 1.5
    # activation checkpointing of the stem and branch blocks in training: each keeps only its
    # input and runs again in backward (less memory, more time; bench/RESULTS.md has both)
    grad_checkpoint: bool = False
    # padding (each true value is an egoasl fix; mq/release sets the authors' false): k>1 convolutions
    # read padded steps as zeros; the stride-2 skip max-pools over valid steps only; the rel-pos
    # layer's padded steps attend to valid keys only and are zeroed (XLNet's also attend to themselves)
    mask_conv_inputs: bool = True
    masked_skip_pool: bool = True
    zero_padded_relpos: bool = True
    # NLQ only
    text_layers: int = 5
    fusion_layers: int = 2
    # late: text fused into every pyramid level (shared layers); early: into every stem block, before any
    # downsampling (GroundNLQ/OSGNet), so the whole pyramid is query-aware but the video is encoded per query
    fusion: Literal["late", "early"] = "late"

    def validate(self, path: str) -> None:
        if self.width % self.n_head:
            raise EgoaslError(f"config key {path}.width: {self.width} is not divisible by n_head={self.n_head}")
        if len(self.regression_ranges) < self.num_levels:
            raise EgoaslError(
                f"config key {path}.regression_ranges: {len(self.regression_ranges)} ranges for "
                f"num_levels={self.num_levels}; give one [low, high] per level"
            )


@dataclass
class ASLConfig:
    """Action Sensitivity Learning switches (``specs/asl_method.md`` section 4)."""

    class_gaussians: bool = True  # learnable class-aware Gaussian sensitivity weights
    class_aware: bool = True  # one Gaussian triple per class (release); false: one shared by all classes (control)
    arg_norm: Literal["stride_len", "len"] = "stride_len"
    loc_times_cls: bool = True  # localisation weight multiplied by the cls weight (release)
    wd_on_gauss: bool = True  # weight decay on mu/sigma (release)
    sigma_min: float = 0.0  # floor on |sigma|; 0 disables
    normalize_pos_weights: bool = False  # rescale weights to mean 1 over positives
    instance_branch: bool = False  # instance-level sensitivity head (paper section 3)
    instance_weight: float = 1.0  # MSE weight of the instance branch
    instance_combine: Literal["product", "sum"] = "product"
    ascl_weight: float = 0.0  # action-sensitive contrastive loss
    ascl_tau: float = 0.07
    ascl_theta: float = 0.2
    ascl_gap: float = 1.0
    ascl_level: int = 0  # pyramid level whose neck features the ASCL pools
    al_weight: float = 0.2  # video-level label loss (release's al_loss)
    al_valid_only: bool = True  # al_loss max over valid points; false: padded points (uniform softmax) too (release)
    gauss_lr_mult: float = 1.0  # learning-rate multiplier of the class Gaussians' mu/sigma (1: release)

    def validate(self, path: str) -> None:
        if not self.gauss_lr_mult > 0:
            raise EgoaslError(f"config key {path}.gauss_lr_mult: expected a positive multiplier, got {self.gauss_lr_mult}")


@dataclass
class LossConfig:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    reg_weight: float = 1.0
    init_loss_norm: float = 100.0
    loss_norm_momentum: float = 0.9
    norm_update_in_eval: bool = False  # the normaliser also moves when losses are computed in eval mode (release)
    nce_weight: float = 5.0  # NLQ
    nce_tau: float = 0.07


@dataclass
class TrainConfig:
    epochs: int = 15  # total, warm-up included
    warmup_epochs: int = 5
    batch_size: int = 2
    lr: float = 1e-4
    eta_min: float = 1e-8
    weight_decay: float = 0.05
    clip_grad_norm: float = 1.0
    ema_decay: float = 0.999
    ema: bool = True
    amp: Literal["none", "bf16", "fp16", "auto"] = "none"  # auto: bf16 where the hardware has it (engine/precision.py)
    # with amp: autocast's bf16/fp16 weight copies are not kept for backward but cast again there (same values)
    recast_weights: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_start_epoch: int = 5  # evaluate on val from this epoch (1-based); -1 disables
    eval_every: int = 1
    init_from: str = ""  # weights to start from (e.g. a NaQ pre-trained run's checkpoint)
    threads: int = 0  # torch CPU threads; 0: the default, one if the steps slow down on a shared CPU (engine/cpu_threads.py)
    accum_steps: int = 1  # micro-batches of batch_size per optimiser step (engine/accumulation.py)
    deterministic: bool = False  # deterministic kernels, slower on GPU (engine/determinism.py)
    wandb: bool = False  # mirror the logged scalars to Weights & Biases (extra: egoasl[wandb])
    wandb_project: str = "egoasl"
    decay_channel_ln: bool = False  # weight decay on the channel blocks' LayerNorm weights (release)


@dataclass
class TestConfig:
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 5000  # per level
    duration_thresh: float = 0.01  # grid units
    nms: Literal["soft", "none"] = "soft"
    multiclass_nms: bool = True
    nms_sigma: float = 0.99
    min_score: float = 1e-4
    max_seg_num: int = 2000
    voting_thresh: float = 0.0  # segment voting IoU threshold; 0 disables
    top_k: int = 5  # NLQ windows per query
    tious: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5])  # MQ mAP thresholds (Ego4D's)

    def validate(self, path: str) -> None:
        if not self.tious or not all(0 < t <= 1 for t in self.tious):
            raise EgoaslError(f"config key {path}.tious: expected a non-empty list of thresholds in (0, 1], got {self.tious}")


@dataclass
class Config:
    name: str = "egoasl"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    asl: ASLConfig = field(default_factory=ASLConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


def load_config(name: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config or preset, apply dotted overrides and validate it.

    An error of the file's own keys names the file; an error an override brings in names only the key.
    """
    path = resolve_config_path(name)
    tree = load_yaml_tree(path)
    merged = apply_overrides(tree, overrides or [], Config)
    try:
        return build(Config, merged)
    except EgoaslError as exc:
        if overrides:  # the file's own error, if it has one; else the overrides'
            try:
                build(Config, tree)
            except EgoaslError as own:
                raise EgoaslError(f"{path}: {own}") from None
            raise
        raise EgoaslError(f"{path}: {exc}") from None


def config_from_dict(tree: dict) -> Config:
    return build(Config, tree)


def dump_config(config: Config) -> str:
    """The resolved config as YAML (what every run folder stores as ``config.yaml``)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
