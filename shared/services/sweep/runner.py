"""The drift sweep (timer): reconcile the configured scope with what the fix needs, resumably.

One sweep, in order:

1. **Interrupted remediations first**: `remediation.resume_interrupted` starts the VMs we left
   deallocated (a crash between deallocate and start must not leave a VM down until someone
   notices).
2. **Discover** the configured scope (subscriptions, or Resource Graph across many:
   `shared.services.audit.gather`) and evaluate it with the journal's verified routes.
3. **Reconcile, one VM at a time** (sorted by id, so a resumed sweep continues in the same order):
   - a new at-risk finding (new frontend or rule since the last fix, a VM newly added to a pool)
     -> `apply`, or `ensure_guest_routes` when the VM already carries the managed NIC;
   - the managed NIC detached, deleted or moved into a pool -> `apply` (it re-creates /
     re-attaches within the guard: opt-in, window, pool peers, locks);
   - routes missing in the guest: checked by Run Command (`verify`) *only* on VMs with a
     managed NIC, at most one Run Command per VM at a time, `run_command_workers` VMs at once
     and at least `run_command_interval` seconds between two starts; a failed check ->
     `ensure_guest_routes`;
   - frontends removed -> stale routes cleaned up (`ensure_guest_routes` converges the guest to
     the current frontends).
4. **Summary** (counts, drift found, actions taken, pending plans) to the journal (action
   `sweep`) and Blob storage (`ReportStore.save_sweep`).

Every entry point goes through `shared.services.remediation`: the sweep itself never writes to
ARM. It checkpoints after each VM (Blob, ETag-conditional), stops starting new VMs when the
time left is below `item_budget_seconds`, and the next run resumes after the VMs already done
(a VM interrupted mid-way is simply done again: remediation is idempotent). A killed sweep
loses at most the VM in flight. One sweep at a time (a Blob lease lock).

Parts: the pure `shared.core.drift` (`plan_work`: drift and the call per VM) and
`shared.core.sweep_summary`; `shared.services.sweep.reconcile` (batching, rate limit, outcomes) and
`shared.services.sweep.checkpoint` (checkpoint / resume).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import observability
from shared.core.drift import (
    ACTIONABLE,
    D_LEFT_DEALLOCATED,
    VmWork,
    plan_work,
)
from shared.core.journal import (
    RESULT_FAILED,
    RESULT_SKIPPED,
    RESULT_SUCCEEDED,
    TRIGGER_SWEEP,
    JournalEntry,
    Trigger,
)
from shared.core.sweep_summary import SweepSummary
from shared.core.topology import topology_from_snapshot
from shared.services.notify import outcome_field
from shared.services.sweep.checkpoint import SweepCheckpoint
from shared.services.sweep.reconcile import (
    SweepReconcile,
    _RateLimiter,
    _status,
)

log = logging.getLogger("hairpin.sweep")

CHECKPOINT = "sweep"
DEFAULT_BUDGET_S = 540.0  # host.json functionTimeout is 10 min: stop a minute before


@dataclass(frozen=True)
class SweepConfig:
    run_command_workers: int = 4  # VMs with a Run Command in flight at once (one per VM)
    run_command_interval: float = 1.0  # seconds between two Run Command starts (rate limit)
    item_budget_seconds: float = 120.0  # do not start a VM with less time than this left
    check_guest_routes: bool = True

    @classmethod
    def from_settings(cls, settings) -> SweepConfig:
        return cls(run_command_workers=settings.sweep_run_command_workers,
                   run_command_interval=settings.sweep_run_command_interval_seconds,
                   item_budget_seconds=settings.sweep_item_budget_seconds)


class SweepBusy(Exception):
    """Another sweep holds the sweep lock."""


# --------------------------------------------------------------------------- the sweep

class Sweep(SweepCheckpoint, SweepReconcile):
    def __init__(self, ctx: Any, *, remediation: Any = None, config: SweepConfig | None = None,
                 deadline: float | None = None, trigger: Trigger | None = None,
                 checkpoint: str = CHECKPOINT, gather: Callable[..., dict] | None = None) -> None:
        self.ctx = ctx
        self._remediation = remediation
        self.config = config or SweepConfig.from_settings(ctx.settings)
        self.deadline = deadline if deadline is not None else getattr(ctx, "deadline", None)
        self.trigger = trigger or Trigger(TRIGGER_SWEEP, principal="managed-identity")
        self.checkpoint_name = checkpoint
        self._gather = gather
        self._lock = threading.Lock()
        self._etag: str | None = None
        self._done: set[str] = set()
        self._limiter = _RateLimiter(self.config.run_command_interval)
        self._stop_reason: str | None = None
        self._sweep_id = "sweep"

    @property
    def remediation(self):
        if self._remediation is None:
            from shared.services import remediation  # written in parallel; imported late

            self._remediation = remediation
        return self._remediation

    def _left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    # -- run --------------------------------------------------------------------------------
    def run(self) -> SweepSummary:
        locks = getattr(self.ctx, "locks", None)
        if locks is None:
            return self._run()
        from shared.storage.locks import LockBusy, lock_name

        try:
            held = locks.hold([lock_name("sweep", "hairpin-drift-sweep")],
                              operation_id=uuid.uuid4().hex)
        except LockBusy as busy:
            log.info("sweep skipped: %s", busy)
            raise SweepBusy(str(busy)) from busy
        with held:
            return self._run()

    def _run(self) -> SweepSummary:
        summary = self._load()
        self._save(summary, "started")
        # 1. interrupted remediations: start VMs we left deallocated, before anything else.
        self._sweep_id = summary.sweep_id
        self._resume_interrupted(summary)
        # 2. discover + evaluate
        from shared.core.risk import evaluate

        snapshot = self._discover()
        topology = topology_from_snapshot(snapshot)
        journal = getattr(self.ctx, "journal", None)
        verified = journal.verified_routes() if journal is not None else frozenset()
        evaluation = evaluate(topology, self.ctx.settings, verified)
        work = plan_work(topology, evaluation, verified, self.ctx.settings)
        summary.vms = len(topology.vms)
        summary.findings = len(evaluation.findings)
        summary.at_risk = sum(1 for f in evaluation.findings if f.severity in ACTIONABLE)
        summary.managed_nics = sum(1 for n in topology.nics.values()
                                   if n.is_managed(self.ctx.settings.managed_tag))
        todo = [w for w in work if w.key not in self._done]
        for w in todo:
            for d in w.drift:
                summary.drift[d] = summary.drift.get(d, 0) + 1
        # 3. reconcile
        self._reconcile(todo, summary)
        summary.vms_remaining = sum(1 for w in work if w.key not in self._done)
        observability.record_drift(summary)
        # 4. summary
        summary.finished_at = datetime.now(UTC).isoformat()
        summary.complete = summary.vms_remaining == 0 and self._stop_reason is None
        summary.stopped_reason = self._stop_reason
        if summary.complete:
            from shared.services.events import prune_state

            try:
                summary.pruned_event_records = prune_state(self.ctx)
            except Exception as exc:  # noqa: BLE001 - housekeeping only
                log.warning("event records not pruned: %s", exc)
        self._report(summary)
        return summary

    def _discover(self) -> dict:
        if self._gather is not None:
            return self._gather(self.ctx)
        from shared.services.audit import gather

        return gather(self.ctx, resource_graph=self.ctx.settings.use_resource_graph)

    def _resume_interrupted(self, summary: SweepSummary) -> None:
        try:
            outcomes = self.remediation.resume_interrupted(self.ctx, self.trigger) or []
        except Exception as exc:  # noqa: BLE001 - reported; the sweep goes on
            log.error("resume of interrupted remediations failed: %s", exc)
            summary.errors.append({"vm_id": None, "call": "resume_interrupted",
                                   "error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        for o in outcomes:
            status = _status(o)
            vm_id = outcome_field(o, "vm_id")
            summary.resumed_vms.append({"phase": "resume", "vm_id": vm_id, "status": status})
            key = f"resume_interrupted:{'started' if status == 'applied' else status}"
            summary.actions[key] = summary.actions.get(key, 0) + 1
            summary.drift[D_LEFT_DEALLOCATED] = summary.drift.get(D_LEFT_DEALLOCATED, 0) + 1
            self._notify(o, vm_id, [D_LEFT_DEALLOCATED])

    # -- outputs ----------------------------------------------------------------------------
    def _notify(self, outcome: Any, vm_id: str | None, drift: list[str]) -> None:
        notifier = getattr(self.ctx, "notifier", None)
        if notifier is not None:
            notifier.outcome(outcome, self.trigger, vm_id=vm_id, drift=drift)

    def _journal_vm(self, w: VmWork, calls, error: str | None = None) -> None:
        journal = getattr(self.ctx, "journal", None)
        if journal is None:
            return
        try:
            journal.append(JournalEntry(
                action="sweep", step=w.call or "none", vm_id=w.vm_id,
                result=RESULT_FAILED if error else (RESULT_SUCCEEDED if calls else RESULT_SKIPPED),
                trigger=self.trigger, operation_id=self._sweep_id,
                before={"drift": w.drift, "findings": w.findings},
                after={"calls": [{"call": c, "status": _status(o)} for c, o in calls]},
                error=error))
        except Exception as exc:  # noqa: BLE001 - journal trouble is logged, sweep goes on
            log.warning("sweep journal entry for %s not written: %s", w.vm_id, exc)

    def _report(self, summary: SweepSummary) -> None:
        doc = summary.as_dict()
        journal = getattr(self.ctx, "journal", None)
        if journal is not None:
            journal.append(JournalEntry(
                action="sweep", step="summary", vm_id=None,
                result=RESULT_SUCCEEDED if summary.complete and not summary.errors
                else (RESULT_FAILED if summary.errors else RESULT_SKIPPED),
                trigger=self.trigger, operation_id=summary.sweep_id, after=doc))
        reports = getattr(self.ctx, "reports", None)
        if summary.complete:
            if reports is not None:
                reports.save_sweep(doc, sweep_id=summary.sweep_id)
            self._clear()
        else:
            self._save(summary, "stopped")
            if reports is not None:  # the partial summary is kept too; the final one follows
                reports.save_sweep(doc, sweep_id=f"{summary.sweep_id}-run{summary.runs}")
        log.info("sweep %s %s: %d VMs, %d drift, %d actions, %d pending, %d errors",
                 summary.sweep_id, "complete" if summary.complete else "stopped",
                 summary.vms, summary.drift_found, summary.actions_taken,
                 len(summary.pending), len(summary.errors))


def run_sweep(ctx: Any, *, deadline: float | None = None, remediation: Any = None,
              config: SweepConfig | None = None, trigger: Trigger | None = None,
              gather: Callable[..., dict] | None = None) -> SweepSummary:
    """One sweep invocation (resumes a stopped one). Raises SweepBusy when one is running."""
    return Sweep(ctx, remediation=remediation, config=config, deadline=deadline,
                 trigger=trigger, gather=gather).run()


def sweep_from_env(*, budget_seconds: float | None = None) -> SweepSummary | None:
    """The timer trigger's one call: settings/storage/notifier from the environment."""
    from shared.services.context import ServiceContext
    from shared.services.notify import Notifier
    from shared.settings import Settings

    settings = Settings.from_env()
    budget = budget_seconds if budget_seconds is not None else settings.sweep_budget_seconds
    deadline = time.monotonic() + budget
    ctx = ServiceContext.from_settings(settings, deadline=deadline)
    ctx.notifier = ctx.notifier or Notifier.from_settings(settings)
    try:
        return run_sweep(ctx, deadline=deadline,
                         trigger=Trigger(TRIGGER_SWEEP, principal="managed-identity"))
    except SweepBusy:
        return None

