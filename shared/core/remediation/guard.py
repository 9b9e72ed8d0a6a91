"""Pure: may this plan run now, for this trigger? Returns a decision with its reasons.

The guard (non-negotiable):
- modes: `audit` never writes, `plan` records a pending plan and writes nothing to Azure,
  `apply` may act;
- unattended triggers (event, timer, sweep) act only on VMs opted in by tag, and deallocate only
  inside a maintenance window (settings, or the VM's own tag); otherwise the plan is pending;
- an on-demand apply (CLI, HTTP) that deallocates needs an approval equal to the plan hash;
- never deallocate a VM while another member of a backend pool it shares is not running
  (deallocated, stopped, or being remediated), and never the last running member of a pool.
  Probe health is not part of this: a probe-down mirror backup is running and is exactly the
  peer that takes over.
One VM per pool at a time is enforced by the service with locks, not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shared.core.arm_ids import normalize
from shared.core.remediation.model import Plan
from shared.core.schedule import MaintenanceWindow
from shared.core.topology import Topology, Vm
from shared.core.vocab import Mode, PowerState, TriggerKind, Verdict
from shared.settings import Settings

__all__ = ["Decision", "decide", "check_deallocation", "window_open"]


@dataclass(frozen=True)
class Decision:
    status: Verdict
    reasons: tuple[str, ...] = ()
    may_deallocate: bool = False
    vm_reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.status == Verdict.RUN

    def as_dict(self) -> dict:
        return {"status": self.status, "reasons": list(self.reasons),
                "may_deallocate": self.may_deallocate,
                "vm_reasons": {k: list(v) for k, v in self.vm_reasons.items()}}


def window_open(vm: Vm | None, settings: Settings, now: datetime) -> tuple[bool, str]:
    """(open?, why). The VM's tag overrides the settings' window; no window at all = closed."""
    text = vm.tag(settings.maintenance_window_tag) if vm is not None else None
    if text:
        try:
            window = MaintenanceWindow.parse(text)
        except ValueError as exc:
            return False, f"tag {settings.maintenance_window_tag} is not a window ({exc})"
        source = f"tag {settings.maintenance_window_tag}"
    elif settings.maintenance_window is not None:
        window, source = settings.maintenance_window, "HAIRPIN_MAINTENANCE_WINDOW"
    else:
        return False, "no maintenance window is configured (settings or VM tag)"
    if window.is_open(now):
        return True, f"inside the maintenance window {window} ({source})"
    return False, f"outside the maintenance window {window} ({source})"


def check_deallocation(vm_id: str, topology: Topology, *,
                       remediating: Iterable[str] = ()) -> list[str]:
    """Reasons `vm_id` must not be deallocated now; empty when it may.

    `remediating`: VM IDs being remediated elsewhere (e.g. left deallocated by an unfinished
    run, from the journal's open records): they count as not running."""
    t = topology
    vm = t.vms.get(normalize(vm_id))
    if vm is None:
        return [f"VM {vm_id} is not in the estate"]
    if vm.power_state == PowerState.STOPPED:
        return []  # stopped: it serves nothing, so no peer has to take over
    busy = {normalize(v) for v in remediating}
    own = t.ip_config_keys(vm)
    reasons: list[str] = []
    for pk in t.pool_keys_of_vm(vm):
        pool = t.pools.get(pk)
        pool_name = pool.name if pool else pk.rsplit("/", 1)[-1]
        lb = t.load_balancers.get(pool.lb_key) if pool else None
        label = f"pool {lb.name + '/' if lb else ''}{pool_name}"
        running: set[str] = set()
        for m in t.members_of_pool(pk):
            if m.ip_config_key in own:
                continue
            peer = t.vm_of_ip_config(m.ip_config_key) if m.ip_config_key else None
            if peer is None:
                reasons.append(f"{label}: member {m.ip or m.ip_config_key} is not a known VM, "
                               "so it is not known to stay up")
                continue
            if peer.key == vm.key:
                continue
            if peer.key in busy:
                reasons.append(f"{label}: peer {peer.name} is being remediated "
                               "(deallocated by an unfinished run)")
            elif peer.power_state != PowerState.RUNNING:
                reasons.append(f"{label}: peer {peer.name} is "
                               f"{peer.power_state or 'in an unknown power state'}, not running")
            else:
                running.add(peer.name)
        if not running and not any(r.startswith(label) for r in reasons):
            reasons.append(f"{label}: {vm.name} is the last running member; deallocating it "
                           "would take the service down")
    return reasons


def decide(plan: Plan, topology: Topology, settings: Settings, *, trigger_kind: TriggerKind,
           now: datetime, approval: str | None = None,
           remediating: Iterable[str] = ()) -> Decision:
    """May `plan` run now for a trigger of `trigger_kind`?"""
    remediating = list(remediating)
    if plan.empty:
        return Decision(Verdict.RUN, ("nothing to do",))
    if settings.mode == Mode.AUDIT:
        return Decision(Verdict.REFUSED, ("mode is audit: nothing is ever written "
                                          "(set HAIRPIN_MODE=apply to remediate)",))
    if settings.mode == Mode.PLAN:
        return Decision(Verdict.PENDING, ("mode is plan: the plan is recorded, nothing is "
                                          "changed (set HAIRPIN_MODE=apply to remediate)",))
    reasons: list[str] = []
    vm_reasons: dict[str, tuple[str, ...]] = {}
    dealloc = [v for v in plan.vms if v.needs_deallocation]
    for v in dealloc:
        problems = check_deallocation(v.vm_id, topology, remediating=remediating)
        if problems:
            vm_reasons[v.vm_name] = tuple(problems)
            reasons += [f"{v.vm_name}: {p}" for p in problems]
    if reasons:
        return Decision(Verdict.REFUSED, tuple(reasons), False, vm_reasons)
    if plan.blockers:
        return Decision(Verdict.REFUSED, tuple(f"blocked: {b}" for b in plan.blockers))

    if TriggerKind(trigger_kind).unattended:
        return _unattended(plan, dealloc, topology, settings, now)
    return _on_demand(plan, dealloc, approval)


def _unattended(plan: Plan, dealloc: list, topology: Topology, settings: Settings,
                now: datetime) -> Decision:
    """Events and timers: every VM opted in, and deallocation only inside its window."""
    not_opted = [v.vm_name for v in plan.vms
                 if not settings.is_opted_in(_vm(topology, v.vm_id).tags
                                             if _vm(topology, v.vm_id) else {})]
    if not_opted:
        return Decision(Verdict.REFUSED, tuple(
            f"{name}: not opted in to unattended remediation (tag "
            f"{settings.opt_in_tag}={settings.opt_in_value})" for name in not_opted))
    closed = []
    for v in dealloc:
        ok, why = window_open(_vm(topology, v.vm_id), settings, now)
        if not ok:
            closed.append(f"{v.vm_name}: deallocation needed but {why}")
    if closed:
        return Decision(Verdict.PENDING, tuple(closed) + ("the plan is recorded as pending",))
    return Decision(Verdict.RUN, ("unattended apply: every VM opted in"
                                  + (", inside its maintenance window" if dealloc else ""),),
                    bool(dealloc))


def _on_demand(plan: Plan, dealloc: list, approval: str | None) -> Decision:
    """CLI and HTTP: a plan that deallocates runs only with the approval of its exact hash."""
    if dealloc:
        names = ", ".join(v.vm_name for v in dealloc)
        if approval is None:
            return Decision(Verdict.PENDING, (
                f"the plan deallocates {names}: approve this exact plan with --approve "
                f"{plan.hash} (HTTP: \"approve\")",))
        if approval.strip().lower() != plan.hash:
            return Decision(Verdict.REFUSED, (
                f"stale approval: approved {approval.strip()[:64]} but the plan is now "
                f"{plan.hash} (the estate or the plan changed); review the plan again",))
        return Decision(Verdict.RUN, (f"approved plan {plan.hash}",), True)
    if approval is not None and approval.strip().lower() != plan.hash:
        return Decision(Verdict.REFUSED, (f"stale approval: approved {approval.strip()[:64]} "
                                          f"but the plan is now {plan.hash}",))
    return Decision(Verdict.RUN, ("no deallocation needed: Run Command only",))


def _vm(t: Topology, vm_id: str) -> Vm | None:
    return t.vms.get(normalize(vm_id))
