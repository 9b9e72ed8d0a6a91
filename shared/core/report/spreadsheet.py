"""Pure: a report document -> CSV for spreadsheets, one row per finding.

Every cell comes from the estate and is untrusted: a cell that a spreadsheet would run as a
formula (starting with = + - @, tab or carriage return) is prefixed with an apostrophe, as
OWASP's "CSV Injection" advises.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any

from shared.core import arm_ids
from shared.core.report.overview import is_blocked
from shared.core.report.picture import port_text

__all__ = ["CSV_COLUMNS", "Collected", "to_csv"]

CSV_COLUMNS = ("id", "severity", "likelihood", "subscription", "resource_group", "vm_name",
               "load_balancer", "frontend", "frontend_ip", "ports", "caller", "fixable",
               "blocked", "blockers", "needs_deallocation", "reason", "vm_id", "lb_id")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _row(f: Mapping[str, Any]) -> list[str]:
    rem = f.get("remediation") or {}
    vm = arm_ids.try_parse(f.get("vm_id"))
    codes = [i.get("code") for i in (rem.get("blockers") or []) + (rem.get("unknowns") or [])]
    values = (f.get("id"), f.get("severity"), f"{float(f.get('likelihood') or 0):.2f}",
              vm.subscription if vm else "", vm.resource_group if vm else "", f.get("vm_name"),
              f.get("lb_name"), f.get("frontend_name"), f.get("frontend_ip"),
              " ".join(dict.fromkeys(port_text(p) for p in f.get("ports") or [])),
              f.get("caller"), rem.get("feasible"), is_blocked(f), " ".join(map(str, codes)),
              rem.get("needs_deallocation"), f.get("reason"), f.get("vm_id"), f.get("lb_id"))
    return [_cell(v) for v in values]


class Collected:
    """What csv.writer writes, kept in memory (the core does no I/O, not even io.StringIO)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


def to_csv(report: Mapping[str, Any]) -> str:
    """A header row, then one row per finding in the report's order (RFC 4180, CRLF)."""
    out = Collected()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_row(f) for f in report.get("findings") or [])
    return "".join(out.parts)
