"""Pure: the rows this product sends to Log Analytics (custom table Hairpin_CL, through the
data collection rule's stream Custom-Hairpin_CL), one vocabulary of columns for findings,
remediation outcomes and drift, so one workbook and one alert query read them all.

`LOG_COLUMNS` is the table's schema: infra/main.json declares the same columns (names and
types) for the table and the DCR's stream, and tests/unit/test_infra_template.py holds the two
to this tuple. Column names follow Log Analytics' rules (a letter first, letters, digits and _,
at most 45 characters, none of the reserved names such as SubscriptionId or ResourceId).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from shared import __version__
from shared.core import arm_ids
from shared.core.vocab import LogRowKind

__all__ = ["LOG_COLUMNS", "TABLE", "STREAM", "finding_rows", "outcome_rows", "drift_rows"]

TABLE = "Hairpin_CL"
STREAM = "Custom-Hairpin_CL"
LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimeGenerated", "datetime"),
    ("Kind", "string"),  # LogRowKind
    ("RunId", "string"),  # audit run id, remediation operation id or sweep id
    ("Trigger", "string"),  # TriggerKind
    ("Subscription", "string"),
    ("ResourceGroup", "string"),
    ("VmId", "string"),
    ("VmName", "string"),
    ("LoadBalancer", "string"),
    ("FrontendIp", "string"),
    ("FindingId", "string"),
    ("Severity", "string"),
    ("Likelihood", "real"),
    ("Fixable", "boolean"),
    ("Blocked", "boolean"),
    ("Blockers", "string"),  # blocker codes, space-separated
    ("Status", "string"),  # outcome: Status; drift: the drift item
    ("Verified", "boolean"),
    ("Detail", "string"),
    ("ProductVersion", "string"),
)
DETAIL_LIMIT = 2000  # long reasons are cut: the journal and the report keep the whole text


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("row times must be timezone-aware")
    return at.isoformat().replace("+00:00", "Z")


def _row(kind: LogRowKind, at: datetime, run_id: str | None, trigger: str,
         vm_id: str | None, **values: Any) -> dict[str, Any]:
    vm = arm_ids.try_parse(vm_id)
    row: dict[str, Any] = {name: None for name, _ in LOG_COLUMNS}
    row.update(TimeGenerated=_timestamp(at), Kind=kind.value, RunId=run_id, Trigger=str(trigger),
               Subscription=vm.subscription.lower() if vm else None,
               ResourceGroup=vm.resource_group if vm else None, VmId=vm_id,
               VmName=vm.name if vm else None, ProductVersion=__version__)
    unknown = set(values) - set(row)
    if unknown:
        raise KeyError(f"not a Hairpin_CL column: {sorted(unknown)}")
    row.update(values)
    if isinstance(row.get("Detail"), str):
        row["Detail"] = row["Detail"][:DETAIL_LIMIT]
    return row


def finding_rows(report: Mapping[str, Any], at: datetime, run_id: str | None,
                 trigger: str) -> list[dict[str, Any]]:
    """One row per finding of an audit report document."""
    rows = []
    for f in report.get("findings") or []:
        rem = f.get("remediation") or {}
        blockers = [b.get("code") for b in rem.get("blockers") or []]
        feasible = rem.get("feasible")
        rows.append(_row(
            LogRowKind.FINDING, at, run_id, trigger, f.get("vm_id"),
            VmName=f.get("vm_name"), LoadBalancer=f.get("lb_name"),
            FrontendIp=f.get("frontend_ip"), FindingId=f.get("id"),
            Severity=f.get("severity"), Likelihood=float(f.get("likelihood") or 0.0),
            Fixable=feasible if isinstance(feasible, bool) else None, Blocked=bool(blockers),
            Blockers=" ".join(map(str, blockers)), Detail=f.get("reason")))
    return rows


def outcome_rows(outcome: Mapping[str, Any], at: datetime,
                 trigger: str) -> list[dict[str, Any]]:
    """One row per VM of a remediation outcome (`Outcome.as_dict()`); a run that reached no VM
    (refused before planning one) is one row without a VM."""
    run_id = outcome.get("operation_id")
    vms = outcome.get("vms") or []
    if not vms:
        return [_row(LogRowKind.OUTCOME, at, run_id, trigger, None,
                     Status=str(outcome.get("status")), Verified=outcome.get("verified"),
                     Detail="; ".join(map(str, outcome.get("reasons") or [])))]
    rows = []
    for vm in vms:
        # a verification entry counts connects: {"vip", "ok", "total"}
        checks = [n.get("ok") == n.get("total") for n in vm.get("verification") or []]
        rows.append(_row(LogRowKind.OUTCOME, at, run_id, trigger, vm.get("vm_id"),
                         VmName=vm.get("vm_name"), Status=str(vm.get("status")),
                         Verified=all(checks) if checks else None,
                         Detail="; ".join(map(str, vm.get("reasons") or outcome.get("reasons")
                                              or []))))
    return rows


def drift_rows(vm_id: str | None, drift: Iterable[str], at: datetime, run_id: str | None,
               trigger: str, status: str | None = None) -> list[dict[str, Any]]:
    """One row per drift item of a VM (the outcome's status of its repair in Detail)."""
    return [_row(LogRowKind.DRIFT, at, run_id, trigger, vm_id, Status=str(item),
                 Detail=f"repair: {status}" if status else None) for item in drift]
