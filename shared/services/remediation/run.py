"""One remediation run: the `_Run` wrapper (journal helper, ARM actions per subscription,
time/lease budget), the clean-stop and refusal exceptions, and how a failure is classified
(stopped by budget vs failed). Part of `shared.services.remediation`, which re-exports every
name."""

from __future__ import annotations

import time

from azure.core.exceptions import HttpResponseError

from shared.azure.actions import ArmActions
from shared.azure.retry import RetryBudgetExceeded
from shared.core import arm_ids
from shared.core.journal import JournalEntry, Trigger
from shared.core.remediation.model import Plan
from shared.core.remediation.outcome import new_operation_id
from shared.services.context import ServiceContext
from shared.storage.locks import LockBusy, LockLost

DEADLINE_MARGIN_S = 30.0  # stop before a step when less than this is left of the budget


class _Stop(Exception):
    """Stop this run cleanly: status pending, resumable."""


class _Refuse(Exception):
    pass


# --------------------------------------------------------------------------- runner

class _Run:
    """State of one run: journal helper, actions per subscription, deadline."""

    def __init__(self, ctx: ServiceContext, trigger: Trigger, operation_id: str | None,
                 plan_hash: str | None = None) -> None:
        self.ctx = ctx
        self.trigger = trigger
        self.op = operation_id or new_operation_id()
        self.plan_hash = plan_hash
        self._actions: dict[str, ArmActions] = {}
        self.held = None

    def actions(self, subscription_id: str) -> ArmActions:
        key = subscription_id.lower()
        if key not in self._actions:
            self._actions[key] = ArmActions(
                self.ctx.clients(subscription_id), managed_tag=self.ctx.settings.managed_tag,
                deadline=self.ctx.deadline,
                run_command_timeout=self.ctx.settings.run_command_timeout_seconds,
                conflict_backoff=getattr(self.ctx, "run_command_backoff", 1.0))
        return self._actions[key]

    def for_vm(self, vm_id: str) -> ArmActions:
        return self.actions(arm_ids.parse(vm_id).subscription)

    @property
    def writes(self) -> int:
        return sum(a.writes for a in self._actions.values())

    def journal(self, action: str, result: str, vm_id: str | None = None, *,
                step: str | None = None, before=None, after=None, error: str | None = None):
        if self.ctx.journal is None:
            return None
        return self.ctx.journal.append(JournalEntry(
            action=action, result=result, trigger=self.trigger, operation_id=self.op,
            vm_id=vm_id, plan_hash=self.plan_hash, step=step, before=before, after=after,
            error=error))

    def check_budget(self, what: str) -> None:
        if self.held is not None:
            self.held.check()
        if self.ctx.deadline is not None and time.monotonic() > self.ctx.deadline - min(
                DEADLINE_MARGIN_S, getattr(self.ctx, "deadline_margin", DEADLINE_MARGIN_S)):
            raise _Stop(f"the time budget is nearly spent: stopped before {what}; "
                        "the next run continues from here")


def _needs_storage(ctx: ServiceContext) -> str | None:
    if ctx.journal is None or ctx.locks is None:
        return ("remediation needs storage for its journal and locks: set "
                "HAIRPIN_STORAGE_CONNECTION or AzureWebJobsStorage")
    return None


def _summary(plan: Plan) -> dict:
    return {"hash": plan.hash, "order": [v.vm_name for v in plan.vms],
            "deallocates": [v.vm_name for v in plan.vms if v.needs_deallocation],
            "steps": [f"{s.vm_name}:{s.kind}" for s in plan.steps]}


def _stop_reason(exc: BaseException) -> str | None:
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
        if isinstance(exc, _Stop):
            return str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, HttpResponseError):
        return f"{exc.status_code} {exc.message or exc}".splitlines()[0][:500]
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def _left_deallocated_by_others(ctx: ServiceContext, op: str) -> list[str]:
    if ctx.journal is None:
        return []
    return [r.vm_id for r in ctx.journal.left_deallocated() if r.operation_id != op]
