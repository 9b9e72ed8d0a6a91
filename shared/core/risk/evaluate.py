"""Pure: which VMs will fail to reach which internal load balancer frontends, and why.

The Azure ILB rewrites the destination (VIP -> backend IP) but not the source, so a connection a
backend VM opens to its own pool's frontend fails whenever the load balancer picks that same VM
(docs/risk-model.md). Detection is the membership comparison Microsoft describes: there is no
server-side signal.

One finding per (VM, internal frontend), aggregating every load-balancing rule of that frontend
whose pool holds one of the VM's IP configurations; `ports` lists them all. The finding ID is a
hash of the VM's and the frontend's normalised IDs, so it survives rule and port changes and
the same estate always yields the same IDs.

Layout: this module is the evaluation (membership, likelihood, callers, evidence, ordering);
the result types are `shared.core.risk.model`, remediation feasibility `shared.core.risk.feasibility`, and the
sentences `shared.core.risk.text`. Their public names are re-exported here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from shared.core import ipam
from shared.core.arm_ids import normalize
from shared.core.risk.feasibility import _Feasibility, secondary_nic_name
from shared.core.risk.model import (
    NOT_AFFECTED_REASONS,
    SEVERITIES,
    Evaluation,
    Finding,
    Issue,
    NotAffected,
    Port,
    Remediation,
    _finding_id_from_keys,
    finding_id,
)
from shared.core.risk.text import _ports_text, likelihood_sentence, reason_sentence
from shared.core.topology import LbRule, PoolMember, Topology, Unknown, Vm, gc_paused
from shared.settings import CallTarget, Settings, parse_call_targets

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

_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


# --------------------------------------------------------------------------- helpers


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


class _Evaluator(_Feasibility):
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
            and self.t.nics[k].is_managed(self.s.managed_tag)
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
        likelihood_text = likelihood_sentence(vm, fe_ip, worst, len(odds), ports_text)
        reason = reason_sentence(
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


def evaluate(
    topology: Topology, settings: Settings | None = None, verified: Iterable[tuple[str, str]] = ()
) -> Evaluation:
    """Findings for every (VM, internal frontend) where the VM is a backend of that frontend.

    `verified`: (vm_id, frontend_ip) pairs the journal records as fixed through a managed
    secondary NIC with a verified route; those are not affected while the NIC is attached.
    """
    with gc_paused():
        return _Evaluator(topology, settings or Settings(), verified).run()
