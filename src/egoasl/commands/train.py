"""`egoasl train CONFIG [KEY=VALUE ...]`: train a model in a run folder (rerun to resume)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from egoasl.errors import EgoaslError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an MQ detector or NLQ grounder (rerunning the same command resumes)",
        description=(
            "Train from a YAML config or a built-in preset (e.g. demo/mq, mq/release). Extra KEY=VALUE "
            "arguments override config keys (train.lr=1e-4 data.root=/data/ego4d data.sources.0.dir=/x "
            "data.sources.slowfast.dir=/x). Rerunning resumes from RUN/checkpoints/last; paths, workers, "
            "device, threads and evaluation cadence may change on resume (logged in RUN/train.log), the "
            "model, data and optimisation may not. Under torchrun the same command trains with "
            "DistributedDataParallel: torchrun ... -m egoasl.cli -- train CONFIG --run RUN."
        ),
    )
    parser.add_argument("config", nargs="?", help="config file or preset name (optional with --resume: the run's own)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    parser.add_argument("--run", "--run-dir", dest="run", type=Path,
                        help="run folder (default: the --resume run's folder, else runs/<config name>)")
    parser.add_argument("--resume", type=Path, metavar="PATH",
                        help="continue from this run folder or checkpoint file (default: the run folder's own last checkpoint)")
    parser.add_argument("--overfit-batch", action="store_true", help="debug: train and evaluate on one batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (they are off anyway when stderr is not a terminal)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egoasl.config import load_config
    from egoasl.engine.run_folder import checkpoint_run_config, resume_checkpoint
    from egoasl.engine.runs import load_run_config
    from egoasl.engine.tasks import build_task
    from egoasl.engine.train import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).is_file():  # `egoasl train --resume RUN key=value`
        config, overrides = None, [config, *overrides]
    resume_run = checkpoint_run_config(resume_checkpoint(args.resume)).parent if args.resume else None
    if config is None:
        if resume_run is None:
            raise EgoaslError("give a config file or preset (e.g. demo/mq), or --resume RUN to continue a run with its own config")
        cfg, reference = load_run_config(resume_run, overrides), load_run_config(resume_run)
    else:
        cfg, reference = load_config(config, overrides), load_config(config)
    run_dir = args.run or resume_run or Path("runs") / (cfg.name or Path(config).stem)
    run_dir.mkdir(parents=True, exist_ok=True)
    task = build_task(cfg, run_dir)
    command = shlex.join(["egoasl", *getattr(args, "argv", [])])
    summary = train(cfg, task, run_dir, overfit_batch=args.overfit_batch, progress=not args.no_progress,
                    resume_from=args.resume, command=command, reference=reference)
    best = f"best {task.main_metric} {summary.best_metric:.2f} at epoch {summary.best_epoch}" if summary.best_metric is not None else "no evaluation"
    print(f"run folder: {run_dir} ({summary.epochs_run} epochs in {summary.seconds:.0f} s; {best})")
    return 0
