"""`egoasl naq build`: narrations as NLQ queries (the NaQ pre-training data) from ``narration.json``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``naq`` parser to the ``egoasl`` command."""
    parser = subparsers.add_parser("naq", help="narrations as queries: NLQ-format pre-training pairs")
    sub = parser.add_subparsers(dest="naq_command", metavar="SUBCOMMAND", required=True)
    build = sub.add_parser(
        "build",
        help="write the (narration, window) pairs inside the given train clips as an nlq_*.json file",
        description=(
            "Reads the official narration.json, gives every narration a window (EgoClip rule by default) and "
            "keeps the pairs whose window lies inside one of the given train clips (NaQ). The output is in the "
            "official NLQ layout: check it with `egoasl data check --task nlq OUT` and encode its queries with "
            "`egoasl text encode --annotations OUT --out <data.text_features>`."
        ),
    )
    build.add_argument("--narrations", required=True, type=Path, help="the official narration.json")
    build.add_argument("--clips", required=True, nargs="+", type=Path,
                       help="train clips: nlq_train.json, moments_train.json (and vq_train.json)")
    build.add_argument("--out", required=True, type=Path, help="output NLQ-format JSON, e.g. naq_train.json")
    build.add_argument("--window-rule", choices=["egoclip", "fixed"], default="egoclip",
                       help="egoclip: [t - beta/2alpha, t + beta/2alpha] (default); fixed: --window-sec around t")
    build.add_argument("--alpha", type=float, help="EgoClip's alpha in seconds (default: mean beta of this file)")
    build.add_argument("--window-sec", type=float, default=1.0, help="window length of the fixed rule (default 1 s)")
    build.add_argument("--allow-eval-clips", action="store_true",
                       help="accept val/test clips (their pairs are counted in the summary's leakage line)")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    """Build the pairs, write them atomically and print the summary."""
    from egoasl.data.naq import build_naq, dump_naq, read_em_clips
    from egoasl.data.narrations import load_narrations
    from egoasl.io.atomic import write_text_atomic

    clips = [clip for path in args.clips for clip in read_em_clips(path)]
    narrations = load_narrations(args.narrations)
    data, summary = build_naq(narrations, clips, args.window_rule, args.alpha, args.window_sec, args.allow_eval_clips)
    write_text_atomic(args.out, dump_naq(data))
    for line in summary.lines():
        print(line)
    print(f"wrote {summary.pairs} pairs to {args.out}; token features: "
          f"egoasl text encode --annotations {args.out} --out <data.text_features> --encoder ...")
    return 0
