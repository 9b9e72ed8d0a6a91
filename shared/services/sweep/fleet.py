"""The fleet sweep: the scope fans out as work items on a Storage queue, one invocation each.

    start(ctx, send)        the timer: VMs left deallocated started again, the scope split into
                            work items (`shared.core.fleet_sweep.plan_items`), the plan stored
                            (`SweepTable`), one message per item on the sweep queue
    run_item(ctx, item, send)   the queue trigger: one item, its own budget and checkpoint
    run_inline(ctx)         `hairpin sweep`: start, then the same items one by one in this
                            process instead of on the queue
    record_failed(ctx, item, reason)   the poison-queue trigger, and items lost by age
    finish(ctx, sweep_id)   after each result: once every item is in, the summary (Table), the
                            report (Blob), the journal entry and the one notification

The Functions host does the scheduling: it runs as many item invocations at once as host.json
and the scale controller allow (docs/operations.md, "Fleet sweeps"). Storage queues deliver at
least once, so every step here is idempotent:
- an item's result is inserted once (the first wins); a delivery that finds it does nothing;
- an item runs under a Blob lease lock: a second delivery while it runs is put back on the
  queue for one lease period (never failed, so it cannot end in the poison queue for that);
- a run that reaches its budget saves the item's checkpoint and queues a continuation; a
  worker that dies mid-item leaves the checkpoint, and the redelivered message resumes it
  (the VM in flight is done again: remediation is idempotent);
- one invocation moves the sweep to `finishing` (ETag-conditional), so the report and the
  notification are made once; one that dies there is finished by the next timer, and the
  notification keeps its CloudEvent id (`sweep-<sweep id>`) for subscribers to deduplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

from shared import observability
from shared.core import fleet_sweep as plans
from shared.core.fleet_sweep import SweepItem
from shared.core.journal import JournalEntry
from shared.core.sweep_summary import SweepSummary
from shared.core.vocab import ItemOutcome, JournalAction, JournalResult, SweepState
from shared.services import remediation as remediation_service
from shared.services.context import ServiceContext
from shared.services.records import prune_event_records
from shared.services.sweep.checkpoint import new_sweep_id
from shared.services.sweep.reconcile import SweepReporter
from shared.services.sweep.runner import SWEEP_TRIGGER, Sweep, SweepConfig
from shared.storage.locks import LockBusy, lock_name
from shared.storage.sweeps import SweepRecord, SweepTable

__all__ = ["Send", "MAX_RUNS", "FINISH_STALE_S", "start", "run_item", "record_failed", "finish",
           "item_checkpoint", "run_inline"]

log = logging.getLogger("hairpin.sweep")

# send(message, delay=None): one message on the sweep queue, invisible for `delay` seconds.
Send = Callable[..., None]
MAX_RUNS = 20  # continuations of one item before its partial result is recorded as it is
FINISH_STALE_S = 900.0  # a `finishing` sweep older than this lost its finisher (timeout 10 min)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _age_s(at: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(at)).total_seconds()
    except ValueError:
        return float("inf")


def _table(ctx: ServiceContext) -> SweepTable:
    if ctx.sweeps is None:
        raise RuntimeError("the fleet sweep keeps its plan and results in Table storage, and "
                           "none is configured (AzureWebJobsStorage or "
                           "HAIRPIN_STORAGE_CONNECTION)")
    return ctx.sweeps


def item_checkpoint(item: SweepItem) -> str:
    return f"fleet-{item.sweep_id}-{item.item_id}"


# --------------------------------------------------------------------------- the timer

def start(ctx: ServiceContext, send: Send, *, remediation: Any = remediation_service,
          config: SweepConfig | None = None) -> SweepRecord | None:
    """Settle earlier sweeps (finish, re-queue an interrupted plan, close one past its age);
    if none is still running, start a new one. Returns the new sweep, or None."""
    table = _table(ctx)
    for record in table.unfinished():
        if _still_running(ctx, record, send):
            log.info("sweep %s is still running: no new sweep", record.sweep_id)
            return None
    sweep_id, started_at = new_sweep_id(), _now()
    own = SweepSummary(sweep_id=sweep_id, started_at=started_at, complete=True)
    sweep = Sweep(ctx, remediation=remediation, config=config)
    sweep.resume_interrupted(own, SweepReporter(ctx, SWEEP_TRIGGER, sweep_id))
    resource_graph, items = _plan(ctx)
    record = table.create(sweep_id, started_at=started_at, resource_graph=resource_graph,
                          plan={plans.item_id(i): list(s) for i, s in enumerate(items)},
                          timer=own.as_dict())
    log.info("sweep %s: %d work items over %d subscriptions (%s)", sweep_id, record.items,
             sum(len(s) for s in items), "Resource Graph" if resource_graph else "ARM")
    return _enqueue(ctx, record, send)


def _plan(ctx: ServiceContext) -> tuple[bool, list[tuple[str, ...]]]:
    from shared.services.audit import NoSubscription, subscriptions_to_audit

    settings = ctx.settings
    subs = subscriptions_to_audit(ctx)
    if not settings.use_resource_graph:
        if not subs:
            raise NoSubscription("no subscription to sweep: set HAIRPIN_SUBSCRIPTIONS or "
                                 "AZURE_SUBSCRIPTION_ID, or HAIRPIN_USE_RESOURCE_GRAPH")
        return False, plans.plan_items(subs)
    from shared.azure.resource_graph import vm_counts

    client = ctx.clients(subs[0] if subs else "-").resource_graph  # a tenant-level API
    return True, plans.plan_items(subs, vm_counts(client, subs), settings.sweep_item_vms)


def _enqueue(ctx: ServiceContext, record: SweepRecord, send: Send) -> SweepRecord | None:
    """Every item without a result on the queue, then the sweep `queued` (a sweep of no
    items is finished at once)."""
    done = _table(ctx).results(record.sweep_id)
    for iid, subs in record.plan.items():
        if iid not in done:
            send(SweepItem(record.sweep_id, iid, tuple(subs), record.resource_graph).as_message())
    queued = _table(ctx).move(record, SweepState.QUEUED, at=_now())
    finish(ctx, record.sweep_id)
    return queued


def _still_running(ctx: ServiceContext, record: SweepRecord, send: Send) -> bool:
    if record.state == SweepState.PLANNING:  # the timer that planned it stopped mid-way
        log.warning("sweep %s: queueing its items again (planning was interrupted)",
                    record.sweep_id)
        _enqueue(ctx, record, send)
        return True
    if _age_s(record.started_at) > ctx.settings.sweep_max_age_seconds:
        missing = set(record.plan) - set(_table(ctx).results(record.sweep_id))
        for iid in sorted(missing):
            item = SweepItem(record.sweep_id, iid, tuple(record.plan[iid]),
                             record.resource_graph)
            record_failed(ctx, item, "lost: no result within HAIRPIN_SWEEP_MAX_AGE_SECONDS",
                          finish_after=False)
    finished = finish(ctx, record.sweep_id)
    current = _table(ctx).get(record.sweep_id)
    return finished is None and current is not None and current.state != SweepState.DONE


# --------------------------------------------------------------------------- the queue trigger

def run_item(ctx: ServiceContext, item: SweepItem, send: Send, *,
             remediation: Any = remediation_service, config: SweepConfig | None = None,
             gather: Callable[..., dict] | None = None) -> ItemOutcome:
    """One delivery of a work item (see the module docstring for redelivery)."""
    table = _table(ctx)
    if table.result(item.sweep_id, item.item_id) is not None:
        finish(ctx, item.sweep_id)
        return ItemOutcome.DUPLICATE
    try:
        held = (ctx.locks.hold([lock_name("sweepitem", f"{item.sweep_id}/{item.item_id}")],
                               operation_id=item.sweep_id)
                if ctx.locks is not None else nullcontext())
    except LockBusy as busy:
        log.info("sweep item %s/%s is running elsewhere (%s): back on the queue",
                 item.sweep_id, item.item_id, busy)
        send(item.as_message(), delay=ctx.settings.lock_lease_seconds)
        return ItemOutcome.BUSY
    with held:
        outcome = _run_held(ctx, item, remediation, config, gather)
    if outcome == ItemOutcome.CONTINUED:  # after the lock is released: it may start at once
        send(item.continued().as_message())
    else:
        finish(ctx, item.sweep_id)
    return outcome


def _run_held(ctx: ServiceContext, item: SweepItem, remediation: Any,
              config: SweepConfig | None, gather: Callable[..., dict] | None) -> ItemOutcome:
    table = _table(ctx)
    if table.result(item.sweep_id, item.item_id) is not None:  # recorded while we waited
        return ItemOutcome.DUPLICATE
    sweep = Sweep(ctx, remediation=remediation, config=config, sweep_id=item.sweep_id,
                  checkpoint=item_checkpoint(item), gather=gather or _gather_for(item))
    summary = sweep.run_item()
    if not summary.complete and item.run < MAX_RUNS:
        log.info("sweep item %s/%s stopped (%s): continuation %d follows", item.sweep_id,
                 item.item_id, summary.stopped_reason, item.run + 1)
        return ItemOutcome.CONTINUED
    recorded = table.record_result(item.sweep_id, item.item_id, plans.capped(summary.as_dict()))
    sweep.checkpoint.clear()
    return ItemOutcome.RECORDED if recorded else ItemOutcome.DUPLICATE


def _gather_for(item: SweepItem) -> Callable[..., dict]:
    def gather(ctx: ServiceContext) -> dict:
        from shared.services.audit import gather as audit_gather

        return audit_gather(ctx, subscriptions=list(item.subscriptions),
                            resource_graph=item.resource_graph)

    return gather


def record_failed(ctx: ServiceContext, item: SweepItem, reason: str, *,
                  finish_after: bool = True) -> ItemOutcome:
    """The item's result is an error (poison queue, or lost by age), unless one is in."""
    doc = SweepSummary(sweep_id=item.sweep_id, started_at=_now(), complete=False,
                       stopped_reason=f"item {item.item_id}: {reason}")
    doc.errors.append({"vm_id": None, "call": "sweep_item", "item_id": item.item_id,
                       "subscriptions": list(item.subscriptions)[:20], "error": reason})
    recorded = _table(ctx).record_result(item.sweep_id, item.item_id, doc.as_dict())
    log.error("sweep item %s/%s failed: %s%s", item.sweep_id, item.item_id, reason,
              "" if recorded else " (a result was already recorded: kept)")
    if finish_after:
        finish(ctx, item.sweep_id)
    return ItemOutcome.POISONED if recorded else ItemOutcome.DUPLICATE


# --------------------------------------------------------------------------- the summary

def finish(ctx: ServiceContext, sweep_id: str) -> SweepSummary | None:
    """Once every item's result is in: claim the sweep (one invocation wins), store the
    summary, write the report and the journal entry, notify. None when not (yet) this
    invocation's to finish."""
    table = _table(ctx)
    record = table.get(sweep_id)
    if record is None or record.state in (SweepState.PLANNING, SweepState.DONE):
        return None
    if record.state == SweepState.FINISHING and _age_s(record.changed_at) < FINISH_STALE_S:
        return None
    results = table.results(sweep_id)
    if any(iid not in results for iid in record.plan):
        return None
    claimed = table.move(record, SweepState.FINISHING, at=_now())
    if claimed is None:
        return None  # another invocation finishes it
    summary = plans.merge_summaries(sweep_id, record.started_at,
                                    [record.timer, *(results[i] for i in sorted(record.plan))])
    summary.finished_at = _now()
    _publish(ctx, summary, items=record.items)
    table.move(claimed, SweepState.DONE, at=summary.finished_at,
               summary={**plans.capped(summary.as_dict()), "items": record.items})
    return summary


def _publish(ctx: ServiceContext, summary: SweepSummary, *, items: int) -> None:
    if summary.complete:
        try:
            summary.pruned_event_records = prune_event_records(ctx)
        except Exception as exc:  # noqa: BLE001 - housekeeping only
            log.warning("event records not pruned: %s", exc)
    observability.record_drift(summary)
    doc = {**summary.as_dict(), "items": items}
    if ctx.journal is not None:
        if summary.complete and not summary.errors:
            result = JournalResult.SUCCEEDED
        else:
            result = JournalResult.FAILED if summary.errors else JournalResult.SKIPPED
        ctx.journal.append(JournalEntry(
            action=JournalAction.SWEEP, step="summary", vm_id=None, result=result,
            trigger=SWEEP_TRIGGER, operation_id=summary.sweep_id, after=plans.capped(doc)))
    if ctx.reports is not None:
        ctx.reports.save_sweep(doc, sweep_id=summary.sweep_id)
    if ctx.notifier is not None:
        ctx.notifier.sweep_completed(doc, SWEEP_TRIGGER)
    log.info("sweep %s %s: %d items, %d VMs, %d drift, %d actions, %d pending, %d errors",
             summary.sweep_id, "complete" if summary.complete else "incomplete", items,
             summary.vms, summary.drift_found, summary.actions_taken, len(summary.pending),
             len(summary.errors))


def run_inline(ctx: ServiceContext, *, remediation: Any = remediation_service,
               config: SweepConfig | None = None) -> SweepRecord | None:
    """A whole sweep in this process (the CLI): the items `start` plans are run one after the
    other through `run_item`, as the queue trigger runs them. Returns the sweep as stored
    (state `done` unless an item was busy elsewhere), or None when another sweep is running."""
    items: list[dict] = []
    record = start(ctx, lambda message, delay=None: items.append(message),
                   remediation=remediation, config=config)
    if record is None:
        return None
    while items:
        item = SweepItem.from_message(items.pop(0))
        if run_item(ctx, item, items.append, remediation=remediation,
                    config=config) == ItemOutcome.BUSY:
            break  # another process runs it: its result will finish the sweep
    return _table(ctx).get(record.sweep_id)
