"""Pure: which VMs will fail to reach which internal load balancer frontends, and why.

The Azure ILB rewrites the destination (VIP -> backend IP) but not the source, so a connection a
backend VM opens to its own pool's frontend fails whenever the load balancer picks that same VM
(docs/risk-model.md). Detection is the membership comparison Microsoft describes: there is no
server-side signal.

One finding per (VM, internal frontend), aggregating every load-balancing rule of that frontend
whose pool holds one of the VM's IP configurations; `ports` lists them all. The finding ID is a
hash of the VM's and the frontend's normalised IDs, so it survives rule and port changes and
the same estate always yields the same IDs.

This module is the evaluation (membership, callers, evidence, severity, ordering); the parts it
composes are `likelihood` (per-rule odds), `callers` (declared targets), `feasibility` (can the
fix be applied) and `text` (the sentences).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

from shared.core.arm_ids import normalize
from shared.core.risk.callers import DeclaredCallers
from shared.core.risk.evidence import DeclaredCall, Evidence, Membership, RuleHealth
from shared.core.risk.feasibility import Feasibility
from shared.core.risk.likelihood import RuleViews
from shared.core.risk.model import (
    SEVERITIES,
    Evaluation,
    Finding,
    NotAffected,
    Port,
    RuleOdds,
    finding_id_from_keys,
)
from shared.core.risk.text import likelihood_sentence, ports_text, reason_sentence
from shared.core.topology import Frontend, LbRule, Topology, Unknown, Vm, gc_paused
from shared.core.vocab import CallerEvidence, HealthSource, Severity
from shared.settings import Settings

__all__ = ["evaluate", "severity_of"]

_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
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


def severity_of(caller: CallerEvidence, likelihood: float) -> Severity:
    """The severity rule (docs/risk-model.md): without a known caller nothing fails today
    (`info`); with one, `high` when some of its own connections are mapped back to it now,
    `medium` when that happens only after a failover."""
    if caller == CallerEvidence.NONE:
        return Severity.INFO
    return Severity.HIGH if likelihood > 0 else Severity.MEDIUM


@dataclass(frozen=True, slots=True)
class Exposure:
    """One VM behind one internal frontend: what a finding is made from."""

    vm: Vm
    frontend: Frontend
    active: list[LbRule]  # the rules without Floating IP
    floating: list[LbRule]  # Floating IP rules: excluded (the guest owns the VIP)
    pairs: list[tuple[LbRule, str]]  # (rule, ipConfiguration key) reaching the VM
    own: set[str]  # the VM's ipConfiguration keys
    co_hosted: list[tuple]  # (sort key, frontend key, label) of the internal frontends it backs


class Evaluator:
    def __init__(self, topology: Topology, settings: Settings,
                 verified: Iterable[tuple[str, str]]) -> None:
        self.t = topology
        self.s = settings
        self.verified = {(normalize(vm), str(ip)) for vm, ip in verified}
        self._member_keys: dict[str, set[str]] = {}
        self._ports: dict[str, Port] = {}
        self._port_texts: dict[str, str] = {}
        self.feasibility = Feasibility(topology, settings, self.vm_member_keys)
        self.rule_views = RuleViews(topology, self._member_label)
        self.callers = DeclaredCallers(settings)

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

    def _member_label(self, ck: str | None, ip: object) -> str:
        if ck is not None:
            cfg = self.t.ip_configs.get(ck)
            vm_key = self.t.nic_vm.get(cfg.nic_key) if cfg else None
            vm = self.t.vms.get(vm_key) if vm_key else None
            if vm is not None:
                return f"{vm.name} {ip}" if ip is not None else vm.name
        return ip if ip is not None else "unknown member"

    def _co_hosted(self, exposures) -> dict[str, list[tuple]]:
        """Internal frontends each VM backs (co-hosted services behind VIPs: inferred callers),
        as (sort key, frontend key, label), sorted once: reused by every finding of the VM."""
        t = self.t
        out: dict[str, list[tuple]] = {}
        for vm_key, fk in exposures:
            f = t.frontends[fk]
            if f.is_internal:
                out.setdefault(vm_key, []).append(
                    (_ip_sort(f.private_ip), fk, f.private_ip if f.private_ip is not None
                     else f.name))
        for rows in out.values():
            rows.sort()
        return out

    # ----------------------------------------------------------------- run
    def run(self) -> Evaluation:
        t = self.t
        exposures = self.exposures()
        co_hosted = self._co_hosted(exposures)
        findings: list[tuple[tuple, Finding]] = []
        not_affected: list[tuple[tuple, NotAffected]] = []
        names: dict[str, str] = {}
        # Sorted so candidate IPs are handed out in a stable order.
        for vm_key, fk in sorted(exposures):
            vm, fe = t.vms[vm_key], t.frontends[fk]
            name = names.get(vm_key)
            if name is None:
                name = names[vm_key] = vm.name.lower()
            order = (name, vm_key, _ip_sort(fe.private_ip), fk)
            pairs = exposures[(vm_key, fk)]
            reason, exposure = self._classify(vm, fe, pairs, co_hosted.get(vm_key, []))
            if reason is not None:
                not_affected.append(((reason, *order), NotAffected(
                    vm.id, vm.name, fe.id, fe.private_ip, reason)))
                continue
            finding = self.finding(exposure)
            findings.append(((_SEVERITY_RANK[finding.severity], *order), finding))
        findings.sort(key=itemgetter(0))
        not_affected.sort(key=itemgetter(0))
        ordered = tuple(f for _, f in findings)
        return Evaluation(ordered, tuple(n for _, n in not_affected), t.unknowns,
                          {f.id: f for f in ordered})

    def _classify(self, vm: Vm, fe: Frontend, pairs: list[tuple[LbRule, str]],
                  co_hosted: list[tuple]) -> tuple[str | None, Exposure | None]:
        """(why it is not affected, None) or (None, the exposure a finding is made of)."""
        if fe.is_public or not fe.is_internal:
            return "public_frontend", None
        rules = {r.key: r for r, _ in pairs}
        keys = sorted(rules) if len(rules) > 1 else list(rules)
        active = [rules[k] for k in keys if not rules[k].floating_ip]
        floating = [rules[k] for k in keys if rules[k].floating_ip]
        if not active:
            return "floating_ip", None
        if (vm.key, fe.private_ip) in self.verified and self.t.managed_nics(
                vm, self.s.managed_tag):
            return "fixed_and_verified", None
        return None, Exposure(vm, fe, active, floating, pairs, self.vm_member_keys(vm),
                              co_hosted)

    # ----------------------------------------------------------------- one finding
    def finding(self, x: Exposure) -> Finding:
        t = self.t
        vm, fe = x.vm, x.frontend
        lb = t.load_balancers.get(fe.lb_key)
        ports = self._ports_of(x.active)
        odds = [self.rule_views.odds(r, x.own) for r in x.active]
        worst = odds[0] if len(odds) == 1 else max(
            odds, key=lambda o: (o.likelihood, o.health_read, o.rule.key))
        likelihood = round(worst.likelihood, 4)
        caller, matching, tag_errors, other_ips = self._caller(x, ports)
        severity = severity_of(caller, likelihood)
        port_text = self._port_texts[ports[0].rule_id] if len(ports) == 1 else ports_text(ports)
        vm_ip = self._vm_ip(vm)
        return Finding(
            id=finding_id_from_keys(vm.key, fe.key),
            vm_id=vm.id,
            vm_name=vm.name,
            frontend_ip=fe.private_ip,
            frontend_id=fe.id,
            frontend_name=fe.name,
            lb_id=lb.id if lb else fe.lb_key,
            lb_name=lb.name if lb else fe.lb_key.rsplit("/", 1)[-1],
            rule_ids=tuple(r.id for r in x.active),
            ports=ports,
            severity=severity,
            likelihood=likelihood,
            likelihood_text=likelihood_sentence(vm, fe.private_ip, worst, len(odds), port_text),
            caller=caller,
            evidence=self._evidence(x, caller, matching, tag_errors, odds),
            reason=reason_sentence(vm, vm_ip, fe.private_ip, lb.name if lb else "?", port_text,
                                   severity, worst, caller, matching, other_ips),
            remediation=self.feasibility.remediation(vm, ports),
            unknowns=self._unknowns(x),
        )

    def _ports_of(self, rules: list[LbRule]) -> tuple[Port, ...]:
        ports = [self._port(r) for r in rules]
        if len(ports) > 1:
            ports.sort(key=lambda p: (
                p.frontend_port if p.frontend_port is not None else -1,
                p.backend_port if p.backend_port is not None else -1,
                p.protocol or "", p.rule_id.lower()))
        return tuple(ports)

    def _caller(self, x: Exposure, ports: tuple[Port, ...]):
        """Caller evidence: declared beats inferred beats none. Returns (caller, matching
        declarations, tag read errors, the other VIPs named by an inferred caller's reason)."""
        declared, tag_errors = self.callers.of(x.vm)
        fe_ip = x.frontend.private_ip
        matching = []
        if declared:
            frontend_ports = tuple(p.frontend_port for p in ports if p.frontend_port is not None)
            matching = [(src, tgt) for src, tgt in declared if tgt.matches(fe_ip, frontend_ports)]
        if matching:
            caller = CallerEvidence.DECLARED
        elif len(x.co_hosted) >= 2:
            caller = CallerEvidence.INFERRED
        else:
            caller = CallerEvidence.NONE
        other_ips = ([label for _, fk, label in x.co_hosted if fk != x.frontend.key]
                     if caller == CallerEvidence.INFERRED else [])
        return caller, matching, tag_errors, other_ips

    def _evidence(self, x: Exposure, caller: CallerEvidence, matching, tag_errors,
                  odds: list[RuleOdds]) -> Evidence:
        return Evidence(
            caller=caller,
            declared=tuple(DeclaredCall(src, str(tgt)) for src, tgt in matching),
            co_hosted_frontends=tuple(label for _, _, label in x.co_hosted),
            membership=self._membership(x.pairs),
            health=tuple(RuleHealth(o.rule.id, o.health_read, round(o.likelihood, 4), o.healthy,
                                    o.self_state, o.members, o.self_members,
                                    self._health_source(o)) for o in odds),
            power_state=x.vm.power_state,
            floating_ip_rules_excluded=tuple(r.id for r in x.floating),
            declaration_errors=tuple(tag_errors),
        )

    def _health_source(self, odds: RuleOdds) -> HealthSource | None:
        read = self.t.health.get(odds.rule.key) if odds.health_read else None
        return read.source if read is not None else None

    def _membership(self, pairs: list[tuple[LbRule, str]]) -> tuple[Membership, ...]:
        t = self.t
        config_pools = t.ip_config_pools
        rows = [(r.key, pk, ck, r) for r, ck in pairs if not r.floating_ip
                for pk in r.pool_keys if pk in config_pools.get(ck, ())]
        if len(rows) > 1:
            rows.sort(key=lambda row: row[:3])
        out = []
        for _, pk, ck, r in rows:
            cfg = t.ip_configs.get(ck)
            pool = t.pools.get(pk)
            out.append(Membership(cfg.id if cfg else ck, cfg.private_ip if cfg else None,
                                  pool.id if pool else pk, r.id))
        return tuple(out)

    def _unknowns(self, x: Exposure) -> tuple[Unknown, ...]:
        by_resource = self.t.unknowns_by_resource
        if not by_resource:
            return ()
        found: list[Unknown] = []
        for key in (x.vm.key, x.frontend.key, x.frontend.lb_key, *x.vm.nic_keys,
                    *(r.key for r in x.active)):
            found.extend(by_resource.get(key, ()))
        return tuple(found)

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


def evaluate(topology: Topology, settings: Settings | None = None,
             verified: Iterable[tuple[str, str]] = ()) -> Evaluation:
    """Findings for every (VM, internal frontend) where the VM is a backend of that frontend.

    `verified`: (vm_id, frontend_ip) pairs the journal records as fixed through a managed
    secondary NIC with a verified route; those are not affected while the NIC is attached.
    """
    with gc_paused():
        return Evaluator(topology, settings or Settings(), verified).run()
