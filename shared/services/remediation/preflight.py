"""The preflight before a VM's first deallocation: one step that writes nothing and is
journaled (action `preflight`), so that a VM is taken down only when every later step will
succeed. The checks are judged in `shared.core.remediation.preflight`; any failure stops the
VM's run as pending with the reason, before the deallocation."""

from __future__ import annotations

import time

from shared.azure.actions import ActionError, ArmActions
from shared.core.guest import command_id, script_lines
from shared.core.guest.probe import render_probe
from shared.core.remediation import preflight as checks
from shared.core.remediation.model import VmPlan
from shared.core.topology import Topology
from shared.core.vocab import JournalAction, JournalResult, PreflightCheck
from shared.services.remediation.run import Run, StopRun, error_text

__all__ = ["PreflightFailed", "run_preflight", "reserve_downtime"]


class PreflightFailed(StopRun):
    """A preflight check failed: the VM is not taken down; the run is pending."""


def run_preflight(run: Run, actions: ArmActions, v: VmPlan, topology: Topology, *,
                  running: bool) -> checks.Preflight:
    """Check on the VM read now, cheapest first; journal the result; raise PreflightFailed on
    the first failure. `running`: the VM runs now (it will be started again, and its guest can
    be probed)."""
    pf = checks.Preflight()
    live_vm = actions.get_vm(v.vm_id) or {}
    needed, problem = _downtime(run, running)
    ok = (pf.record(PreflightCheck.BUDGET, problem)
          and pf.record(PreflightCheck.SIZE, checks.size_problem(live_vm, topology))
          and pf.record(PreflightCheck.NIC, checks.nic_problem(
              actions.get_nic(v.nic.id), vnet_id=v.nic.vnet_id))
          and pf.record(PreflightCheck.PERMISSIONS, _permissions(actions, v, running))
          and (not running or (
              pf.record(PreflightCheck.AGENT, _agent(live_vm))
              and pf.record(PreflightCheck.PROBE, _probe(actions, v, live_vm)))))
    run.journal(JournalAction.PREFLIGHT, JournalResult.SUCCEEDED if ok else JournalResult.PENDING,
                v.vm_id, after={"checks": pf.checks, "reserved_seconds": needed},
                error=pf.reason or None)
    if not ok:
        raise PreflightFailed(pf.reason)
    return pf


def reserve_downtime(run: Run) -> None:
    """The budget check alone (rollback: the VM goes down for the detach and is started
    again): raise PreflightFailed unless the time left covers the downtime."""
    pf = checks.Preflight()
    if not pf.record(PreflightCheck.BUDGET, _downtime(run, True)[1]):
        raise PreflightFailed(pf.reason)


def _downtime(run: Run, running: bool) -> tuple[float, str | None]:
    ctx = run.ctx
    remaining = None if ctx.deadline is None else ctx.deadline - time.monotonic()
    needed = checks.budget_needed(ctx.settings.p95_seconds, starts=running)
    return needed, checks.budget_problem(remaining, needed, ctx.deadline_margin)


def _permissions(actions: ArmActions, v: VmPlan, running: bool) -> str | None:
    missing: list[str] = []
    for scope, needed in checks.needed_actions(v.vm_id, v.nic.id, starts=running).items():
        try:
            granted = actions.permissions(scope)
        except Exception as exc:  # noqa: BLE001 - unreadable permissions are a failed check
            return f"could not read the permissions on {scope}: {error_text(exc)}"
        missing += [f"{a} on {scope}" for a in checks.missing_actions(granted, needed)]
    return f"the identity lacks {', '.join(missing)}" if missing else None


def _agent(live_vm: dict) -> str | None:
    if ArmActions.agent_ready(live_vm) is False:
        return "the VM agent is not Ready: Run Command could not push the routes"
    return None


def _probe(actions: ArmActions, v: VmPlan, live_vm: dict) -> str | None:
    os_type = (v.os_type or "linux").lower()
    primary = actions.get_nic(v.primary_nic_id) if v.primary_nic_id else None
    mac = ((primary or {}).get("properties") or {}).get("macAddress")
    try:
        answer = actions.run_command(v.vm_id, command_id(os_type),
                                     script_lines(render_probe(os_type, mac)), vm=live_vm)
    except ActionError as exc:
        return f"the guest probe (Run Command) did not answer: {exc}"
    return checks.probe_problem(answer.result)
