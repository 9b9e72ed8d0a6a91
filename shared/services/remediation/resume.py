"""Start again every VM this project deallocated and did not start (the journal's open
`deallocated` records): any entry point calls this first, so a run that stopped or crashed
between deallocate and start never leaves a VM down past the next trigger."""

from __future__ import annotations

from shared.azure.actions import ArmActions
from shared.core import arm_ids
from shared.core.journal import JournalEntry, OpenRecord, Trigger
from shared.core.remediation.outcome import Outcome, VmOutcome
from shared.core.vocab import JournalResult, PowerState, RecordKind, Status, StepKind
from shared.services.context import ServiceContext
from shared.services.remediation.run import Run, error_text, stop_reason
from shared.storage.locks import LockBusy, vm_lock

__all__ = ["resume_interrupted"]


def resume_interrupted(ctx: ServiceContext, trigger: Trigger, *,
                       operation_id: str | None = None) -> list[Outcome]:
    """Start every VM this project deallocated and did not start again, unless another live
    run holds its lock. One Outcome per such VM."""
    if ctx.journal is None:
        return []
    outcomes: list[Outcome] = []
    for rec in ctx.journal.left_deallocated():
        with Run(ctx, trigger, operation_id, rec.plan_hash) as run:
            outcomes.append(_resume(ctx, run, rec))
    return outcomes


def _resume(ctx: ServiceContext, run: Run, rec: OpenRecord) -> Outcome:
    out = Outcome(Status.UNCHANGED, operation_id=run.op, plan_hash=rec.plan_hash)
    vm_out = VmOutcome(rec.vm_id, arm_ids.name_of(rec.vm_id))
    out.vms.append(vm_out)
    try:
        held = ctx.locks.hold([vm_lock(rec.vm_id)], operation_id=run.op) if ctx.locks else None
    except LockBusy as exc:
        out.status = Status.PENDING
        out.reasons.append(f"{vm_out.vm_name}: a run in progress holds it ({exc})")
        return out
    try:
        _close_interrupted(ctx, run, rec)
        _start_if_down(ctx, run, rec, out, vm_out)
    except Exception as exc:  # noqa: BLE001
        out.status = Status.PENDING if stop_reason(exc) else Status.FAILED
        out.resumable = True
        out.reasons.append(f"{vm_out.vm_name}: could not start it: {error_text(exc)}")
    finally:
        if held is not None:
            held.release()
    out.arm_writes = run.writes
    return out


def _start_if_down(ctx: ServiceContext, run: Run, rec: OpenRecord, out: Outcome,
                   vm_out: VmOutcome) -> None:
    actions = run.for_vm(rec.vm_id)
    live = actions.get_vm(rec.vm_id)
    power = ArmActions.power_state(live) if live else None
    if live is None or power == PowerState.RUNNING:
        ctx.journal.close_record(RecordKind.DEALLOCATED, rec.vm_id)
        vm_out.reasons.append("already running" if live else "VM no longer exists")
        return
    if power is None or not power.is_down:
        out.status = Status.PENDING
        out.reasons.append(f"{vm_out.vm_name} is {power}: checked again next run")
        return
    run.journal(StepKind.START, JournalResult.STARTED, rec.vm_id, step="resume",
                before={"power_state": power, "left_by": rec.operation_id})
    try:
        actions.start(rec.vm_id)
    except Exception as exc:
        run.journal(StepKind.START, JournalResult.FAILED, rec.vm_id, step="resume",
                    error=error_text(exc))
        raise
    run.journal(StepKind.START, JournalResult.SUCCEEDED, rec.vm_id, step="resume",
                after={"power_state": PowerState.RUNNING})
    ctx.journal.close_record(RecordKind.DEALLOCATED, rec.vm_id)
    out.status = vm_out.status = Status.APPLIED
    out.reasons.append(f"{vm_out.vm_name}: started again (left deallocated by operation "
                       f"{rec.operation_id})")


def _close_interrupted(ctx: ServiceContext, run: Run, rec: OpenRecord) -> None:
    """Journal the steps the interrupted run started and never finished (append-only: a
    `failed` entry under the original operation), so the journal says what happened."""
    entries = list(reversed(ctx.journal.history(rec.vm_id, 200, operation_id=rec.operation_id)))
    open_steps: dict[str, int] = {}
    for e in entries:
        if e.result == JournalResult.STARTED:
            open_steps[e.action] = open_steps.get(e.action, 0) + 1
        elif e.result in (JournalResult.SUCCEEDED, JournalResult.FAILED) \
                and open_steps.get(e.action):
            open_steps[e.action] -= 1
    for action, count in open_steps.items():
        for _ in range(count):
            ctx.journal.append(JournalEntry(
                action=action, result=JournalResult.FAILED, trigger=run.trigger,
                operation_id=rec.operation_id, vm_id=rec.vm_id, plan_hash=rec.plan_hash,
                step=action, error=f"interrupted: the run stopped during this step; resumed by "
                                   f"operation {run.op}"))
