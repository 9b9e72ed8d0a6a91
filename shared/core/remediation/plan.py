"""Pure: findings + topology + settings -> an ordered plan of idempotent remediation steps.

The fix (AZURE-FACTS sections 2 and 3): a managed secondary NIC in the same VNet, attached while
the VM is deallocated, plus guest host routes to each at-risk VIP out of that NIC, verified from
inside the guest. Each step names the precondition the executor re-checks against live state
before acting, so re-running a half-done plan continues where it stopped.

Failover moves the risk: deallocating the VM that holds the mirror primaries makes its peer the
healthy member, and the peer then hairpins. So a plan covers every VM with a `high` or `medium`
finding in the affected pools and orders them: first the VMs that serve nothing now (likelihood
0: their deallocation interrupts nothing), then the serving ones, whose frontends fail over to
an already fixed peer. Each deallocation step says which frontends fail over.

The plan hash (sha256 of the canonical JSON of the steps and of the estate facts they depend on:
etags and power states) binds an approval to exactly this plan on exactly this estate.

Nothing here does I/O or imports an Azure SDK.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core import arm_ids
from shared.core.arm_ids import normalize
from shared.core.risk import Finding, secondary_nic_name
from shared.core.topology import Topology, Vm
from shared.settings import Settings

__all__ = [
    "PLAN_VERSION", "ACTIONABLE", "NicSpec", "RouteSpec", "Step", "VmPlan", "Plan",
    "build_plan", "vms_in_scope", "canonical_json", "nic_id_for",
    "STEP_ENSURE_NIC", "STEP_DEALLOCATE", "STEP_ATTACH", "STEP_START", "STEP_ROUTES",
    "STEP_VERIFY", "STEP_RECORD",
]

PLAN_VERSION = 1
ACTIONABLE = ("high", "medium")

STEP_ENSURE_NIC = "ensure-nic"
STEP_DEALLOCATE = "deallocate"
STEP_ATTACH = "attach-nic"
STEP_START = "start"
STEP_ROUTES = "guest-routes"
STEP_VERIFY = "verify"
STEP_RECORD = "record"

HA_PORTS_NOTE = ("HA-ports rule: it balances every port, so the fix cannot be narrowed by port")
HA_PORTS_LINUX_SIDE_EFFECT = (
    "the broad Linux policy rule also routes local traffic between the VM's two addresses out "
    "through the Azure gateway")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def nic_id_for(vm_id: str, nic_name: str) -> str:
    """The managed NIC lives in the VM's subscription and resource group."""
    parsed = arm_ids.parse(vm_id)
    return arm_ids.build(parsed.subscription, parsed.resource_group, "Microsoft.Network",
                         "networkInterfaces", nic_name)


@dataclass(frozen=True)
class NicSpec:
    """The managed secondary NIC as it must exist (ensure-nic creates exactly this)."""

    id: str
    name: str
    location: str | None
    subnet_id: str | None
    vnet_id: str | None
    private_ip: str | None
    gateway: str | None
    prefix_len: int | None
    nsg_id: str | None
    accelerated_networking: bool
    tags: Mapping[str, str]
    exists: bool  # already attached and tagged as ours

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "location": self.location,
                "subnet_id": self.subnet_id, "vnet_id": self.vnet_id,
                "private_ip": self.private_ip, "allocation": "Static",
                "gateway": self.gateway, "prefix_len": self.prefix_len, "nsg_id": self.nsg_id,
                "accelerated_networking": self.accelerated_networking,
                "public_ip": None, "ip_forwarding": False, "backend_pools": [],
                "primary": False, "tags": dict(self.tags), "exists": self.exists}

    def arm_body(self) -> dict[str, Any]:
        """The NIC document to PUT (no public IP, no forwarding, in no pool)."""
        body: dict[str, Any] = {
            "location": self.location,
            "tags": dict(self.tags),
            "properties": {
                "enableAcceleratedNetworking": self.accelerated_networking,
                "enableIPForwarding": False,
                "ipConfigurations": [{
                    "name": "ipconfig1",
                    "properties": {
                        "primary": True,
                        "privateIPAllocationMethod": "Static",
                        "privateIPAddress": self.private_ip,
                        "privateIPAddressVersion": "IPv4",
                        "subnet": {"id": self.subnet_id},
                    },
                }],
            },
        }
        if self.nsg_id:
            body["properties"]["networkSecurityGroup"] = {"id": self.nsg_id}
        return body


@dataclass(frozen=True)
class RouteSpec:
    """One VIP the guest must reach through the secondary NIC (one rule's ports)."""

    vip: str
    protocol: str  # Tcp | Udp | All
    frontend_port: int
    backend_port: int
    frontend_id: str
    rule_id: str

    @property
    def ha_ports(self) -> bool:
        return self.protocol.lower() == "all"

    def as_dict(self) -> dict[str, Any]:
        return {"vip": self.vip, "protocol": self.protocol, "frontend_port": self.frontend_port,
                "backend_port": self.backend_port, "frontend_id": self.frontend_id,
                "rule_id": self.rule_id, "ha_ports": self.ha_ports}


@dataclass(frozen=True)
class Step:
    kind: str
    vm_id: str
    vm_name: str
    description: str
    precondition: str  # what the executor checks live before acting (skip when already true)
    changes: tuple[str, ...] = ()
    deallocates: bool = False
    fails_over: tuple[str, ...] = ()  # frontends that fail over while this step runs

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vm_id": self.vm_id, "vm_name": self.vm_name,
                "description": self.description, "precondition": self.precondition,
                "changes": list(self.changes), "deallocates": self.deallocates,
                "fails_over": list(self.fails_over)}


@dataclass(frozen=True)
class VmPlan:
    vm_id: str
    vm_name: str
    os_type: str | None
    power_state: str | None
    likelihood: float
    serving: bool
    finding_ids: tuple[str, ...]
    routes: tuple[RouteSpec, ...]
    nic: NicSpec | None
    primary_ip: str | None
    primary_nic_id: str | None
    needs_deallocation: bool
    pool_ids: tuple[str, ...]
    takeover_peers: tuple[str, ...]
    fails_over: tuple[str, ...]
    steps: tuple[Step, ...]
    blockers: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def key(self) -> str:
        return normalize(self.vm_id)

    @property
    def vips(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.vip for r in self.routes))

    def as_dict(self) -> dict[str, Any]:
        return {"vm_id": self.vm_id, "vm_name": self.vm_name, "os_type": self.os_type,
                "power_state": self.power_state, "likelihood": self.likelihood,
                "serving": self.serving, "finding_ids": list(self.finding_ids),
                "routes": [r.as_dict() for r in self.routes],
                "nic": self.nic.as_dict() if self.nic else None,
                "primary_ip": self.primary_ip, "primary_nic_id": self.primary_nic_id,
                "needs_deallocation": self.needs_deallocation, "pool_ids": list(self.pool_ids),
                "takeover_peers": list(self.takeover_peers), "fails_over": list(self.fails_over),
                "steps": [s.as_dict() for s in self.steps], "blockers": list(self.blockers),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Plan:
    vms: tuple[VmPlan, ...]
    facts: Mapping[str, Any]
    hash: str
    target: Mapping[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for v in self.vms for s in v.steps)

    @property
    def empty(self) -> bool:
        return not self.vms

    @property
    def needs_deallocation(self) -> bool:
        return any(v.needs_deallocation for v in self.vms)

    @property
    def blockers(self) -> tuple[str, ...]:
        return tuple(f"{v.vm_name}: {b}" for v in self.vms for b in v.blockers)

    def vm(self, vm_id: str) -> VmPlan | None:
        key = normalize(vm_id)
        return next((v for v in self.vms if v.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION, "hash": self.hash, "target": dict(self.target),
            "deallocates": [v.vm_name for v in self.vms if v.needs_deallocation],
            "order": [v.vm_name for v in self.vms],
            "blockers": list(self.blockers),
            "vms": [v.as_dict() for v in self.vms],
            "steps": [dict(s.as_dict(), index=i + 1) for i, s in enumerate(self.steps)],
            "facts": dict(self.facts),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False, default=str)

    def to_text(self) -> str:
        if not self.vms:
            return "Nothing to do: no VM in scope has a high or medium finding.\n"
        lines = [f"Plan {self.hash}", f"Order: {' -> '.join(v.vm_name for v in self.vms)}"]
        dealloc = [v.vm_name for v in self.vms if v.needs_deallocation]
        lines.append("Deallocates: " + (", ".join(dealloc) if dealloc else "no VM"))
        n = 0
        for v in self.vms:
            role = ("serves frontends now" if v.serving
                    else "serves nothing now (likelihood 0)")
            lines.append("")
            power = v.power_state or "power state unknown"
            lines.append(f"== {v.vm_name} ({v.os_type or 'unknown OS'}, {power}; {role})")
            for b in v.blockers:
                lines.append(f"   BLOCKED: {b}")
            for note in v.notes:
                lines.append(f"   note: {note}")
            for s in v.steps:
                n += 1
                flag = "  [DEALLOCATES THE VM]" if s.deallocates else ""
                lines.append(f"{n:3d}. {s.kind}: {s.description}{flag}")
                for c in s.changes:
                    lines.append(f"       - {c}")
                for f in s.fails_over:
                    lines.append(f"       ! fails over: {f}")
                lines.append(f"       (skipped when: {s.precondition})")
        lines.append("")
        lines.append(f"Approve with: --approve {self.hash}")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- scope

def _finding_pools(f: Finding) -> set[str]:
    return {normalize(m["pool_id"]) for m in f.evidence.get("membership", []) if m.get("pool_id")}


def vms_in_scope(findings: Iterable[Finding], seed_vm_ids: Iterable[str]) -> list[str]:
    """VM keys with a high/medium finding that share a pool (transitively) with the seed VMs."""
    actionable = [f for f in findings if f.severity in ACTIONABLE]
    pools_of: dict[str, set[str]] = {}
    for f in actionable:
        pools_of.setdefault(normalize(f.vm_id), set()).update(_finding_pools(f))
    seeds = {normalize(v) for v in seed_vm_ids}
    scope = {k for k in seeds if k in pools_of}
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


# --------------------------------------------------------------------------- building



def _own_configs(t: Topology, vm: Vm) -> set[str]:
    return {c.key for nk in vm.nic_keys if nk in t.nics for c in t.nics[nk].ip_configs}


def _serving_frontends(t: Topology, vm: Vm) -> list[str]:
    """Frontends whose rules list this VM as a healthy (Up) backend now: they fail over."""
    own = _own_configs(t, vm)
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


def _peer_names(t: Topology, vm: Vm) -> list[str]:
    own = _own_configs(t, vm)
    names: set[str] = set()
    for pk in t.pool_keys_of_vm(vm):
        for m in t.members_of_pool(pk):
            if m.ip_config_key in own or m.ip_config_key is None:
                continue
            peer = t.vm_of_ip_config(m.ip_config_key)
            if peer is not None and peer.key != vm.key:
                names.add(peer.name)
    return sorted(names)


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
              existing) -> NicSpec:
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


def _vm_plan(t: Topology, vm: Vm, findings: list[Finding], settings: Settings) -> VmPlan:
    rem = findings[0].remediation
    hints = dict(rem.secondary_nic)
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
    existing = None
    for nk in vm.nic_keys:
        nic = t.nics.get(nk)
        if nic is not None and nk != vm.primary_nic_key and nic.is_managed(settings.managed_tag):
            existing = nic
            break
    nic_spec = _nic_spec(t, vm, hints, settings, existing)
    routes = _routes(findings)
    if any(r.ha_ports for r in routes):
        if vm.os_type == "Linux":
            if settings.allow_broad_ha_ports_rule:
                notes.append(f"{HA_PORTS_NOTE}; the broad policy rule is allowed by settings. "
                             f"Side effect: {HA_PORTS_LINUX_SIDE_EFFECT}")
            else:
                text = (f"{HA_PORTS_NOTE}; the broad Linux policy rule needs "
                        "HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE=true (side effect: "
                        f"{HA_PORTS_LINUX_SIDE_EFFECT})")
                if not any(b.startswith("ha_ports_needs_broad_rule") for b in blockers):
                    blockers.append(text)
        else:
            notes.append(f"{HA_PORTS_NOTE}; on Windows the host route covers every port and "
                         "needs no policy rule")
        if not any(r.protocol.lower() == "tcp" for r in routes):
            notes.append("HA-ports only: verification has no TCP frontend port to connect to")
    likelihood = max(f.likelihood for f in findings)
    serving = likelihood > 0
    needs_dealloc = bool(rem.needs_deallocation) and existing is None
    fails_over = tuple(_serving_frontends(t, vm)) if needs_dealloc else ()
    peers = tuple(rem.takeover_peers) or tuple(_peer_names(t, vm))
    cfg = t.nics[vm.primary_nic_key].primary_ip_config if vm.primary_nic_key in t.nics else None
    primary_ip = str(cfg.private_ip) if cfg is not None and cfg.private_ip is not None else None

    steps: list[Step] = []
    s = lambda kind, desc, pre, changes=(), dealloc=False, fo=(): steps.append(  # noqa: E731
        Step(kind, vm.id, vm.name, desc, pre, tuple(changes), dealloc, tuple(fo)))
    def short(rid: str | None, default: str = "?") -> str:
        return arm_ids.name_of(rid) if rid else default

    if existing is None:
        s(STEP_ENSURE_NIC, f"create the managed secondary NIC {nic_spec.name}",
          f"NIC {nic_spec.name} exists, tagged {settings.managed_tag}=true",
          [f"NIC {nic_spec.name} in subnet {short(nic_spec.subnet_id)}"
           f" (same VNet {short(nic_spec.vnet_id)}), static IP {nic_spec.private_ip}",
           f"NSG {short(nic_spec.nsg_id, 'none (as the primary NIC)')} (the primary NIC's)",
           "no public IP, no IP forwarding, in no backend pool",
           f"accelerated networking {'on' if nic_spec.accelerated_networking else 'off'}",
           f"tag {settings.managed_tag}=true"])
        if needs_dealloc:
            fo_text = list(fails_over) or ["nothing: the VM serves no frontend now"]
            s(STEP_DEALLOCATE, f"deallocate {vm.name} (every service on it stops; "
              f"peers that take over: {', '.join(peers) or 'none'})",
              f"{vm.name} is deallocated, or the NIC is already attached",
              [f"{vm.name} power state running -> deallocated"], True,
              [f"{x} -> {', '.join(peers) or 'no peer'}" for x in fails_over] if fails_over
              else fo_text)
        s(STEP_ATTACH, f"attach {nic_spec.name} to {vm.name} as a non-primary NIC",
          f"{nic_spec.name} is in {vm.name}'s NIC list",
          [f"{vm.name} networkProfile: + {nic_spec.name} (primary: false)"])
        if needs_dealloc:
            s(STEP_START, f"start {vm.name}", f"{vm.name} is running",
              [f"{vm.name} power state deallocated -> running"])
    os_name = (vm.os_type or "?")
    route_changes = [f"host route {vip}/32 via {nic_spec.gateway} out of {nic_spec.name} "
                     f"(source {nic_spec.private_ip}), persistent" for vip in
                     dict.fromkeys(r.vip for r in routes)]
    if os_name == "Linux":
        narrow = dict.fromkeys((r.protocol.lower(), r.backend_port) for r in routes
                               if not r.ha_ports)
        route_changes.append(f"table 100: {nic_spec.private_ip}/32 via {nic_spec.gateway} "
                             "out of the primary NIC")
        route_changes += [f"rule: from {primary_ip} to {nic_spec.private_ip} ipproto {p} "
                          f"sport {port} lookup 100" for p, port in narrow]
        if any(r.ha_ports for r in routes):
            route_changes.append(f"rule: from {primary_ip} to {nic_spec.private_ip} lookup 100 "
                                 f"(HA ports, broad; {HA_PORTS_LINUX_SIDE_EFFECT})")
        route_changes.append("local-table rule moved from pref 0 to pref 1000")
        route_changes.append("persisted: /etc/hairpin/hairpin-routes.sh + hairpin-routes.service")
    elif os_name == "Windows":
        route_changes.append("New-NetRoute on the adapter found by MAC (VF adapter skipped), "
                             "active and persistent store")
    s(STEP_ROUTES, f"push guest routes on {vm.name} with Run Command ({os_name})",
      "the script reports 'unchanged' (it is idempotent; always run)", route_changes)
    targets = list(dict.fromkeys(f"{r.vip}:{r.frontend_port}" for r in routes
                                 if r.protocol.lower() == "tcp"))
    s(STEP_VERIFY, f"verify from inside {vm.name}: {settings.verify_connects} TCP connects to "
      f"each of {', '.join(targets) or 'no TCP target'}; fails below 100%",
      "never skipped", [])
    s(STEP_RECORD, "record the outcome in the journal (verified routes per frontend)",
      "never skipped", [])
    return VmPlan(
        vm_id=vm.id, vm_name=vm.name, os_type=vm.os_type, power_state=vm.power_state,
        likelihood=likelihood, serving=serving,
        finding_ids=tuple(f.id for f in findings), routes=routes, nic=nic_spec,
        primary_ip=primary_ip,
        primary_nic_id=t.nics[vm.primary_nic_key].id if vm.primary_nic_key in t.nics else None,
        needs_deallocation=needs_dealloc, pool_ids=tuple(
            t.pools[p].id if p in t.pools else p for p in t.pool_keys_of_vm(vm)),
        takeover_peers=peers, fails_over=fails_over, steps=tuple(steps),
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
    scope = vms_in_scope(findings, vm_ids)
    plans = [_vm_plan(topology, topology.vms[k], by_vm[k], settings)
             for k in scope if k in topology.vms and k in by_vm]
    plans.sort(key=lambda p: (p.serving, p.likelihood, p.vm_name.lower(), p.key))
    facts = _facts(topology, plans, etags)
    digest_input = {"version": PLAN_VERSION,
                    "vms": [{k: v for k, v in p.as_dict().items()} for p in plans],
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


__all__.append("etags_from_documents")
