"""`egoasl eval mq|nlq`: score a submission file exactly like the official Ego4D evaluators.

    egoasl eval mq  --annotations moments_val.json --predictions sub.json [--split val]
                    [--tiou 0.1 0.2 0.3 0.4 0.5] [--topk 1 2 3 4 5] [--json] [--per-class] [--plot DIR]
    egoasl eval nlq --annotations nlq_val.json --predictions sub.json [--json]

MQ annotations may be an official ``moments_*.json``, the converted per-clip file or an
ActivityNet-style file (``{"database": ...}``; ``--tiou`` sets the dataset's thresholds). MQ
predictions are a submission (``detect_results`` scored for mAP, ``retrieve_results`` for
Recall@kx, as the official pipeline does) or an intermediate ``{"results": ...}`` file.
With ``--json`` stdout is exactly one JSON object (percentages as floats); warnings and plot
paths go to stderr. The scoring is :func:`egoasl.evaluate_mq` / :func:`egoasl.evaluate_nlq`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from egoasl.api import evaluate_mq, evaluate_nlq, load_mq_ground_truth
from egoasl.metrics.mq import DEFAULT_TIOUS, DEFAULT_TOPK, MQResult, format_tiou
from egoasl.metrics.nlq import NLQResult


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` with its ``mq`` and ``nlq`` sub-commands."""
    parser = subparsers.add_parser("eval", help="score predictions like the official Ego4D evaluators",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)

    mq = tasks.add_parser("mq", help="Moment Queries: mAP at tIoU thresholds and Recall@kx")
    mq.add_argument("--annotations", required=True, type=Path,
                    help="moments_*.json, the converted per-clip file or an ActivityNet-style file")
    mq.add_argument("--predictions", required=True, type=Path, help="submission JSON")
    mq.add_argument("--split", default="val", help="split of the annotations to score (default: val)")
    mq.add_argument("--tiou", type=float, nargs="+", default=list(DEFAULT_TIOUS), metavar="T",
                    help="tIoU thresholds (default Ego4D's: 0.1 0.2 0.3 0.4 0.5; ActivityNet: 0.5 0.55 ... 0.95, "
                         "THUMOS14: 0.3 0.4 0.5 0.6 0.7), used as given")
    mq.add_argument("--topk", type=int, nargs="+", default=list(DEFAULT_TOPK), metavar="K",
                    help="k of Recall@kx (default: 1 2 3 4 5)")
    mq.add_argument("--format", choices=["auto", "ego4d", "anet"], default="auto",
                    help="annotation format (default auto: anet for a file with a top-level \"database\")")
    mq.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    mq.add_argument("--per-class", action="store_true", help="also report AP per class")
    mq.add_argument("--plot", type=Path, metavar="DIR", help="write per_class_ap.png and pr_curve.png to DIR")
    mq.set_defaults(func=run_mq)

    nlq = tasks.add_parser("nlq", help="Natural Language Queries: R@1/R@5 at IoU 0.3/0.5, mean R@1, mIoU")
    nlq.add_argument("--annotations", required=True, type=Path, help="nlq_*.json")
    nlq.add_argument("--predictions", required=True, type=Path, help="submission JSON")
    nlq.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    nlq.set_defaults(func=run_nlq)


def run_mq(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Score an MQ submission; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    clips = load_mq_ground_truth(args.annotations, args.split, args.format)
    result = evaluate_mq(clips, args.predictions, tious=args.tiou, topk=args.topk)
    if args.json:
        out.write(json.dumps(result.to_json(per_class=args.per_class)) + "\n")
        for line in _mq_warnings(result):
            err.write(f"warning: {line}\n")
    else:
        out.write(format_mq(result, args, len(clips)))
    if args.plot:
        from egoasl.metrics.plots import save_mq_plots

        for path in save_mq_plots(result, args.plot):
            (err if args.json else out).write(f"wrote {path}\n")
    return 0


def _mq_warnings(result: MQResult) -> list[str]:
    lines = []
    if result.dropped_unknown_labels:
        lines.append(f"{result.dropped_unknown_labels} detections have labels absent from the ground truth: dropped")
    if result.predictions_outside_clips:
        lines.append(f"{result.predictions_outside_clips} detections are on clips outside the split: false positives")
    if result.clips_without_predictions:
        uids = result.clips_without_predictions
        shown = ", ".join(uids[:5]) + (f", ... ({len(uids)} in all)" if len(uids) > 5 else "")
        lines.append(f"{len(uids)} clips with ground truth have no retrievals and score zero recall: {shown}")
    if result.unsorted_retrieval_clips:
        lines.append(f"{len(result.unsorted_retrieval_clips)} clips' retrieve lists are not sorted by score "
                     "(Recall@kx reads the list order)")
    return lines


def format_mq(result: MQResult, args: argparse.Namespace, num_clips: int) -> str:
    """The readable report: per-threshold mAP, the Recall@kx grid, warnings, optional per-class AP."""
    ts = [format_tiou(t) for t in result.tious]
    lines = [
        f"MQ evaluation of {args.predictions} on {args.annotations} (split {args.split}): "
        f"{num_clips} clips, {len(result.classes)} classes, {int(result.num_gt.sum())} ground-truth instances",
        f"{result.num_predictions} detections, {result.num_retrievals} retrievals",
        "",
        _table(["tIoU", *ts, "average"], [["mAP (%)", *[f"{100 * m:.2f}" for m in result.mAP],
                                           f"{100 * result.average_mAP:.2f}"]]),
    ]
    if result.recall is not None:
        rows = [[format_tiou(t), *[f"{100 * v:.2f}" for v in result.recall[i]]]
                for i, t in enumerate(result.recall_tious)]
        lines += ["", "Recall@kx (%)", _table(["tIoU", *[f"R@{k}x" for k in result.topk]], rows)]
    warnings = _mq_warnings(result)
    if warnings:
        lines += [""] + [f"warning: {w}" for w in warnings]
    if args.per_class:
        rows = [
            [row["label"], str(row["num_gt"]), str(row["num_predictions"]),
             *[f"{100 * row['ap'][t]:.2f}" for t in ts], f"{100 * sum(row['ap'].values()) / len(ts):.2f}"]
            for row in result.per_class()
        ]
        lines += ["", "AP per class (%)", _table(["label", "GT", "pred", *ts, "avg"], rows)]
    return "\n".join(lines) + "\n"


def run_nlq(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Score an NLQ submission; returns the exit code."""
    out = out or sys.stdout
    result = evaluate_nlq(args.annotations, args.predictions)
    if args.json:
        out.write(json.dumps(result.to_json()) + "\n")
    else:
        out.write(format_nlq(result, args))
    return 0


def format_nlq(result: NLQResult, args: argparse.Namespace) -> str:
    """The readable report: R@k grid, mean R@1, mIoU and the coverage line."""
    rows = [[f"IoU {format_tiou(t)}", *[f"{100 * result.recall[i, j]:.2f}" for j in range(len(result.topk))]]
            for i, t in enumerate(result.tious)]
    lines = [
        f"NLQ evaluation of {args.predictions} on {args.annotations}",
        "",
        _table(["(%)", *[f"R@{k}" for k in result.topk]], rows),
        "",
    ]
    if 1 in result.topk:
        lines.append(f"mean R@1: {100 * result.mean_r1:.2f}")
    lines += [f"mIoU: {100 * result.mIoU:.2f}", result.coverage_line()]
    if result.missing:
        strict = ", ".join(f"R@{k}@{format_tiou(t)} {100 * result.recall_all[i, j]:.2f}"
                           for i, t in enumerate(result.tious) for j, k in enumerate(result.topk))
        lines.append(f"over all queries (missing ones as misses): {strict}")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Plain-text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(header), *[line(r) for r in rows]])
