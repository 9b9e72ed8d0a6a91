"""The drift sweep's reconcile step: one remediation call per VM, Run Commands rate limited.

VMs run in parallel (`run_command_workers` at once, one Run Command per VM at a time), never two
VMs that share a backend pool, with at least `run_command_interval` seconds between two Run
Command starts (`_RateLimiter`); no new VM starts when the time left is below
`item_budget_seconds`. Also how the sweep reads remediation outcomes (`routes_pushed`,
`close_stale_routes`, which the event service uses as well). `SweepReconcile` is a part of
`shared.services.sweep.Sweep` (a mixin): it uses the sweep's `ctx`, `config`, `trigger`,
`remediation`, `_lock`, `_limiter`, `_done`, `_left`, `_stop_reason`, `_save`, `_notify` and
`_journal_vm`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from shared.core.drift import D_GUEST_ROUTES, D_NEW_FINDING, VmWork
from shared.core.journal import OPEN_VERIFIED_ROUTE
from shared.core.sweep_summary import SweepSummary
from shared.services.notify import outcome_field

log = logging.getLogger("hairpin.sweep")


def _status(outcome: Any) -> str:
    return str(outcome_field(outcome, "status") or "unknown").lower()


def _verify_ok(outcome: Any) -> bool | None:
    """True: routes verified (or nothing to verify); False: verification failed, routes are
    missing in the guest; None: could not check now (VM not running, busy, refused)."""
    verified = outcome_field(outcome, "verified")
    if verified is not None:
        return bool(verified)
    status = _status(outcome)
    if status in ("verified", "unchanged", "applied", "ok"):
        return True
    if status == "failed":
        return False
    return None


def routes_pushed(outcome: Any) -> bool:
    """Did the remediation run the guest route script successfully (a `guest-routes` step)?"""
    if _status(outcome) not in ("applied", "unchanged"):
        return False
    return any(isinstance(step, dict) and step.get("step") == "guest-routes"
               for vm in outcome_field(outcome, "vms") or []
               for step in outcome_field(vm, "steps") or [])


def close_stale_routes(ctx: Any, vm_id: str, stale: list[str], os_type: str | None,
                       outcome: Any) -> list[str]:
    """After a successful re-push on a Linux guest (whose apply script converges: it drops the
    routes it owns that the current frontends no longer want), the verified-route records of
    removed frontends are closed. Windows' apply only adds routes: those stay until rollback.
    Returns the VIPs whose records were closed."""
    journal = getattr(ctx, "journal", None)
    if journal is None or not stale or (os_type or "").lower() != "linux" \
            or not routes_pushed(outcome):
        return []
    for vip in stale:
        journal.close_record(OPEN_VERIFIED_ROUTE, vm_id, vip)
    return list(stale)


class _RateLimiter:
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


class SweepReconcile:
    """Step 3 of a sweep, VM by VM (part of `Sweep`)."""

    # -- reconcile --------------------------------------------------------------------------
    def _reconcile(self, todo: list[VmWork], summary: SweepSummary) -> None:
        """VMs in parallel (one Run Command per VM at a time), but never two VMs that share a
        backend pool: the remediation locks pools, and a pool's members are fixed one by one."""
        workers = max(1, self.config.run_command_workers)
        pending: dict[Future, VmWork] = {}

        def busy_pools() -> frozenset[str]:
            return frozenset(p for w in pending.values() for p in w.pools)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
            for w in todo:
                while pending and (len(pending) >= workers or w.pools & busy_pools()):
                    done, _ = wait(set(pending), return_when=FIRST_COMPLETED)
                    for f in done:
                        pending.pop(f)
                    self._collect(done)
                if self._left() < self.config.item_budget_seconds:
                    self._stop_reason = (f"deadline: {max(self._left(), 0):.0f} s left, "
                                         f"{self.config.item_budget_seconds:.0f} s needed per VM")
                    log.warning("sweep %s stops before the deadline; %s", summary.sweep_id,
                                self._stop_reason)
                    break
                if w.call is None:
                    self._mark_done(w, summary)
                    continue
                pending[pool.submit(self._one, w, summary)] = w
            done, _ = wait(set(pending))
            self._collect(done)

    @staticmethod
    def _collect(done: set[Future]) -> None:
        for f in done:
            f.result()  # re-raise BaseExceptions (a kill) from the workers

    def _one(self, w: VmWork, summary: SweepSummary) -> None:
        r = self.remediation
        calls: list[tuple[str, Any]] = []
        try:
            if w.call == "apply":
                calls.append(("apply", r.apply(self.ctx, w.vm_id, self.trigger)))
            elif w.call == "ensure_guest_routes":
                self._limiter.wait()
                outcome = r.ensure_guest_routes(self.ctx, w.vm_id, self.trigger)
                calls.append(("ensure_guest_routes", outcome))
                if w.stale:
                    cleaned = close_stale_routes(self.ctx, w.vm_id, w.stale, w.os_type, outcome)
                    with self._lock:
                        key = "stale_routes:cleaned" if cleaned else "stale_routes:left"
                        summary.actions[key] = summary.actions.get(key, 0) + 1
                        if not cleaned:
                            summary.pending.append({
                                "vm_id": w.vm_id, "call": "rollback", "plan_hash": None,
                                "reason": f"routes to removed frontends {', '.join(w.stale)} "
                                          "are still in the guest (Windows apply only adds "
                                          "routes, or nothing was pushed): review and run "
                                          "`hairpin rollback` or remove them"})
            elif w.call == "verify" and self.config.check_guest_routes:
                self._limiter.wait()
                verified = r.verify(self.ctx, w.vm_id, self.trigger)
                calls.append(("verify", verified))
                if _verify_ok(verified) is False:
                    with self._lock:
                        w.drift.append(D_GUEST_ROUTES)
                        summary.drift[D_GUEST_ROUTES] = summary.drift.get(D_GUEST_ROUTES, 0) + 1
                    self._limiter.wait()
                    calls.append(("ensure_guest_routes",
                                  r.ensure_guest_routes(self.ctx, w.vm_id, self.trigger)))
        except Exception as exc:  # noqa: BLE001 - one VM's failure does not stop the sweep
            log.error("sweep: %s on %s failed: %s", w.call, w.vm_id, exc)
            with self._lock:
                summary.errors.append({"vm_id": w.vm_id, "call": w.call,
                                       "error": f"{type(exc).__name__}: {exc}"[:500]})
                key = f"{w.call}:error"
                summary.actions[key] = summary.actions.get(key, 0) + 1
            self._journal_vm(w, calls, error=f"{type(exc).__name__}: {exc}")
            self._mark_done(w, summary)
            return
        with self._lock:
            for call, outcome in calls:
                status = _status(outcome)
                if call == "verify":
                    status = {True: "ok", False: "routes_missing"}.get(_verify_ok(outcome),
                                                                       _status(outcome))
                elif status == "applied" and w.drift and w.drift != [D_NEW_FINDING]:
                    status = "repaired"
                key = f"{call}:{status}"
                summary.actions[key] = summary.actions.get(key, 0) + 1
                if _status(outcome) == "pending":
                    summary.pending.append({"vm_id": w.vm_id, "call": call,
                                            "plan_hash": outcome_field(outcome, "plan_hash"),
                                            "reason": "; ".join(
                                                outcome_field(outcome, "reasons") or [])[:300]})
        for call, outcome in calls:
            if call != "verify":
                self._notify(outcome, w.vm_id, [d for d in w.drift if d != D_NEW_FINDING])
        self._journal_vm(w, calls)
        self._mark_done(w, summary)

    def _mark_done(self, w: VmWork, summary: SweepSummary) -> None:
        with self._lock:
            self._done.add(w.key)
            summary.vms_processed += 1
        self._save(summary, "reconcile")
