"""`egoasl demo --task nlq --recipe naq`: narration pre-training then fine-tuning, next to training from scratch.

On the demo's synthetic data, with few NLQ labels (``data.train_queries`` of the demo presets):

1. ``egoasl naq build`` turns the synthetic ``narration.json`` into (query, window) pairs inside the
   NLQ and MQ **train** clips, and ``egoasl text encode --encoder synthetic`` writes their token features;
2. ``demo/nlq_naq_pretrain`` pre-trains on those pairs plus the few NLQ train queries;
3. ``demo/nlq_finetune`` fine-tunes from it (``train.init_from``) on the few NLQ queries, and the
   same preset without ``init_from`` trains from scratch with the same budget;
4. the val R@1 of both is printed side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PRETRAIN, FINETUNE = "demo/nlq_naq_pretrain", "demo/nlq_finetune"
NAQ_FILE = "annotations/naq_train.json"


def prepare_naq(data_dir: Path) -> None:
    """Build the narration pairs of the train clips (``data_dir/annotations/naq_train.json``, the file
    ``demo/nlq_naq_pretrain`` reads) and their token features."""
    import torch

    from egoasl.data.ego4d import load_nlq_annotations
    from egoasl.data.naq import build_naq, dump_naq, read_em_clips
    from egoasl.data.narrations import load_narrations
    from egoasl.data.text_encoders import build_text_encoder, text_feature_path
    from egoasl.io.atomic import write_atomic, write_text_atomic

    out = data_dir / NAQ_FILE
    ann = data_dir / "annotations"
    clips = [c for name in ("nlq_train.json", "moments_train.json") for c in read_em_clips(ann / name)]
    data, summary = build_naq(load_narrations(ann / "narration.json"), clips)
    write_text_atomic(out, dump_naq(data))
    for line in summary.lines():
        print("      " + line)
    encoder = build_text_encoder("synthetic", str(data_dir))
    queries = load_nlq_annotations(out).queries
    for query, feats in zip(queries, encoder.encode([q.query for q in queries], 48)):
        write_atomic(text_feature_path(data_dir / "features" / "text", *query.key),
                     lambda tmp, f=feats: torch.save(f, tmp))


def _train(preset: str, run_dir: Path, overrides: list[str], args: argparse.Namespace) -> dict:
    from egoasl.config import load_config
    from egoasl.engine.tasks import build_task
    from egoasl.engine.train import train

    cfg = load_config(preset, overrides)
    print(f"\n      training {preset} in {run_dir}")
    train(cfg, build_task(cfg, run_dir), run_dir, progress=not args.no_progress)
    return json.loads((run_dir / "predictions" / f"{cfg.data.val_split}_metrics.json").read_text())


def run_naq_recipe(args: argparse.Namespace, data_dir: Path) -> str:
    """The three runs of the recipe; returns the printed comparison."""
    print("\n[3/4] NLQ, narration recipe: building narration pairs from the train clips")
    prepare_naq(data_dir)
    base = [f"data.root={data_dir}", *args.overrides]
    scratch = _train(FINETUNE, args.out / "nlq_scratch", base, args)
    pre_dir = args.out / "nlq_naq_pretrain"
    _train(PRETRAIN, pre_dir, base, args)
    init = pre_dir / "checkpoints" / "last.safetensors"
    finetuned = _train(FINETUNE, args.out / "nlq_finetune", [*base, f"train.init_from={init}"], args)
    print(f"[4/4] NLQ: val metrics in {args.out}/nlq_scratch and {args.out}/nlq_finetune")
    lines = ["NLQ with few train queries, val R@1 (same fine-tuning budget):"]
    for name, m in (("from scratch", scratch), ("narration pre-training -> fine-tuning", finetuned)):
        lines.append(f"  {name}: R@1@0.3 {m['R1@0.3']:.2f}  R@1@0.5 {m['R1@0.5']:.2f}  mean R@1 {m['mean_R1']:.2f}")
    return "\n".join(lines)
