"""`hairpin audit` and `hairpin snapshot`: argument parsing and output only; the work is
`shared.services.audit`.

Exit status of `audit`: 0 no high/medium finding, 1 at least one, 2 error (shared.cli).
"""

from __future__ import annotations

import argparse
import sys
import time

from shared.cli.common import UsageError, cli_trigger, context_from_env, write_file
from shared.core import snapshot as snapshots
from shared.core.report import to_json, to_text
from shared.core.report.spreadsheet import to_csv

FORMATS = ("table", "json", "html", "csv", "none")  # none: nothing printed, as az -o none


def register(subparsers) -> None:
    audit = subparsers.add_parser(
        "audit", help="find VMs that will fail to reach their own ILB frontend",
        description="Audit live subscriptions (ARM or Resource Graph) or a snapshot/scenario "
        "file. Exit status: 0 no high/medium finding, 1 at least one, 2 error.")
    _source_arguments(audit)
    audit.add_argument("--snapshot", metavar="FILE",
                       help="audit this snapshot or emulator scenario file (offline)")
    audit.add_argument("--format", choices=FORMATS, default=None,
                       help="output format: table, json (the report document), html (the "
                       "page), csv (one row per finding, for spreadsheets), none (nothing: "
                       "the exit status tells; default: table)")
    audit.add_argument("-o", "--output", metavar="FORMAT|FILE",
                       help="a format name, as az's --output (table, json, html, csv, none), "
                       "or a FILE to write the report to instead of stdout")
    audit.add_argument("--html", metavar="FILE", help="also write the HTML report to FILE")
    _quiet_argument(audit)
    audit.set_defaults(handler=audit_command)

    snap = subparsers.add_parser(
        "snapshot", help="save the estate's raw ARM documents to a JSON file",
        description="Write {resources, skus, health} for offline audits "
        "(`hairpin audit --snapshot FILE`).")
    _source_arguments(snap)
    snap.add_argument("-o", "--output", metavar="FILE", required=True,
                      help="snapshot file to write")
    _quiet_argument(snap)
    snap.set_defaults(handler=snapshot_command)


def _quiet_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only errors on stderr: no progress, no notes (as az's "
                        "--only-show-errors); progress shows only on a terminal anyway")


def output_choice(args) -> tuple[str, str | None]:
    """(format, file or None for stdout) from --format and --output (a format name or a
    file, as az's --output names a format)."""
    if args.output in FORMATS:
        if args.format and args.format != args.output:
            raise UsageError(f"--format {args.format} and --output {args.output} disagree")
        return args.output, None
    return args.format or "table", args.output


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription", metavar="ID", action="append", dest="subscriptions",
                        help="subscription to audit (repeatable; default: HAIRPIN_SUBSCRIPTIONS, "
                        "else AZURE_SUBSCRIPTION_ID; with --resource-graph and neither: every "
                        "subscription the identity can read)")
    parser.add_argument("--resource-graph", action="store_true",
                        help="discover through Azure Resource Graph (many subscriptions, few "
                        "requests) instead of ARM listings (default: HAIRPIN_USE_RESOURCE_GRAPH)")


# --------------------------------------------------------------------------- handlers

def audit_command(args) -> int:
    from shared.services import audit

    if args.snapshot and (args.subscriptions or args.resource_graph):
        raise UsageError("--snapshot reads a file: it cannot be combined with --subscription or "
                     "--resource-graph")
    fmt, target = output_choice(args)
    want_html = fmt == "html" or bool(args.html)
    ctx = context_from_env(offline=bool(args.snapshot))
    with Progress(quiet=args.quiet) as progress:
        try:
            previous = audit.previous_report(ctx) if want_html else None  # the trend
            result = audit.run_audit(ctx, subscriptions=args.subscriptions,
                                     resource_graph=_use_graph(args, ctx), snapshot=args.snapshot,
                                     on_progress=progress, html=want_html, previous=previous)
        except (snapshots.SnapshotError, audit.NoSubscription) as exc:
            raise UsageError(str(exc)) from None
        except _azure_errors() as exc:
            raise UsageError(_azure_message(exc)) from None
    audit.publish_findings(ctx, result, cli_trigger())  # Log Analytics, when configured
    if args.html:
        write_file(args.html, result.html)
    text = {"table": lambda: to_text(result.report), "json": lambda: to_json(result.report),
            "html": lambda: result.html, "csv": lambda: to_csv(result.report),
            "none": lambda: ""}[fmt]()
    if target:
        write_file(target, text)
    else:
        sys.stdout.write(text)
    if args.html and target != args.html and not args.quiet:
        print(f"HTML report: {args.html}", file=sys.stderr)
    return result.exit_status


def snapshot_command(args) -> int:
    from shared.services import audit

    ctx = context_from_env()
    with Progress(quiet=args.quiet) as progress:
        try:
            doc = audit.gather(ctx, subscriptions=args.subscriptions,
                               resource_graph=_use_graph(args, ctx), on_progress=progress)
        except audit.NoSubscription as exc:
            raise UsageError(str(exc)) from None
        except _azure_errors() as exc:
            raise UsageError(_azure_message(exc)) from None
    write_file(args.output, snapshots.dumps(doc))
    if not args.quiet:
        print(f"snapshot: {len(doc['resources'])} resources, {len(doc['skus'])} SKUs, "
              f"backend health of {len(doc['health'])} rules -> {args.output}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- helpers

def _use_graph(args, ctx) -> bool:
    """--resource-graph, or HAIRPIN_USE_RESOURCE_GRAPH (as the scheduled audit does)."""
    return bool(args.resource_graph or ctx.settings.use_resource_graph)


def _azure_errors() -> type[Exception]:
    """The SDK's error class, imported only when an exception is being matched (an `except`
    clause is evaluated then): an offline audit never loads the Azure SDK."""
    from azure.core.exceptions import AzureError

    return AzureError


def _azure_message(exc) -> str:
    """One line for an SDK error (their text spans several lines): status, code, message."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or str(exc)
    status = getattr(exc, "status_code", None)
    head = " ".join(str(x) for x in (status, code) if x)
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return f"Azure request failed{' (' + head + ')' if head else ''}: {first}"


class Progress:
    """Discovery progress on stderr when it is a terminal (pages and resources listed, health
    calls: Azure Monitor batches and rule health reads); silent when piped or redirected, and
    with `quiet`."""

    def __init__(self, stream=None, interval: float = 0.1, quiet: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._live = not quiet and bool(getattr(self._stream, "isatty", lambda: False)())
        self._health = 0
        self._interval = interval
        self._last = 0.0
        self._stage: str | None = None
        self._shown = False

    def __call__(self, stage: str, pages: int, resources: int) -> None:
        if not self._live:
            return
        if stage == "health":
            self._health += 1  # one Azure Monitor batch or one rule health read
        now = time.monotonic()
        if stage == self._stage and now - self._last < self._interval:
            return  # throttled, but a new stage always shows (totals so far)
        self._last, self._stage = now, stage
        self._shown = True
        health = f", {self._health} health calls" if self._health else ""
        self._stream.write(f"\r\x1b[Kdiscovering: {pages} pages fetched, {resources} resources "
                           f"seen{health} ({stage})")
        self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
