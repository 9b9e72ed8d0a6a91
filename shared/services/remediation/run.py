"""One remediation run: `Run` (journal helper, ARM actions per subscription, the time and lease
budget, the ARM writes it made), the clean-stop and refusal exceptions, and how a failure is
classified (stopped by the budget, and resumable, or failed)."""

from __future__ import annotations

import time
from contextlib import ExitStack

from azure.core.exceptions import HttpResponseError

from shared.azure.actions import ArmActions
from shared.azure.clients import WriteTally, counting_writes
from shared.azure.retry import RetryBudgetExceeded
from shared.core import arm_ids
from shared.core.journal import JournalEntry, Trigger
from shared.core.remediation.model import Plan
from shared.core.remediation.outcome import new_operation_id
from shared.services.context import ServiceContext
from shared.storage.locks import HeldLocks, LockBusy, LockLost

__all__ = ["Run", "StopRun", "RefuseRun", "storage_missing", "plan_summary", "stop_reason",
           "error_text", "left_deallocated_by_others"]


class StopRun(Exception):
    """Stop this run cleanly: status pending, resumable."""


class RefuseRun(Exception):
    """A safety check refused this VM's run: status refused, nothing more is done."""


class Run:
    """State of one run: journal helper, actions per subscription, deadline, held locks and
    the ARM writes made. Use as a context manager: writes inside it are counted."""

    def __init__(self, ctx: ServiceContext, trigger: Trigger, operation_id: str | None,
                 plan_hash: str | None = None) -> None:
        self.ctx = ctx
        self.trigger = trigger
        self.op = operation_id or new_operation_id()
        self.plan_hash = plan_hash
        self.held: HeldLocks | None = None
        self.tally = WriteTally()
        self._actions: dict[str, ArmActions] = {}
        self._scope = ExitStack()

    def __enter__(self) -> Run:
        self._scope.enter_context(counting_writes(self.tally))
        return self

    def __exit__(self, *exc) -> None:
        self._scope.close()

    def actions(self, subscription_id: str) -> ArmActions:
        key = subscription_id.lower()
        if key not in self._actions:
            settings = self.ctx.settings
            self._actions[key] = ArmActions(
                self.ctx.clients(subscription_id), managed_tag=settings.managed_tag,
                deadline=self.ctx.deadline,
                run_command_timeout=settings.run_command_timeout_seconds,
                conflict_backoff=self.ctx.run_command_backoff)
        return self._actions[key]

    def for_vm(self, vm_id: str) -> ArmActions:
        return self.actions(arm_ids.parse(vm_id).subscription)

    @property
    def writes(self) -> int:
        return self.tally.count

    def journal(self, action: str, result: str, vm_id: str | None = None, *,
                step: str | None = None, before=None, after=None, error: str | None = None):
        if self.ctx.journal is None:
            return None
        return self.ctx.journal.append(JournalEntry(
            action=action, result=result, trigger=self.trigger, operation_id=self.op,
            vm_id=vm_id, plan_hash=self.plan_hash, step=step, before=before, after=after,
            error=error))

    def check_budget(self, what: str) -> None:
        """Raise StopRun when a lease was lost or the time budget is nearly spent."""
        if self.held is not None:
            self.held.check()
        deadline = self.ctx.deadline
        if deadline is not None and time.monotonic() > deadline - self.ctx.deadline_margin:
            raise StopRun(f"the time budget is nearly spent: stopped before {what}; "
                          "the next run continues from here")


def storage_missing(ctx: ServiceContext) -> str | None:
    """Why remediation cannot run here without storage (journal and locks), or None."""
    if ctx.journal is None or ctx.locks is None:
        return ("remediation needs storage for its journal and locks: set "
                "HAIRPIN_STORAGE_CONNECTION or AzureWebJobsStorage")
    return None


def plan_summary(plan: Plan) -> dict:
    return {"hash": plan.hash, "order": [v.vm_name for v in plan.vms],
            "deallocates": [v.vm_name for v in plan.vms if v.needs_deallocation],
            "steps": [f"{s.vm_name}:{s.kind}" for s in plan.steps]}


def stop_reason(exc: BaseException) -> str | None:
    """A reason when `exc` means "stopped by budget" (clean, resumable)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RetryBudgetExceeded):
            return f"stopped by the retry budget: {exc}"
        if isinstance(exc, LockBusy):
            return f"busy: {exc}"
        if isinstance(exc, LockLost):
            return f"lock lost: {exc}"
        if isinstance(exc, StopRun):
            return str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def error_text(exc: BaseException) -> str:
    if isinstance(exc, HttpResponseError):
        return f"{exc.status_code} {exc.message or exc}".splitlines()[0][:500]
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def left_deallocated_by_others(ctx: ServiceContext, op: str) -> list[str]:
    """VMs an unfinished run of ours (another operation) left deallocated."""
    if ctx.journal is None:
        return []
    return [r.vm_id for r in ctx.journal.left_deallocated() if r.operation_id != op]
