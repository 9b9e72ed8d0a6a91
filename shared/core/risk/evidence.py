"""Pure: what a finding rests on (`Finding.evidence`), as typed values.

Each type knows its own report shape (`as_dict`, docs/report-schema.json `evidence`), so a
report of 10,000 findings is written field by field instead of by a generic recursive copy
that tested every value for being a mapping or a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.core.vocab import CallerEvidence, HealthSource

__all__ = ["DeclaredCall", "Membership", "RuleHealth", "Evidence"]


@dataclass(frozen=True, slots=True)
class DeclaredCall:
    """A caller declaration that names this frontend: where it was read, what it says."""

    source: str
    target: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target}


@dataclass(frozen=True, slots=True)
class Membership:
    """One of the VM's IP configurations in a pool of a rule of this frontend."""

    ip_config_id: str
    private_ip: str | None
    pool_id: str
    rule_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"ip_config_id": self.ip_config_id, "private_ip": self.private_ip,
                "pool_id": self.pool_id, "rule_id": self.rule_id}


@dataclass(frozen=True, slots=True)
class RuleHealth:
    """One rule's odds for this VM and the health they were computed from."""

    rule_id: str
    read: bool  # health was read (else every member is assumed equally likely)
    likelihood: float
    healthy: tuple[str, ...]  # "name ip" of the healthy members
    self_state: str | None
    pool_members: int
    self_members: int
    source: HealthSource | None = None  # which API the health was read from (None: unread)

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "read": self.read, "likelihood": self.likelihood,
                "healthy": list(self.healthy), "self_state": self.self_state,
                "pool_members": self.pool_members, "self_members": self.self_members,
                "source": self.source}


@dataclass(frozen=True, slots=True)
class Evidence:
    caller: CallerEvidence
    declared: tuple[DeclaredCall, ...]
    co_hosted_frontends: tuple[str, ...]  # the internal frontends the VM backs (labels)
    membership: tuple[Membership, ...]
    health: tuple[RuleHealth, ...]
    power_state: str | None
    floating_ip_rules_excluded: tuple[str, ...] = ()
    declaration_errors: tuple[str, ...] = ()

    @property
    def health_read(self) -> bool:
        """Health was read for every rule of the finding."""
        return all(h.read for h in self.health)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "caller": self.caller,
            "declared": [d.as_dict() for d in self.declared],
            "co_hosted_frontends": list(self.co_hosted_frontends),
            "membership": [m.as_dict() for m in self.membership],
            "health": {"read": self.health_read, "rules": [h.as_dict() for h in self.health]},
            "power_state": self.power_state,
        }
        if self.floating_ip_rules_excluded:
            out["floating_ip_rules_excluded"] = list(self.floating_ip_rules_excluded)
        if self.declaration_errors:
            out["declaration_errors"] = list(self.declaration_errors)
        return out
