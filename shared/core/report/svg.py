"""Pure: the report's picture as inline SVG.

VMs with their NICs (left), backend pools (middle), internal frontends grouped by load balancer
(right); grey lines for pool membership and load-balancing rules; each hairpin loop (finding) in
red from the NIC to the VIP and back, labelled with its likelihood. Solid: high, dashed: medium
(0% now), dotted: info (no known caller). Lines are drawn first, then loops, then the (opaque)
boxes on top, so crossings stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.core.arm_ids import normalize
from shared.core.report.markup import escape as _e
from shared.core.report.markup import ip_key, pct, short
from shared.core.report.picture import Picture, VmBox

# Layout (px)
VM_X, VM_W = 16, 250
POOL_X, POOL_W = 400, 200
FE_X, FE_W = 720, 240
WIDTH = FE_X + FE_W + 16
TOP = 40
VM_HEAD, NIC_ROW, GAP = 26, 22, 22
POOL_H, FE_H, LB_HEAD, LOOP_ROW = 40, 28, 24, 20


@dataclass
class Layout:
    """Where every box, NIC row and frontend sits; each column is centred on the tallest."""

    height: int = 0
    loops_at: dict[str, list[dict]] = field(default_factory=dict)  # frontend key -> loops
    vm_boxes: list[tuple[VmBox, float, int]] = field(default_factory=list)  # (vm, top, height)
    nic_y: dict[str, float] = field(default_factory=dict)
    pools: list[tuple[str, dict]] = field(default_factory=list)
    pool_y: dict[str, float] = field(default_factory=dict)
    lb_boxes: list[tuple[str, float, float]] = field(default_factory=list)  # (lb, top, height)
    fe_h: dict[str, int] = field(default_factory=dict)
    fe_top: dict[str, float] = field(default_factory=dict)

    def fe_mid(self, key: str) -> float:
        return self.fe_top[key] + FE_H / 2


def layout(pic: Picture) -> Layout:
    out = Layout()
    for loop in pic.loops:
        out.loops_at.setdefault(loop["fe"], []).append(loop)
    vms = sorted(pic.vms.values(), key=lambda v: (v.name.lower(), normalize(v.id)))
    vm_h = [VM_HEAD + NIC_ROW * max(1, len(vm.nics)) + 6 for vm in vms]
    out.pools = sorted(pic.pools.items(),
                       key=lambda kv: (kv[1]["lb"].lower(), kv[1]["name"].lower(), kv[0]))
    lb_groups: dict[str, list[str]] = {}
    for key, fe in sorted(pic.frontends.items(),
                          key=lambda kv: (kv[1]["lb"].lower(), ip_key(kv[1]["ip"]), kv[0])):
        lb_groups.setdefault(fe["lb"], []).append(key)
    out.fe_h = {k: FE_H + LOOP_ROW * len(out.loops_at.get(k, ())) for k in pic.frontends}
    heights = (sum(vm_h) + GAP * len(vms),
               (POOL_H + GAP) * len(out.pools),
               sum(LB_HEAD + sum(out.fe_h[k] + 8 for k in keys) + 4 + GAP
                   for keys in lb_groups.values()))
    tallest = max(heights)
    out.height = int(TOP + tallest + 24)

    def start(column: int) -> float:
        return TOP + (tallest - heights[column]) / 2

    y = start(0)
    for vm, h in zip(vms, vm_h, strict=True):
        out.vm_boxes.append((vm, y, h))
        for i, nk in enumerate(sorted(vm.nics, key=lambda k: vm.nics[k]["name"].lower())):
            out.nic_y[nk] = y + VM_HEAD + NIC_ROW * i + NIC_ROW / 2
        y += h + GAP
    y = start(1)
    for key, _ in out.pools:
        out.pool_y[key] = y + POOL_H / 2
        y += POOL_H + GAP
    y = start(2)
    for lb, keys in lb_groups.items():
        top = y
        y += LB_HEAD
        for key in keys:
            out.fe_top[key] = y
            y += out.fe_h[key] + 8
        out.lb_boxes.append((lb, top, y - top + 4))
        y += 4 + GAP
    return out


def render_svg(pic: Picture) -> str:
    if not pic.vms and not pic.frontends:
        return '<p class="empty">No VM is a backend of an internal load balancer.</p>'
    at = layout(pic)
    loops, labels = _loops(at)
    return "".join([_head(at.height), *_lines(pic, at), *loops, *_vm_boxes(at),
                    *_pool_boxes(at), *_lb_boxes(at), *_frontend_boxes(pic, at), *labels,
                    "</svg>"])


def _head(height: int) -> str:
    return (
        f'<svg id="topology" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="Topology with hairpin loops">'
        '<defs><marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#d0021b"/></marker></defs>'
        f'<text class="col" x="{VM_X}" y="22">Virtual machines and NICs</text>'
        f'<text class="col" x="{POOL_X}" y="22">Backend pools</text>'
        f'<text class="col" x="{FE_X}" y="22">Internal load balancer frontends</text>')


def _lines(pic: Picture, at: Layout) -> list[str]:
    out = []
    for nic_key, pool_key in sorted(pic.members):
        if nic_key in at.nic_y and pool_key in at.pool_y:
            out.append(_curve(VM_X + VM_W, at.nic_y[nic_key], POOL_X, at.pool_y[pool_key],
                              "member"))
    for (pool_key, fe_key), ports in sorted(pic.rules.items()):
        if pool_key in at.pool_y and fe_key in at.fe_top:
            y1, y2 = at.pool_y[pool_key], at.fe_mid(fe_key)
            out.append(_curve(POOL_X + POOL_W, y1, FE_X, y2, "rule"))
            if ports:
                out.append(f'<text class="port" x="{POOL_X + POOL_W + 8}" y="{y1 - 6:.0f}">'
                           f'{_e(short(", ".join(sorted(ports)), 30))}</text>')
    return out


def _loops(at: Layout) -> tuple[list[str], list[str]]:
    """The loop paths, and their labels (drawn last, above the frontend boxes)."""
    per_nic: dict[str, int] = {}
    paths: list[str] = []
    labels: list[str] = []
    for fe_key, fe_loops in at.loops_at.items():
        for k, loop in enumerate(fe_loops):
            if loop["nic"] not in at.nic_y or fe_key not in at.fe_top:
                continue
            j = per_nic.get(loop["nic"], 0)
            per_nic[loop["nic"]] = j + 1
            x1, y1 = VM_X + VM_W, at.nic_y[loop["nic"]]
            x2, y2 = FE_X, at.fe_top[fe_key] + FE_H + LOOP_ROW * k + LOOP_ROW / 2 - 2
            bend = 34 + 12 * j
            attrs = f'data-finding="{_e(loop["id"])}" data-vm="{_e(loop["vm_name"])}"'
            paths.append(
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
                f'<text x="{FE_X + 10}" y="{y2 + 4:.0f}">\u21ba {_e(short(loop["vm_name"], 18))} '
                f'\u00b7 {pct(loop["likelihood"])} \u00b7 {_e(loop["severity"])}</text></g>')
    return paths, labels


def _vm_boxes(at: Layout) -> list[str]:
    out = []
    for vm, top, h in at.vm_boxes:
        cls = "vm" if vm.power == "running" else "vm off"
        out.append(f'<g class="{cls}" data-vm="{_e(vm.name)}"><title>{_e(vm.id)}</title>'
                   f'<rect x="{VM_X}" y="{top:.1f}" width="{VM_W}" height="{h}" rx="6"/>'
                   f'<text class="name" x="{VM_X + 10}" y="{top + 18:.1f}">'
                   f'{_e(short(vm.name, 24))}</text>'
                   f'<text class="meta" x="{VM_X + VM_W - 8}" y="{top + 18:.1f}" text-anchor="end">'
                   f'{_e(vm.power or "power unknown")}</text>')
        for nk, nic in sorted(vm.nics.items(), key=lambda kv: kv[1]["name"].lower()):
            ny = at.nic_y[nk]
            ips = ", ".join(sorted(nic["ips"], key=ip_key))
            out.append(f'<rect class="nic" x="{VM_X + 8}" y="{ny - 9:.1f}" width="{VM_W - 16}" '
                       f'height="18" rx="3"/>'
                       f'<text class="nictext" x="{VM_X + 14}" y="{ny + 4:.1f}">'
                       f'{_e(short(nic["name"], 22))} {_e(short(ips, 18))}</text>')
        out.append("</g>")
    return out


def _pool_boxes(at: Layout) -> list[str]:
    out = []
    for key, pool in at.pools:
        py = at.pool_y[key]
        out.append(f'<g class="pool"><title>{_e(key)}</title>'
                   f'<rect x="{POOL_X}" y="{py - POOL_H / 2:.1f}" width="{POOL_W}" '
                   f'height="{POOL_H}" rx="6"/><text class="name" x="{POOL_X + 10}" '
                   f'y="{py - 3:.1f}">{_e(short(pool["name"], 26))}</text>'
                   f'<text class="meta" x="{POOL_X + 10}" y="{py + 13:.1f}">'
                   f'{_e(short(pool["lb"], 28))}</text></g>')
    return out


def _lb_boxes(at: Layout) -> list[str]:
    return [f'<g class="lb"><rect x="{FE_X - 6}" y="{top:.1f}" width="{FE_W + 12}" '
            f'height="{h:.1f}" rx="8"/><text class="meta" x="{FE_X + 2}" y="{top + 16:.1f}">'
            f'load balancer {_e(short(lb, 30))}</text></g>' for lb, top, h in at.lb_boxes]


def _frontend_boxes(pic: Picture, at: Layout) -> list[str]:
    out = []
    for key, fe in pic.frontends.items():
        top = at.fe_top[key]
        out.append(f'<g class="fe"><title>{_e(key)}</title>'
                   f'<rect x="{FE_X}" y="{top:.1f}" width="{FE_W}" height="{at.fe_h[key]}" '
                   f'rx="6"/><text class="name" x="{FE_X + 10}" y="{top + 17:.1f}">'
                   f'{_e(fe["ip"] or "IP unknown")}</text><text class="meta" x="{FE_X + FE_W - 8}" '
                   f'y="{top + 17:.1f}" text-anchor="end">{_e(short(fe["name"], 18))}</text></g>')
    return out


def _curve(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    mx = (x1 + x2) / 2
    return (f'<path class="{cls}" d="M{x1},{y1:.1f} C{mx:.1f},{y1:.1f} {mx:.1f},{y2:.1f} '
            f'{x2},{y2:.1f}"/>')
