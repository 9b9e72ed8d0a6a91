"""The drift sweep's reconcile step: one remediation call per VM, Run Commands rate limited.

VMs run in parallel (`run_command_workers` at once, one Run Command per VM at a time), never two
VMs that share a backend pool, with at least `run_command_interval` seconds between two Run
Command starts (`RateLimiter`); no new VM starts when the time left is below
`item_budget_seconds`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from shared.core.drift import VmDrift
from shared.core.journal import JournalEntry, Trigger
from shared.core.remediation.outcome import Outcome
from shared.core.sweep_summary import SweepSummary
from shared.core.vocab import DriftKind, JournalAction, JournalResult, RemediationCall, Status
from shared.services.context import ServiceContext
from shared.services.records import close_stale_routes
from shared.services.sweep.checkpoint import SweepCheckpoint

__all__ = ["RateLimiter", "SweepReporter", "Reconciler", "verify_ok"]

log = logging.getLogger("hairpin.sweep")


def verify_ok(outcome: Outcome) -> bool | None:
    """True: routes verified (or nothing to verify); False: verification failed, routes are
    missing in the guest; None: could not check now (VM not running, busy, refused)."""
    if outcome.verified is not None:
        return bool(outcome.verified)
    if outcome.status in (Status.UNCHANGED, Status.APPLIED):
        return True
    if outcome.status == Status.FAILED:
        return False
    return None


class RateLimiter:
    """At least `interval` seconds between two starts (shared by the worker threads)."""

    def __init__(self, interval: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = interval
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def wait(self) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


class SweepReporter:
    """A sweep's notifications and per-VM journal entries."""

    def __init__(self, ctx: ServiceContext, trigger: Trigger, sweep_id: str) -> None:
        self.ctx = ctx
        self.trigger = trigger
        self.sweep_id = sweep_id

    def notify(self, outcome: Outcome, vm_id: str | None, drift: list[str]) -> None:
        if self.ctx.notifier is not None:
            self.ctx.notifier.outcome(outcome, self.trigger, vm_id=vm_id, drift=drift)
        if self.ctx.logs is not None:
            self.ctx.logs.drift(vm_id, drift, self.trigger, self.sweep_id, outcome.status)

    def journal_vm(self, w: VmDrift, calls: list[tuple[RemediationCall, Outcome]],
                   error: str | None = None) -> None:
        if self.ctx.journal is None:
            return
        if error:
            result = JournalResult.FAILED
        else:
            result = JournalResult.SUCCEEDED if calls else JournalResult.SKIPPED
        try:
            self.ctx.journal.append(JournalEntry(
                action=JournalAction.SWEEP, step=w.call or "none", vm_id=w.vm_id, result=result,
                trigger=self.trigger, operation_id=self.sweep_id,
                before={"drift": w.drift, "findings": w.findings},
                after={"calls": [{"call": c, "status": o.status} for c, o in calls]},
                error=error))
        except Exception as exc:  # noqa: BLE001 - journal trouble is logged, sweep goes on
            log.warning("sweep journal entry for %s not written: %s", w.vm_id, exc)


class Reconciler:
    """Step 3 of a sweep: the calls, VM by VM, counted into the summary and the checkpoint."""

    def __init__(self, ctx: ServiceContext, remediation: Any, config, trigger: Trigger,
                 checkpoint: SweepCheckpoint, reporter: SweepReporter,
                 time_left: Callable[[], float]) -> None:
        self.ctx = ctx
        self.remediation = remediation
        self.config = config
        self.trigger = trigger
        self.checkpoint = checkpoint
        self.reporter = reporter
        self.time_left = time_left
        self.limiter = RateLimiter(config.run_command_interval)
        self.stop_reason: str | None = None
        self._lock = checkpoint.lock

    def run(self, todo: list[VmDrift], summary: SweepSummary) -> None:
        """VMs in parallel (one Run Command per VM at a time), but never two VMs that share a
        backend pool: the remediation locks pools, and a pool's members are fixed one by one."""
        workers = max(1, self.config.run_command_workers)
        pending: dict[Future, VmDrift] = {}

        def busy_pools() -> frozenset[str]:
            return frozenset(p for w in pending.values() for p in w.pools)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
            for w in todo:
                while pending and (len(pending) >= workers or w.pools & busy_pools()):
                    done, _ = wait(set(pending), return_when=FIRST_COMPLETED)
                    for f in done:
                        pending.pop(f)
                    _collect(done)
                if self.time_left() < self.config.item_budget_seconds:
                    self.stop_reason = (f"deadline: {max(self.time_left(), 0):.0f} s left, "
                                        f"{self.config.item_budget_seconds:.0f} s needed per VM")
                    log.warning("sweep %s stops before the deadline; %s", summary.sweep_id,
                                self.stop_reason)
                    break
                if w.call is None:  # nothing to redo after a kill: no checkpoint write
                    self.mark_done(w, summary, save=False)
                    continue
                pending[pool.submit(self.one, w, summary)] = w
            done, _ = wait(set(pending))
            _collect(done)

    def one(self, w: VmDrift, summary: SweepSummary) -> None:
        calls: list[tuple[RemediationCall, Outcome]] = []
        try:
            self._calls(w, summary, calls)
        except Exception as exc:  # noqa: BLE001 - one VM's failure does not stop the sweep
            log.error("sweep: %s on %s failed: %s", w.call, w.vm_id, exc)
            with self._lock:
                summary.errors.append({"vm_id": w.vm_id, "call": w.call,
                                       "error": f"{type(exc).__name__}: {exc}"[:500]})
                summary.count_action(f"{w.call}:error")
            self.reporter.journal_vm(w, calls, error=f"{type(exc).__name__}: {exc}")
            self.mark_done(w, summary)
            return
        with self._lock:
            for call, outcome in calls:
                self._count(w, call, outcome, summary)
        for call, outcome in calls:
            if call != RemediationCall.VERIFY:
                self.reporter.notify(outcome, w.vm_id,
                                     [d for d in w.drift if d != DriftKind.NEW_FINDING])
        self.reporter.journal_vm(w, calls)
        self.mark_done(w, summary)

    def _calls(self, w: VmDrift, summary: SweepSummary,
               calls: list[tuple[RemediationCall, Outcome]]) -> None:
        r = self.remediation
        if w.call == RemediationCall.APPLY:
            calls.append((w.call, r.apply(self.ctx, w.vm_id, self.trigger)))
        elif w.call == RemediationCall.ENSURE_GUEST_ROUTES:
            self.limiter.wait()
            outcome = r.ensure_guest_routes(self.ctx, w.vm_id, self.trigger)
            calls.append((w.call, outcome))
            if w.stale:
                self._stale(w, outcome, summary)
        elif w.call == RemediationCall.VERIFY and self.config.check_guest_routes:
            self.limiter.wait()
            verified = r.verify(self.ctx, w.vm_id, self.trigger)
            calls.append((w.call, verified))
            if verify_ok(verified) is False:
                with self._lock:
                    w.drift.append(DriftKind.GUEST_ROUTES)
                    summary.count_drift(DriftKind.GUEST_ROUTES)
                self.limiter.wait()
                calls.append((RemediationCall.ENSURE_GUEST_ROUTES,
                              r.ensure_guest_routes(self.ctx, w.vm_id, self.trigger)))

    def _stale(self, w: VmDrift, outcome: Outcome, summary: SweepSummary) -> None:
        cleaned = close_stale_routes(self.ctx, w.vm_id, w.stale, w.os_type, outcome)
        with self._lock:
            summary.count_action("stale_routes:cleaned" if cleaned else "stale_routes:left")
            if not cleaned:
                summary.pending.append({
                    "vm_id": w.vm_id, "call": "rollback", "plan_hash": None,
                    "reason": f"routes to removed frontends {', '.join(w.stale)} are still in "
                              "the guest (Windows apply only adds routes, or nothing was "
                              "pushed): review and run `hairpin rollback` or remove them"})

    @staticmethod
    def _count(w: VmDrift, call: RemediationCall, outcome: Outcome,
               summary: SweepSummary) -> None:
        status = str(outcome.status)
        if call == RemediationCall.VERIFY:
            status = {True: "ok", False: "routes_missing"}.get(verify_ok(outcome), status)
        elif status == Status.APPLIED and w.drift and w.drift != [DriftKind.NEW_FINDING]:
            status = "repaired"
        summary.count_action(f"{call}:{status}")
        if outcome.status == Status.PENDING:
            summary.pending.append({"vm_id": w.vm_id, "call": call,
                                    "plan_hash": outcome.plan_hash,
                                    "reason": "; ".join(outcome.reasons)[:300]})

    def mark_done(self, w: VmDrift, summary: SweepSummary, *, save: bool = True) -> None:
        with self._lock:
            self.checkpoint.done.add(w.key)
            summary.vms_processed += 1
        if save:
            self.checkpoint.save(summary, "reconcile")


def _collect(done: set[Future]) -> None:
    for f in done:
        f.result()  # re-raise BaseExceptions (a kill) from the workers
