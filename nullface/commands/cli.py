"""Command line: ``python -m nullface <command> ...``."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each command lives in nullface/commands/<name>.py with add_parser(subparsers) and run(args) -> int.
COMMANDS = ("anonymize", "eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nullface", description="NullFace face anonymization.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f".{name}", __package__)
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; Ctrl-C at any moment (the parser's imports too) ends in one line and exit 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt:                  # e.g. while the models load; finished files are kept
        print("interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from ..errors import NullFaceError
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except NullFaceError as exc:               # bad input found late: one line, never a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
