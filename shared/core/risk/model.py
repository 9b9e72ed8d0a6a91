"""Pure: the result types of the risk evaluation (`shared.core.risk.evaluate`) and the finding
ID.

`Finding` (one per VM and internal frontend, with its `Port`s and `Remediation`), `NotAffected`,
`Issue`, and `Evaluation`, the whole result; `as_dict` gives the shape of the JSON report
(docs/report-schema.json). `finding_id` hashes the VM's and the frontend's normalised IDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.risk.evidence import Evidence
from shared.core.topology import LbRule, Unknown
from shared.core.vocab import ACTIONABLE, CallerEvidence, Severity

__all__ = [
    "SEVERITIES",
    "RuleOdds",
    "finding_id_from_keys",
    "NOT_AFFECTED_REASONS",
    "Port",
    "Issue",
    "Remediation",
    "Finding",
    "NotAffected",
    "Evaluation",
    "finding_id",
]

SEVERITIES: tuple[Severity, ...] = tuple(Severity)
NOT_AFFECTED_REASONS = {
    "floating_ip": "every rule from this frontend to the VM uses Floating IP (DSR): the guest "
    "owns the VIP and answers the hairpin locally",
    "public_frontend": "public load balancer frontend: flows are SNATed, so the hairpin works",
    "fixed_and_verified": "calls to this VIP already leave through a managed secondary NIC, "
    "with a route recorded and verified",
}


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
class RuleOdds:
    """How likely one VM's own connections through one rule come back to itself."""

    rule: LbRule
    likelihood: float
    health_read: bool
    healthy: tuple[str, ...]  # "name ip" of healthy members (when read)
    self_state: str | None
    members: int
    self_members: int


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
    severity: Severity
    likelihood: float
    likelihood_text: str
    caller: CallerEvidence
    evidence: Evidence
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
            "evidence": self.evidence.as_dict(),
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
        return any(f.severity in ACTIONABLE for f in self.findings)


# --------------------------------------------------------------------------- helpers


def finding_id(vm_id: str, frontend_id: str) -> str:
    """Stable, lowercase: the same VM and frontend always give the same ID."""
    return finding_id_from_keys(normalize(vm_id), normalize(frontend_id))


def finding_id_from_keys(vm_key: str, frontend_key: str) -> str:
    """`finding_id` of already normalised IDs (the evaluation has them at hand)."""
    digest = hashlib.sha256(f"{vm_key}|{frontend_key}".encode()).hexdigest()
    return f"hp-{digest[:20]}"

