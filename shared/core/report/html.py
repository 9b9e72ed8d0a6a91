"""Pure: a report document (+ the topology, when at hand) -> one self-contained HTML page.

Nothing is fetched at view time: CSS, JS and the SVG picture are inline, and a
Content-Security-Policy forbids any other source. Every name comes from the estate and is
untrusted, so every text and attribute goes through `_e` (HTML escaping); no data is embedded
in the script: it reads `data-*` attributes of the rendered rows.

The picture: VMs with their NICs (left), backend pools (middle), internal frontends grouped by
load balancer (right); grey lines for pool membership and load-balancing rules; each hairpin
loop (finding) in red from the NIC to the VIP and back, labelled with its likelihood.
Solid: high, dashed: medium (0% now), dotted: info (no known caller).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.arm_ids import name_of, normalize, parent_id

__all__ = ["render", "MAX_PICTURE_VMS"]

MAX_PICTURE_VMS = 60  # beyond this the picture is unreadable; the table still lists everything
SEVERITIES = ("high", "medium", "info")

# Layout (px)
VM_X, VM_W = 16, 250
POOL_X, POOL_W = 400, 200
FE_X, FE_W = 720, 240
WIDTH = FE_X + FE_W + 16
TOP = 40
VM_HEAD, NIC_ROW, GAP = 26, 22, 22
POOL_H, FE_H, LB_HEAD, LOOP_ROW = 40, 28, 24, 20


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _pct(p: Any) -> str:
    try:
        return f"{round(float(p) * 100)}%"
    except (TypeError, ValueError):
        return "?"


# --------------------------------------------------------------------------- picture model

@dataclass
class _Vm:
    id: str
    name: str
    power: str | None = None
    nics: dict[str, dict] = field(default_factory=dict)  # key -> {"name", "ips": set}


@dataclass
class _Picture:
    vms: dict[str, _Vm] = field(default_factory=dict)
    pools: dict[str, dict] = field(default_factory=dict)  # key -> {"name", "lb"}
    frontends: dict[str, dict] = field(default_factory=dict)  # key -> {"ip", "name", "lb"}
    members: set[tuple[str, str]] = field(default_factory=set)  # (nic key, pool key)
    rules: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (pool, fe) -> ports
    loops: list[dict] = field(default_factory=list)
    omitted: set[str] = field(default_factory=set)  # VM keys left out of the picture

    @property
    def omitted_vms(self) -> int:
        return len(self.omitted)

    def vm(self, vm_id: str, name: str) -> _Vm | None:
        key = normalize(vm_id)
        if key not in self.vms:
            if len(self.vms) >= MAX_PICTURE_VMS:
                self.omitted.add(key)
                return None
            self.vms[key] = _Vm(vm_id, name)
        return self.vms[key]


def _port_text(p: Mapping[str, Any]) -> str:
    if p.get("ha_ports"):
        return "all ports"
    proto = str(p.get("protocol") or "?").upper()
    fp, bp = p.get("frontend_port"), p.get("backend_port")
    return f"{proto} {fp}" if fp == bp else f"{proto} {fp}\u2192{bp}"


def _from_findings(pic: _Picture, findings: list[Mapping[str, Any]]) -> None:
    for f in findings:
        vm = pic.vm(f["vm_id"], f.get("vm_name") or name_of(f["vm_id"]))
        if vm is None:
            continue
        fe_key = normalize(f["frontend_id"])
        pic.frontends.setdefault(fe_key, {"ip": f.get("frontend_ip"),
                                          "name": f.get("frontend_name") or name_of(fe_key),
                                          "lb": f.get("lb_name") or ""})
        ports = {normalize(p.get("rule_id", "")): _port_text(p) for p in f.get("ports", [])}
        nic_key = None
        for m in (f.get("evidence") or {}).get("membership", []):
            nic_id = parent_id(m.get("ip_config_id") or "") or m.get("ip_config_id") or "?"
            nic_key = nic_key or normalize(nic_id)
            nic = vm.nics.setdefault(normalize(nic_id), {"name": name_of(nic_id), "ips": set()})
            if m.get("private_ip"):
                nic["ips"].add(m["private_ip"])
            pool_key = normalize(m.get("pool_id") or "?")
            lb_name = f.get("lb_name") or name_of(parent_id(pool_key) or "")
            pic.pools.setdefault(pool_key, {"name": name_of(pool_key), "lb": lb_name})
            pic.members.add((normalize(nic_id), pool_key))
            text = ports.get(normalize(m.get("rule_id") or ""))
            pic.rules.setdefault((pool_key, fe_key), set()).update([text] if text else [])
        if nic_key is None:  # no membership evidence: loop from the VM's first NIC row
            nic_key = normalize(f["vm_id"]) + "#vm"
            vm.nics.setdefault(nic_key, {"name": "(NIC unknown)", "ips": set()})
        pic.loops.append({"id": f["id"], "vm": normalize(f["vm_id"]), "nic": nic_key,
                          "fe": fe_key, "severity": f.get("severity", "info"),
                          "likelihood": f.get("likelihood"), "vm_name": vm.name,
                          "reason": f.get("reason", "")})


def _from_topology(pic: _Picture, topology) -> None:
    """Peers (other members of the pictured pools), NIC names, power states, other rules."""
    t = topology
    pool_keys = list(pic.pools)
    if not pool_keys:  # nothing found: show the internal load balancers' pools as they are
        pool_keys = sorted({pk for r in t.rules.values() if r.frontend_key in t.frontends
                            and t.frontends[r.frontend_key].is_internal for pk in r.pool_keys})
    for pk in pool_keys:
        pool = t.pools.get(pk)
        lb = t.load_balancers.get(pool.lb_key) if pool is not None else None
        pic.pools.setdefault(pk, {"name": pool.name if pool else name_of(pk),
                                  "lb": lb.name if lb else ""})
        for m in t.pool_members.get(pk, ()):
            cfg = t.ip_configs.get(m.ip_config_key) if m.ip_config_key else None
            vm_key = t.nic_vm.get(cfg.nic_key) if cfg else None
            vm_doc = t.vms.get(vm_key) if vm_key else None
            if cfg is None or vm_doc is None:
                continue
            vm = pic.vm(vm_doc.id, vm_doc.name)
            if vm is None:
                continue
            nic = t.nics.get(cfg.nic_key)
            entry = vm.nics.setdefault(cfg.nic_key, {"name": name_of(cfg.nic_key), "ips": set()})
            entry["name"] = nic.name if nic else entry["name"]
            if cfg.private_ip is not None:
                entry["ips"].add(str(cfg.private_ip))
            pic.members.add((cfg.nic_key, pk))
        for rk in t.pool_rules.get(pk, ()):
            rule = t.rules[rk]
            fe = t.frontends.get(rule.frontend_key) if rule.frontend_key else None
            if fe is None or not fe.is_internal:
                continue
            lb = t.load_balancers.get(fe.lb_key)
            pic.frontends.setdefault(fe.key, {"ip": str(fe.private_ip) if fe.private_ip else None,
                                              "name": fe.name, "lb": lb.name if lb else ""})
            ports = "all ports" if rule.is_ha_ports else (
                f"{(rule.protocol or '?').upper()} {rule.frontend_port}"
                if rule.frontend_port == rule.backend_port else
                f"{(rule.protocol or '?').upper()} {rule.frontend_port}\u2192{rule.backend_port}")
            if rule.floating_ip:
                ports += " (floating IP)"
            pic.rules.setdefault((pk, fe.key), set()).add(ports)
    for key, vm in pic.vms.items():
        found = t.vms.get(key)
        if found is not None:
            vm.power = found.power_state
            for nk in found.nic_keys:  # every NIC, so a managed secondary NIC shows too
                nic = t.nics.get(nk)
                if nic is not None:
                    entry = vm.nics.setdefault(nk, {"name": nic.name, "ips": set()})
                    entry["ips"].update(str(c.private_ip) for c in nic.ip_configs
                                        if c.private_ip is not None)


# --------------------------------------------------------------------------- SVG

def _svg(pic: _Picture) -> str:
    if not pic.vms and not pic.frontends:
        return '<p class="empty">No VM is a backend of an internal load balancer.</p>'
    loops_at: dict[str, list[dict]] = {}
    for loop in pic.loops:
        loops_at.setdefault(loop["fe"], []).append(loop)

    # Column contents and heights first, then each column is centred on the tallest.
    vms = sorted(pic.vms.values(), key=lambda v: (v.name.lower(), normalize(v.id)))
    vm_h = [VM_HEAD + NIC_ROW * max(1, len(vm.nics)) + 6 for vm in vms]
    pools = sorted(pic.pools.items(),
                   key=lambda kv: (kv[1]["lb"].lower(), kv[1]["name"].lower(), kv[0]))
    lb_groups: dict[str, list[str]] = {}
    for key, fe in sorted(pic.frontends.items(),
                          key=lambda kv: (kv[1]["lb"].lower(), _ip_key(kv[1]["ip"]), kv[0])):
        lb_groups.setdefault(fe["lb"], []).append(key)
    fe_h = {k: FE_H + LOOP_ROW * len(loops_at.get(k, ())) for k in pic.frontends}
    heights = (sum(vm_h) + GAP * len(vms),
               (POOL_H + GAP) * len(pools),
               sum(LB_HEAD + sum(fe_h[k] + 8 for k in keys) + 4 + GAP
                   for keys in lb_groups.values()))
    tallest = max(heights)
    height = int(TOP + tallest + 24)

    def start(column: int) -> float:
        return TOP + (tallest - heights[column]) / 2

    nic_y: dict[str, float] = {}
    vm_boxes = []
    y = start(0)
    for vm, h in zip(vms, vm_h, strict=True):
        vm_boxes.append((vm, y, h))
        for i, nk in enumerate(sorted(vm.nics, key=lambda k: vm.nics[k]["name"].lower())):
            nic_y[nk] = y + VM_HEAD + NIC_ROW * i + NIC_ROW / 2
        y += h + GAP
    pool_y: dict[str, float] = {}
    y = start(1)
    for key, _ in pools:
        pool_y[key] = y + POOL_H / 2
        y += POOL_H + GAP
    fe_top: dict[str, float] = {}
    lb_boxes = []
    y = start(2)
    for lb, keys in lb_groups.items():
        top = y
        y += LB_HEAD
        for key in keys:
            fe_top[key] = y
            y += fe_h[key] + 8
        lb_boxes.append((lb, top, y - top + 4))
        y += 4 + GAP
    fe_mid = {k: fe_top[k] + FE_H / 2 for k in fe_top}

    out: list[str] = [
        f'<svg id="topology" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="Topology with hairpin loops">',
        '<defs><marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#d0021b"/></marker></defs>',
        f'<text class="col" x="{VM_X}" y="22">Virtual machines and NICs</text>'
        f'<text class="col" x="{POOL_X}" y="22">Backend pools</text>'
        f'<text class="col" x="{FE_X}" y="22">Internal load balancer frontends</text>']

    # Lines first, then loops, then boxes on top (opaque), so crossings stay readable.
    for nic_key, pool_key in sorted(pic.members):
        if nic_key in nic_y and pool_key in pool_y:
            out.append(_line(VM_X + VM_W, nic_y[nic_key], POOL_X, pool_y[pool_key], "member"))
    for (pool_key, fe_key), ports in sorted(pic.rules.items()):
        if pool_key in pool_y and fe_key in fe_mid:
            y1, y2 = pool_y[pool_key], fe_mid[fe_key]
            out.append(_line(POOL_X + POOL_W, y1, FE_X, y2, "rule"))
            if ports:
                out.append(f'<text class="port" x="{POOL_X + POOL_W + 8}" y="{y1 - 6:.0f}">'
                           f'{_e(_short(", ".join(sorted(ports)), 30))}</text>')

    per_nic: dict[str, int] = {}
    labels: list[str] = []
    for fe_key, fe_loops in loops_at.items():
        for k, loop in enumerate(fe_loops):
            if loop["nic"] not in nic_y or fe_key not in fe_top:
                continue
            j = per_nic.get(loop["nic"], 0)
            per_nic[loop["nic"]] = j + 1
            x1, y1 = VM_X + VM_W, nic_y[loop["nic"]]
            x2, y2 = FE_X, fe_top[fe_key] + FE_H + LOOP_ROW * k + LOOP_ROW / 2 - 2
            bend = 34 + 12 * j
            attrs = (f'data-finding="{_e(loop["id"])}" data-vm="{_e(loop["vm_name"])}"')
            out.append(
                f'<g class="loop {_e(loop["severity"])}" {attrs}>'
                f'<title>{_e(loop["reason"])}</title>'
                f'<path class="out" d="M{x1},{y1 - 3:.1f} C{x1 + 150},{y1 - 3 - bend:.1f} '
                f'{x2 - 150},{y2 - 3 - bend:.1f} {x2},{y2 - 3:.1f}" marker-end="url(#arrow-red)"/>'
                f'<path class="back" d="M{x2},{y2 + 3:.1f} C{x2 - 150},{y2 + 3 + bend:.1f} '
                f'{x1 + 150},{y1 + 3 + bend:.1f} {x1},{y1 + 3:.1f}" marker-end="url(#arrow-red)"/>'
                '</g>')
            labels.append(
                f'<g class="loop label {_e(loop["severity"])}" {attrs}>'
                f'<title>{_e(loop["reason"])}</title>'
                f'<text x="{FE_X + 10}" y="{y2 + 4:.0f}">\u21ba {_e(_short(loop["vm_name"], 18))} '
                f'\u00b7 {_pct(loop["likelihood"])} \u00b7 {_e(loop["severity"])}</text></g>')

    for vm, top, h in vm_boxes:
        cls = "vm" if vm.power == "running" else "vm off"
        out.append(f'<g class="{cls}" data-vm="{_e(vm.name)}"><title>{_e(vm.id)}</title>'
                   f'<rect x="{VM_X}" y="{top:.1f}" width="{VM_W}" height="{h}" rx="6"/>'
                   f'<text class="name" x="{VM_X + 10}" y="{top + 18:.1f}">'
                   f'{_e(_short(vm.name, 24))}</text>'
                   f'<text class="meta" x="{VM_X + VM_W - 8}" y="{top + 18:.1f}" text-anchor="end">'
                   f'{_e(vm.power or "power unknown")}</text>')
        for nk, nic in sorted(vm.nics.items(), key=lambda kv: kv[1]["name"].lower()):
            ny = nic_y[nk]
            ips = ", ".join(sorted(nic["ips"], key=_ip_key))
            out.append(f'<rect class="nic" x="{VM_X + 8}" y="{ny - 9:.1f}" width="{VM_W - 16}" '
                       f'height="18" rx="3"/>'
                       f'<text class="nictext" x="{VM_X + 14}" y="{ny + 4:.1f}">'
                       f'{_e(_short(nic["name"], 22))} {_e(_short(ips, 18))}</text>')
        out.append("</g>")
    for key, pool in pools:
        py = pool_y[key]
        out.append(f'<g class="pool"><title>{_e(key)}</title>'
                   f'<rect x="{POOL_X}" y="{py - POOL_H / 2:.1f}" width="{POOL_W}" '
                   f'height="{POOL_H}" rx="6"/><text class="name" x="{POOL_X + 10}" '
                   f'y="{py - 3:.1f}">{_e(_short(pool["name"], 26))}</text>'
                   f'<text class="meta" x="{POOL_X + 10}" y="{py + 13:.1f}">'
                   f'{_e(_short(pool["lb"], 28))}</text></g>')
    for lb, top, h in lb_boxes:
        out.append(f'<g class="lb"><rect x="{FE_X - 6}" y="{top:.1f}" width="{FE_W + 12}" '
                   f'height="{h:.1f}" rx="8"/><text class="meta" x="{FE_X + 2}" y="{top + 16:.1f}">'
                   f'load balancer {_e(_short(lb, 30))}</text></g>')
    for key, fe in pic.frontends.items():
        top = fe_top[key]
        out.append(f'<g class="fe"><title>{_e(key)}</title>'
                   f'<rect x="{FE_X}" y="{top:.1f}" width="{FE_W}" height="{fe_h[key]}" rx="6"/>'
                   f'<text class="name" x="{FE_X + 10}" y="{top + 17:.1f}">'
                   f'{_e(fe["ip"] or "IP unknown")}</text><text class="meta" x="{FE_X + FE_W - 8}" '
                   f'y="{top + 17:.1f}" text-anchor="end">{_e(_short(fe["name"], 18))}</text></g>')
    out += labels
    out.append("</svg>")
    return "".join(out)


def _line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    mx = (x1 + x2) / 2
    return (f'<path class="{cls}" d="M{x1},{y1:.1f} C{mx:.1f},{y1:.1f} {mx:.1f},{y2:.1f} '
            f'{x2},{y2:.1f}"/>')


def _ip_key(ip: Any) -> tuple:
    import ipaddress

    try:
        a = ipaddress.ip_address(str(ip))
        return (a.version, int(a), "")
    except ValueError:
        return (9, 0, str(ip))


# --------------------------------------------------------------------------- page

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
        ports = ", ".join(dict.fromkeys(_port_text(p) for p in f.get("ports", [])))
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
            f'</span></span> {_pct(likelihood)}</td>'
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
    pic = _Picture()
    _from_findings(pic, findings)
    if topology is not None:
        _from_topology(pic, topology)
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
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>ILB hairpin audit</h1><p>{_e(report.get('generated_at'))} \u00b7 "
        f"{_e(tool.get('name'))} {_e(tool.get('version'))} \u00b7 schema "
        f"{_e(report.get('schema_version'))}</p><p class=\"scope\">{_e(scope_text)}</p></header>"
        f"<main><section>{_summary(report)}</section>"
        "<section><h2>Topology and hairpin loops</h2><p class=\"legend\">"
        "<span class=\"k high\"></span> high: called and mapped back now "
        "<span class=\"k medium\"></span> medium: 0% now, fails after a failover "
        "<span class=\"k info\"></span> info: no known caller. Labels: share of the VM's own "
        f"connections to the VIP that come back to it.</p>{omitted}"
        f"<div class=\"picture\">{_svg(pic)}</div></section>"
        f"<section><h2>Findings</h2>{_findings_table(findings)}</section></main>"
        "<footer>Self-contained report: nothing is loaded from the network.</footer>"
        f"<script>{_JS}</script></body></html>\n"
    )


_CSS = """
:root{--red:#d0021b;--amber:#c77700;--info:#5b6b7f;--ink:#1d2733;--mute:#6b7785;--line:#e3e8ee}
*{box-sizing:border-box}
body{
  margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
  background:#f6f8fa;
}
header{background:#1d2733;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d3dd}
main{padding:8px 28px 28px;max-width:1400px}
section{
  background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:16px 0;
}
h2{font-size:17px;margin:0 0 10px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:110px}
.card b{display:block;font-size:24px}
.card span{color:var(--mute)}
.card.high b{color:var(--red)}
.card.medium b{color:var(--amber)}
.card.info b{color:var(--info)}
.card.ok b{color:#1a7f37}
.na{margin:12px 0 0;padding-left:18px;color:var(--mute)}
.picture{overflow-x:auto}
.legend{color:var(--mute);margin:0 0 8px}
.k{
  display:inline-block;width:28px;height:0;border-top:3px solid var(--red);vertical-align:middle;
  margin:0 4px 0 10px;
}
.k.medium{border-top-style:dashed}
.k.info{border-top-style:dotted}
svg text{font:12px system-ui,sans-serif;fill:var(--ink)}
svg .col{font-weight:600;fill:var(--mute)}
svg .name{font-weight:600}
svg .meta,svg .port{fill:var(--mute);font-size:11px}
.vm rect{fill:#eef4ff;stroke:#7aa2e3}
.vm.off rect{fill:#f3f3f3;stroke:#aaa}
.vm .nic{fill:#fff;stroke:#b9c8e0}
.nictext{font-size:11px}
.pool rect{fill:#f3f0ff;stroke:#a08be0}
.lb rect{fill:#fafbfc;stroke:#c9d1da;stroke-dasharray:4 3}
.fe rect{fill:#fff7e8;stroke:#e0a94a}
path.member,path.rule{fill:none;stroke:#9aa7b4;stroke-width:1.3}
.loop path{fill:none;stroke:var(--red);stroke-width:2.6}
.loop.medium path{stroke-dasharray:7 5}
.loop.info path{stroke-dasharray:2 4;stroke-width:2}
.loop.label text{fill:var(--red);font-weight:600;font-size:12px}
.loop{cursor:pointer}
.loop.dim{opacity:.12}
.loop.hl path{stroke-width:4.5}
.filters{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin-bottom:10px}
.chip{border:1px solid var(--line);border-radius:14px;padding:3px 10px}
.filters select,.filters input[type=search]{
  padding:4px 6px;border:1px solid #c9d1da;border-radius:6px;
}
#f-count{color:var(--mute)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:8px;border-top:1px solid var(--line)}
th{color:var(--mute);font-weight:600}
tr.hl{background:#fff3f3}
.badge{border-radius:10px;padding:1px 8px;color:#fff;font-size:12px}
.badge.high{background:var(--red)}
.badge.medium{background:var(--amber)}
.badge.info{background:var(--info)}
.meter{
  display:inline-block;width:50px;height:7px;background:#eee;border-radius:4px;
  vertical-align:middle;
}
.meter span{display:block;height:7px;background:var(--red);border-radius:4px}
td.reason{max-width:520px}
td:nth-child(2),td:nth-child(4),td:nth-child(5){white-space:nowrap}
details{margin-top:4px;color:var(--mute)}
.empty,.note{color:var(--mute)}
footer{color:var(--mute);padding:0 28px 20px}
"""

_JS = """
(function () {
  'use strict';
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr.finding'));
  var loops = Array.prototype.slice.call(document.querySelectorAll('g.loop'));
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input[name=sev]'));
  var vm = document.getElementById('f-vm');
  var text = document.getElementById('f-text');
  var count = document.getElementById('f-count');
  function apply() {
    var on = {}, shown = {}, n = 0;
    boxes.forEach(function (b) { on[b.value] = b.checked; });
    var v = vm ? vm.value : '', t = text ? text.value.trim().toLowerCase() : '';
    rows.forEach(function (r) {
      var ok = !!on[r.dataset.severity] && (!v || r.dataset.vm === v) &&
               (!t || r.dataset.text.indexOf(t) >= 0);
      r.hidden = !ok;
      if (ok) { n += 1; shown[r.dataset.finding] = true; }
    });
    loops.forEach(function (g) { g.classList.toggle('dim', !shown[g.dataset.finding]); });
    if (count) { count.textContent = n + ' of ' + rows.length; }
  }
  function highlight(id) {
    rows.forEach(function (r) { r.classList.toggle('hl', r.dataset.finding === id); });
    loops.forEach(function (g) { g.classList.toggle('hl', g.dataset.finding === id); });
  }
  boxes.forEach(function (b) { b.addEventListener('change', apply); });
  if (vm) { vm.addEventListener('change', apply); }
  if (text) { text.addEventListener('input', apply); }
  rows.forEach(function (r) {
    r.addEventListener('mouseenter', function () { highlight(r.dataset.finding); });
  });
  loops.forEach(function (g) {
    g.addEventListener('click', function () {
      highlight(g.dataset.finding);
      rows.forEach(function (r) {
        if (r.dataset.finding === g.dataset.finding) { r.scrollIntoView({block: 'center'}); }
      });
    });
  });
  apply();
  document.documentElement.dataset.ready = 'true';
})();
"""
