"""The drift sweep (timer): reconcile the configured scope with what the fix needs, resumably.

One sweep, in order:

1. **Interrupted remediations first**: `remediation.resume_interrupted` starts the VMs we left
   deallocated (a crash between deallocate and start must not leave a VM down until someone
   notices).
2. **Discover** the configured scope (subscriptions, or Resource Graph across many:
   `shared.services.audit.gather`) and evaluate it with the journal's verified routes.
3. **Assess and reconcile, one VM at a time** (`shared.core.drift.assess` decides the drift and
   the one call per VM, as for events; `Reconciler` makes the calls, sorted by VM so a resumed
   sweep continues in the same order).
4. **Summary** (counts, drift found, actions taken, pending plans) to the journal (action
   `sweep`) and Blob storage (`ReportStore.save_sweep`).

Every write goes through `shared.services.remediation`: the sweep itself never writes to ARM.
It checkpoints after each VM (Blob, ETag-conditional), stops starting new VMs when the time
left is below `item_budget_seconds`, and the next run resumes after the VMs already done (a VM
interrupted mid-way is simply done again: remediation is idempotent). A killed sweep loses at
most the VM in flight. One sweep at a time (a Blob lease lock).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import observability
from shared.core import drift as drifts
from shared.core.journal import JournalEntry, Trigger
from shared.core.risk import evaluate
from shared.core.sweep_summary import SweepSummary
from shared.core.topology import topology_from_snapshot
from shared.core.vocab import (
    ACTIONABLE,
    DriftKind,
    JournalAction,
    JournalResult,
    Status,
    TriggerKind,
)
from shared.services import remediation as remediation_service
from shared.services.context import ServiceContext
from shared.services.records import prune_event_records, verified_routes
from shared.services.sweep.checkpoint import SweepCheckpoint
from shared.services.sweep.reconcile import Reconciler, SweepReporter
from shared.settings import Settings
from shared.storage.locks import LockBusy, lock_name

__all__ = ["SWEEP_TRIGGER", "SweepConfig", "SweepBusy", "Sweep", "run_sweep"]

log = logging.getLogger("hairpin.sweep")

SWEEP_TRIGGER = Trigger(TriggerKind.SWEEP, principal="managed-identity")


@dataclass(frozen=True)
class SweepConfig:
    run_command_workers: int = 4  # VMs with a Run Command in flight at once (one per VM)
    run_command_interval: float = 1.0  # seconds between two Run Command starts (rate limit)
    item_budget_seconds: float = 120.0  # do not start a VM with less time than this left
    check_guest_routes: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SweepConfig:
        return cls(run_command_workers=settings.sweep_run_command_workers,
                   run_command_interval=settings.sweep_run_command_interval_seconds,
                   item_budget_seconds=settings.sweep_item_budget_seconds)


class SweepBusy(Exception):
    """Another sweep holds the sweep lock."""


class Sweep:
    def __init__(self, ctx: ServiceContext, *, remediation: Any = remediation_service,
                 config: SweepConfig | None = None, deadline: float | None = None,
                 trigger: Trigger | None = None, checkpoint: str = "sweep",
                 gather: Callable[..., dict] | None = None,
                 sweep_id: str | None = None) -> None:
        self.ctx = ctx
        self.remediation = remediation
        self.config = config or SweepConfig.from_settings(ctx.settings)
        self.deadline = deadline if deadline is not None else ctx.deadline
        self.trigger = trigger or SWEEP_TRIGGER
        self.checkpoint = SweepCheckpoint(ctx.reports, checkpoint)
        self._gather = gather
        self.sweep_id = sweep_id  # a fleet sweep's, when this is one of its work items

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def run(self) -> SweepSummary:
        if self.ctx.locks is None:
            return self._run()
        try:
            held = self.ctx.locks.hold([lock_name("sweep", "hairpin-drift-sweep")],
                                       operation_id=uuid.uuid4().hex)
        except LockBusy as busy:
            log.info("sweep skipped: %s", busy)
            raise SweepBusy(str(busy)) from busy
        with held:
            return self._run()

    def _run(self) -> SweepSummary:
        summary = self.checkpoint.load()
        self.checkpoint.save(summary, "started")
        reporter = SweepReporter(self.ctx, self.trigger, summary.sweep_id)
        self.resume_interrupted(summary, reporter)  # 1. before anything else
        self._reconcile(summary, reporter)  # 2. and 3.
        observability.record_drift(summary)
        if summary.complete:
            try:
                summary.pruned_event_records = prune_event_records(self.ctx)
            except Exception as exc:  # noqa: BLE001 - housekeeping only
                log.warning("event records not pruned: %s", exc)
        self._report(summary)  # 4.
        return summary

    def run_item(self) -> SweepSummary:
        """One work item of a fleet sweep (`shared.services.sweep.fleet`): steps 2 and 3 over
        the item's scope, resuming the item's own checkpoint. The caller holds the item's lock,
        records the returned summary and clears the checkpoint; an incomplete one (deadline)
        is saved here for the item's next run."""
        summary = self.checkpoint.load(self.sweep_id)
        self.checkpoint.save(summary, "started")
        self._reconcile(summary, SweepReporter(self.ctx, self.trigger, summary.sweep_id))
        if not summary.complete:
            self.checkpoint.save(summary, "stopped")
        return summary

    def _reconcile(self, summary: SweepSummary, reporter: SweepReporter) -> None:
        """Assess the scope, then reconcile the VMs not done yet, counted into `summary`."""
        work = self._assess(summary)
        todo = [w for w in work if w.key not in self.checkpoint.done]
        for w in todo:
            for d in w.drift:
                summary.count_drift(d)
        reconciler = Reconciler(self.ctx, self.remediation, self.config, self.trigger,
                                self.checkpoint, reporter, self.time_left)
        reconciler.run(todo, summary)
        summary.vms_remaining = sum(1 for w in work if w.key not in self.checkpoint.done)
        summary.finished_at = datetime.now(UTC).isoformat()
        summary.complete = summary.vms_remaining == 0 and reconciler.stop_reason is None
        summary.stopped_reason = reconciler.stop_reason

    def _assess(self, summary: SweepSummary) -> list[drifts.VmDrift]:
        settings = self.ctx.settings
        topology = topology_from_snapshot(self._discover())
        verified = verified_routes(self.ctx)
        evaluation = evaluate(topology, settings, verified)
        work = drifts.assess(topology, evaluation, verified, settings,
                             trigger=drifts.Trigger(check_guests=True))
        for w in work:
            w.call = drifts.unattended_call(w, settings)
        summary.vms = len(topology.vms)
        summary.findings = len(evaluation.findings)
        summary.at_risk = sum(1 for f in evaluation.findings if f.severity in ACTIONABLE)
        summary.managed_nics = sum(1 for n in topology.nics.values()
                                   if n.is_managed(settings.managed_tag))
        return work

    def _discover(self) -> dict:
        if self._gather is not None:
            return self._gather(self.ctx)
        from shared.services.audit import gather

        return gather(self.ctx, resource_graph=self.ctx.settings.use_resource_graph)

    def resume_interrupted(self, summary: SweepSummary, reporter: SweepReporter) -> None:
        """Start the VMs interrupted remediations left deallocated, counted into `summary`."""
        try:
            outcomes = self.remediation.resume_interrupted(self.ctx, self.trigger) or []
        except Exception as exc:  # noqa: BLE001 - reported; the sweep goes on
            log.error("resume of interrupted remediations failed: %s", exc)
            summary.errors.append({"vm_id": None, "call": "resume_interrupted",
                                   "error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        for o in outcomes:
            vm_id = o.vms[0].vm_id if o.vms else None
            summary.resumed_vms.append({"phase": "resume", "vm_id": vm_id, "status": o.status})
            started = "started" if o.status == Status.APPLIED else o.status
            summary.count_action(f"resume_interrupted:{started}")
            summary.count_drift(DriftKind.LEFT_DEALLOCATED)
            reporter.notify(o, vm_id, [DriftKind.LEFT_DEALLOCATED])

    def _report(self, summary: SweepSummary) -> None:
        doc = summary.as_dict()
        if self.ctx.journal is not None:
            if summary.complete and not summary.errors:
                result = JournalResult.SUCCEEDED
            else:
                result = JournalResult.FAILED if summary.errors else JournalResult.SKIPPED
            self.ctx.journal.append(JournalEntry(
                action=JournalAction.SWEEP, step="summary", vm_id=None, result=result,
                trigger=self.trigger, operation_id=summary.sweep_id, after=doc))
        reports = self.ctx.reports
        if summary.complete:
            if reports is not None:
                reports.save_sweep(doc, sweep_id=summary.sweep_id)
            self.checkpoint.clear()
        else:
            self.checkpoint.save(summary, "stopped")
            if reports is not None:  # the partial summary is kept too; the final one follows
                reports.save_sweep(doc, sweep_id=f"{summary.sweep_id}-run{summary.runs}")
        log.info("sweep %s %s: %d VMs, %d drift, %d actions, %d pending, %d errors",
                 summary.sweep_id, "complete" if summary.complete else "stopped",
                 summary.vms, summary.drift_found, summary.actions_taken,
                 len(summary.pending), len(summary.errors))


def run_sweep(ctx: ServiceContext, *, deadline: float | None = None,
              remediation: Any = remediation_service, config: SweepConfig | None = None,
              trigger: Trigger | None = None,
              gather: Callable[..., dict] | None = None) -> SweepSummary:
    """One sweep invocation (resumes a stopped one). Raises SweepBusy when one is running."""
    return Sweep(ctx, remediation=remediation, config=config, deadline=deadline,
                 trigger=trigger, gather=gather).run()
