"""`egoasl train CONFIG [KEY=VALUE ...]`: train a model in a run folder (rerun to resume)."""

from __future__ import annotations

import argparse
from pathlib import Path

from egoasl.config import load_config


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an MQ detector or NLQ grounder (rerunning the same command resumes)",
        description=(
            "Train from a YAML config or a built-in preset (e.g. demo/mq, mq/release). Extra KEY=VALUE "
            "arguments override config keys (model.num_levels=8 data.root=/data/ego4d). Under torchrun "
            "the same command trains with DistributedDataParallel."
        ),
    )
    parser.add_argument("config", help="config file or preset name")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    parser.add_argument("--run", "--run-dir", dest="run", type=Path,
                        help="run folder (default: runs/<config name>); under torchrun spell it --run-dir")
    parser.add_argument("--overfit-batch", action="store_true", help="debug: train and evaluate on one batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egoasl.engine.tasks import build_task
    from egoasl.engine.train import train

    cfg = load_config(args.config, args.overrides)
    run_dir = args.run or Path("runs") / (cfg.name or Path(args.config).stem)
    run_dir.mkdir(parents=True, exist_ok=True)
    task = build_task(cfg, run_dir)
    summary = train(cfg, task, run_dir, overfit_batch=args.overfit_batch, progress=not args.no_progress)
    best = f"best {task.main_metric} {summary.best_metric:.2f} at epoch {summary.best_epoch}" if summary.best_metric is not None else "no evaluation"
    print(f"run folder: {run_dir} ({summary.epochs_run} epochs in {summary.seconds:.0f} s; {best})")
    return 0
