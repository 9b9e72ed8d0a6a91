"""Pure: the sentences of a finding: its `likelihood_text` and its `reason`.

Built by the evaluation (`shared.core.risk.evaluate`) from the facts it established (the worst
rule's odds, the caller evidence, the severity); nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.core.risk.model import Port, RuleOdds
from shared.core.topology import Vm
from shared.core.vocab import CallerEvidence, Severity

__all__ = ["likelihood_sentence", "ports_text", "reason_sentence"]


def _pct(p: float) -> str:
    return f"{round(p * 100)}%"


def ports_text(ports: Iterable[Port]) -> str:
    """`TCP 1972, TCP 1972->1973`: each port text once, in order."""
    return ", ".join(dict.fromkeys(p.text() for p in ports))


def likelihood_sentence(vm: Vm, fe_ip, worst: RuleOdds, n_rules: int, port_text) -> str:
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


def reason_sentence(
    vm, vm_ip, fe_ip, lb_name, port_text, severity, worst, caller, matching, other_ips
) -> str:
    who = f"{vm.name} ({vm_ip})" if vm_ip else vm.name
    vip = fe_ip or "its frontend"
    base = f"{who} is a backend of internal load balancer {lb_name} frontend {vip} ({port_text})"
    if caller == CallerEvidence.DECLARED:
        sources = sorted({src for src, _ in matching})
        why_call = f" and is declared to call it ({' and '.join(sources)})"
    elif caller == CallerEvidence.INFERRED:
        that = "that VIP" if len(other_ips) == 1 else "those VIPs"
        why_call = (
            f" and also backs {', '.join(other_ips)}, so services co-hosted behind "
            f"{that} are expected to call it"
        )
    else:
        why_call = ""
    sent_back = "sent back to itself with the source unchanged and time out"
    if severity == Severity.HIGH:
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
    if severity == Severity.MEDIUM:
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
