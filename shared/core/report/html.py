"""Pure: a report document (+ the topology, when at hand) -> one self-contained HTML page.

Nothing is fetched at view time: CSS, JS and the SVG picture are inline, and a
Content-Security-Policy forbids any other source. Every name comes from the estate and is
untrusted, so every text and attribute is escaped; no data is embedded in the script: it reads
`data-*` attributes of the rendered rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.core.report import page_assets
from shared.core.report.markup import escape as _e
from shared.core.report.markup import pct
from shared.core.report.picture import (
    MAX_PICTURE_VMS,
    Picture,
    add_findings,
    add_topology,
    port_text,
)
from shared.core.report.svg import render_svg

__all__ = ["render", "MAX_PICTURE_VMS"]

SEVERITIES = ("high", "medium", "info")


def _findings_table(findings: list[Mapping[str, Any]]) -> str:
    if not findings:
        return ('<p class="empty">No findings: no VM is a backend of an internal frontend it '
                'could call.</p>')
    vms = sorted({f.get("vm_name") or "" for f in findings}, key=str.lower)
    bar = ['<div class="filters" role="search">']
    for s in SEVERITIES:
        n = sum(1 for f in findings if f.get("severity") == s)
        bar.append(f'<label class="chip {s}"><input type="checkbox" name="sev" value="{s}" '
                   f'checked> {s} ({n})</label>')
    bar.append('<label>VM <select id="f-vm"><option value="">all</option>'
               + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in vms)
               + '</select></label>')
    bar.append('<label>Search <input id="f-text" type="search" '
               'placeholder="IP, name, reason\u2026"></label>')
    bar.append(f'<span id="f-count">{len(findings)} of {len(findings)}</span></div>')

    rows = []
    for f in findings:
        rem = f.get("remediation") or {}
        feasible = rem.get("feasible")
        fix = ({True: "yes", False: "no"}[feasible] if isinstance(feasible, bool)
               else str(feasible))
        ports = ", ".join(dict.fromkeys(port_text(p) for p in f.get("ports", [])))
        issues = "".join(f"<li><code>{_e(i.get('code'))}</code> {_e(i.get('detail'))}</li>"
                         for i in (rem.get("blockers") or []) + (rem.get("unknowns") or []))
        notes = "".join(f"<li>{_e(n)}</li>" for n in rem.get("notes") or [])
        search = " ".join(str(x) for x in (f.get("vm_name"), f.get("frontend_ip"), f.get("lb_name"),
                                            f.get("frontend_name"), f.get("id"), f.get("reason"),
                                            ports, f.get("caller"))).lower()
        likelihood = f.get("likelihood") or 0
        width = max(0.0, min(1.0, float(likelihood))) * 100
        rows.append(
            f'<tr class="finding {_e(f.get("severity"))}" id="row-{_e(f.get("id"))}" '
            f'data-finding="{_e(f.get("id"))}" data-severity="{_e(f.get("severity"))}" '
            f'data-vm="{_e(f.get("vm_name"))}" data-text="{_e(search)}">'
            f'<td><span class="badge {_e(f.get("severity"))}">{_e(f.get("severity"))}</span></td>'
            f'<td title="{_e(f.get("vm_id"))}">{_e(f.get("vm_name"))}</td>'
            f'<td><b>{_e(f.get("frontend_ip"))}</b><br><small>{_e(f.get("lb_name"))} / '
            f'{_e(f.get("frontend_name"))}</small></td>'
            f'<td>{_e(ports)}</td>'
            f'<td><span class="meter"><span style="width:{width:.0f}%">'
            f'</span></span> {pct(likelihood)}</td>'
            f'<td>{_e(f.get("caller"))}</td><td>{_e(fix)}</td>'
            f'<td class="reason">{_e(f.get("reason"))}<details><summary>details</summary>'
            f'<p><b>Likelihood:</b> {_e(f.get("likelihood_text"))}</p>'
            + (f'<p><b>Fix blockers and unknowns:</b></p><ul>{issues}</ul>' if issues else "")
            + (f'<p><b>Notes:</b></p><ul>{notes}</ul>' if notes else "")
            + f'<p><small>ID <code>{_e(f.get("id"))}</code></small></p></details></td></tr>')
    return ("".join(bar) + '<table id="findings"><thead><tr><th>Severity</th><th>VM</th>'
            '<th>Frontend</th><th>Ports</th><th>Likelihood</th><th>Caller</th><th>Fixable</th>'
            '<th>Reason</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _summary(report: Mapping[str, Any]) -> str:
    s = report.get("summary") or {}
    by = s.get("by_severity") or {}
    cards = [(by.get("high", 0), "high", "high"), (by.get("medium", 0), "medium", "medium"),
             (by.get("info", 0), "info", "info"), (s.get("vms_at_risk", 0), "VMs at risk", ""),
             (s.get("not_affected_total", 0), "not affected", "ok"),
             (s.get("unknowns", 0), "unknown facts", "")]
    out = ['<div class="cards">']
    out += [f'<div class="card {c}"><b>{_e(n)}</b><span>{_e(label)}</span></div>'
            for n, label, c in cards]
    out.append("</div>")
    reasons = s.get("not_affected_reasons") or {}
    counts = {k: v for k, v in (s.get("not_affected") or {}).items() if v}
    if counts:
        out.append('<ul class="na">' + "".join(
            f"<li><b>{_e(v)}</b> not affected: {_e(reasons.get(k, k.replace('_', ' ')))}</li>"
            for k, v in sorted(counts.items())) + "</ul>")
    return "".join(out)


def render(report: Mapping[str, Any], topology=None) -> str:
    """The HTML page of one report document; `topology` adds pool peers and power states."""
    findings = list(report.get("findings") or [])
    pic = Picture()
    add_findings(pic, findings)
    if topology is not None:
        add_topology(pic, topology)
    scope = report.get("scope") or {}
    scope_text = ", ".join(f"{k}: {v if not isinstance(v, list) else ', '.join(map(str, v)) or '-'}"
                           for k, v in scope.items())
    tool = report.get("tool") or {}
    omitted = (f'<p class="note">The picture shows {len(pic.vms)} VMs; {pic.omitted_vms} more are '
               f'only in the table.</p>' if pic.omitted_vms else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>ILB hairpin audit {_e(report.get('generated_at'))}</title>"
        f"<style>{page_assets.CSS}</style></head><body>"
        f"<header><h1>ILB hairpin audit</h1><p>{_e(report.get('generated_at'))} \u00b7 "
        f"{_e(tool.get('name'))} {_e(tool.get('version'))} \u00b7 schema "
        f"{_e(report.get('schema_version'))}</p><p class=\"scope\">{_e(scope_text)}</p></header>"
        f"<main><section>{_summary(report)}</section>"
        "<section><h2>Topology and hairpin loops</h2><p class=\"legend\">"
        "<span class=\"k high\"></span> high: called and mapped back now "
        "<span class=\"k medium\"></span> medium: 0% now, fails after a failover "
        "<span class=\"k info\"></span> info: no known caller. Labels: share of the VM's own "
        f"connections to the VIP that come back to it.</p>{omitted}"
        f"<div class=\"picture\">{render_svg(pic)}</div></section>"
        f"<section><h2>Findings</h2>{_findings_table(findings)}</section></main>"
        "<footer>Self-contained report: nothing is loaded from the network.</footer>"
        f"<script>{page_assets.JS}</script></body></html>\n"
    )
