"""`egoasl data check`: statistics of Ego4D annotation files and a check of their feature files."""

from __future__ import annotations

import argparse
from pathlib import Path

from egoasl.data.check import check_config, parse_source, run_data_check
from egoasl.errors import EgoaslError


def register(subparsers) -> None:
    """Add ``egoasl data`` and its ``check`` sub-command."""
    parser = subparsers.add_parser("data", help="inspect and check annotation and feature files")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="print annotation statistics and list every problem in the annotations and feature files",
        description=(
            "Reads MQ (moments_*.json or ASL's converted per-clip file) and NLQ (nlq_*.json) annotation "
            "files and prints clips, instances, classes, durations and query counts per split. With "
            "--features it checks that every clip has a readable feature file with the expected dimension, "
            "no NaN/Inf and enough vectors in every source folder. MQ files may also be ActivityNet-style "
            "({\"database\": {video: {subset, duration, annotations}}}). With --config it checks what a training "
            "config points at (annotations, format, feature sources with their timing, model.num_classes). "
            "Exits with 1 when anything is wrong, after listing every problem."
        ),
    )
    check.add_argument(
        "--config", metavar="CFG", help="a training config (file or preset) whose data to check; KEY=VALUE overrides may follow",
    )
    check.add_argument(
        "--annotations", nargs="+", type=Path, metavar="A",
        help="annotation files, or folders (every split found there, also under annotations/, v2/annotations/, "
             "v1/annotations/)",
    )
    check.add_argument("--features", type=Path, metavar="DIR", help="folder with one sub-folder per feature source")
    check.add_argument(
        "--sources", nargs="+", metavar="NAME:DIM[:video|clip]",
        help="sources to check in DIR (default: every sub-folder except text, dim and layout read from the files)",
    )
    check.add_argument("--task", choices=["mq", "nlq"],
                       help="task of the annotations (default: nlq for files named nlq*, else mq; both for folders)")
    check.add_argument("--format", choices=["auto", "ego4d", "anet"], default="auto",
                       help="MQ annotation format (default auto: anet for a file with a top-level \"database\")")
    check.add_argument("--no-progress", action="store_true", help="no progress bar while reading feature files")
    check.set_defaults(func=run_check, overrides=[])


def run_check(args: argparse.Namespace) -> int:
    """Run the check; print statistics and every problem. Returns 0 when nothing is wrong, else 1."""
    if args.config:
        if args.annotations or args.features or args.sources:
            raise EgoaslError("--config takes the annotations, features and sources from the config; drop "
                              "--annotations, --features and --sources (or override data.* keys)")
        from egoasl.config import load_config

        report = check_config(load_config(args.config, args.overrides), progress=not args.no_progress)
    elif not args.annotations:
        raise EgoaslError("give --annotations A [A ...] or --config CFG")
    elif args.overrides:
        raise EgoaslError(f"KEY=VALUE overrides ({' '.join(args.overrides)}) need --config")
    else:
        if args.sources and args.features is None:
            raise EgoaslError("--sources needs --features DIR")
        sources = [parse_source(text) for text in args.sources] if args.sources else None
        report = run_data_check(args.annotations, args.features, sources, args.task, progress=not args.no_progress,
                                format=args.format)
    for line in report.lines:
        print(line)
    if report.ok:
        print("data check: no problems found")
        return 0
    print(f"data check: {len(report.problems)} problem(s):")
    for problem in report.problems:
        print(f"  {problem}")
    return 1
