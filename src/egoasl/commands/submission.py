"""`egoasl submission check`: validate a challenge submission file before uploading it.

    egoasl submission check --task mq  --annotations moments_test_unannotated.json sub.json
                            [--split test] [--labels-from moments_train.json] [--max-per-clip 2000]
    egoasl submission check --task nlq --annotations nlq_test_unannotated.json sub.json

Every problem is printed with its location; the exit code is 1 when there is an error,
0 when there are only warnings or nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from egoasl.data.ego4d import load_mq_annotations, load_nlq_annotations
from egoasl.errors import EgoaslError
from egoasl.io.submission import (
    MAX_PER_CLIP,
    Problem,
    errors_only,
    read_submission,
    validate_mq_submission,
    validate_nlq_submission,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``submission`` with its ``check`` sub-command."""
    parser = subparsers.add_parser("submission", help="validate challenge submission files",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="report every problem of a submission file")
    check.add_argument("file", type=Path, metavar="FILE", help="the submission JSON")
    check.add_argument("--task", required=True, choices=("mq", "nlq"))
    check.add_argument("--annotations", required=True, type=Path,
                       help="annotation file whose clips / queries must all be present")
    check.add_argument("--split", help="split of the annotations (default: the only split in the file)")
    check.add_argument("--labels-from", type=Path, metavar="FILE",
                       help="MQ: annotation file giving the taxonomy (default: the labelled clips of --annotations)")
    check.add_argument("--max-per-clip", type=int, default=MAX_PER_CLIP, help="MQ: most predictions per clip")
    check.add_argument("--max-shown", type=int, default=50, help="print at most this many problems (all are counted)")
    check.add_argument("--json", action="store_true", help="print one JSON object listing every problem")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Validate ``args.file``; returns 1 when it has errors, else 0."""
    out = out or sys.stdout
    obj, problems = read_submission(args.file)
    notes: list[str] = []
    if args.task == "mq":
        annotations = load_mq_annotations(args.annotations)
        present = sorted({c.split for c in annotations.clips.values()})
        split = args.split or _only_split(present, args.annotations)
        clips = annotations.split(split)
        if not clips:
            raise EgoaslError(f"{args.annotations}: no clip of split {split!r} (splits present: {present})")
        source = load_mq_annotations(args.labels_from) if args.labels_from else annotations
        labels = source.labels(("train", "val")) or None
        if labels is None:
            notes.append("label strings not checked: no labelled clips found; pass --labels-from moments_train.json")
        problems += validate_mq_submission(obj, clips, labels, args.max_per_clip)
        scope = f"{len(clips)} {split} clips" + (f", {len(labels)} labels" if labels else "")
    else:
        annotations = load_nlq_annotations(args.annotations)
        queries = annotations.queries
        if args.split:
            queries = [q for q in queries if q.split == args.split]
        problems += validate_nlq_submission(obj, queries)
        scope = f"{sum(1 for q in queries if q.query)} queries with text"
    errors = errors_only(problems)
    if args.json:
        out.write(json.dumps({
            "file": str(args.file), "task": args.task, "ok": not errors, "errors": len(errors),
            "warnings": len(problems) - len(errors), "notes": notes,
            "problems": [{"severity": p.severity, "location": p.location, "message": p.message} for p in problems],
        }) + "\n")
    else:
        out.write(_report(args.file, scope, problems, notes, args.max_shown))
    return 1 if errors else 0


def _only_split(present: list[str], path: Path) -> str:
    if len(present) != 1:
        raise EgoaslError(f"{path}: holds splits {present}; pass --split")
    return present[0]


def _report(path: Path, scope: str, problems: list[Problem], notes: list[str], max_shown: int) -> str:
    n_err = len(errors_only(problems))
    n_warn = len(problems) - n_err
    status = "OK" if not n_err else "INVALID"
    lines = [f"{path}: {status} against {scope}: {n_err} errors, {n_warn} warnings"]
    lines += [f"note: {n}" for n in notes]
    ordered = sorted(problems, key=lambda p: p.severity != "error")  # errors first, file order kept
    lines += [f"  {p}" for p in ordered[:max_shown]]
    if len(problems) > max_shown:
        kinds = Counter(f"{p.severity}: {p.message.split(':')[0].split('(')[0].strip()}" for p in ordered[max_shown:])
        lines.append(f"  ... {len(problems) - max_shown} more:")
        lines += [f"    {count} x {kind}" for kind, count in kinds.most_common(10)]
    return "\n".join(lines) + "\n"
