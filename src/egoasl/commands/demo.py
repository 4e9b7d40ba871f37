"""`egoasl demo`: the whole pipeline on built-in synthetic Ego4D-format data, on a CPU.

Generates the synthetic dataset, checks it, trains the demo config(s), evaluates with the
official-equivalent metrics, writes the challenge submission files and a timeline plot,
and prints where everything is. Rerunning resumes the training runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import time
from pathlib import Path

DEMO_CONFIGS = {"mq": "demo/mq", "nlq": "demo/nlq"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthetic data -> check -> train -> evaluate -> submission, on CPU in a few minutes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", choices=["mq", "nlq", "all"], default="all", help="default: MQ then NLQ")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="demo folder (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--recipe", choices=["standard", "naq"], default="standard",
                        help="NLQ: naq = few labels, narration pre-training then fine-tuning vs from scratch")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the demo config(s)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from egoasl.commands.demo_naq import run_naq_recipe
    from egoasl.data.check import run_data_check
    from egoasl.data.synthetic import generate_synthetic

    started = time.time()
    data_dir = args.out / "data"
    marker = data_dir / "synthetic.json"
    if marker.is_file() and json.loads(marker.read_text()).get("seed") == args.seed:
        print(f"[1/4] synthetic data: reusing {data_dir}")
    else:
        tic = time.time()
        generate_synthetic(data_dir, seed=args.seed, scale="demo")
        print(f"[1/4] synthetic data: wrote {data_dir} in {time.time() - tic:.1f} s")
    tasks = ["mq", "nlq"] if args.task == "all" else [args.task]
    report = run_data_check([data_dir / "annotations"], features=data_dir / "features")
    print("[2/4] data check: " + ("ok" if report.ok else f"{len(report.problems)} problems"))
    for line in report.lines:
        print("      " + line)
    for problem in report.problems:
        print("      problem: " + problem)
    if not report.ok:
        return 1
    summaries = [_run_task(task, args, data_dir) if task == "mq" or args.recipe == "standard"
                 else run_naq_recipe(args, data_dir) for task in tasks]
    print(f"\ndemo finished in {time.time() - started:.0f} s")
    for summary in summaries:
        print(summary)
    return 0


def _run_task(task_name: str, args: argparse.Namespace, data_dir: Path) -> str:
    from egoasl.config import load_config
    from egoasl.engine.tasks import build_task
    from egoasl.engine.train import train

    run_dir = args.out / task_name
    reference = load_config(DEMO_CONFIGS[task_name], [f"data.root={data_dir}"])
    cfg = load_config(DEMO_CONFIGS[task_name], [f"data.root={data_dir}", *args.overrides])
    task = build_task(cfg, run_dir)
    print(f"\n[3/4] {task_name.upper()}: training {DEMO_CONFIGS[task_name]} in {run_dir}")
    summary = train(cfg, task, run_dir, progress=not args.no_progress, reference=reference,
                    command=shlex.join(["egoasl", *getattr(args, "argv", [])]))
    pred_dir = run_dir / "predictions"
    split = cfg.data.val_split
    metrics = json.loads((pred_dir / f"{split}_metrics.json").read_text())
    print(f"[4/4] {task_name.upper()}: best epoch {summary.best_epoch}, predictions of {split} in {pred_dir}")
    lines = [f"{task_name.upper()} ({summary.seconds:.0f} s, run folder {run_dir}):"]
    lines += [f"  {line}" for line in _headline(task_name, metrics)]
    written = sorted(pred_dir.glob(f"{split}_*.json"))
    if task_name == "mq" and importlib.util.find_spec("matplotlib") is None:
        lines.append("  no timeline plot: matplotlib is not installed (pip install 'egoasl[plot]')")
    elif task_name == "mq":
        written.append(_plot_one_clip(cfg, pred_dir / f"{split}_submission.json", pred_dir / "timeline.png"))
    lines += [f"  {path}" for path in written]
    return "\n".join(lines)


def _headline(task_name: str, metrics: dict) -> list[str]:
    if task_name == "mq":
        maps = "  ".join(f"{t}: {v:.2f}" for t, v in metrics["mAP"].items())
        return [f"average mAP {metrics['average_mAP']:.2f}  (mAP@tIoU {maps})",
                f"Recall@1x tIoU 0.5: {metrics['recall'].get('1x@0.5', float('nan')):.2f}"]
    return [(f"mean R@1 {metrics['mean_R1']:.2f}  R@1@0.3 {metrics['R1@0.3']:.2f}  R@1@0.5 {metrics['R1@0.5']:.2f}  "
            f"R@5@0.3 {metrics['R5@0.3']:.2f}  R@5@0.5 {metrics['R5@0.5']:.2f}")]


def _plot_one_clip(cfg, submission: Path, path: Path) -> Path:
    from egoasl.engine.annotations import mq_clips
    from egoasl.viz import plot_timeline

    detections = json.loads(submission.read_text())["detect_results"]
    clip = max(mq_clips(cfg, cfg.data.val_split), key=lambda c: len(c.instances))
    gt = [{"label": i.label, "segment": [i.start, i.end]} for i in clip.instances]
    return plot_timeline(path, detections[clip.clip_uid], clip.duration, gt, title=f"val clip {clip.clip_uid}")
