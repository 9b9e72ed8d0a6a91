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
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import arm_ids
from shared.journal_model import (
    OPEN_VERIFIED_ROUTE,
    RESULT_FAILED,
    RESULT_SKIPPED,
    RESULT_SUCCEEDED,
    TRIGGER_SWEEP,
    JournalEntry,
    Trigger,
)
from shared.services.notify import outcome_field

log = logging.getLogger("hairpin.sweep")

CHECKPOINT = "sweep"
ENV_BUDGET = "HAIRPIN_SWEEP_BUDGET_SECONDS"
ENV_WORKERS = "HAIRPIN_SWEEP_RUN_COMMAND_WORKERS"
ENV_INTERVAL = "HAIRPIN_SWEEP_RUN_COMMAND_INTERVAL_SECONDS"
ENV_ITEM_BUDGET = "HAIRPIN_SWEEP_ITEM_BUDGET_SECONDS"
DEFAULT_BUDGET_S = 540.0  # host.json functionTimeout is 10 min: stop a minute before
ACTIONABLE = ("high", "medium")

# Drift kinds (summary keys)
D_NEW_FINDING = "new_finding"
D_NEW_VIP = "route_missing_for_new_frontend"
D_NIC_MISSING = "managed_nic_missing"  # detached or deleted
D_NIC_DETACHED = "managed_nic_detached"
D_NIC_IN_POOL = "managed_nic_in_pool"
D_GUEST_ROUTES = "guest_routes_missing"
D_STALE = "stale_routes"
D_LEFT_DEALLOCATED = "left_deallocated"


def _env_number(name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default
    return min(max(value, low), high)


@dataclass(frozen=True)
class SweepConfig:
    run_command_workers: int = 4  # VMs with a Run Command in flight at once (one per VM)
    run_command_interval: float = 1.0  # seconds between two Run Command starts (rate limit)
    item_budget_seconds: float = 120.0  # do not start a VM with less time than this left
    check_guest_routes: bool = True

    @classmethod
    def from_env(cls) -> SweepConfig:
        return cls(run_command_workers=int(_env_number(ENV_WORKERS, 4, 1, 32)),
                   run_command_interval=_env_number(ENV_INTERVAL, 1.0, 0.0, 60.0),
                   item_budget_seconds=_env_number(ENV_ITEM_BUDGET, 120.0, 1.0, 3600.0))


@dataclass
class VmWork:
    """What the sweep found for one VM and what it will call."""

    vm_id: str
    drift: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    call: str | None = None  # apply | ensure_guest_routes | verify
    managed_nic: bool = False
    running: bool = False
    pools: frozenset[str] = frozenset()  # remediation locks these: never two VMs of a pool at once
    os_type: str | None = None
    stale: list[str] = field(default_factory=list)  # VIPs of removed frontends with routes

    @property
    def key(self) -> str:
        return _short_key(self.vm_id)


@dataclass
class SweepSummary:
    sweep_id: str
    started_at: str
    finished_at: str | None = None
    complete: bool = False
    stopped_reason: str | None = None
    resumed: bool = False
    runs: int = 1
    vms: int = 0
    findings: int = 0
    at_risk: int = 0
    managed_nics: int = 0
    vms_processed: int = 0
    vms_remaining: int = 0
    drift: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)  # "call:status" -> count
    pending: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    resumed_vms: list[dict] = field(default_factory=list)  # started after interrupted runs
    pruned_event_records: int = 0

    @property
    def drift_found(self) -> int:
        return sum(self.drift.values())

    @property
    def actions_taken(self) -> int:
        return sum(n for k, n in self.actions.items()
                   if k.split(":", 1)[-1] in ("applied", "repaired", "started"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id, "started_at": self.started_at,
            "finished_at": self.finished_at, "complete": self.complete,
            "stopped_reason": self.stopped_reason, "resumed": self.resumed, "runs": self.runs,
            "vms": self.vms, "findings": self.findings, "at_risk": self.at_risk,
            "managed_nics": self.managed_nics, "vms_processed": self.vms_processed,
            "vms_remaining": self.vms_remaining, "drift_found": self.drift_found,
            "drift": dict(self.drift), "actions_taken": self.actions_taken,
            "actions": dict(self.actions), "pending_plans": len(self.pending),
            "pending": list(self.pending), "errors_count": len(self.errors),
            "errors": list(self.errors), "resumed_vms": list(self.resumed_vms),
            "pruned_event_records": self.pruned_event_records,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSummary:
        s = cls(sweep_id=d["sweep_id"], started_at=d["started_at"])
        for name in ("resumed", "runs", "vms", "findings", "at_risk", "managed_nics",
                     "vms_processed", "pruned_event_records"):
            if name in d:
                setattr(s, name, d[name])
        s.drift = dict(d.get("drift") or {})
        s.actions = dict(d.get("actions") or {})
        s.pending = list(d.get("pending") or [])
        s.errors = list(d.get("errors") or [])
        s.resumed_vms = list(d.get("resumed_vms") or [])
        return s


class SweepBusy(Exception):
    """Another sweep holds the sweep lock."""


def _short_key(vm_id: str) -> str:
    return hashlib.sha256(arm_ids.normalize(vm_id).encode()).hexdigest()[:16]


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


# --------------------------------------------------------------------------- planning (pure)

def plan_work(topology, evaluation, verified, settings) -> list[VmWork]:
    """Per VM, the drift found and the one remediation call that reconciles it (pure)."""
    from shared.risk import secondary_nic_name

    work: dict[str, VmWork] = {}

    def item(vm) -> VmWork:
        return work.setdefault(vm.key, VmWork(vm.id))

    verified_by_vm: dict[str, set[str]] = {}
    for vm_key, ip in verified:
        verified_by_vm.setdefault(vm_key, set()).add(ip)

    current_ips: dict[str, set[str]] = {}
    for f in evaluation.findings:
        if f.frontend_ip:
            current_ips.setdefault(arm_ids.normalize(f.vm_id), set()).add(f.frontend_ip)
    for n in evaluation.not_affected:
        if n.frontend_ip:
            current_ips.setdefault(arm_ids.normalize(n.vm_id), set()).add(n.frontend_ip)

    suffix = secondary_nic_name("").lower()
    detached_for: set[str] = set()
    for nic in topology.nics.values():
        if nic.has_tag(settings.managed_tag) and not nic.vm_id and nic.name.lower().endswith(
                suffix):
            for vm in topology.vms_named(nic.name[: -len(suffix)]):
                if arm_ids.same(arm_ids.parent_id(arm_ids.parent_id(vm.id) or "") or "",
                                arm_ids.parent_id(arm_ids.parent_id(nic.id) or "") or ""):
                    detached_for.add(vm.key)

    for vm in sorted(topology.vms.values(), key=lambda v: v.key):
        managed = [topology.nics[k] for k in vm.nic_keys
                   if k != vm.primary_nic_key and k in topology.nics
                   and topology.nics[k].has_tag(settings.managed_tag)]
        findings = [f for f in evaluation.for_vm(vm.id) if f.severity in ACTIONABLE]
        verified_ips = verified_by_vm.get(vm.key, set())
        new_vips = sorted({f.frontend_ip for f in findings if f.frontend_ip} - verified_ips)
        stale = sorted(verified_ips - current_ips.get(vm.key, set()))
        pools = frozenset(pk for nk in vm.nic_keys if nk in topology.nics
                          for cfg in topology.nics[nk].ip_configs
                          for pk in topology.ip_config_pools.get(cfg.key, ()))
        w = VmWork(vm.id, findings=[f.id for f in findings], managed_nic=bool(managed),
                   running=vm.is_running, pools=pools, os_type=vm.os_type, stale=stale)
        if vm.key in detached_for and not managed:
            w.drift.append(D_NIC_DETACHED)
        elif verified_ips and not managed:
            w.drift.append(D_NIC_MISSING)
        if managed and any(cfg.pool_keys for n in managed for cfg in n.ip_configs):
            w.drift.append(D_NIC_IN_POOL)
        if managed and new_vips:
            w.drift.append(D_NEW_VIP)
        if managed and stale:
            w.drift.append(D_STALE)
        if not managed and findings and not w.drift:
            w.drift.append(D_NEW_FINDING)
        # One call per VM: apply when the NIC side needs work, else the guest side.
        if not managed and (findings or D_NIC_MISSING in w.drift or D_NIC_DETACHED in w.drift):
            w.call = "apply"
        elif D_NIC_IN_POOL in w.drift:
            w.call = "apply"
        elif managed and (new_vips or stale):
            w.call = "ensure_guest_routes"
        elif managed and vm.is_running:
            w.call = "verify"  # routes may be missing in the guest: check by Run Command
        if w.call or w.drift:
            work[vm.key] = w
    return [work[k] for k in sorted(work)]


# --------------------------------------------------------------------------- the sweep

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


class Sweep:
    def __init__(self, ctx: Any, *, remediation: Any = None, config: SweepConfig | None = None,
                 deadline: float | None = None, trigger: Trigger | None = None,
                 checkpoint: str = CHECKPOINT, gather: Callable[..., dict] | None = None) -> None:
        self.ctx = ctx
        self._remediation = remediation
        self.config = config or SweepConfig.from_env()
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

    # -- checkpoint -------------------------------------------------------------------------
    def _checkpoints(self):
        reports = getattr(self.ctx, "reports", None)
        return reports.checkpoints if reports is not None else None

    def _load(self) -> SweepSummary:
        store = self._checkpoints()
        found = store.get(self.checkpoint_name) if store is not None else None
        if found is not None and isinstance(found.value, dict) and "summary" in found.value:
            self._etag = found.etag
            self._done = set(found.value.get("done") or [])
            summary = SweepSummary.from_dict(found.value["summary"])
            summary.resumed = True
            summary.runs += 1
            summary.errors = summary.errors[-50:]
            log.info("sweep %s resumed: %d VMs already done", summary.sweep_id, len(self._done))
            return summary
        now = datetime.now(UTC)
        summary = SweepSummary(sweep_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
                               started_at=now.isoformat())
        return summary

    def _save(self, summary: SweepSummary, phase: str) -> None:
        store = self._checkpoints()
        if store is None:
            return
        with self._lock:
            value = {"summary": summary.as_dict(), "done": sorted(self._done), "phase": phase,
                     "saved_at": datetime.now(UTC).isoformat()}
            self._etag = store.put(self.checkpoint_name, value, etag=self._etag).etag

    def _clear(self) -> None:
        store = self._checkpoints()
        if store is not None and self._etag is not None:
            store.delete(self.checkpoint_name, etag=self._etag)
            self._etag = None

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
        from shared.risk import evaluate
        from shared.topology import Topology

        snapshot = self._discover()
        topology = Topology.from_snapshot(snapshot)
        journal = getattr(self.ctx, "journal", None)
        verified = journal.verified_routes() if journal is not None else frozenset()
        evaluation = evaluate(topology, self.ctx.settings, verified)
        work = plan_work(topology, evaluation, verified, self.ctx.settings)
        summary.vms = len(topology.vms)
        summary.findings = len(evaluation.findings)
        summary.at_risk = sum(1 for f in evaluation.findings if f.severity in ACTIONABLE)
        summary.managed_nics = sum(1 for n in topology.nics.values()
                                   if n.has_tag(self.ctx.settings.managed_tag))
        todo = [w for w in work if w.key not in self._done]
        for w in todo:
            for d in w.drift:
                summary.drift[d] = summary.drift.get(d, 0) + 1
        # 3. reconcile
        self._reconcile(todo, summary)
        summary.vms_remaining = sum(1 for w in work if w.key not in self._done)
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

    budget = budget_seconds if budget_seconds is not None else _env_number(
        ENV_BUDGET, DEFAULT_BUDGET_S, 30, 3600)
    deadline = time.monotonic() + budget
    settings = Settings.from_env()
    ctx = ServiceContext.from_settings(settings, deadline=deadline)
    ctx.notifier = ctx.notifier or Notifier.from_settings(settings)
    try:
        return run_sweep(ctx, deadline=deadline,
                         trigger=Trigger(TRIGGER_SWEEP, principal="managed-identity"))
    except SweepBusy:
        return None

