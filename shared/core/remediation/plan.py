"""Pure: findings + topology + settings -> an ordered plan of idempotent remediation steps.

The fix (docs/azure-facts.md): a managed secondary NIC in the same VNet, attached while the VM
is deallocated, plus guest host routes to each at-risk VIP out of that NIC, verified from inside
the guest. Each step names the precondition the executor re-checks against live state before
acting, so re-running a half-done plan continues where it stopped.

Failover moves the risk: deallocating the VM that holds the mirror primaries makes its peer the
healthy member, and the peer then hairpins. So a plan covers every VM with a `high` or `medium`
finding in the affected pools and orders them: first the VMs that serve nothing now (likelihood
0: their deallocation interrupts nothing), then the serving ones, whose frontends fail over to
an already fixed peer. Each deallocation step says which frontends fail over.

The plan hash (sha256 of the canonical JSON of the steps and of the estate facts they depend on:
etags and power states) binds an approval to exactly this plan on exactly this estate.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from shared.core import arm_ids
from shared.core.arm_ids import normalize
from shared.core.remediation.model import (
    PLAN_VERSION,
    NicSpec,
    Plan,
    RouteSpec,
    Step,
    VmPlan,
    canonical_json,
    nic_id_for,
)
from shared.core.risk import Finding, secondary_nic_name
from shared.core.topology import Nic, Topology, Vm
from shared.core.vocab import ACTIONABLE, PowerState, StepKind
from shared.settings import Settings

__all__ = ["build_plan", "vms_in_scope", "serving_frontends", "etags_from_documents",
           "HA_PORTS_NOTE", "HA_PORTS_LINUX_SIDE_EFFECT"]

HA_PORTS_NOTE = "HA-ports rule: it balances every port, so the fix cannot be narrowed by port"
HA_PORTS_LINUX_SIDE_EFFECT = (
    "the broad Linux policy rule also routes local traffic between the VM's two addresses out "
    "through the Azure gateway")


# --------------------------------------------------------------------------- scope

def _finding_pools(f: Finding) -> set[str]:
    return {normalize(m.pool_id) for m in f.evidence.membership if m.pool_id}


def vms_in_scope(findings: Iterable[Finding], seed_vm_ids: Iterable[str]) -> list[str]:
    """VM keys with a high/medium finding that share a pool (transitively) with the seed VMs."""
    pools_of: dict[str, set[str]] = {}
    for f in findings:
        if f.severity in ACTIONABLE:
            pools_of.setdefault(normalize(f.vm_id), set()).update(_finding_pools(f))
    scope = {k for k in (normalize(v) for v in seed_vm_ids) if k in pools_of}
    pools: set[str] = set()
    changed = True
    while changed:
        changed = False
        for k in scope:
            pools |= pools_of[k]
        for k, ps in pools_of.items():
            if k not in scope and ps & pools:
                scope.add(k)
                changed = True
    return sorted(scope)


# --------------------------------------------------------------------------- facts of a VM

def serving_frontends(t: Topology, vm: Vm) -> list[str]:
    """Frontends whose rules list this VM as a healthy (Up) backend now: they fail over."""
    own = t.ip_config_keys(vm)
    out: dict[str, None] = {}
    for pk in t.pool_keys_of_vm(vm):
        for rule in t.rules_of_pool(pk):
            fe = t.frontends.get(rule.frontend_key or "")
            if fe is None:
                continue
            label = f"{fe.name} {fe.private_ip or ''} ({rule.name})".replace("  ", " ")
            health = t.health.get(rule.key)
            if health is None:
                out[f"{label}: health unknown, may fail over"] = None
                continue
            states = [health.state_of(c, t.ip_configs[c].private_ip if c in t.ip_configs else None)
                      for c in own]
            if any((s or "").lower() == "up" for s in states):
                out[label] = None
    return list(out)


def _routes(findings: list[Finding]) -> tuple[RouteSpec, ...]:
    routes: dict[tuple, RouteSpec] = {}
    for f in findings:
        if f.frontend_ip is None:
            continue
        for p in f.ports:
            if p.frontend_port is None or p.backend_port is None or p.protocol is None:
                continue
            r = RouteSpec(f.frontend_ip, p.protocol, p.frontend_port, p.backend_port,
                          f.frontend_id, p.rule_id)
            routes.setdefault((r.vip, r.protocol.lower(), r.frontend_port, r.backend_port), r)

    def order(r: RouteSpec):
        try:
            ip = int(ipaddress.ip_address(r.vip))
        except ValueError:
            ip = 0
        return (ip, r.frontend_port, r.backend_port, r.protocol.lower())

    return tuple(sorted(routes.values(), key=order))


def _nic_spec(t: Topology, vm: Vm, hints: Mapping[str, Any], settings: Settings,
              existing: Nic | None) -> NicSpec:
    name = hints.get("name") or secondary_nic_name(vm.name)
    subnet_id = hints.get("subnet_id")
    subnet = t.subnet(subnet_id) if subnet_id else None
    prefix_len = (subnet.prefix.prefixlen
                  if subnet is not None and subnet.prefix is not None else None)
    return NicSpec(
        id=existing.id if existing is not None else nic_id_for(vm.id, name),
        name=name, location=vm.location, subnet_id=subnet_id, vnet_id=hints.get("vnet_id"),
        private_ip=hints.get("candidate_ip"), gateway=hints.get("gateway"),
        prefix_len=prefix_len, nsg_id=hints.get("nsg_id"),
        accelerated_networking=bool(hints.get("accelerated_networking")),
        tags={settings.managed_tag: "true"}, exists=existing is not None)


def _blockers_and_notes(findings: list[Finding]) -> tuple[list[str], list[str]]:
    blockers: list[str] = []
    notes: list[str] = list(dict.fromkeys(n for f in findings for n in f.remediation.notes))
    for f in findings:
        for b in f.remediation.blockers:
            text = f"{b.code}: {b.detail}"
            if text not in blockers:
                blockers.append(text)
        for u in f.remediation.unknowns:
            text = f"unknown ({u.code}): {u.detail}"
            if text not in blockers:
                blockers.append(text)
    return blockers, notes


def _ha_ports(vm: Vm, routes: tuple[RouteSpec, ...], settings: Settings, blockers: list[str],
              notes: list[str]) -> None:
    """An HA-ports rule cannot be narrowed by port: what that means on each OS."""
    if not any(r.ha_ports for r in routes):
        return
    if vm.os_type == "Linux":
        if settings.allow_broad_ha_ports_rule:
            notes.append(f"{HA_PORTS_NOTE}; the broad policy rule is allowed by settings. "
                         f"Side effect: {HA_PORTS_LINUX_SIDE_EFFECT}")
        elif not any(b.startswith("ha_ports_needs_broad_rule") for b in blockers):
            blockers.append(f"{HA_PORTS_NOTE}; the broad Linux policy rule needs "
                            "HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE=true (side effect: "
                            f"{HA_PORTS_LINUX_SIDE_EFFECT})")
    else:
        notes.append(f"{HA_PORTS_NOTE}; on Windows the host route covers every port and "
                     "needs no policy rule")
    if not any(r.protocol.lower() == "tcp" for r in routes):
        notes.append("HA-ports only: verification has no TCP frontend port to connect to")


# --------------------------------------------------------------------------- steps

class _Steps:
    """The ordered steps of one VM's plan, as they are written."""

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self.items: list[Step] = []

    def add(self, kind: StepKind, description: str, precondition: str, changes=(),
            deallocates: bool = False, fails_over=()) -> None:
        self.items.append(Step(kind, self.vm.id, self.vm.name, description, precondition,
                               tuple(changes), deallocates, tuple(fails_over)))


def _short(rid: str | None, default: str = "?") -> str:
    return arm_ids.name_of(rid) if rid else default


def _nic_steps(steps: _Steps, nic: NicSpec, settings: Settings, needs_dealloc: bool,
               peers: tuple[str, ...], fails_over: tuple[str, ...]) -> None:
    vm = steps.vm
    steps.add(StepKind.ENSURE_NIC, f"create the managed secondary NIC {nic.name}",
              f"NIC {nic.name} exists, tagged {settings.managed_tag}=true",
              [f"NIC {nic.name} in subnet {_short(nic.subnet_id)}"
               f" (same VNet {_short(nic.vnet_id)}), static IP {nic.private_ip}",
               f"NSG {_short(nic.nsg_id, 'none (as the primary NIC)')} (the primary NIC's)",
               "no public IP, no IP forwarding, in no backend pool",
               f"accelerated networking {'on' if nic.accelerated_networking else 'off'}",
               f"tag {settings.managed_tag}=true"])
    stopped = vm.power_state == PowerState.STOPPED
    if needs_dealloc and stopped:
        # Stopped but still allocated: NICs change only when deallocated. It runs nothing, so
        # nothing fails over, and it is left deallocated (it was not running).
        steps.add(StepKind.DEALLOCATE, f"deallocate {vm.name} (stopped but still allocated: "
                  "a NIC can be attached only to a deallocated VM; it stays down afterwards)",
                  f"{vm.name} is deallocated, or the NIC is already attached",
                  [f"{vm.name} power state stopped -> deallocated"], True,
                  ["nothing: the VM is stopped"])
    elif needs_dealloc:
        taking_over = ", ".join(peers) or "none"
        fo_text = ([f"{x} -> {', '.join(peers) or 'no peer'}" for x in fails_over] if fails_over
                   else ["nothing: the VM serves no frontend now"])
        steps.add(StepKind.DEALLOCATE, f"deallocate {vm.name} (every service on it stops; "
                  f"peers that take over: {taking_over})",
                  f"{vm.name} is deallocated, or the NIC is already attached",
                  [f"{vm.name} power state running -> deallocated"], True, fo_text)
    steps.add(StepKind.ATTACH, f"attach {nic.name} to {vm.name} as a non-primary NIC",
              f"{nic.name} is in {vm.name}'s NIC list",
              [f"{vm.name} networkProfile: + {nic.name} (primary: false)"])
    if needs_dealloc and not stopped:
        steps.add(StepKind.START, f"start {vm.name}", f"{vm.name} is running",
                  [f"{vm.name} power state deallocated -> running"])


def _route_changes(vm: Vm, nic: NicSpec, routes: tuple[RouteSpec, ...],
                   primary_ip: str | None) -> list[str]:
    changes = [f"host route {vip}/32 via {nic.gateway} out of {nic.name} "
               f"(source {nic.private_ip}), persistent"
               for vip in dict.fromkeys(r.vip for r in routes)]
    if vm.os_type == "Linux":
        narrow = dict.fromkeys((r.protocol.lower(), r.backend_port) for r in routes
                               if not r.ha_ports)
        changes.append(f"table 100: {nic.private_ip}/32 via {nic.gateway} out of the primary NIC")
        changes += [f"rule: from {primary_ip} to {nic.private_ip} ipproto {p} sport {port} "
                    "lookup 100" for p, port in narrow]
        if any(r.ha_ports for r in routes):
            changes.append(f"rule: from {primary_ip} to {nic.private_ip} lookup 100 "
                           f"(HA ports, broad; {HA_PORTS_LINUX_SIDE_EFFECT})")
        changes.append("local-table rule moved from pref 0 to pref 1000")
        changes.append("persisted: /etc/hairpin/hairpin-routes.sh + hairpin-routes.service")
    elif vm.os_type == "Windows":
        changes.append("New-NetRoute on the adapter found by MAC (VF adapter skipped), "
                       "active and persistent store")
    return changes


def _guest_steps(steps: _Steps, nic: NicSpec, routes: tuple[RouteSpec, ...],
                 primary_ip: str | None, settings: Settings) -> None:
    vm = steps.vm
    steps.add(StepKind.ROUTES, f"push guest routes on {vm.name} with Run Command "
              f"({vm.os_type or '?'})",
              "the script reports 'unchanged' (it is idempotent; always run)",
              _route_changes(vm, nic, routes, primary_ip))
    targets = list(dict.fromkeys(f"{r.vip}:{r.frontend_port}" for r in routes
                                 if r.protocol.lower() == "tcp"))
    steps.add(StepKind.VERIFY, f"verify from inside {vm.name}: {settings.verify_connects} TCP "
              f"connects to each of {', '.join(targets) or 'no TCP target'}; fails below 100%",
              "never skipped")
    steps.add(StepKind.RECORD, "record the outcome in the journal (verified routes per frontend)",
              "never skipped")


# --------------------------------------------------------------------------- one VM, the plan

def _vm_plan(t: Topology, vm: Vm, findings: list[Finding], settings: Settings) -> VmPlan:
    rem = findings[0].remediation
    blockers, notes = _blockers_and_notes(findings)
    managed = t.managed_nics(vm, settings.managed_tag)
    existing = managed[0] if managed else None
    nic = _nic_spec(t, vm, rem.secondary_nic, settings, existing)
    routes = _routes(findings)
    _ha_ports(vm, routes, settings, blockers, notes)
    likelihood = max(f.likelihood for f in findings)
    needs_dealloc = bool(rem.needs_deallocation) and existing is None
    fails_over = tuple(serving_frontends(t, vm)) if needs_dealloc else ()
    peers = tuple(rem.takeover_peers) or tuple(sorted({p.name for p in t.pool_peers(vm)}))
    cfg = t.nics[vm.primary_nic_key].primary_ip_config if vm.primary_nic_key in t.nics else None
    primary_ip = str(cfg.private_ip) if cfg is not None and cfg.private_ip is not None else None
    steps = _Steps(vm)
    if existing is None:
        _nic_steps(steps, nic, settings, needs_dealloc, peers, fails_over)
    _guest_steps(steps, nic, routes, primary_ip, settings)
    return VmPlan(
        vm_id=vm.id, vm_name=vm.name, os_type=vm.os_type, power_state=vm.power_state,
        likelihood=likelihood, serving=likelihood > 0,
        finding_ids=tuple(f.id for f in findings), routes=routes, nic=nic,
        primary_ip=primary_ip,
        primary_nic_id=t.nics[vm.primary_nic_key].id if vm.primary_nic_key in t.nics else None,
        needs_deallocation=needs_dealloc,
        pool_ids=tuple(t.pools[p].id if p in t.pools else p for p in t.pool_keys_of_vm(vm)),
        takeover_peers=peers, fails_over=fails_over, steps=tuple(steps.items),
        blockers=tuple(blockers), notes=tuple(dict.fromkeys(notes)))


def _facts(t: Topology, vm_plans: list[VmPlan], etags: Mapping[str, str]) -> dict[str, Any]:
    """Estate facts the steps depend on: VM/NIC/LB etags and power states."""
    facts: dict[str, Any] = {}
    lbs: set[str] = set()
    for v in vm_plans:
        vm = t.vms[v.key]
        # The managed NIC's own etag changes when Azure assigns its MAC at start: the steps
        # that follow its attachment only read it, so it is not a fact the plan depends on.
        managed = normalize(v.nic.id) if v.nic is not None and v.nic.exists else None
        nics = {t.nics[k].id: etags.get(k) for k in vm.nic_keys if k in t.nics and k != managed}
        facts[v.vm_id] = {"etag": etags.get(v.key), "power_state": vm.power_state,
                          "nics": {k: nics[k] for k in sorted(nics)}}
        if v.nic is not None and not v.nic.exists:
            facts[v.vm_id]["managed_nic"] = {"id": v.nic.id,
                                             "etag": etags.get(normalize(v.nic.id))}
        for pid in v.pool_ids:
            lbs.add(normalize(pid).split("/backendaddresspools/")[0])
        # Peers' power states matter to the guard: include them.
        for pk in (normalize(p) for p in v.pool_ids):
            for m in t.members_of_pool(pk):
                peer = t.vm_of_ip_config(m.ip_config_key) if m.ip_config_key else None
                if peer is not None:
                    facts.setdefault("pool_members", {})[peer.id] = peer.power_state
    facts["load_balancers"] = {t.load_balancers[k].id if k in t.load_balancers else k:
                               etags.get(k) for k in sorted(lbs)}
    return facts


def build_plan(findings: Iterable[Finding], topology: Topology, settings: Settings, *,
               vm_ids: Iterable[str], etags: Mapping[str, str] | None = None,
               target: Mapping[str, Any] | None = None) -> Plan:
    """The plan for the VMs in scope of `vm_ids` (see `vms_in_scope`), ordered: VMs serving
    nothing now first, then serving ones (each group by name).

    `etags`: normalised resource ID -> etag, from the raw documents (Topology keeps none)."""
    findings = list(findings)
    etags = {normalize(k): v for k, v in (etags or {}).items()}
    by_vm: dict[str, list[Finding]] = {}
    for f in findings:
        if f.severity in ACTIONABLE:
            by_vm.setdefault(normalize(f.vm_id), []).append(f)
    plans = [_vm_plan(topology, topology.vms[k], by_vm[k], settings)
             for k in vms_in_scope(findings, vm_ids) if k in topology.vms and k in by_vm]
    plans.sort(key=lambda p: (p.serving, p.likelihood, p.vm_name.lower(), p.key))
    facts = _facts(topology, plans, etags)
    digest_input = {"version": PLAN_VERSION, "vms": [p.as_dict() for p in plans],
                    "facts": facts}
    digest = hashlib.sha256(canonical_json(digest_input).encode()).hexdigest()
    return Plan(tuple(plans), facts, digest, dict(target or {}))


def etags_from_documents(resources: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """normalised ID -> etag of every raw ARM document that carries one."""
    out: dict[str, str] = {}
    for doc in resources:
        rid, etag = doc.get("id"), doc.get("etag")
        if isinstance(rid, str) and isinstance(etag, str):
            out[normalize(rid)] = etag
    return out
