"""Remediation: the one code path every entry point (CLI, HTTP, queue, events, sweep) uses.

    plan_for_vm / plan_for_finding  -> PlanResult   (live discovery + risk.evaluate + plan)
    apply(ctx, target, trigger, approval=)          -> Outcome
    resume_interrupted(ctx, trigger)                 -> [Outcome]  (start VMs we left deallocated)
    ensure_guest_routes / verify / rollback          -> Outcome

Safety: `shared.core.remediation.guard` decides whether a plan may run; before each deallocation the pool peers'
power states are re-read live and the guard's pool rule is checked again; one VM per pool at a
time (Blob-lease locks per pool and per VM); the `deallocated` open record is written *before*
a deallocation and closed only after the start, so any later run (any trigger) starts the VM
first. Every write is journaled before (`started`) and after (`succeeded`/`failed`) with
before/after documents. Every step re-checks its precondition against live state, so a rerun
continues where a stopped run left off. A run stopped by its budget (RetryBudgetExceeded, a
near deadline, a busy lock) stops cleanly with status `pending` and `resumable: true`.

The code is split by seam; this module keeps the entry points and re-exports every name the
others define: remediation_outcome (statuses, Outcome, VmOutcome), remediation_plans (targets,
live observation, PlanResult), remediation_run (_Run: journal, actions, budget; failure
classification), remediation_steps (_VmRunner: one VM's steps), remediation_rollback
(rollback_plan and its steps).
"""

from __future__ import annotations

import logging

from shared import observability
from shared.azure.actions import ArmActions, NotManaged
from shared.core import arm_ids
from shared.core.journal import (
    OPEN_DEALLOCATED,
    OPEN_VERIFIED_ROUTE,
    RESULT_FAILED,
    RESULT_PENDING,
    RESULT_REFUSED,
    RESULT_STARTED,
    RESULT_SUCCEEDED,
    JournalEntry,
    Trigger,
)
from shared.core.remediation import guard
from shared.core.remediation.outcome import (
    Outcome,
    VmOutcome,
    new_operation_id,
)
from shared.core.vocab import Status, StepKind, Verdict
from shared.services.context import ServiceContext
from shared.services.remediation.rollback import _rollback_nic, rollback_plan
from shared.services.remediation.run import (
    _error_text,
    _left_deallocated_by_others,
    _needs_storage,
    _Refuse,
    _Run,
    _stop_reason,
    _summary,
)
from shared.services.remediation.targets import (
    PlanResult,
    TargetError,
    _single_vm_plan,
    parse_target,
    plan_for_target,
)
from shared.services.remediation.vm_runner import (
    _VmRunner,
)
from shared.storage.locks import LockBusy, pool_lock, vm_lock

log = logging.getLogger(__name__)


__all__ = ["apply", "ensure_guest_routes", "verify", "history"]


# --------------------------------------------------------------------------- public API

def resume_interrupted(ctx: ServiceContext, trigger: Trigger, *,
                       operation_id: str | None = None) -> list[Outcome]:
    """Start every VM this project deallocated and did not start again (journal open records),
    unless another live run holds its lock. Any entry point calls this first."""
    if ctx.journal is None:
        return []
    outcomes: list[Outcome] = []
    for rec in ctx.journal.left_deallocated():
        run = _Run(ctx, trigger, operation_id, rec.plan_hash)
        out = Outcome(Status.UNCHANGED, operation_id=run.op, plan_hash=rec.plan_hash)
        vm_out = VmOutcome(rec.vm_id, arm_ids.name_of(rec.vm_id))
        out.vms.append(vm_out)
        try:
            held = ctx.locks.hold([vm_lock(rec.vm_id)], operation_id=run.op) if ctx.locks else None
        except LockBusy as exc:
            out.status = Status.PENDING
            out.reasons.append(f"{vm_out.vm_name}: a run in progress holds it ({exc})")
            outcomes.append(out)
            continue
        try:
            _close_interrupted(ctx, run, rec)
            actions = run.for_vm(rec.vm_id)
            live = actions.get_vm(rec.vm_id)
            power = ArmActions.power_state(live) if live else None
            if live is None or power == "running":
                ctx.journal.close_record(OPEN_DEALLOCATED, rec.vm_id)
                vm_out.reasons.append("already running" if live else "VM no longer exists")
            elif power in ("deallocated", "stopped"):
                run.journal(StepKind.START, RESULT_STARTED, rec.vm_id, step="resume",
                            before={"power_state": power, "left_by": rec.operation_id})
                try:
                    actions.start(rec.vm_id)
                except Exception as exc:
                    run.journal(StepKind.START, RESULT_FAILED, rec.vm_id, step="resume",
                                error=_error_text(exc))
                    raise
                run.journal(StepKind.START, RESULT_SUCCEEDED, rec.vm_id, step="resume",
                            after={"power_state": "running"})
                ctx.journal.close_record(OPEN_DEALLOCATED, rec.vm_id)
                out.status = vm_out.status = Status.APPLIED
                out.reasons.append(f"{vm_out.vm_name}: started again (left deallocated by "
                                   f"operation {rec.operation_id})")
            else:
                out.status = Status.PENDING
                out.reasons.append(f"{vm_out.vm_name} is {power}: checked again next run")
        except Exception as exc:  # noqa: BLE001
            out.status = Status.PENDING if _stop_reason(exc) else Status.FAILED
            out.resumable = True
            out.reasons.append(f"{vm_out.vm_name}: could not start it: {_error_text(exc)}")
        finally:
            if held is not None:
                held.release()
        out.arm_writes = run.writes
        outcomes.append(out)
    return outcomes


def _close_interrupted(ctx: ServiceContext, run: _Run, rec) -> None:
    """Journal the steps the interrupted run started and never finished (append-only: a
    `failed` entry under the original operation), so the journal says what happened."""
    entries = list(reversed(ctx.journal.history(rec.vm_id, 200, operation_id=rec.operation_id)))
    open_steps: dict[str, int] = {}
    for e in entries:
        if e.result == RESULT_STARTED:
            open_steps[e.action] = open_steps.get(e.action, 0) + 1
        elif e.result in (RESULT_SUCCEEDED, RESULT_FAILED) and open_steps.get(e.action):
            open_steps[e.action] -= 1
    for action, count in open_steps.items():
        for _ in range(count):
            ctx.journal.append(JournalEntry(
                action=action, result=RESULT_FAILED, trigger=run.trigger,
                operation_id=rec.operation_id, vm_id=rec.vm_id, plan_hash=rec.plan_hash,
                step=action, error=f"interrupted: the run stopped during this step; resumed by "
                                   f"operation {run.op}"))


def _guarded_run(ctx: ServiceContext, pr: PlanResult, trigger: Trigger, approval: str | None,
                 operation_id: str | None, *, mode: str = "apply",
                 resumed: list[Outcome] | None = None) -> Outcome:
    """`_run_plan` with the run's IDs on every log line and its outcome counted."""
    operation_id = operation_id or new_operation_id()
    with observability.correlate(operation_id=operation_id, plan_hash=pr.plan.hash,
                                 trigger=trigger.kind, event_id=trigger.event_id):
        out = _run_plan(ctx, pr, trigger, approval, operation_id, mode=mode, resumed=resumed)
    observability.record_outcome(out, trigger=trigger.kind)
    return out


def _run_plan(ctx: ServiceContext, pr: PlanResult, trigger: Trigger, approval: str | None,
              operation_id: str, *, mode: str, resumed: list[Outcome] | None) -> Outcome:
    plan = pr.plan
    run = _Run(ctx, trigger, operation_id, plan.hash)
    out = Outcome(Status.UNCHANGED, operation_id=run.op, plan_hash=plan.hash, plan=plan.as_dict(),
                  resumed=[o.as_dict() for o in resumed or []])
    out.arm_writes = sum(o.arm_writes for o in resumed or [])
    if plan.empty:
        out.reasons.append("nothing to do: no VM in scope has a high or medium finding")
        return out
    decision = guard.decide(plan, pr.topology, ctx.settings, trigger_kind=trigger.kind,
                            now=ctx.clock(), approval=approval,
                            remediating=_left_deallocated_by_others(ctx, run.op))
    if decision.allowed and (missing := _needs_storage(ctx)):
        decision = guard.Decision(Verdict.REFUSED, (missing,))
    if not decision.allowed:
        out.status = Status.PENDING if decision.status == Verdict.PENDING else Status.REFUSED
        out.reasons.extend(decision.reasons)
        for v in plan.vms:
            run.journal("plan", RESULT_PENDING if out.status == Status.PENDING else RESULT_REFUSED,
                        v.vm_id, step=mode, after=_summary(plan), error="; ".join(
                            decision.reasons))
        return out
    out.reasons.extend(decision.reasons)
    statuses = []
    for v in plan.vms:
        runner = _VmRunner(run, pr, v)
        vm_out = runner.execute(mode=mode)
        out.vms.append(vm_out)
        statuses.append(vm_out.status)
        if vm_out.status not in (Status.APPLIED, Status.UNCHANGED):
            # Never go on to the next VM: its safety depends on this one being fixed.
            out.reasons.extend(f"{v.vm_name}: {r}" for r in vm_out.reasons)
            rest = [x.vm_name for x in plan.vms[plan.vms.index(v) + 1:]]
            if rest:
                out.reasons.append(f"stopped before {', '.join(rest)}")
            break
    out.arm_writes += run.writes
    for status in (Status.FAILED, Status.REFUSED, Status.PENDING):
        if status in statuses:
            out.status = status
            break
    else:
        out.status = Status.APPLIED if Status.APPLIED in statuses else Status.UNCHANGED
    out.resumable = out.status == Status.PENDING
    checks = [n["ok"] == n["total"] for v in out.vms for n in v.verification]
    if checks:
        out.verified = all(checks)
    elif any(s["step"] == StepKind.VERIFY and s["result"].startswith("skipped")
             for v in out.vms for s in v.steps):
        out.verified = True  # nothing to verify (HA ports / UDP only)
    if out.verified and mode == "verify":
        out.reasons.append("verified: every connect succeeded")
    return out


def apply(ctx: ServiceContext, vm_id_or_finding_id: str, trigger: Trigger, *,
          approval: str | None = None, operation_id: str | None = None,
          subscription_id: str | None = None) -> Outcome:
    """Guard, then every step with live preconditions; see the module docstring."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr = plan_for_target(ctx, vm_id_or_finding_id, subscription_id)
    return _guarded_run(ctx, pr, trigger, approval, operation_id, resumed=resumed)


def ensure_guest_routes(ctx: ServiceContext, vm_id: str, trigger: Trigger, *,
                        operation_id: str | None = None) -> Outcome:
    """Re-push and verify the guest routes of a VM that already has the managed NIC."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr, v, early = _single_vm_plan(ctx, vm_id)
    if early is not None:
        return early
    return _guarded_run(ctx, pr, trigger, None, operation_id, mode="routes", resumed=resumed)


def verify(ctx: ServiceContext, vm_id: str, trigger: Trigger, *,
           operation_id: str | None = None) -> Outcome:
    """Verify from inside the guest; keeps the verified-route records in step. On a VM
    without the managed NIC it measures the hairpin itself (and records nothing)."""
    pr, v, early = _single_vm_plan(ctx, vm_id, needs_nic=False)
    if early is not None:
        return early
    return _guarded_run(ctx, pr, trigger, None, operation_id, mode="verify")


# --------------------------------------------------------------------------- rollback

def rollback(ctx: ServiceContext, vm_id: str, trigger: Trigger, *, approval: str | None = None,
             operation_id: str | None = None) -> Outcome:
    """Remove the routes, detach and delete the managed NIC under the same guard; journaled.
    Never touches a NIC this project did not create."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr, nics = rollback_plan(ctx, vm_id)
    plan = pr.plan
    run = _Run(ctx, trigger, operation_id, plan.hash)
    out = Outcome(Status.UNCHANGED, operation_id=run.op, plan_hash=plan.hash, plan=plan.as_dict(),
                  resumed=[o.as_dict() for o in resumed])
    if plan.empty:
        out.reasons.append("nothing to roll back: no NIC tagged "
                           f"{ctx.settings.managed_tag}=true on this VM")
        return out
    decision = guard.decide(plan, pr.topology, ctx.settings, trigger_kind=trigger.kind,
                            now=ctx.clock(), approval=approval,
                            remediating=_left_deallocated_by_others(ctx, run.op))
    if decision.allowed and (missing := _needs_storage(ctx)):
        decision = guard.Decision(Verdict.REFUSED, (missing,))
    v = plan.vms[0]
    if not decision.allowed:
        out.status = Status.PENDING if decision.status == Verdict.PENDING else Status.REFUSED
        out.reasons.extend(decision.reasons)
        run.journal("rollback", RESULT_PENDING if out.status == Status.PENDING else RESULT_REFUSED,
                    v.vm_id, after=_summary(plan), error="; ".join(decision.reasons))
        return out
    runner = _VmRunner.__new__(_VmRunner)
    runner.run, runner.pr, runner.v = run, pr, v
    runner.actions = run.for_vm(v.vm_id)
    runner.out = VmOutcome(v.vm_id, v.vm_name)
    runner.deallocated_by_us = False
    runner.wrote = False
    out.vms.append(runner.out)
    names = [pool_lock(p) for p in v.pool_ids] + [vm_lock(v.vm_id)]
    try:
        run.held = ctx.locks.hold(names, operation_id=run.op)
    except LockBusy as exc:
        out.status, out.resumable = Status.PENDING, True
        out.reasons.append(f"busy: {exc}")
        return out
    try:
        for info in nics:
            _rollback_nic(runner, info)
        runner.out.status = Status.APPLIED
        for vip in {key for (vk, key) in ctx.journal.verified_routes(v.vm_id)}:
            ctx.journal.close_record(OPEN_VERIFIED_ROUTE, v.vm_id, vip)
        runner.record(Status.APPLIED)
    except _Refuse as exc:
        runner.out.status = Status.REFUSED
        runner.out.reasons.append(str(exc))
    except NotManaged as exc:
        runner.out.status = Status.REFUSED
        runner.out.reasons.append(str(exc))
    except Exception as exc:  # noqa: BLE001
        reason = _stop_reason(exc)
        runner.out.status = Status.PENDING if reason else Status.FAILED
        runner.out.reasons.append(reason or _error_text(exc))
        run.journal("rollback", RESULT_PENDING if reason else RESULT_FAILED, v.vm_id,
                    error=reason or _error_text(exc))
        if not reason:
            runner.restart_if_ours()
    finally:
        held, run.held = run.held, None
        held.release()
    out.status = runner.out.status
    out.reasons.extend(runner.out.reasons)
    out.resumable = out.status == Status.PENDING
    out.arm_writes = run.writes + sum(o.arm_writes for o in resumed)
    return out


# --------------------------------------------------------------------------- history

def history(ctx: ServiceContext, vm_id: str, limit: int = 50) -> list[dict]:
    kind, vm_id = parse_target(vm_id)
    if kind != "vm":
        raise TargetError("history needs a VM resource ID (--vm)")
    if ctx.journal is None:
        raise TargetError("no storage configured: the journal lives in Table storage "
                          "(HAIRPIN_STORAGE_CONNECTION)")
    return [e.to_json() for e in ctx.journal.history(vm_id, limit)]
