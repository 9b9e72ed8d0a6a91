"""Pure: the fleet owner's first questions, answered from a report document's findings.

Where the risk is (counts by subscription, resource group and load balancer), why fixes are
blocked (top blocker codes), what changed since the previous audit (new, resolved, unchanged:
the caller passes the previous report's findings, read from the report index in Blob), and what
fixing would cost: the VMs to deallocate, grouped by backend pool, because the guard takes one
VM of a pool down at a time, so the VMs of one pool are rounds in a row, never parallel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.core import arm_ids
from shared.core.vocab import Severity

__all__ = ["GroupCounts", "Trend", "FixCost", "Overview", "build_overview", "is_blocked",
           "scope_of", "trend_between", "SEVERITY_NAMES", "parsed_id", "parent_of"]

SEVERITY_NAMES = tuple(s.value for s in Severity)
TOP_BLOCKERS = 10
# A fleet's findings name each VM and pool many times: parse each ID once.
parsed_id = lru_cache(maxsize=1 << 16)(arm_ids.try_parse)
parent_of = lru_cache(maxsize=1 << 16)(arm_ids.parent_id)


@dataclass
class GroupCounts:
    """Findings of one subscription, resource group or load balancer."""

    key: str  # normalized ID (or the subscription GUID)
    name: str
    subscription: str = ""
    resource_group: str = ""
    by_severity: Counter = field(default_factory=Counter)
    blocked: int = 0
    vms: set[str] = field(default_factory=set)

    def add(self, finding: Mapping[str, Any]) -> None:
        self.by_severity[str(finding.get("severity"))] += 1
        self.blocked += is_blocked(finding)
        self.vms.add(arm_ids.normalize(finding.get("vm_id") or ""))

    @property
    def findings(self) -> int:
        return sum(self.by_severity.values())

    def risk_key(self) -> tuple:
        """Worst first: most high, then medium, then info findings, then by name."""
        return (-self.by_severity["high"], -self.by_severity["medium"],
                -self.by_severity["info"], self.name.lower(), self.key)


@dataclass(frozen=True)
class Trend:
    """This audit against the previous one, by finding ID (IDs are stable across audits)."""

    previous_generated_at: str | None
    new: int
    resolved: int
    unchanged: int
    new_high: int


@dataclass(frozen=True)
class FixCost:
    vms_to_deallocate: int  # every VM whose fix needs a NIC attach (deallocation)
    vms_fixable_now: int  # of those, VMs with no blocker on any of their findings
    pools: tuple[tuple[str, str, int], ...]  # (pool key, "lb/pool", VMs to deallocate), worst first
    rounds: int  # the largest pool's count: its VMs go down one after another


@dataclass(frozen=True)
class Overview:
    subscriptions: tuple[GroupCounts, ...]
    resource_groups: tuple[GroupCounts, ...]
    load_balancers: tuple[GroupCounts, ...]
    top_blockers: tuple[tuple[str, int], ...]  # (code, findings), most first
    blocked: int
    trend: Trend | None
    fix_cost: FixCost


def is_blocked(finding: Mapping[str, Any]) -> bool:
    """A finding whose fix cannot run as things are: it has at least one blocker."""
    return bool((finding.get("remediation") or {}).get("blockers"))


def scope_of(finding: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subscription, resource group key, load balancer key) of a finding, normalized."""
    vm = parsed_id(finding.get("vm_id"))
    lb_key = arm_ids.normalize(finding.get("lb_id") or finding.get("lb_name") or "?")
    if vm is None:
        return "?", "?", lb_key
    sub = vm.subscription.lower()
    return sub, f"/subscriptions/{sub}/resourcegroups/{(vm.resource_group or '?').lower()}", lb_key


def _group(groups: dict[str, GroupCounts], key: str, name: str, sub: str = "",
           rg: str = "") -> GroupCounts:
    if key not in groups:
        groups[key] = GroupCounts(key, name, sub, rg)
    return groups[key]


def build_overview(findings: Iterable[Mapping[str, Any]],
                   previous: Mapping[str, Any] | None = None) -> Overview:
    """`previous`: the previous audit's report document (only `generated_at` and its findings'
    `id` and `severity` are read), or None when there is none to compare with."""
    findings = list(findings)
    subs: dict[str, GroupCounts] = {}
    rgs: dict[str, GroupCounts] = {}
    lbs: dict[str, GroupCounts] = {}
    blockers: Counter = Counter()
    for f in findings:
        sub, rg, lb = scope_of(f)
        rg_name = rg.rsplit("/", 1)[-1]
        vm = parsed_id(f.get("vm_id"))
        if vm is not None and vm.resource_group:
            rg_name = vm.resource_group  # as ARM spells it, for display
        _group(subs, sub, sub).add(f)
        _group(rgs, rg, rg_name, sub).add(f)
        _group(lbs, lb, f.get("lb_name") or arm_ids.name_of(lb), sub, rg_name).add(f)
        blockers.update({b.get("code") for b in (f.get("remediation") or {}).get("blockers") or []})
    ordered = [tuple(sorted(g.values(), key=GroupCounts.risk_key)) for g in (subs, rgs, lbs)]
    top = tuple(sorted(blockers.items(), key=lambda kv: (-kv[1], str(kv[0]))))[:TOP_BLOCKERS]
    return Overview(*ordered, top_blockers=top, blocked=sum(map(is_blocked, findings)),
                    trend=trend_between(findings, previous), fix_cost=fix_cost(findings))


def trend_between(findings: list[Mapping[str, Any]],
                  previous: Mapping[str, Any] | None) -> Trend | None:
    if previous is None:
        return None
    before = {str(f.get("id")) for f in previous.get("findings") or []}
    now = {str(f.get("id")): f for f in findings}
    new = [f for i, f in now.items() if i not in before]
    return Trend(previous.get("generated_at"), new=len(new), resolved=len(before - now.keys()),
                 unchanged=len(now.keys() & before),
                 new_high=sum(1 for f in new if f.get("severity") == Severity.HIGH.value))


def fix_cost(findings: list[Mapping[str, Any]]) -> FixCost:
    """VMs whose fix deallocates them, and how they fall into pools (one down per pool)."""
    down: set[str] = set()
    blocked: set[str] = set()
    pools: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for f in findings:
        rem = f.get("remediation") or {}
        if not rem.get("needs_deallocation"):
            continue
        vm = arm_ids.normalize(f.get("vm_id") or "")
        down.add(vm)
        if is_blocked(f):
            blocked.add(vm)
        for m in (f.get("evidence") or {}).get("membership") or []:
            pool = arm_ids.normalize(m.get("pool_id") or "")
            if pool:
                pools.setdefault(pool, set()).add(vm)
                lb = parent_of(pool) or ""
                names[pool] = f"{arm_ids.name_of(lb) if lb else '?'}/{arm_ids.name_of(pool)}"
    ranked = tuple(sorted(((k, names[k], len(v)) for k, v in pools.items()),
                          key=lambda p: (-p[2], p[1].lower(), p[0])))
    return FixCost(len(down), len(down - blocked), ranked, ranked[0][2] if ranked else 0)
