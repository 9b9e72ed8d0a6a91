"""`hairpin`: the command line over the same services the Functions triggers call.

Each command lives in a module of `shared.cli.common` with a `register(subparsers)` function that
adds its parser and sets `handler`; this file only dispatches and turns errors into exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from shared import __version__
from shared.cli.common import UsageError

__all__ = ["UsageError", "build_parser", "main"]

COMMAND_MODULES = (
    "shared.cli.audit",
    "shared.cli.remediation",
    "shared.cli.guest",
    "shared.cli.events",
    "shared.cli.sweep",
)

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hairpin",
        description="Find and fix Azure internal load balancer hairpin failures "
        "(a backend VM calling its own ILB frontend).",
    )
    parser.add_argument("--version", action="version", version=f"hairpin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and SDK calls")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except UsageError as exc:
        print(f"hairpin {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line for the operator; details with -v
        logging.getLogger("hairpin").info("failed", exc_info=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        hint = "" if args.verbose else " (run with -v for details)"
        print(f"hairpin {args.command}: error: {type(exc).__name__}: {first_line}{hint}",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
