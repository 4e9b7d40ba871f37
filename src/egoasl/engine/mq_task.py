"""The Moment Queries task: clips, the ASL detector, its losses and official-equivalent evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from egoasl.config import Config
from egoasl.data.anet import FORMAT as ANET
from egoasl.data.datasets import MQDataset, collate
from egoasl.data.features import ClipFeatureLoader
from egoasl.data.taxonomy import Taxonomy
from egoasl.data.timegrid import TimeGrid
from egoasl.engine.annotations import data_path, mq_clips, mq_file_format
from egoasl.engine.decode import decode_clip, to_seconds
from egoasl.engine.ensemble import raw_output_of
from egoasl.engine.task import EvalResult
from egoasl.errors import EgoaslError
from egoasl.io.anet_results import write_anet_results
from egoasl.io.atomic import write_text_atomic
from egoasl.io.submission import write_mq_submission
from egoasl.metrics.mq import evaluate_mq
from egoasl.model.detector import MQDetector

TAXONOMY_FILE = "taxonomy.json"


def load_or_build_taxonomy(cfg: Config, run_dir: Path | None) -> Taxonomy:
    """The run's taxonomy (``RUN/taxonomy.json``), or the labels of train + val, saved there."""
    saved = run_dir / TAXONOMY_FILE if run_dir is not None else None
    if saved is not None and saved.is_file():
        return Taxonomy(json.loads(saved.read_text(encoding="utf-8"))["labels"])
    labels: set[str] = set()
    for split in ("train", "val"):
        try:
            labels.update(inst.label for clip in mq_clips(cfg, split) for inst in clip.instances)
        except EgoaslError:
            continue
    if not labels:
        raise EgoaslError(f"no MQ labels found in the train or val annotations under {data_path(cfg, cfg.data.annotations)}")
    taxonomy = Taxonomy(sorted(labels))
    if len(taxonomy) != cfg.model.num_classes:
        raise EgoaslError(
            f"the annotations hold {len(taxonomy)} classes but config key model.num_classes is {cfg.model.num_classes}"
        )
    if saved is not None:
        write_text_atomic(saved, json.dumps({"labels": taxonomy.labels}, ensure_ascii=False, indent=1))
    return taxonomy


class MQTask:
    """Moment Queries: every action instance of the taxonomy in a clip."""

    name = "mq"
    main_metric = "average_mAP"

    def __init__(self, cfg: Config, run_dir: Path | None = None):
        self.cfg = cfg
        self.taxonomy = load_or_build_taxonomy(cfg, run_dir)
        self.loader = ClipFeatureLoader(cfg.data, Path(cfg.data.root or "."))

    def dataset(self, split: str, training: bool) -> MQDataset:
        return MQDataset(mq_clips(self.cfg, split), self.loader, self.taxonomy, self.cfg.data, training, seed=self.cfg.train.seed)

    def train_dataset(self) -> torch.utils.data.ConcatDataset | MQDataset:
        sets = [self.dataset(split, training=True) for split in self.cfg.data.train_splits]
        return sets[0] if len(sets) == 1 else EpochConcat(sets)

    def collate(self, items: list[dict]) -> dict:
        return collate(items, pad_to=self.cfg.data.max_seq_len)

    def build_model(self) -> nn.Module:
        return MQDetector(self.cfg)

    def training_losses(self, model, batch, device, autocast) -> dict[str, torch.Tensor]:
        with autocast():
            out = model(batch["feats"].to(device, non_blocking=True), batch["masks"].to(device, non_blocking=True))
        segments = [s.to(device) for s in batch["segments"]]
        labels = [lab.to(device) for lab in batch["labels"]]
        return model.losses(out, segments, labels)

    @torch.no_grad()
    def predict(self, model, split: str, device: torch.device, progress: bool, keep_raw: bool = False, batch_size: int = 4):
        """Detections in seconds for every clip of ``split`` (and the raw outputs when asked)."""
        from egoasl.engine.precision import autocast_context

        dataset = self.dataset(split, training=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=self.collate)
        autocast = autocast_context(self.cfg.train.amp, device, training=False)
        model.eval()
        detections: dict[str, list[dict]] = {}
        raw: dict[str, dict] = {}
        with autocast():  # one autocast region: nn.Linear weights are cast once, not once per batch (views are not cached)
            for batch in tqdm(loader, desc=f"predict {split}", disable=None if progress else True, leave=False,
                              dynamic_ncols=True):
                out = model(batch["feats"].to(device, non_blocking=True), batch["masks"].to(device, non_blocking=True))
                for b, meta in enumerate(batch["meta"]):
                    per_clip = raw_output_of(out, b)
                    detections[meta["clip_uid"]] = self.decode(per_clip, meta)
                    if keep_raw:
                        raw[meta["clip_uid"]] = {**per_clip, "meta": _json_meta(meta)}
        return detections, raw

    def decode(self, raw: dict, meta: dict) -> list[dict]:
        """Raw outputs of one clip -> ``[{label, score, segment}]`` in seconds, best first."""
        det = decode_clip(raw["cls_logits"], raw["offsets"], raw["masks"], raw["points"], self.cfg.test, len(self.taxonomy))
        grid = TimeGrid(step=meta["grid_step"], offset=meta["grid_offset"], duration=meta["duration"])
        segments, scores, labels = to_seconds(det, grid)
        return [
            {"label": self.taxonomy.label(int(c)), "score": float(s), "segment": [float(a), float(e)]}
            for (a, e), s, c in zip(segments.tolist(), scores.tolist(), labels.tolist())
        ]

    def evaluate(self, model, split: str, device: torch.device, progress: bool, keep_raw: bool = False) -> EvalResult:
        detections, raw = self.predict(model, split, device, progress, keep_raw=keep_raw)
        clips = mq_clips(self.cfg, split)
        if not any(clip.instances for clip in clips):
            return EvalResult(metrics={}, main=float("nan"), submission=detections, raw_outputs=raw)
        result = evaluate_mq(clips, detections, tious=self.cfg.test.tious)
        metrics = result.to_json()
        return EvalResult(metrics=metrics, main=float(metrics["average_mAP"]), submission=detections, raw_outputs=raw)

    def write_predictions(self, result: EvalResult, out_dir: Path, split: str) -> list[Path]:
        path = out_dir / f"{split}_submission.json"
        write_mq_submission(path, result.submission, clips=mq_clips(self.cfg, split), labels=self.taxonomy.labels,
                            max_per_clip=self.cfg.test.max_seg_num)
        written = [path]
        if mq_file_format(self.cfg, split) == ANET:
            written.append(write_anet_results(out_dir / f"{split}_results.json", result.submission,
                                              self.cfg.test.max_seg_num))
        if result.metrics:
            metrics_path = out_dir / f"{split}_metrics.json"
            write_text_atomic(metrics_path, json.dumps(result.metrics, indent=1))
            written.append(metrics_path)
        return written


class EpochConcat(torch.utils.data.ConcatDataset):
    """Several training splits as one dataset that forwards ``set_epoch``."""

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            dataset.set_epoch(epoch)


def _json_meta(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}
