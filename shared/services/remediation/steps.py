"""How one VM's remediation writes down what it does: each step in its `VmOutcome`, and every
write journaled before (`started`) and after (`succeeded` or `failed`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.core.remediation.model import VmPlan
from shared.core.remediation.outcome import VmOutcome
from shared.core.vocab import JournalResult, Status, StepKind
from shared.services.remediation.run import Run, error_text

__all__ = ["StepRecorder"]

# Pushing and verifying routes do not count as configuration writes by themselves: the route
# script says whether it changed anything.
_GUEST_STEPS = (StepKind.ROUTES, StepKind.VERIFY)


class StepRecorder:
    """One VM's outcome as it is written."""

    def __init__(self, run: Run, vm_plan: VmPlan) -> None:
        self.run = run
        self.v = vm_plan
        self.out = VmOutcome(vm_plan.vm_id, vm_plan.vm_name)
        self.wrote = False  # some configuration changed

    def step(self, kind: StepKind, result: str, **extra) -> None:
        self.out.steps.append({"step": kind, "result": result, **extra})

    def write(self, kind: StepKind, action: Callable[[], Any], *, before=None,
              after: Callable[[Any], Any] | None = None) -> Any:
        """Journal `started`, do it, journal `succeeded` (or `failed`, then re-raise).
        Starting a VM we deallocated is never skipped for the budget: stopping there would
        leave it down until some later run."""
        if kind != StepKind.START:
            self.run.check_budget(f"{kind} on {self.v.vm_name}")
        self.run.journal(kind, JournalResult.STARTED, self.v.vm_id, step=kind, before=before)
        try:
            value = action()
        except BaseException as exc:
            self.run.journal(kind, JournalResult.FAILED, self.v.vm_id, step=kind, before=before,
                             error=error_text(exc))
            raise
        self.run.journal(kind, JournalResult.SUCCEEDED, self.v.vm_id, step=kind, before=before,
                         after=after(value) if after else None)
        if kind not in _GUEST_STEPS:
            self.wrote = True
        return value

    def record(self, status: Status) -> None:
        """The `record` step: the outcome, its verification numbers and steps, journaled."""
        self.run.journal(StepKind.RECORD,
                         JournalResult.SUCCEEDED if status.done else JournalResult.FAILED,
                         self.v.vm_id, step=StepKind.RECORD,
                         after={"status": status, "verification": self.out.verification,
                                "steps": self.out.steps})
        self.step(StepKind.RECORD, status)
