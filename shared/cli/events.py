"""`hairpin event FILE`: how the app would handle an Event Grid payload (a dry run: it writes
nothing and reads no Azure). The work is `shared.core.events.dry_run`."""

from __future__ import annotations

import argparse
import json
import sys

from shared.cli.common import UsageError, settings_from_env

FORMATS = ("table", "json")

EPILOG = """\
FILE holds one event or an array of them, as Event Grid posts them to the trigger, in the
Event Grid schema or as CloudEvents 1.0 (for example a dead-lettered event, or one captured at
a test endpoint). own_write compares the event's claims with
HAIRPIN_IDENTITY_PRINCIPAL_ID / HAIRPIN_IDENTITY_CLIENT_ID (else AZURE_CLIENT_ID) /
HAIRPIN_IDENTITY_RESOURCE_ID; with none of them set it is unknown (null, "-").
JSON output: {"events": [{"id", "type", "operation", "subject", "handled", "reason",
"scope": {"kind": "vm"|"nic"|"lb"|"vnet"|null, "id"}, "own_write": true|false|null}]}
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "event", help="dry run: how the app would handle an Event Grid payload",
        description="Read one Event Grid or CloudEvents payload and print, for each event, "
        "whether the Event Grid trigger handles it, why, and which resource it would re-read. "
        "Writes nothing and reads no Azure.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="the payload (JSON); - reads standard input")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="output format (default: table)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from shared.core.events import identity_from_settings
    from shared.core.events.dry_run import (
        PayloadError,
        explain_payload,
        verdicts_json,
        verdicts_table,
    )

    text = _read(args.file)
    try:
        verdicts = explain_payload(text, identity_from_settings(settings_from_env()))
    except PayloadError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    if args.format == "json":
        print(json.dumps(verdicts_json(verdicts), indent=2))
    else:
        sys.stdout.write(verdicts_table(verdicts))
    return 0


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
