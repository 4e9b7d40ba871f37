"""The `egoasl` command: one sub-command per job.

Each sub-command lives in ``egoasl/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable taking the parsed arguments and
returning an exit code. User errors (:class:`egoasl.errors.EgoaslError`) are printed as one
line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from egoasl import __version__
from egoasl.errors import EgoaslError

COMMAND_MODULES = [
    "synth",
    "data",
    "eval",
    "submission",
    "text",
    "naq",
    "train",
    "predict",
    "ensemble",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egoasl",
        description="Action Sensitivity Learning for Ego4D Moment Queries and Natural Language Queries.",
    )
    parser.add_argument("--version", action="version", version=f"egoasl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"egoasl.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        # `torchrun ... -m egoasl.cli -- train CFG --run R`: the separator keeps torchrun's own parser
        # off our options (it rejects --run as an abbreviation of its --run-path)
        argv = argv[1:]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if extra:
        # KEY=VALUE overrides may follow options (`egoasl train CFG --run R model.width=64`)
        unknown = [item for item in extra if "=" not in item or item.startswith("-")]
        if unknown or not hasattr(args, "overrides"):
            parser.parse_args(argv)  # reports the unrecognised arguments and exits
        args.overrides = list(args.overrides) + extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EgoaslError as exc:
        print(f"egoasl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"egoasl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
