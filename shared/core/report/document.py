"""Pure: an evaluation -> the JSON report document (versioned, docs/report-schema.json) or text.

`generated_at` is passed in (no clock here), so the same estate gives byte-identical reports.
Exit status of an audit: 0 when there is no `high` or `medium` finding, 1 when there is one
(2, errors, is the CLI's business).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from shared import __version__
from shared.core.risk import NOT_AFFECTED_REASONS, SEVERITIES, Evaluation
from shared.core.vocab import HealthSource

__all__ = ["SCHEMA_VERSION", "build_report", "to_json", "to_text", "exit_status"]

SCHEMA_VERSION = "1.0"


def _timestamp(generated_at: datetime | str) -> str:
    if isinstance(generated_at, datetime):
        if generated_at.tzinfo is None:
            raise ValueError("generated_at must be timezone-aware")
        return generated_at.isoformat().replace("+00:00", "Z")
    return str(generated_at)


def build_report(
    evaluation: Evaluation, generated_at: datetime | str, scope: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The report document. `scope` says what was audited (subscriptions, snapshot file, ...)."""
    by_severity = evaluation.severity_counts()
    not_affected = evaluation.not_affected_counts()
    findings = [f.as_dict() for f in evaluation.findings]
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _timestamp(generated_at),
        "tool": {"name": "azure-ilb-hairpin", "version": __version__},
        "scope": dict(scope or {}),
        "summary": {
            "findings": len(findings),
            "by_severity": by_severity,
            "vms_at_risk": len(
                {f["vm_id"].lower() for f in findings if f["severity"] in ("high", "medium")}
            ),
            "not_affected": not_affected,
            "not_affected_total": sum(not_affected.values()),
            "not_affected_reasons": dict(NOT_AFFECTED_REASONS),
            "unknowns": len(evaluation.unknowns),
            "health_sources": health_sources(findings),
            "exit_status": exit_status(evaluation),
        },
        "findings": findings,
        "not_affected": [n.as_dict() for n in evaluation.not_affected],
        "unknowns": [u.as_dict() for u in evaluation.unknowns],
    }


def health_sources(findings: list[Mapping[str, Any]]) -> dict[str, int]:
    """How many of the findings' rules had their backend health from each source ("unread":
    from none)."""
    by_rule: dict[str, str] = {}
    for f in findings:
        for rule in f["evidence"]["health"]["rules"]:
            by_rule[rule["rule_id"].lower()] = (rule.get("source") or "unread") \
                if rule.get("read") else "unread"
    counts = dict.fromkeys([*(s.value for s in HealthSource), "unread"], 0)
    for source in by_rule.values():
        counts[source] = counts.get(source, 0) + 1
    return counts


def to_json(report: Mapping[str, Any]) -> str:
    """Indented by two (people read the file), UTF-8, ending in a newline. orjson, as the
    standard library's encoder took most of an offline audit's time on a 10k-VM estate; enum
    keys (severity counts) are written as their values."""
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
                        | orjson.OPT_NON_STR_KEYS).decode()


def exit_status(evaluation_or_report: Evaluation | Mapping[str, Any]) -> int:
    """0: no high/medium finding; 1: at least one."""
    if isinstance(evaluation_or_report, Evaluation):
        return 1 if evaluation_or_report.has_actionable else 0
    findings = evaluation_or_report.get("findings", [])
    return 1 if any(f.get("severity") in ("high", "medium") for f in findings) else 0


def _feasible_text(value: Any) -> str:
    return (
        {True: "yes", False: "no"}.get(value, "unknown") if isinstance(value, bool) else str(value)
    )


def _ports(finding: Mapping[str, Any]) -> str:
    parts = []
    for p in finding["ports"]:
        if p.get("ha_ports"):
            parts.append("all")
        elif p["frontend_port"] == p["backend_port"]:
            parts.append(f"{(p['protocol'] or '?').lower()}/{p['frontend_port']}")
        else:
            parts.append(
                f"{(p['protocol'] or '?').lower()}/{p['frontend_port']}->{p['backend_port']}"
            )
    return ",".join(dict.fromkeys(parts))


def to_text(report: Mapping[str, Any], width: int = 100) -> str:
    """A table a network engineer can read in a terminal, then each finding's reason."""
    findings = report["findings"]
    summary = report["summary"]
    counts = summary["by_severity"]
    lines = [
        f"ILB hairpin audit ({report['generated_at']}): "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in SEVERITIES)
        + f"; {summary['not_affected_total']} not affected",
    ]
    if not findings:
        lines.append("No VM is a backend of an internal frontend it could call: nothing to fix.")
    else:
        header = ("SEVERITY", "VM", "FRONTEND", "PORTS", "LIKELIHOOD", "CALLER", "FIXABLE", "ID")
        rows = [
            (
                f["severity"],
                f["vm_name"],
                f["frontend_ip"] or f["frontend_name"],
                _ports(f),
                f"{round(f['likelihood'] * 100)}%",
                f["caller"],
                _feasible_text(f["remediation"]["feasible"]),
                f["id"],
            )
            for f in findings
        ]
        widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines.append("")
        lines.append(fmt.format(*header).rstrip())
        lines.extend(fmt.format(*row).rstrip() for row in rows)
        lines.append("")
        for f in findings:
            lines.append(f"{f['id']} [{f['severity']}] {f['vm_name']} -> {f['frontend_ip']}")
            lines.extend(_wrap(f["reason"], width, "    "))
            lines.extend(_wrap("Likelihood: " + f["likelihood_text"], width, "    "))
            blockers = f["remediation"]["blockers"] + f["remediation"]["unknowns"]
            for b in blockers:
                lines.extend(_wrap(f"Fix: {b['code']}: {b['detail']}", width, "    "))
    reasons = {k: v for k, v in summary["not_affected"].items() if v}
    if reasons:
        lines.append("")
        lines.append(
            "Not affected: "
            + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(reasons.items()))
        )
    sources = summary.get("health_sources") or {}
    if any(sources.values()):
        lines.append(f"Backend health of the findings' rules: {sources.get('monitor', 0)} from "
                     f"Azure Monitor, {sources.get('rule_api', 0)} from the rule health API, "
                     f"{sources.get('unread', 0)} unread")
    if summary.get("unknowns"):
        lines.append(f"Unknown facts in the estate: {summary['unknowns']} (see the JSON report)")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int, indent: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent) or [
        indent
    ]
