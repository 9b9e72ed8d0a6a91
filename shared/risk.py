"""Pure: which VMs will fail to reach which internal load balancer frontends, and why.

The Azure ILB rewrites the destination (VIP -> backend IP) but not the source, so a connection a
backend VM opens to its own pool's frontend fails whenever the load balancer picks that same VM
(docs/risk-model.md). Detection is the membership comparison Microsoft describes: there is no
server-side signal.

One finding per (VM, internal frontend), aggregating every load-balancing rule of that frontend
whose pool holds one of the VM's IP configurations; `ports` lists them all. The finding ID is a
hash of the VM's and the frontend's normalised IDs, so it survives rule and port changes and
the same estate always yields the same IDs.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from types import MappingProxyType
from typing import Any

from shared import ipam
from shared.arm_ids import normalize
from shared.settings import CallTarget, Settings, parse_call_targets
from shared.topology import LbRule, PoolMember, Topology, Unknown, Vm, gc_paused

__all__ = [
    "SEVERITIES",
    "NOT_AFFECTED_REASONS",
    "Port",
    "Issue",
    "Remediation",
    "Finding",
    "NotAffected",
    "Evaluation",
    "evaluate",
    "finding_id",
    "secondary_nic_name",
]

SEVERITIES = ("high", "medium", "info")
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
NOT_AFFECTED_REASONS = {
    "floating_ip": "every rule from this frontend to the VM uses Floating IP (DSR): the guest "
    "owns the VIP and answers the hairpin locally",
    "public_frontend": "public load balancer frontend: flows are SNATed, so the hairpin works",
    "fixed_and_verified": "calls to this VIP already leave through a managed secondary NIC, "
    "with a route recorded and verified",
}
SUPPORTED_OS = ("Windows", "Linux")
UNKNOWN = "unknown"


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True, slots=True)
class Port:
    protocol: str | None  # "Tcp", "Udp", "All"
    frontend_port: int | None
    backend_port: int | None
    rule_id: str

    @property
    def ha_ports(self) -> bool:
        return (self.protocol or "").lower() == "all" and self.frontend_port == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "frontend_port": self.frontend_port,
            "backend_port": self.backend_port,
            "ha_ports": self.ha_ports,
            "rule_id": self.rule_id,
        }

    def text(self) -> str:
        if self.ha_ports:
            return "all ports (HA ports)"
        proto = (self.protocol or "?").upper()
        if self.frontend_port == self.backend_port:
            return f"{proto} {self.frontend_port}"
        return f"{proto} {self.frontend_port}->{self.backend_port}"


@dataclass(frozen=True, slots=True)
class Issue:
    """A blocker (the fix cannot run) or an unknown (cannot tell), with a stable code."""

    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Remediation:
    """Can the secondary-NIC fix be applied to this VM for this frontend, and what would it need."""

    feasible: bool | str  # True, False or "unknown"
    blockers: tuple[Issue, ...]
    unknowns: tuple[Issue, ...]
    needs_new_nic: bool
    needs_deallocation: bool | None
    notes: tuple[str, ...]
    # Hints for the planner: subnet_id, vnet_id, gateway, candidate_ip, nsg_id, name,
    # accelerated_networking, existing_nic_id, primary_ip, os_type.
    secondary_nic: Mapping[str, Any]
    takeover_peers: tuple[str, ...]  # running pool peers whose services take over (VM names)
    peers_not_running: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "feasible": self.feasible,
            "blockers": [b.as_dict() for b in self.blockers],
            "unknowns": [u.as_dict() for u in self.unknowns],
            "needs_new_nic": self.needs_new_nic,
            "needs_deallocation": self.needs_deallocation,
            "notes": list(self.notes),
            "secondary_nic": dict(self.secondary_nic),
            "takeover_peers": list(self.takeover_peers),
            "peers_not_running": list(self.peers_not_running),
        }


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    vm_id: str
    vm_name: str
    frontend_ip: str | None
    frontend_id: str
    frontend_name: str
    lb_id: str
    lb_name: str
    rule_ids: tuple[str, ...]
    ports: tuple[Port, ...]
    severity: str
    likelihood: float
    likelihood_text: str
    caller: str  # "declared" | "inferred" | "none"
    evidence: Mapping[str, Any]
    reason: str
    remediation: Remediation
    unknowns: tuple[Unknown, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vm_id": self.vm_id,
            "vm_name": self.vm_name,
            "frontend_ip": self.frontend_ip,
            "frontend_id": self.frontend_id,
            "frontend_name": self.frontend_name,
            "lb_id": self.lb_id,
            "lb_name": self.lb_name,
            "rule_ids": list(self.rule_ids),
            "ports": [p.as_dict() for p in self.ports],
            "severity": self.severity,
            "likelihood": self.likelihood,
            "likelihood_text": self.likelihood_text,
            "caller": self.caller,
            "evidence": _plain(self.evidence),
            "reason": self.reason,
            "remediation": self.remediation.as_dict(),
            "unknowns": [u.as_dict() for u in self.unknowns],
        }


@dataclass(frozen=True, slots=True)
class NotAffected:
    vm_id: str
    vm_name: str
    frontend_id: str
    frontend_ip: str | None
    reason: str  # key of NOT_AFFECTED_REASONS

    def as_dict(self) -> dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "vm_name": self.vm_name,
            "frontend_id": self.frontend_id,
            "frontend_ip": self.frontend_ip,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[Finding, ...]
    not_affected: tuple[NotAffected, ...]
    unknowns: tuple[Unknown, ...] = ()
    _by_id: Mapping[str, Finding] = field(default_factory=dict, repr=False, compare=False)

    def finding(self, finding_id: str) -> Finding | None:
        return self._by_id.get(finding_id.strip().lower())

    def for_vm(self, vm_id: str) -> tuple[Finding, ...]:
        key = normalize(vm_id)
        return tuple(f for f in self.findings if normalize(f.vm_id) == key)

    def severity_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for f in self.findings:
            counts[f.severity] += 1
        return counts

    def not_affected_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(NOT_AFFECTED_REASONS, 0)
        for n in self.not_affected:
            counts[n.reason] = counts.get(n.reason, 0) + 1
        return counts

    @property
    def has_actionable(self) -> bool:
        """Any `high` or `medium` finding (the audit's exit status 1)."""
        return any(f.severity in ("high", "medium") for f in self.findings)


# --------------------------------------------------------------------------- helpers


def finding_id(vm_id: str, frontend_id: str) -> str:
    """Stable, lowercase: the same VM and frontend always give the same ID."""
    return _finding_id_from_keys(normalize(vm_id), normalize(frontend_id))


def _finding_id_from_keys(vm_key: str, frontend_key: str) -> str:
    digest = hashlib.sha256(f"{vm_key}|{frontend_key}".encode()).hexdigest()
    return f"hp-{digest[:20]}"


def secondary_nic_name(vm_name: str) -> str:
    """Deterministic name of the managed secondary NIC (ARM network names: at most 80 chars)."""
    suffix = "-hairpin-nic"
    return vm_name[: 80 - len(suffix)] + suffix


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _pct(p: float) -> str:
    return f"{round(p * 100)}%"


_IP_SORT_CACHE: dict[str, tuple] = {}


def _ip_sort(ip: str | None) -> tuple:
    """Numeric sort key for address text (memoised: the same VIPs recur in every finding)."""
    if ip is None:
        return (9, 0, "")
    key = _IP_SORT_CACHE.get(ip)
    if key is None:
        try:
            a = ipaddress.ip_address(ip)
            key = (a.version, int(a), "")
        except ValueError:
            key = (8, 0, ip)
        if len(_IP_SORT_CACHE) < 100_000:
            _IP_SORT_CACHE[ip] = key
    return key


def _ports_text(ports: Iterable[Port]) -> str:
    return ", ".join(dict.fromkeys(p.text() for p in ports))


# --------------------------------------------------------------------------- evaluation


@dataclass(slots=True)
class _RuleOdds:
    rule: LbRule
    likelihood: float
    health_read: bool
    healthy: list[str]  # "name ip" of healthy members (when read)
    self_state: str | None
    members: int
    self_members: int


class _Evaluator:
    def __init__(
        self, topology: Topology, settings: Settings, verified: Iterable[tuple[str, str]]
    ) -> None:
        self.t = topology
        self.s = settings
        self.verified = {(normalize(vm), str(ip)) for vm, ip in verified}
        self._used_ips: dict[str, set] | None = None
        self._allocators: dict[str, ipam.AddressAllocator] = {}
        self._vm_remediation: dict[str, tuple] = {}
        self._declared: dict[str, tuple[tuple[tuple[str, CallTarget], ...], tuple[str, ...]]] = {}
        self._rule_views: dict[str, tuple] = {}
        self._remediations: dict[tuple[str, bool], Remediation] = {}
        self._gateways: dict[str, str | None] = {}
        self._full_subnets: dict[str, Issue] = {}
        self._member_keys: dict[str, set[str]] = {}
        self._member_vms: dict[str, list[tuple[PoolMember, Vm | None]]] = {}
        self._parsed_tags: dict[str, tuple[tuple[CallTarget, ...], str | None]] = {}
        self._ports: dict[str, Port] = {}
        self._port_texts: dict[str, str] = {}

    # ----------------------------------------------------------------- membership
    def exposures(self) -> dict[tuple[str, str], list[tuple[LbRule, str]]]:
        """(vm key, frontend key) -> [(rule, ip config key)] for every rule reaching the VM."""
        t = self.t
        out: dict[tuple[str, str], list[tuple[LbRule, str]]] = {}
        for rule in t.rules.values():
            fk = rule.frontend_key
            if fk is None or fk not in t.frontends:
                continue
            for pk in rule.pool_keys:
                for member in t.pool_members.get(pk, ()):
                    ck = member.ip_config_key
                    if ck is None:
                        continue
                    cfg = t.ip_configs.get(ck)
                    vm_key = t.nic_vm.get(cfg.nic_key) if cfg is not None else None
                    if vm_key is None:
                        continue
                    out.setdefault((vm_key, fk), []).append((rule, ck))
        return out

    def vm_member_keys(self, vm: Vm) -> set[str]:
        """The VM's ipConfiguration keys (cached: findings and pool peers both need them)."""
        keys = self._member_keys.get(vm.key)
        if keys is None:
            keys = set()
            for nk in vm.nic_keys:
                nic = self.t.nics.get(nk)
                if nic is not None:
                    keys.update(c.key for c in nic.ip_configs)
            self._member_keys[vm.key] = keys
        return keys

    # ----------------------------------------------------------------- likelihood
    def _member_label(self, ck: str | None, ip: object) -> str:
        if ck is not None:
            cfg = self.t.ip_configs.get(ck)
            vm_key = self.t.nic_vm.get(cfg.nic_key) if cfg else None
            vm = self.t.vms.get(vm_key) if vm_key else None
            if vm is not None:
                return f"{vm.name} {ip}" if ip is not None else vm.name
        return ip if ip is not None else "unknown member"

    def _rule_view(self, rule: LbRule) -> tuple:
        """Per-rule facts shared by every VM in its pool (cached): members, health states."""
        cached = self._rule_views.get(rule.key)
        if cached is not None:
            return cached
        t = self.t
        seen: dict[tuple, Any] = {}
        for pk in rule.pool_keys:
            for m in t.pool_members.get(pk, ()):
                seen.setdefault((m.ip_config_key or "", m.ip or ""), m)
        members = [seen[k] for k in sorted(seen)]
        health = t.health.get(rule.key)
        states = None
        healthy: list = []
        labels: list[str] = []
        if health is not None:
            states = [health.state_of(m.ip_config_key, m.ip) for m in members]
            if all(state is None for state in states):
                states = None  # the response covers none of the members: treat as unread
            else:
                healthy = [
                    m
                    for m, state in zip(members, states, strict=True)
                    if (state or "").lower() == "up"
                ]
                labels = [self._member_label(m.ip_config_key, m.ip) for m in healthy]
        view = (members, states, healthy, labels)
        self._rule_views[rule.key] = view
        return view

    def rule_odds(self, rule: LbRule, own: set[str]) -> _RuleOdds:
        members, states, healthy, labels = self._rule_view(rule)
        self_count = sum(1 for m in members if m.ip_config_key in own)
        if states is not None:
            self_healthy = sum(1 for m in healthy if m.ip_config_key in own)
            p = self_healthy / len(healthy) if healthy else 0.0
            self_state = None
            for m, state in zip(members, states, strict=True):
                if m.ip_config_key in own and (self_state is None or state == "Up"):
                    self_state = state
            return _RuleOdds(rule, p, True, labels, self_state, len(members), self_count)
        p = self_count / len(members) if members else 0.0
        return _RuleOdds(rule, p, False, [], None, len(members), self_count)

    # ----------------------------------------------------------------- callers
    def declared_targets(
        self, vm: Vm
    ) -> tuple[tuple[tuple[str, CallTarget], ...], tuple[str, ...]]:
        cached = self._declared.get(vm.key)
        if cached is not None:
            return cached
        targets: list[tuple[str, CallTarget]] = []
        errors: list[str] = []
        tag_value = vm.tag(self.s.declared_callers_tag)
        if tag_value is not None:
            parsed, error = self._tag_targets(tag_value)
            targets += [("tag", t) for t in parsed]
            if error is not None:
                errors.append(f"tag {self.s.declared_callers_tag} could not be read: {error}")
        if self.s.declared_callers:  # usually empty: skip normalising every VM's ID
            targets += [("settings", t) for t in self.s.callers_declared_for(vm.id, vm.name)]
        result = (tuple(targets), tuple(errors))
        self._declared[vm.key] = result
        return result

    def _tag_targets(self, tag_value: str) -> tuple[tuple[CallTarget, ...], str | None]:
        """Parsed tag value or the parse error, cached: estates repeat the same few values."""
        cached = self._parsed_tags.get(tag_value)
        if cached is None:
            try:
                cached = (parse_call_targets(tag_value), None)
            except ValueError as exc:
                cached = ((), str(exc))
            self._parsed_tags[tag_value] = cached
        return cached

    # ----------------------------------------------------------------- remediation
    def used_ips(self, subnet_key: str) -> set:
        if self._used_ips is None:
            used: dict[str, set] = {}
            for c in self.t.ip_configs.values():
                if c.subnet_key is not None and c.private_ip is not None:
                    used.setdefault(c.subnet_key, set()).add(c.private_ip)
            for f in self.t.frontends.values():
                if f.subnet_key is not None and f.private_ip is not None:
                    used.setdefault(f.subnet_key, set()).add(f.private_ip)
            self._used_ips = used
        return self._used_ips.get(subnet_key, set())

    def vm_remediation(self, vm: Vm) -> tuple:
        """VM-level part of the feasibility (same for every frontend of the VM); cached."""
        cached = self._vm_remediation.get(vm.key)
        if cached is not None:
            return cached
        t, s = self.t, self.s
        blockers: list[Issue] = []
        unknowns: list[Issue] = []
        notes: list[str] = []
        hints: dict[str, Any] = {"os_type": vm.os_type}

        nics = [t.nics[k] for k in vm.nic_keys if k in t.nics]
        primary = t.nics.get(vm.primary_nic_key) if vm.primary_nic_key else None
        managed = [n for n in nics if n.key != vm.primary_nic_key and n.has_tag(s.managed_tag)]
        needs_new_nic = not managed
        primary_cfg = primary.primary_ip_config if primary else None
        if primary_cfg is None:
            unknowns.append(
                Issue(
                    "primary_nic_unknown",
                    "the VM's primary NIC or its primary IP configuration is not known",
                )
            )
        else:
            hints["primary_ip"] = primary_cfg.private_ip

        # Guest OS: both supported (Linux needs the policy routing of AZURE-FACTS section 3).
        if vm.os_type is None:
            unknowns.append(Issue("os_type_unknown", "the guest OS type is not known"))
        elif vm.os_type not in SUPPORTED_OS:
            blockers.append(Issue("os_unsupported", f"guest OS {vm.os_type!r} is not supported"))
        if vm.agent_ready is False:
            notes.append("the VM agent is not ready: guest routes wait until it reports Ready")

        if managed:
            nic = sorted(managed, key=lambda n: n.key)[0]
            cfg = nic.primary_ip_config
            hints.update(
                {
                    "existing_nic_id": nic.id,
                    "name": nic.name,
                    "subnet_id": cfg.subnet_id if cfg else None,
                    "candidate_ip": cfg.private_ip if cfg else None,
                    "nsg_id": nic.nsg_id,
                    "accelerated_networking": nic.accelerated_networking,
                }
            )
            subnet = t.subnets.get(cfg.subnet_key) if cfg and cfg.subnet_key else None
            if subnet is not None and subnet.gateway is not None:
                hints["gateway"] = subnet.gateway
                hints["vnet_id"] = (
                    t.vnets[subnet.vnet_key].id if subnet.vnet_key in t.vnets else None
                )
            notes.append(
                f"managed secondary NIC {nic.name} is already attached: only guest routes change"
            )
        else:
            self._plan_new_nic(vm, nics, primary, primary_cfg, blockers, unknowns, notes, hints)

        # Deallocation: attaching a NIC needs the VM deallocated (AZURE-FACTS section 2).
        if not needs_new_nic:
            needs_deallocation: bool | None = False
        elif vm.power_state == "deallocated":
            needs_deallocation = False
            notes.append("the VM is already deallocated: the NIC can be attached before it starts")
        elif vm.power_state is None:
            needs_deallocation = True
            unknowns.append(Issue("power_state_unknown", "the VM's power state is not known"))
        else:
            needs_deallocation = True

        takeover, not_running = self._pool_peers(vm, needs_deallocation, blockers, unknowns)
        result = (
            tuple(blockers),
            tuple(unknowns),
            needs_new_nic,
            needs_deallocation,
            tuple(notes),
            hints,
            takeover,
            not_running,
        )
        self._vm_remediation[vm.key] = result
        return result

    def _plan_new_nic(self, vm, nics, primary, primary_cfg, blockers, unknowns, notes, hints):
        t, s = self.t, self.s
        hints["name"] = secondary_nic_name(vm.name)
        # NIC limit of the size (Microsoft.Compute/skus MaxNetworkInterfaces); never assumed.
        if vm.size is None:
            unknowns.append(
                Issue("vm_size_unknown", "the VM size is not known, so its NIC limit is not")
            )
        else:
            sku = t.sku(vm.size)
            if sku is None or sku.max_nics is None:
                unknowns.append(
                    Issue(
                        "nic_limit_unknown",
                        f"size {vm.size} has no MaxNetworkInterfaces in the SKU list",
                    )
                )
            elif len(vm.nic_keys) >= sku.max_nics:
                blockers.append(
                    Issue(
                        "nic_limit_reached",
                        f"size {vm.size} allows {sku.max_nics} NICs and the VM has "
                        f"{len(vm.nic_keys)}; resizing is outside this fix",
                    )
                )
            # Accelerated networking only where the size allows it; match the primary NIC.
            if sku is not None and sku.accelerated_networking is not None:
                hints["accelerated_networking"] = bool(
                    sku.accelerated_networking
                    and primary is not None
                    and primary.accelerated_networking
                )
            else:
                hints["accelerated_networking"] = False
                notes.append(
                    "accelerated networking support of the size is unknown: "
                    "the secondary NIC is planned without it"
                )
        if "accelerated_networking" not in hints:
            hints["accelerated_networking"] = False
        if primary is not None:
            hints["nsg_id"] = primary.nsg_id  # same posture as the primary NIC, never weaker

        # Subnet: settings override, else the primary NIC's; it must be in the same VNet.
        subnet_key = (
            normalize(s.secondary_subnet_id)
            if s.secondary_subnet_id
            else (primary_cfg.subnet_key if primary_cfg else None)
        )
        if subnet_key is None:
            unknowns.append(
                Issue("subnet_unknown", "no subnet for the secondary NIC could be found")
            )
            return
        subnet = t.subnets.get(subnet_key)
        primary_vnet = primary_cfg.vnet_key if primary_cfg else None
        target_vnet = subnet.vnet_key if subnet else subnet_key.rpartition("/subnets/")[0]
        if primary_vnet is not None and target_vnet != primary_vnet:
            blockers.append(
                Issue(
                    "different_vnet",
                    "the secondary subnet is in another virtual network than the "
                    "primary NIC; all NICs of a VM must share one VNet",
                )
            )
        if subnet is None:
            hints["subnet_id"] = s.secondary_subnet_id or (
                primary_cfg.subnet_id if primary_cfg else None
            )
            unknowns.append(Issue("subnet_unknown", f"subnet {subnet_key} is not in the documents"))
            return
        hints["subnet_id"] = subnet.id
        hints["vnet_id"] = t.vnets[subnet.vnet_key].id if subnet.vnet_key in t.vnets else None
        if subnet.prefix is None:
            unknowns.append(
                Issue("subnet_prefix_unknown", f"subnet {subnet.name} has no address prefix")
            )
            return
        allocator = self._allocators.get(subnet.key)
        if allocator is None:
            try:
                allocator = ipam.AddressAllocator(subnet.prefix, self.used_ips(subnet.key))
            except ValueError as exc:
                blockers.append(Issue("subnet_too_small", str(exc)))
                return
            self._allocators[subnet.key] = allocator
        gateway = self._gateways.get(subnet.key)
        if gateway is None:
            gateway = self._gateways[subnet.key] = subnet.gateway
        hints["gateway"] = gateway
        prefer = []
        if primary_cfg is not None and primary_cfg.private_ip is not None:
            # the seed article's .10 -> .11
            primary_value = ipam.address_value(primary_cfg.private_ip)
            if primary_value is not None:
                prefer.append(primary_value + 1)
        # Each VM gets its own candidate (handed out in VM-ID order, so deterministic).
        candidate = allocator.take(prefer)
        if candidate is None:
            blockers.append(self._subnet_full(subnet))
            return
        hints["candidate_ip"] = str(candidate)

    def _subnet_full(self, subnet) -> Issue:
        """One immutable blocker per full subnet, shared by its VMs (formatting it is not free)."""
        issue = self._full_subnets.get(subnet.key)
        if issue is None:
            issue = Issue(
                "subnet_full", f"subnet {subnet.name} ({subnet.prefix}) has no free address"
            )
            self._full_subnets[subnet.key] = issue
        return issue

    def _pool_peers(
        self, vm: Vm, needs_deallocation: bool | None, blockers: list[Issue], unknowns: list[Issue]
    ):
        """Running peers take over while the VM is down; a non-running peer forbids it."""
        t = self.t
        own = self.vm_member_keys(vm)
        pool_keys = sorted({pk for ck in own for pk in t.ip_config_pools.get(ck, ())})
        takeover: set[str] = set()
        not_running: set[str] = set()
        will_go_down = needs_deallocation is not False and vm.power_state != "stopped"
        for pk in pool_keys:
            running, stopped, unsure = set(), set(), set()
            for m, peer in self._pool_member_vms(pk):
                if m.ip_config_key in own:
                    continue
                if peer is None:
                    unsure.add(m.ip if m.ip is not None else "an unknown member")
                elif peer.key == vm.key:
                    continue
                elif peer.power_state == "running":
                    running.add(peer.name)
                elif peer.power_state is None:
                    unsure.add(peer.name)
                else:
                    stopped.add(peer.name)
            pool = t.pools.get(pk)
            pool_name = pool.name if pool else pk.rsplit("/", 1)[-1]
            takeover |= running
            not_running |= stopped
            if not will_go_down:
                continue
            if stopped:
                blockers.append(
                    Issue(
                        "pool_peer_not_running",
                        f"pool {pool_name}: {', '.join(sorted(stopped))} not running; "
                        "deallocating this VM could leave the pool without backends",
                    )
                )
            elif not running and unsure:
                unknowns.append(
                    Issue(
                        "pool_peer_state_unknown",
                        f"pool {pool_name}: power state of {', '.join(sorted(unsure))} "
                        "unknown, so it is not known whether another member stays up",
                    )
                )
            elif not running:
                blockers.append(
                    Issue(
                        "last_running_member",
                        f"pool {pool_name}: this VM is the only running member; "
                        "deallocating it would take the service down",
                    )
                )
        return tuple(sorted(takeover)), tuple(sorted(not_running))

    def _pool_member_vms(self, pool_key: str) -> list[tuple[PoolMember, Vm | None]]:
        """A pool's members with their VMs (cached: every VM of the pool looks at its peers)."""
        rows = self._member_vms.get(pool_key)
        if rows is None:
            t = self.t
            rows = []
            for m in t.pool_members.get(pool_key, ()):
                cfg = t.ip_configs.get(m.ip_config_key) if m.ip_config_key else None
                vm_key = t.nic_vm.get(cfg.nic_key) if cfg else None
                rows.append((m, t.vms.get(vm_key) if vm_key else None))
            self._member_vms[pool_key] = rows
        return rows

    def remediation(self, vm: Vm, ports: tuple[Port, ...]) -> Remediation:
        """Cached per (VM, HA-ports or not): immutable, so findings of one VM share it."""
        ha_ports = any(p.ha_ports for p in ports)
        cached = self._remediations.get((vm.key, ha_ports))
        if cached is None:
            cached = self._remediations[(vm.key, ha_ports)] = self._remediation(vm, ha_ports)
        return cached

    def _remediation(self, vm: Vm, ha_ports: bool) -> Remediation:
        (
            blockers,
            unknowns,
            needs_new_nic,
            needs_deallocation,
            notes,
            hints,
            takeover,
            not_running,
        ) = self.vm_remediation(vm)
        if ha_ports:
            if vm.os_type == "Linux" and not self.s.allow_broad_ha_ports_rule:
                blockers += (
                    Issue(
                        "ha_ports_needs_broad_rule",
                        "HA-ports rule: the Linux policy rule cannot be narrowed by "
                        "port; set HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE to accept the "
                        "broad rule (it also reroutes local traffic between the VM's "
                        "two addresses)",
                    ),
                )
            elif vm.os_type == "Linux":
                notes += ("HA-ports rule: the broad Linux policy rule is allowed by settings",)
        if blockers:
            feasible: bool | str = False
        elif unknowns:
            feasible = UNKNOWN
        else:
            feasible = True
        return Remediation(
            feasible,
            blockers,
            unknowns,
            needs_new_nic,
            needs_deallocation,
            notes,
            MappingProxyType(dict(hints)),
            takeover,
            not_running,
        )

    # ----------------------------------------------------------------- run
    def run(self) -> Evaluation:
        t = self.t
        exposures = self.exposures()
        # Internal frontends each VM backs (co-hosted services behind VIPs: inferred callers).
        vm_internal: dict[str, list[str]] = {}
        for vm_key, fk in exposures:
            if t.frontends[fk].is_internal:
                vm_internal.setdefault(vm_key, []).append(fk)
        # (sort key, frontend key, label) per VM, sorted once: reused by every finding of the VM.
        co_hosted: dict[str, list[tuple]] = {}
        for vm_key, fks in vm_internal.items():
            rows = []
            for fk in fks:
                f = t.frontends[fk]
                rows.append(
                    (
                        _ip_sort(f.private_ip),
                        fk,
                        f.private_ip if f.private_ip is not None else f.name,
                    )
                )
            rows.sort()
            co_hosted[vm_key] = rows

        findings: list[tuple[tuple, Finding]] = []
        not_affected: list[tuple[tuple, NotAffected]] = []
        names: dict[str, str] = {}
        # Sorted so candidate IPs are handed out in a stable order.
        for vm_key, fk in sorted(exposures):
            vm = t.vms[vm_key]
            fe = t.frontends[fk]
            fe_ip = fe.private_ip
            pairs = exposures[(vm_key, fk)]
            name = names.get(vm_key)
            if name is None:
                name = names[vm_key] = vm.name.lower()
            order = (name, vm_key, _ip_sort(fe_ip), fk)
            if fe.is_public or not fe.is_internal:
                not_affected.append(
                    (
                        ("public_frontend", *order),
                        NotAffected(vm.id, vm.name, fe.id, fe_ip, "public_frontend"),
                    )
                )
                continue
            rules = {r.key: r for r, _ in pairs}
            keys = sorted(rules) if len(rules) > 1 else list(rules)
            active = [rules[k] for k in keys if not rules[k].floating_ip]
            floating = [rules[k] for k in keys if rules[k].floating_ip]
            if not active:
                not_affected.append(
                    (
                        ("floating_ip", *order),
                        NotAffected(vm.id, vm.name, fe.id, fe_ip, "floating_ip"),
                    )
                )
                continue
            if (vm_key, fe_ip) in self.verified and self._has_managed_nic(vm):
                not_affected.append(
                    (
                        ("fixed_and_verified", *order),
                        NotAffected(vm.id, vm.name, fe.id, fe_ip, "fixed_and_verified"),
                    )
                )
                continue
            own = self.vm_member_keys(vm)
            finding = self.finding(
                vm, fe, fe_ip, active, floating, pairs, own, co_hosted.get(vm_key, [])
            )
            findings.append(((_SEVERITY_RANK[finding.severity], *order), finding))
        findings.sort(key=itemgetter(0))
        not_affected.sort(key=itemgetter(0))
        ordered = tuple(f for _, f in findings)
        return Evaluation(
            ordered, tuple(n for _, n in not_affected), t.unknowns, {f.id: f for f in ordered}
        )

    def _has_managed_nic(self, vm: Vm) -> bool:
        return any(
            k != vm.primary_nic_key
            and k in self.t.nics
            and self.t.nics[k].has_tag(self.s.managed_tag)
            for k in vm.nic_keys
        )

    def finding(self, vm, fe, fe_ip, active, floating, pairs, own, co_hosted) -> Finding:
        t = self.t
        lb = t.load_balancers.get(fe.lb_key)
        ports = [self._port(r) for r in active]
        if len(ports) > 1:
            ports.sort(
                key=lambda p: (
                    p.frontend_port if p.frontend_port is not None else -1,
                    p.backend_port if p.backend_port is not None else -1,
                    p.protocol or "",
                    p.rule_id.lower(),
                )
            )
        ports = tuple(ports)

        odds = [self.rule_odds(r, own) for r in active]
        worst = (
            odds[0]
            if len(odds) == 1
            else max(odds, key=lambda o: (o.likelihood, o.health_read, o.rule.key))
        )
        likelihood = round(worst.likelihood, 4)
        health_read = all(o.health_read for o in odds)

        # Caller evidence: declared beats inferred beats none.
        declared, tag_errors = self.declared_targets(vm)
        matching = []
        if declared:
            frontend_ports = tuple(p.frontend_port for p in ports if p.frontend_port is not None)
            matching = [(src, tgt) for src, tgt in declared if tgt.matches(fe_ip, frontend_ports)]
        if matching:
            caller = "declared"
        elif len(co_hosted) >= 2:
            caller = "inferred"
        else:
            caller = "none"
        # Only the reason of an inferred caller names the VM's other VIPs.
        other_ips = (
            [label for _, fk, label in co_hosted if fk != fe.key] if caller == "inferred" else []
        )

        if caller == "none":
            severity = "info"
        elif likelihood > 0:
            severity = "high"
        else:
            severity = "medium"

        cfg_by_key = t.ip_configs
        config_pools = t.ip_config_pools
        member_rows = [
            (r.key, pk, ck, r)
            for r, ck in pairs
            if not r.floating_ip
            for pk in r.pool_keys
            if pk in config_pools.get(ck, ())
        ]
        if len(member_rows) > 1:
            member_rows.sort(key=lambda row: row[:3])
        membership = []
        for _, pk, ck, r in member_rows:
            cfg = cfg_by_key.get(ck)
            pool = t.pools.get(pk)
            membership.append(
                {
                    "ip_config_id": cfg.id if cfg else ck,
                    "private_ip": cfg.private_ip if cfg else None,
                    "pool_id": pool.id if pool else pk,
                    "rule_id": r.id,
                }
            )
        evidence: dict[str, Any] = {
            "caller": caller,
            "declared": [{"source": src, "target": str(tgt)} for src, tgt in matching],
            "co_hosted_frontends": [label for _, _, label in co_hosted],
            "membership": membership,
            "health": {
                "read": health_read,
                "rules": [
                    {
                        "rule_id": o.rule.id,
                        "read": o.health_read,
                        "likelihood": round(o.likelihood, 4),
                        "healthy": o.healthy,
                        "self_state": o.self_state,
                        "pool_members": o.members,
                        "self_members": o.self_members,
                    }
                    for o in odds
                ],
            },
            "power_state": vm.power_state,
        }
        if floating:
            evidence["floating_ip_rules_excluded"] = [r.id for r in floating]
        if tag_errors:
            evidence["declaration_errors"] = list(tag_errors)

        vm_ip = self._vm_ip(vm)
        ports_text = self._port_texts[ports[0].rule_id] if len(ports) == 1 else _ports_text(ports)
        likelihood_text = self._likelihood_text(vm, fe_ip, worst, len(odds), ports_text)
        reason = self._reason(
            vm,
            vm_ip,
            fe_ip,
            lb.name if lb else "?",
            ports_text,
            severity,
            worst,
            caller,
            matching,
            other_ips,
        )
        remediation = self.remediation(vm, ports)
        unknowns: tuple[Unknown, ...] = ()
        by_resource = t.unknowns_by_resource
        if by_resource:
            found: list[Unknown] = []
            for key in (vm.key, fe.key, fe.lb_key, *vm.nic_keys, *(r.key for r in active)):
                found.extend(by_resource.get(key, ()))
            unknowns = tuple(found)
        return Finding(
            id=_finding_id_from_keys(vm.key, fe.key),
            vm_id=vm.id,
            vm_name=vm.name,
            frontend_ip=fe_ip,
            frontend_id=fe.id,
            frontend_name=fe.name,
            lb_id=lb.id if lb else fe.lb_key,
            lb_name=lb.name if lb else fe.lb_key.rsplit("/", 1)[-1],
            rule_ids=tuple(r.id for r in active),
            ports=ports,
            severity=severity,
            likelihood=likelihood,
            likelihood_text=likelihood_text,
            caller=caller,
            evidence=evidence,
            reason=reason,
            remediation=remediation,
            unknowns=unknowns,
        )

    def _port(self, rule: LbRule) -> Port:
        """One immutable Port per rule, shared by every finding of that rule (cached)."""
        port = self._ports.get(rule.key)
        if port is None:
            port = Port(rule.protocol, rule.frontend_port, rule.backend_port, rule.id)
            self._ports[rule.key] = port
            self._port_texts[rule.id] = port.text()
        return port

    def _vm_ip(self, vm: Vm) -> str | None:
        nic = self.t.nics.get(vm.primary_nic_key) if vm.primary_nic_key else None
        cfg = nic.primary_ip_config if nic else None
        return cfg.private_ip if cfg else None

    def _likelihood_text(self, vm: Vm, fe_ip, worst: _RuleOdds, n_rules: int, ports_text) -> str:
        vip = fe_ip or "the frontend"
        rule_name = worst.rule.name
        several = f" (highest of {n_rules} rules)" if n_rules > 1 else ""
        if worst.health_read:
            healthy = ", ".join(worst.healthy) if worst.healthy else "none"
            if not worst.healthy:
                return (
                    f"No backend of rule {rule_name} is healthy now, so no connection to {vip} "
                    f"succeeds from anywhere; 0% are mapped back to {vm.name}{several}."
                )
            if worst.likelihood == 0:
                state = worst.self_state or "not reported"
                return (
                    f"0% now{several}: {vm.name} is probe-{state.lower()} for rule {rule_name} "
                    f"(healthy: {healthy}); it rises when {vm.name} becomes a healthy member, to "
                    f"100% if it is the only one, as a mirror primary is after a failover."
                )
            return (
                f"{_pct(worst.likelihood)} of {vm.name}'s connections to {vip} are mapped back to "
                f"itself{several}: it is {round(worst.likelihood * len(worst.healthy))} of "
                f"{len(worst.healthy)} healthy backends of rule {rule_name} (healthy: {healthy})."
            )
        if worst.members == 0:
            return f"Rule {rule_name} has no known backends; likelihood 0%."
        return (
            f"Health of rule {rule_name} could not be read; assuming the {worst.members} pool "
            f"members are chosen equally, about {_pct(worst.likelihood)} "
            f"({worst.self_members} in {worst.members}) of {vm.name}'s connections to {vip} are "
            f"mapped back to itself{several}."
        )

    def _reason(
        self, vm, vm_ip, fe_ip, lb_name, ports_text, severity, worst, caller, matching, other_ips
    ) -> str:
        who = f"{vm.name} ({vm_ip})" if vm_ip else vm.name
        vip = fe_ip or "its frontend"
        base = (
            f"{who} is a backend of internal load balancer {lb_name} frontend {vip} ({ports_text})"
        )
        if caller == "declared":
            sources = sorted({src for src, _ in matching})
            why_call = f" and is declared to call it ({' and '.join(sources)})"
        elif caller == "inferred":
            that = "that VIP" if len(other_ips) == 1 else "those VIPs"
            why_call = (
                f" and also backs {', '.join(other_ips)}, so services co-hosted behind "
                f"{that} are expected to call it"
            )
        else:
            why_call = ""
        sent_back = "sent back to itself with the source unchanged and time out"
        if severity == "high":
            if worst.health_read and worst.likelihood >= 1:
                odds = f"it is the only healthy member, so all of its own connections to {vip} are"
            elif worst.health_read:
                odds = f"{_pct(worst.likelihood)} of its own connections to {vip} are"
            else:
                odds = (
                    f"health could not be read, so about {_pct(worst.likelihood)} of its own "
                    f"connections to {vip} are expected to be"
                )
            return f"{base}{why_call}; {odds} {sent_back}."
        if severity == "medium":
            if worst.health_read and not worst.healthy:
                now = "no member is healthy now"
            elif worst.health_read:
                healthy = ", ".join(worst.healthy)
                now = f"it is probe-down now (healthy: {healthy}), so its calls succeed today"
            else:
                now = "no connection is mapped back to it now"
            return (
                f"{base}{why_call}; {now}, but once a failover makes it the healthy member its "
                f"own connections to {vip} are {sent_back}."
            )
        return (
            f"{base}; no service on it is known to call {vip} (nothing declared, and it backs no "
            f"other internal frontend), so this is a latent exposure "
            f"({_pct(worst.likelihood)} of such connections would fail now)."
        )


def evaluate(
    topology: Topology, settings: Settings | None = None, verified: Iterable[tuple[str, str]] = ()
) -> Evaluation:
    """Findings for every (VM, internal frontend) where the VM is a backend of that frontend.

    `verified`: (vm_id, frontend_ip) pairs the journal records as fixed through a managed
    secondary NIC with a verified route; those are not affected while the NIC is attached.
    """
    with gc_paused():
        return _Evaluator(topology, settings or Settings(), verified).run()
