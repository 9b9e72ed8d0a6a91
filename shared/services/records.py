"""The journal's standing records that several services read and keep true: verified routes
(which frontends a VM's fix was verified for) and the event service's claims, pruned once
Event Grid can no longer deliver their events again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.core.remediation.outcome import Outcome
from shared.core.vocab import RecordKind, Status, StepKind
from shared.services.context import ServiceContext

__all__ = ["verified_routes", "routes_pushed", "close_stale_routes", "prune_event_records",
           "EVENT_RECORD_KINDS"]

EVENT_RECORD_KINDS = (RecordKind.EVENT, RecordKind.EVENT_PASS, RecordKind.EVENT_SUBJECT)


def verified_routes(ctx: ServiceContext) -> frozenset[tuple[str, str]]:
    """(VM key, frontend IP) pairs the journal records as fixed and verified."""
    return ctx.journal.verified_routes() if ctx.journal is not None else frozenset()


def routes_pushed(outcome: Outcome) -> bool:
    """Did the remediation run the guest route script successfully (a `guest-routes` step)?"""
    if not Status(outcome.status).done:
        return False
    return any(step.get("step") == StepKind.ROUTES for vm in outcome.vms for step in vm.steps)


def close_stale_routes(ctx: ServiceContext, vm_id: str, stale: list[str], os_type: str | None,
                       outcome: Outcome) -> list[str]:
    """After a successful re-push on a Linux guest (whose apply script converges: it drops the
    routes it owns that the current frontends no longer want), the verified-route records of
    removed frontends are closed. Windows' apply only adds routes: those stay until rollback.
    Returns the VIPs whose records were closed."""
    if ctx.journal is None or not stale or (os_type or "").lower() != "linux" \
            or not routes_pushed(outcome):
        return []
    for vip in stale:
        ctx.journal.close_record(RecordKind.VERIFIED_ROUTE, vm_id, vip)
    return list(stale)


def prune_event_records(ctx: ServiceContext, *,
                        older_than: timedelta = timedelta(hours=25)) -> int:
    """Close event/pass/subject records older than Event Grid's retry period (24 h): called by
    the sweep. Returns how many were closed."""
    if ctx.journal is None:
        return 0
    cutoff = datetime.now(UTC) - older_than
    closed = 0
    for kind in EVENT_RECORD_KINDS:
        for r in ctx.journal.open_records(kind):
            if r.since < cutoff:
                ctx.journal.close_record(kind, r.vm_id, r.key)
                closed += 1
    return closed
