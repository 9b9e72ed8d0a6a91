"""Pure: what the report's picture shows, gathered from the findings (and the topology, when at
hand): VMs with their NICs, backend pools, internal frontends grouped by load balancer, pool
membership, load-balancing rules, and one hairpin loop per finding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.core.arm_ids import name_of, normalize, parent_id

parent_of = lru_cache(maxsize=1 << 16)(parent_id)  # a fleet names each NIC and pool many times

MAX_PICTURE_VMS = 60  # beyond this the picture is unreadable; the table still lists everything


@dataclass
class VmBox:
    id: str
    name: str
    power: str | None = None
    nics: dict[str, dict] = field(default_factory=dict)  # key -> {"name", "ips": set}


@dataclass
class Picture:
    vms: dict[str, VmBox] = field(default_factory=dict)
    pools: dict[str, dict] = field(default_factory=dict)  # key -> {"name", "lb"}
    frontends: dict[str, dict] = field(default_factory=dict)  # key -> {"ip", "name", "lb"}
    members: set[tuple[str, str]] = field(default_factory=set)  # (nic key, pool key)
    rules: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (pool, fe) -> ports
    loops: list[dict] = field(default_factory=list)
    omitted: set[str] = field(default_factory=set)  # VM keys left out of the picture

    @property
    def omitted_vms(self) -> int:
        return len(self.omitted)

    def vm(self, vm_id: str, name: str) -> VmBox | None:
        key = normalize(vm_id)
        if key not in self.vms:
            if len(self.vms) >= MAX_PICTURE_VMS:
                self.omitted.add(key)
                return None
            self.vms[key] = VmBox(vm_id, name)
        return self.vms[key]


def port_text(p: Mapping[str, Any]) -> str:
    if p.get("ha_ports"):
        return "all ports"
    proto = str(p.get("protocol") or "?").upper()
    fp, bp = p.get("frontend_port"), p.get("backend_port")
    return f"{proto} {fp}" if fp == bp else f"{proto} {fp}\u2192{bp}"


def internal_pools_by_lb(topology) -> dict[str, list[str]]:
    """Load balancer key -> its pools that a rule from an internal frontend sends to."""
    t = topology
    keys = sorted({pk for r in t.rules.values() if r.frontend_key in t.frontends
                   and t.frontends[r.frontend_key].is_internal for pk in r.pool_keys})
    out: dict[str, list[str]] = {}
    for pk in keys:
        pool = t.pools.get(pk)
        out.setdefault(pool.lb_key if pool is not None else parent_id(pk) or pk, []).append(pk)
    return out


def pictures_by_lb(findings: list[Mapping[str, Any]], topology=None) -> dict[str, Picture]:
    """One picture per load balancer (normalized ID), in the findings' order: its findings'
    loops, and with the topology its pools' peers and power states. No findings: one per
    internal load balancer, showing its pools as they are."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for f in findings:
        groups.setdefault(normalize(f.get("lb_id") or f.get("lb_name") or "?"), []).append(f)
    pictures: dict[str, Picture] = {}
    for key, group in groups.items():
        pictures[key] = pic = Picture()
        add_findings(pic, group)
        if topology is not None:
            add_topology(pic, topology)
    if not groups and topology is not None:
        for key, pool_keys in internal_pools_by_lb(topology).items():
            pictures[key] = pic = Picture()
            for pk in pool_keys:
                pool = topology.pools.get(pk)
                lb = topology.load_balancers.get(key)
                pic.pools[pk] = {"name": pool.name if pool else name_of(pk),
                                 "lb": lb.name if lb else ""}
            add_topology(pic, topology)
    return pictures


def add_findings(pic: Picture, findings: list[Mapping[str, Any]]) -> None:
    for f in findings:
        vm = pic.vm(f["vm_id"], f.get("vm_name") or name_of(f["vm_id"]))
        if vm is None:
            continue
        fe_key = normalize(f["frontend_id"])
        pic.frontends.setdefault(fe_key, {"ip": f.get("frontend_ip"),
                                          "name": f.get("frontend_name") or name_of(fe_key),
                                          "lb": f.get("lb_name") or ""})
        ports = {normalize(p.get("rule_id", "")): port_text(p) for p in f.get("ports", [])}
        nic_key = None
        for m in (f.get("evidence") or {}).get("membership", []):
            nic_id = parent_of(m.get("ip_config_id") or "") or m.get("ip_config_id") or "?"
            nic_key = nic_key or normalize(nic_id)
            nic = vm.nics.setdefault(normalize(nic_id), {"name": name_of(nic_id), "ips": set()})
            if m.get("private_ip"):
                nic["ips"].add(m["private_ip"])
            pool_key = normalize(m.get("pool_id") or "?")
            lb_name = f.get("lb_name") or name_of(parent_of(pool_key) or "")
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


def add_topology(pic: Picture, topology) -> None:
    """Peers (other members of the pictured pools), NIC names, power states, other rules."""
    t = topology
    pool_keys = list(pic.pools)
    if not pool_keys:  # nothing found: show the internal load balancers' pools as they are
        pool_keys = [pk for keys in internal_pools_by_lb(t).values() for pk in keys]
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
