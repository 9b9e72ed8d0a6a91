"""Remediation entry points: apply, ensure_guest_routes, verify, history, and run_plan, which
they share (the guard, then each VM's steps).

Safety: `shared.core.remediation.guard` decides whether a plan may run; before each
deallocation the pool peers' power states are re-read live and the guard's pool rule is checked
again; one VM per pool at a time (Blob-lease locks per pool and per VM); the `deallocated` open
record is written *before* a deallocation and closed only after the start, so any later run
(any trigger) starts the VM first. Every write is journaled before (`started`) and after
(`succeeded`/`failed`) with before/after documents. Every step re-checks its precondition
against live state, so a rerun continues where a stopped run left off. A run stopped by its
budget (the retry budget, a near deadline, a busy lock) stops cleanly with status `pending`
and `resumable: true`.
"""

from __future__ import annotations

from shared import observability
from shared.core.journal import Trigger
from shared.core.remediation import guard
from shared.core.remediation.model import VmPlan
from shared.core.remediation.outcome import Outcome, VmOutcome, new_operation_id
from shared.core.vocab import (
    JournalAction,
    JournalResult,
    PowerState,
    Status,
    StepKind,
    Verdict,
)
from shared.services.context import ServiceContext
from shared.services.remediation.resume import resume_interrupted
from shared.services.remediation.run import (
    Run,
    left_deallocated_by_others,
    plan_summary,
    storage_missing,
)
from shared.services.remediation.targets import (
    PlanResult,
    TargetError,
    parse_target,
    plan_for_target,
    single_vm_plan,
)
from shared.services.remediation.vm_runner import VmRunner

__all__ = ["apply", "ensure_guest_routes", "verify", "history", "run_plan", "decide"]


def apply(ctx: ServiceContext, vm_id_or_finding_id: str, trigger: Trigger, *,
          approval: str | None = None, operation_id: str | None = None,
          subscription_id: str | None = None) -> Outcome:
    """Guard, then every step with live preconditions; see the module docstring."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr = plan_for_target(ctx, vm_id_or_finding_id, subscription_id)
    return run_plan(ctx, pr, trigger, approval=approval, operation_id=operation_id,
                    resumed=resumed)


def ensure_guest_routes(ctx: ServiceContext, vm_id: str, trigger: Trigger, *,
                        operation_id: str | None = None) -> Outcome:
    """Re-push and verify the guest routes of a VM that already has the managed NIC."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr, _, early = single_vm_plan(ctx, vm_id)
    if early is not None:
        return early
    return run_plan(ctx, pr, trigger, operation_id=operation_id, mode="routes", resumed=resumed)


def verify(ctx: ServiceContext, vm_id: str, trigger: Trigger, *,
           operation_id: str | None = None) -> Outcome:
    """Verify from inside the guest; keeps the verified-route records in step. On a VM
    without the managed NIC it measures the hairpin itself (and records nothing)."""
    pr, _, early = single_vm_plan(ctx, vm_id, needs_nic=False)
    if early is not None:
        return early
    return run_plan(ctx, pr, trigger, operation_id=operation_id, mode="verify")


def history(ctx: ServiceContext, vm_id: str, limit: int = 50) -> list[dict]:
    kind, vm_id = parse_target(vm_id)
    if kind != "vm":
        raise TargetError("history needs a VM resource ID (--vm)")
    if ctx.journal is None:
        raise TargetError("no storage configured: the journal lives in Table storage "
                          "(HAIRPIN_STORAGE_CONNECTION)")
    return [e.to_json() for e in ctx.journal.history(vm_id, limit)]


def decide(ctx: ServiceContext, pr: PlanResult, trigger: Trigger, approval: str | None,
           run: Run) -> guard.Decision:
    """The guard's decision for this run, refused when there is no storage to run with."""
    decision = guard.decide(pr.plan, pr.topology, ctx.settings, trigger_kind=trigger.kind,
                            now=ctx.clock(), approval=approval,
                            remediating=left_deallocated_by_others(ctx, run.op))
    if decision.allowed and (missing := storage_missing(ctx)):
        decision = guard.Decision(Verdict.REFUSED, (missing,))
    return decision


def not_allowed(out: Outcome, decision: guard.Decision) -> JournalResult:
    """Set the outcome of a plan the guard did not let run; the journal result to record."""
    out.status = Status.PENDING if decision.status == Verdict.PENDING else Status.REFUSED
    out.reasons.extend(decision.reasons)
    return JournalResult.PENDING if out.status == Status.PENDING else JournalResult.REFUSED


def run_plan(ctx: ServiceContext, pr: PlanResult, trigger: Trigger, *,
             approval: str | None = None, operation_id: str | None = None,
             mode: str = "apply", resumed: list[Outcome] | None = None) -> Outcome:
    """Run an already made plan under the guard, with the run's IDs on every log line and its
    outcome counted. mode: apply (all steps), routes (push + verify), verify (verify only)."""
    operation_id = operation_id or new_operation_id()
    with observability.correlate(operation_id=operation_id, plan_hash=pr.plan.hash,
                                 trigger=trigger.kind, event_id=trigger.event_id), \
            Run(ctx, trigger, operation_id, pr.plan.hash) as run:
        out = _run(ctx, pr, run, approval, mode=mode, resumed=resumed or [])
    observability.record_outcome(out, trigger=trigger.kind)
    if ctx.logs is not None:
        ctx.logs.outcome(out, trigger)
    return out


def _serves_nothing(v: VmPlan, vm_out: VmOutcome) -> bool:
    return vm_out.status == Status.PENDING and v.power_state in (PowerState.STOPPED,
                                                                 PowerState.DEALLOCATED)


def _run(ctx: ServiceContext, pr: PlanResult, run: Run, approval: str | None, *, mode: str,
         resumed: list[Outcome]) -> Outcome:
    plan = pr.plan
    out = Outcome(Status.UNCHANGED, operation_id=run.op, plan_hash=plan.hash,
                  plan=plan.as_dict(), resumed=[o.as_dict() for o in resumed])
    out.arm_writes = sum(o.arm_writes for o in resumed)
    if plan.empty:
        out.reasons.append("nothing to do: no VM in scope has a high or medium finding")
        return out
    decision = decide(ctx, pr, run.trigger, approval, run)
    if not decision.allowed:
        result = not_allowed(out, decision)
        for v in plan.vms:
            run.journal(JournalAction.PLAN, result, v.vm_id, step=mode, after=plan_summary(plan),
                        error="; ".join(decision.reasons))
        return out
    out.reasons.extend(decision.reasons)
    statuses = []
    for i, v in enumerate(plan.vms):
        vm_out = VmRunner(run, pr, v).execute(mode=mode)
        out.vms.append(vm_out)
        statuses.append(vm_out.status)
        if not vm_out.status.done and _serves_nothing(v, vm_out):
            # Down before the plan and still down (pending until it starts): the next VM's
            # safety does not depend on it; the guard's pool rule is re-checked live anyway.
            out.reasons.extend(f"{v.vm_name}: {r}" for r in vm_out.reasons)
        elif not vm_out.status.done:
            # Never go on to the next VM: its safety depends on this one being fixed.
            out.reasons.extend(f"{v.vm_name}: {r}" for r in vm_out.reasons)
            rest = [x.vm_name for x in plan.vms[i + 1:]]
            if rest:
                out.reasons.append(f"stopped before {', '.join(rest)}")
            break
    out.arm_writes += run.writes
    out.status = next((s for s in (Status.FAILED, Status.REFUSED, Status.PENDING)
                       if s in statuses),
                      Status.APPLIED if Status.APPLIED in statuses else Status.UNCHANGED)
    out.resumable = out.status == Status.PENDING
    out.verified = _verified(out)
    if out.verified and mode == "verify":
        out.reasons.append("verified: every connect succeeded")
    return out


def _verified(out: Outcome) -> bool | None:
    """True: every verification passed (or there was nothing to verify); False: one failed;
    None: none ran."""
    checks = [n["ok"] == n["total"] for v in out.vms for n in v.verification]
    if checks:
        return all(checks)
    if any(s["step"] == StepKind.VERIFY and s["result"].startswith("skipped")
           for v in out.vms for s in v.steps):
        return True  # nothing to verify (HA ports / UDP only)
    return None
