"""`hairpin sweep`: the drift sweep in this process, through the same service the Functions
timer and queue trigger run (`shared.services.sweep.fleet`): the same plan of work items, the
same per-item results and summary in Table storage, the same report and notification."""

from __future__ import annotations

import json

from shared.cli.common import UsageError, context_from_env

EXIT_OK, EXIT_NOT_DONE = 0, 1


def cmd_sweep(args) -> int:
    from shared.services.sweep import fleet

    ctx = context_from_env()
    if ctx.sweeps is None:
        raise UsageError("the sweep keeps its plan and results in Table storage: set "
                         "HAIRPIN_STORAGE_CONNECTION (Azurite locally) or AzureWebJobsStorage")
    record = fleet.run_inline(ctx)
    if record is None:
        print("a sweep is still running (see the table "
              f"{ctx.settings.storage_names.sweep_table}): none started")
        return EXIT_NOT_DONE
    summary = record.summary or {}
    if args.format == "json":
        print(json.dumps({"sweep_id": record.sweep_id, "state": record.state, **summary},
                         indent=2, default=str))
    else:
        print(f"sweep {record.sweep_id}: {record.state}, {record.items} work items")
        for key in ("vms", "findings", "at_risk", "drift_found", "actions_taken",
                    "pending_plans", "errors_count"):
            print(f"  {key.replace('_', ' ')}: {summary.get(key, 0)}")
        for action, n in sorted((summary.get("actions") or {}).items()):
            print(f"  {action}: {n}")
    done = record.state == "done" and summary.get("complete") and not summary.get("errors")
    return EXIT_OK if done else EXIT_NOT_DONE


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="run the drift sweep here (the timer's fan-out, item by item)",
        description="Plan the drift sweep as the timer does (one work item per subscription, "
        "or Resource Graph-sized groups with HAIRPIN_USE_RESOURCE_GRAPH), run every item in "
        "this process as the queue trigger would, then store the summary, write the report "
        "and send the notification. Needs storage (HAIRPIN_STORAGE_CONNECTION). Unattended "
        "rules apply: only opted-in VMs are remediated, and only in HAIRPIN_MODE=apply. Exit "
        "status 1 when the sweep is incomplete, had errors, or another sweep is running.")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    p.set_defaults(handler=cmd_sweep)
