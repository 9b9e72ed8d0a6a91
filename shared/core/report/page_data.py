"""Pure: the data the report page's script draws from, embedded in the page.

A 10,000-VM estate has about 10,000 findings and 1,000 load balancers: as HTML rows and inline
SVG that is 20 MB, and the browser builds all of it before the first paint. So the page embeds
the findings as columns (gzip, base64) and each load balancer's picture as SVG markup that
Python renders (`svg.render_svg`, the one picture renderer) in gzip chunks of a few load
balancers; the script decompresses the findings at load (DecompressionStream) and a chunk when
one of its pictures is opened. gzip with mtime 0 keeps the page byte-identical for one report.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from typing import Any

import orjson

from shared.core import arm_ids
from shared.core.report.overview import Overview, is_blocked, scope_of
from shared.core.report.picture import Picture, port_text
from shared.core.report.svg import render_svg
from shared.core.vocab import HealthSource

__all__ = ["FINDING_COLUMNS", "LB_COLUMNS", "PICTURES_PER_CHUNK", "pack", "unpack",
           "page_data", "script_json"]

PICTURES_PER_CHUNK = 20
HEALTH_SOURCE_LABELS = {HealthSource.MONITOR: "Azure Monitor", HealthSource.RULE_API: "rule API"}
FINDING_COLUMNS = ("id", "severity", "vm", "vm_id", "ip", "lb", "frontend", "ports",
                   "likelihood", "caller", "fix", "blocked", "reason", "likelihood_text",
                   "issues", "notes", "sub", "rg", "facts")
LB_COLUMNS = ("key", "name", "sub", "rg", "high", "medium", "info", "blocked", "vms", "chunk",
              "omitted")


def pack(value: Any) -> str:
    """JSON -> gzip (mtime 0: the same bytes every time) -> base64 text. Level 6: level 9
    took three times as long for 4% less on the 10,000-VM page."""
    raw = orjson.dumps(value)
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def unpack(text: str) -> Any:
    """The inverse of `pack` (tests and tools read the page's data with it)."""
    return json.loads(gzip.decompress(base64.b64decode(text)).decode("utf-8"))


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: no `<` can close it or open a comment."""
    return (orjson.dumps(value).decode("utf-8")
            .replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _fix_text(feasible: Any) -> str:
    return {True: "yes", False: "no"}[feasible] if isinstance(feasible, bool) else str(feasible)


def _evidence_facts(ev: Mapping[str, Any]) -> list[list[str]]:
    facts = [["Caller", str(ev.get("caller"))
              + (f"; co-hosted VIPs {', '.join(ev['co_hosted_frontends'])}"
                 if ev.get("co_hosted_frontends") else "")
              + (f"; declared {', '.join(map(str, ev['declared']))}" if ev.get("declared")
                 else "")]]
    members = [f"{m.get('private_ip') or '?'} in {arm_ids.name_of(m.get('pool_id') or '?')} "
               f"(rule {arm_ids.name_of(m.get('rule_id') or '?')})"
               for m in ev.get("membership") or []]
    if members:
        facts.append(["Membership", "; ".join(members)])
    health = ev.get("health") or {}
    rules = health.get("rules") or []
    facts.append(["Health", "; ".join(
        f"{arm_ids.name_of(r.get('rule_id') or '?')}: "
        + (f"{len(r.get('healthy') or [])} of {r.get('pool_members')} up, this VM "
           f"{r.get('self_state') or 'unknown'}"
           + (f" (from {HEALTH_SOURCE_LABELS.get(r['source'], r['source'])})"
              if r.get("source") else "") if r.get("read") else "not read")
        for r in rules) or ("read" if health.get("read") else "not read")])
    if ev.get("power_state"):
        facts.append(["Power", str(ev["power_state"])])
    return facts


def _fix_facts(rem: Mapping[str, Any]) -> list[list[str]]:
    nic = rem.get("secondary_nic") or {}
    steps = []
    if rem.get("needs_new_nic"):
        steps.append(f"new NIC {nic.get('name') or '?'} in subnet "
                     f"{arm_ids.name_of(nic.get('subnet_id') or '?')}")
    steps.append("deallocation needed" if rem.get("needs_deallocation") else "no deallocation")
    if rem.get("takeover_peers"):
        steps.append(f"peers taking over: {', '.join(map(str, rem['takeover_peers']))}")
    if rem.get("peers_not_running"):
        steps.append(f"peers not running: {', '.join(map(str, rem['peers_not_running']))}")
    return [["Fix", "; ".join(steps)]]


def _finding_row(f: Mapping[str, Any], lb_index: int, sub_index: int, rg_index: int) -> list:
    rem = f.get("remediation") or {}
    issues = [[i.get("code"), i.get("detail")]
              for i in (rem.get("blockers") or []) + (rem.get("unknowns") or [])]
    ports = ", ".join(dict.fromkeys(port_text(p) for p in f.get("ports", [])))
    return [f.get("id"), f.get("severity"), f.get("vm_name"), f.get("vm_id"),
            f.get("frontend_ip"), lb_index, f.get("frontend_name"), ports,
            f.get("likelihood") or 0, f.get("caller"), _fix_text(rem.get("feasible")),
            int(is_blocked(f)), f.get("reason"), f.get("likelihood_text"), issues,
            list(rem.get("notes") or []), sub_index, rg_index,
            _evidence_facts(f.get("evidence") or {}) + _fix_facts(rem)]


def page_data(findings: list[Mapping[str, Any]], overview: Overview,
              pictures: Mapping[str, Picture]) -> dict[str, Any]:
    """{"subs", "rgs", "lb_columns", "lbs", "finding_columns", "findings" (packed),
    "pictures" (packed chunks)}: load balancers in the overview's order (worst first), then
    any pictured load balancer without findings (a clean estate)."""
    subs = [g.key for g in overview.subscriptions]
    rgs = [[g.name, subs.index(g.subscription) if g.subscription in subs else -1]
           for g in overview.resource_groups]
    sub_at = {k: i for i, k in enumerate(subs)}
    rg_at = {g.key: i for i, g in enumerate(overview.resource_groups)}
    groups = {g.key: g for g in overview.load_balancers}
    order = list(groups) + [k for k in pictures if k not in groups]
    lb_at = {k: i for i, k in enumerate(order)}
    lbs, chunks = [], []
    for i, key in enumerate(order):
        if i % PICTURES_PER_CHUNK == 0:
            chunks.append({})
        pic = pictures.get(key)
        if pic is not None:
            chunks[-1][key] = render_svg(pic)
        g = groups.get(key)
        counts = g.by_severity if g is not None else {}
        name = g.name if g is not None else _picture_lb_name(pic, key)
        lbs.append([key, name, g.subscription if g else "", g.resource_group if g else "",
                    counts.get("high", 0), counts.get("medium", 0), counts.get("info", 0),
                    g.blocked if g else 0, len(g.vms) if g else len(pic.vms) if pic else 0,
                    len(chunks) - 1 if pic is not None else -1,
                    pic.omitted_vms if pic is not None else 0])
    rows = []
    for f in findings:
        sub, rg, lb = scope_of(f)
        rows.append(_finding_row(f, lb_at.get(lb, -1), sub_at.get(sub, -1), rg_at.get(rg, -1)))
    return {"subs": subs, "rgs": rgs, "lb_columns": LB_COLUMNS, "lbs": lbs,
            "finding_columns": FINDING_COLUMNS, "findings": pack(rows),
            "pictures": [pack(c) for c in chunks]}


def _picture_lb_name(pic: Picture | None, key: str) -> str:
    if pic is not None:
        for pool in pic.pools.values():
            if pool.get("lb"):
                return pool["lb"]
    return arm_ids.name_of(key) or key
