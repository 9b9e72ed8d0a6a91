"""Pure: a report document (+ the topology, when at hand) -> one self-contained HTML page.

Overview first (where the risk is, what blocks fixes, what changed, what a fix costs), then the
load balancers, each with its picture drawn when its row is opened, then every finding in a
paged table whose filters, search and sort run over all findings (`page_data` says why the data
is embedded packed rather than as rows).

Nothing is fetched at view time: CSS, JS and the data are inline, and a Content-Security-Policy
forbids any other source. Every name comes from the estate and is untrusted: text in the markup
is escaped, the embedded JSON cannot close its element, and the script sets data as text
(`textContent`), never as markup; only the SVG that Python rendered (escaped) is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.core.report import page_assets, page_script
from shared.core.report.markup import escape as _e
from shared.core.report.overview import GroupCounts, Overview, build_overview
from shared.core.report.page_data import page_data, script_json
from shared.core.report.picture import MAX_PICTURE_VMS, pictures_by_lb

__all__ = ["render", "MAX_PICTURE_VMS", "GROUP_ROWS"]

SEVERITIES = ("high", "medium", "info")
GROUP_ROWS = 20  # subscriptions / resource groups listed in the overview; the rest are counted


def _cards(report: Mapping[str, Any], overview: Overview) -> str:
    s = report.get("summary") or {}
    by = s.get("by_severity") or {}
    cards = [(by.get("high", 0), "high", "high"), (by.get("medium", 0), "medium", "medium"),
             (by.get("info", 0), "info", "info"), (overview.blocked, "blocked", "blocked"),
             (s.get("vms_at_risk", 0), "VMs at risk", ""),
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


def _trend(overview: Overview) -> str:
    t = overview.trend
    if t is None:
        return '<p class="trend" id="trend">No previous audit to compare with.</p>'
    return (f'<p class="trend" id="trend">Since the previous audit ({_e(t.previous_generated_at)})'
            f': <b class="new">{t.new} new</b> ({t.new_high} high), '
            f'<b class="resolved">{t.resolved} resolved</b>, {t.unchanged} unchanged.</p>')


def _fix_cost(overview: Overview) -> str:
    c = overview.fix_cost
    if not c.vms_to_deallocate:
        return '<p id="fix-cost">No fix needs a VM deallocated.</p>'
    pools = "".join(f"<tr><td>{_e(name)}</td><td>{n}</td></tr>" for _, name, n in c.pools[:5])
    return (f'<p id="fix-cost">Fixing needs <b>{c.vms_to_deallocate}</b> VMs deallocated '
            f'({c.vms_fixable_now} with no blocker now). The guard takes one VM of a pool down at '
            f'a time, so a pool\'s VMs go down one after another: at least <b>{c.rounds}</b> '
            f'rounds, pools in parallel.</p><table class="small" id="fix-pools"><thead><tr>'
            f'<th>Pool (largest first)</th><th>VMs to deallocate</th></tr></thead>'
            f'<tbody>{pools}</tbody></table>')


def _blockers(overview: Overview) -> str:
    if not overview.top_blockers:
        return ""
    items = "".join(f"<li><code>{_e(code)}</code> {n}</li>" for code, n in overview.top_blockers)
    return f'<div><h3>Top blockers</h3><ul class="blockers" id="top-blockers">{items}</ul></div>'


def _group_table(title: str, kind: str, groups: tuple[GroupCounts, ...]) -> str:
    if not groups:
        return ""
    rows = []
    for i, g in enumerate(groups[:GROUP_ROWS]):
        cells = "".join(f'<td class="n {s}">{g.by_severity.get(s, 0)}</td>' for s in SEVERITIES)
        rows.append(f'<tr class="scope" data-kind="{kind}" data-index="{i}" tabindex="0">'
                    f'<td title="{_e(g.key)}">{_e(g.name)}</td>{cells}'
                    f'<td class="n">{g.blocked}</td><td class="n">{len(g.vms)}</td></tr>')
    more = (f'<p class="note">{len(groups) - GROUP_ROWS} more; the findings table filters '
            f'them all.</p>' if len(groups) > GROUP_ROWS else "")
    return (f'<div><h3>{_e(title)}</h3><table class="small groups" id="by-{kind}"><thead><tr>'
            f'<th>{_e(title.split(" ")[-1].capitalize())}</th><th>high</th><th>medium</th>'
            f'<th>info</th><th>blocked</th><th>VMs</th></tr></thead><tbody>{"".join(rows)}'
            f'</tbody></table>{more}</div>')


def _overview(report: Mapping[str, Any], overview: Overview) -> str:
    return (f'<section id="overview"><h2>Overview</h2>{_cards(report, overview)}'
            f'{_trend(overview)}<div class="columns">'
            f'{_group_table("By subscription", "sub", overview.subscriptions)}'
            f'{_group_table("By resource group", "rg", overview.resource_groups)}'
            f'{_blockers(overview)}</div>{_fix_cost(overview)}</section>')


LEGEND = ('<p class="legend"><span class="k high"></span> high: called and mapped back now '
          '<span class="k medium"></span> medium: 0% now, fails after a failover '
          '<span class="k info"></span> info: no known caller. Labels: share of the VM\'s own '
          'connections to the VIP that come back to it. Open a load balancer to draw its '
          'picture.</p>')

FINDINGS = (
    '<section id="findings-section"><h2>Findings</h2>'
    '<div class="filters" role="search">{chips}'
    '<label>Fix <select id="f-fix"><option value="">all</option><option value="yes">fixable'
    '</option><option value="blocked">blocked</option></select></label>'
    '<label>Search <input id="f-text" type="search" placeholder="IP, name, reason, ID\u2026">'
    '</label><span id="f-scope" hidden><span></span> <button type="button" id="f-scope-clear">'
    '\u00d7</button></span><span id="f-count"></span></div>'
    '<table id="findings"><thead><tr><th data-sort="severity">Severity</th>'
    '<th data-sort="vm">VM</th><th data-sort="ip">Frontend</th><th>Ports</th>'
    '<th data-sort="likelihood">Likelihood</th><th data-sort="caller">Caller</th>'
    '<th data-sort="fix">Fixable</th><th>Reason</th></tr></thead><tbody></tbody></table>'
    '<nav class="pager" id="findings-pager"></nav>{empty}</section>')


def _findings_section(report: Mapping[str, Any]) -> str:
    by = (report.get("summary") or {}).get("by_severity") or {}
    chips = "".join(f'<label class="chip {s}"><input type="checkbox" name="sev" value="{s}" '
                    f'checked> {s} ({_e(by.get(s, 0))})</label>' for s in SEVERITIES)
    empty = ('' if report.get("findings") else
             '<p class="empty">No findings: no VM is a backend of an internal frontend it '
             'could call.</p>')
    return FINDINGS.format(chips=chips, empty=empty)


def render(report: Mapping[str, Any], topology=None,
           previous: Mapping[str, Any] | None = None) -> str:
    """The HTML page of one report document; `topology` adds pool peers and power states;
    `previous` (the previous audit's report document) gives the trend."""
    findings = list(report.get("findings") or [])
    overview = build_overview(findings, previous)
    data = page_data(findings, overview, pictures_by_lb(findings, topology))
    scope = report.get("scope") or {}
    scope_text = ", ".join(f"{k}: {v if not isinstance(v, list) else ', '.join(map(str, v)) or '-'}"
                           for k, v in scope.items())
    tool = report.get("tool") or {}
    no_lb = ('' if data["lbs"] else
             '<p class="empty">No VM is a backend of an internal load balancer.</p>')
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
        f"<main>{_overview(report, overview)}"
        f"<section id=\"lbs\"><h2>Load balancers and hairpin loops</h2>{LEGEND}"
        "<table id=\"lb-table\"><thead><tr><th data-sort=\"name\">Load balancer</th>"
        "<th data-sort=\"high\">high</th><th data-sort=\"medium\">medium</th>"
        "<th data-sort=\"info\">info</th><th data-sort=\"blocked\">blocked</th>"
        "<th data-sort=\"vms\">VMs</th><th></th></tr></thead><tbody></tbody></table>"
        f"<nav class=\"pager\" id=\"lb-pager\"></nav>{no_lb}</section>"
        f"{_findings_section(report)}</main>"
        "<footer>Self-contained report: nothing is loaded from the network.</footer>"
        f"<script type=\"application/json\" id=\"hairpin-data\">{script_json(data)}</script>"
        f"<script>{page_script.JS}</script></body></html>\n"
    )
