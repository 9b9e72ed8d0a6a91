"""Pure: how likely a VM's own connections to a frontend are mapped back to itself, per rule.

With rule health read, the load balancer sends a new flow to one of the healthy (probe Up)
members, so the likelihood is the VM's share of the healthy members; without health, every pool
member is assumed equally likely (docs/risk-model.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.core.risk.model import RuleOdds
from shared.core.topology import LbRule, PoolMember, Topology

__all__ = ["RuleViews", "RuleView"]

# (members in a stable order, health state per member or None when unread, healthy members,
#  "name ip" labels of the healthy members)
RuleView = tuple[list[PoolMember], list[str | None] | None, list[PoolMember], tuple[str, ...]]


class RuleViews:
    """Per-rule facts shared by every VM in the rule's pools, computed once per evaluation."""

    def __init__(self, topology: Topology, label: Callable[[str | None, Any], str]) -> None:
        self.t = topology
        self._label = label  # member label ("hs-vm1 10.0.1.10") from ipConfiguration key + IP
        self._views: dict[str, RuleView] = {}

    def view(self, rule: LbRule) -> RuleView:
        cached = self._views.get(rule.key)
        if cached is not None:
            return cached
        t = self.t
        seen: dict[tuple, PoolMember] = {}
        for pk in rule.pool_keys:
            for m in t.pool_members.get(pk, ()):
                seen.setdefault((m.ip_config_key or "", m.ip or ""), m)
        members = [seen[k] for k in sorted(seen)]
        health = t.health.get(rule.key)
        states = None
        healthy: list[PoolMember] = []
        labels: tuple[str, ...] = ()
        if health is not None:
            states = [health.state_of(m.ip_config_key, m.ip) for m in members]
            if all(state is None for state in states):
                states = None  # the response covers none of the members: treat as unread
            else:
                healthy = [m for m, state in zip(members, states, strict=True)
                           if (state or "").lower() == "up"]
                labels = tuple(self._label(m.ip_config_key, m.ip) for m in healthy)
        view = (members, states, healthy, labels)
        self._views[rule.key] = view
        return view

    def odds(self, rule: LbRule, own: set[str]) -> RuleOdds:
        """The odds for a VM whose ipConfiguration keys are `own`."""
        members, states, healthy, labels = self.view(rule)
        self_count = sum(1 for m in members if m.ip_config_key in own)
        if states is not None:
            self_healthy = sum(1 for m in healthy if m.ip_config_key in own)
            p = self_healthy / len(healthy) if healthy else 0.0
            self_state = None
            for m, state in zip(members, states, strict=True):
                if m.ip_config_key in own and (self_state is None or state == "Up"):
                    self_state = state
            return RuleOdds(rule, p, True, labels, self_state, len(members), self_count)
        p = self_count / len(members) if members else 0.0
        return RuleOdds(rule, p, False, (), None, len(members), self_count)
