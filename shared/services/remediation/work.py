"""One unit of unattended remediation work, decided by an Event Grid event and run by the queue
worker (the same worker as `POST /api/fix`).

Event Grid waits 30 s for an answer and then delivers again (docs/azure-facts.md, "Event Grid
delivery"); a fix takes minutes. So the event trigger only decides: it puts a `RemediationWork`
on the work queue, with the event's correlation and a deadline, and answers. The worker runs it
with `run_work`, which is also what runs it inline where there is no queue (the CLI, tests).
The plan is made again from live state when the work runs, under the guard, as for any apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core.journal import Trigger
from shared.core.remediation.outcome import Outcome
from shared.core.vocab import RemediationCall, TriggerKind
from shared.services.records import close_stale_routes
from shared.services.remediation.api import apply, ensure_guest_routes
from shared.storage.queues import queue_sender, queue_source

__all__ = ["WORK_KIND", "RemediationWork", "Handoff", "run_work", "queue_handoff"]

WORK_KIND = "remediation-work"


@dataclass(frozen=True)
class RemediationWork:
    """What to run on which VM, for which event, and until when it is still worth running."""

    operation: str
    call: RemediationCall
    vm_id: str
    trigger: Trigger
    deadline: datetime
    drift: tuple[str, ...] = ()  # labels, for the notification
    stale: tuple[str, ...] = ()  # VIPs of removed frontends whose records a re-push closes
    os_type: str | None = None

    @classmethod
    def due_within(cls, seconds: float, *, now: datetime | None = None,
                   **fields: Any) -> RemediationWork:
        return cls(deadline=(now or datetime.now(UTC)) + timedelta(seconds=seconds), **fields)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.deadline

    def as_message(self) -> dict:
        return {"kind": WORK_KIND, "operation": self.operation, "call": str(self.call),
                "vm_id": self.vm_id, "deadline": self.deadline.isoformat(),
                "trigger": {"kind": str(self.trigger.kind), "event_id": self.trigger.event_id,
                            "principal": self.trigger.principal},
                "drift": list(self.drift), "stale": list(self.stale), "os_type": self.os_type}

    @classmethod
    def from_message(cls, doc: dict) -> RemediationWork:
        """Raises ValueError/KeyError/TypeError for a message that is not one of ours."""
        trigger = doc["trigger"]
        deadline = datetime.fromisoformat(doc["deadline"])
        if deadline.tzinfo is None:
            raise ValueError("deadline without a time zone")
        return cls(operation=str(doc["operation"]), call=RemediationCall(doc["call"]),
                   vm_id=str(doc["vm_id"]), deadline=deadline,
                   trigger=Trigger(TriggerKind(trigger["kind"]), trigger.get("event_id"),
                                   trigger.get("principal")),
                   drift=tuple(str(d) for d in doc.get("drift") or ()),
                   stale=tuple(str(v) for v in doc.get("stale") or ()),
                   os_type=doc.get("os_type"))


# handoff(work) puts the work where the worker finds it (the queue); it raises if it cannot.
Handoff = Callable[[RemediationWork], None]


def run_work(ctx: Any, work: RemediationWork, remediation: Any = None) -> Outcome:
    """Run the work's call (a re-push also closes the records of stale routes), then notify
    its outcome. `remediation`: the remediation service (tests pass a recording one)."""
    drift = list(work.drift)
    if work.call == RemediationCall.APPLY:
        call = remediation.apply if remediation is not None else apply
        outcome = call(ctx, work.vm_id, work.trigger, operation_id=work.operation)
    else:
        call = (remediation.ensure_guest_routes if remediation is not None
                else ensure_guest_routes)
        outcome = call(ctx, work.vm_id, work.trigger, operation_id=work.operation)
        cleaned = close_stale_routes(ctx, work.vm_id, list(work.stale), work.os_type, outcome)
        if cleaned:
            drift.append("stale_routes_cleaned:" + ",".join(cleaned))
    repaired = drift if work.call == RemediationCall.ENSURE_GUEST_ROUTES else []
    if ctx.notifier is not None:
        ctx.notifier.outcome(outcome, work.trigger, vm_id=work.vm_id, drift=repaired)
    if ctx.logs is not None:
        ctx.logs.drift(work.vm_id, drift, work.trigger, work.operation, outcome.status)
    return outcome


def queue_handoff(ctx: Any, environ: Mapping[str, str] | None = None, *,
                  queue: str | None = None) -> Handoff:
    """A handoff onto the work queue, whose messages expire with their deadline. Raises
    RuntimeError when no storage is configured (the Functions host always has
    AzureWebJobsStorage)."""
    source = queue_source(ctx.settings, ctx.storage, environ)
    if not source:
        raise RuntimeError("events hand remediations to the work queue, and no storage is "
                           "configured (AzureWebJobsStorage or HAIRPIN_STORAGE_CONNECTION)")
    ttl = int(ctx.settings.event_handoff_ttl_seconds)
    queue = queue or ctx.settings.storage_names.fix_queue
    sender: list[Callable[[dict], None]] = []

    def handoff(work: RemediationWork) -> None:
        if not sender:  # the queue is created on first use, not per event
            sender.append(queue_sender(source, queue, time_to_live=ttl))
        sender[0](work.as_message())

    return handoff
