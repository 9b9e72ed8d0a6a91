"""Evaluate the VMs an event's pass claimed, from current state, and hand off to remediation.

Reads the scope's documents, evaluates risk with the journal's verified routes, decides drift
and the one call per VM with `shared.core.drift.assess` (as the sweep does; an event adds only
that the guest restarted), never for our own writes, never in audit mode. The call is handed off
as a `RemediationWork` to the queue worker (an event is answered in seconds, a fix takes
minutes), or run inline where no handoff is given. The guard lives in
`shared.services.remediation`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from shared.azure.discovery import discover_scope, discover_subscription
from shared.core import arm_ids
from shared.core import drift as drifts
from shared.core.events import EventConfig, EventResult, ResourceEvent
from shared.core.journal import Trigger
from shared.core.risk import Evaluation, Finding, evaluate
from shared.core.topology import build_topology
from shared.core.vocab import (
    ACTIONABLE,
    EventStatus,
    JournalResult,
    Mode,
    RecordKind,
    RemediationCall,
)
from shared.services.context import ServiceContext
from shared.services.records import verified_routes
from shared.services.remediation import new_operation_id
from shared.services.remediation.work import Handoff, RemediationWork, run_work

__all__ = ["EventEvaluator", "GUEST_ACTIONS"]

# Operations after which the guest may have lost non-persistent routes.
GUEST_ACTIONS = ("start/action", "restart/action", "redeploy/action", "reapply/action")

# journal(ev, vm_id, result, event_result, note=..., **after)
JournalWriter = Callable[..., None]


class EventEvaluator:
    """Evaluation of claimed VMs, drift, notifications and the remediation call."""

    def __init__(self, ctx: ServiceContext, config: EventConfig, remediation: Any,
                 stats: dict[str, int], journal: JournalWriter,
                 handoff: Handoff | None = None) -> None:
        self.ctx = ctx
        self.config = config
        self.remediation = remediation
        self.handoff = handoff
        self.stats = stats
        self.journal = journal

    def evaluate(self, ev: ResourceEvent, vm_ids: list[str], own: bool, trigger: Trigger,
                 result: EventResult) -> None:
        self.stats["passes"] += len(vm_ids)
        topology = build_topology(self._documents(vm_ids))
        present = [v for v in vm_ids if topology.vm(v) is not None]
        for vm_id in sorted(set(vm_ids) - set(present)):
            self.stats["gone"] += 1
            result.drift.setdefault(vm_id, []).append("vm_gone")
            self.journal(ev, vm_id, JournalResult.SKIPPED, result, note="VM no longer exists")
        if not present:
            result.status = EventStatus.GONE
            result.reason = "no VM in scope exists any more"
            return
        result.evaluated = sorted(present)
        verified = verified_routes(self.ctx)
        evaluation = evaluate(topology, self.ctx.settings, verified)
        restarted = frozenset(topology.vm(v).key for v in present) if (
            ev.is_action and ev.operation.lower().endswith(GUEST_ACTIONS)) else frozenset()
        assessed = {d.key: d for d in drifts.assess(
            topology, evaluation, verified, self.ctx.settings,
            trigger=drifts.Trigger(restarted=restarted), vm_keys=present)}
        for vm_id in present:
            vm = topology.vm(vm_id)
            d = assessed.get(drifts.drift_key(vm.id)) or drifts.VmDrift(vm.id)
            verified_ips = {ip for (v, ip) in verified if v == vm.key}
            self._one(ev, vm_id, evaluation, d, verified_ips, own, trigger, result)

    def _documents(self, vm_ids: list[str]) -> list[dict]:
        if len(vm_ids) > self.config.bulk_read_threshold:
            # Many VMs: a few paged listings cost less than one GET per resource.
            resources: list[dict] = []
            for sub in sorted({arm_ids.parse(v).subscription.lower() for v in vm_ids}):
                resources += discover_subscription(self.ctx.clients(sub), include_health=False,
                                                   include_skus=False)["resources"]
            return resources
        return discover_scope(self.ctx.clients, vm_ids=vm_ids, include_health=False)["resources"]

    def _one(self, ev: ResourceEvent, vm_id: str, evaluation: Evaluation, d: drifts.VmDrift,
             verified_ips: set[str], own: bool, trigger: Trigger, result: EventResult) -> None:
        findings = [f for f in evaluation.for_vm(vm_id) if f.severity in ACTIONABLE]
        result.findings += [f.id for f in findings]
        drift = d.labels()
        if drift:
            result.drift[d.vm_id] = drift
        if own:
            note = ("own write: state evaluated, no remediation started"
                    + (f"; drift left to the sweep: {', '.join(drift)}" if drift else ""))
            self.journal(ev, d.vm_id, JournalResult.SUCCEEDED, result, note=note, drift=drift,
                         findings=[f.id for f in findings])
            return
        self._notify_findings(findings, verified_ips, trigger)
        call = drifts.unattended_call(d, self.ctx.settings)
        status = self._call(call, d, trigger, drift) if call else None
        if status is not None:
            result.remediations.append({"vm_id": d.vm_id, "call": call, **status})
        audit = self.ctx.settings.mode == Mode.AUDIT
        note = (f"{call}: {status['status']}" if status is not None else
                ("audit mode: no remediation" if audit and findings else "nothing to do"))
        self.journal(ev, d.vm_id, JournalResult.SUCCEEDED, result, note=note, drift=drift,
                     findings=[f.id for f in findings],
                     operation=status["operation"] if status is not None else None)

    def _call(self, call: RemediationCall, d: drifts.VmDrift, trigger: Trigger,
              drift: list[str]) -> dict:
        """Hand the call off (or run it where there is no handoff); its operation and status."""
        self.stats["remediations"] += 1
        work = RemediationWork.due_within(
            self.ctx.settings.event_handoff_ttl_seconds, operation=new_operation_id(),
            call=call, vm_id=d.vm_id, trigger=trigger, drift=tuple(drift),
            stale=tuple(d.stale), os_type=d.os_type)
        if self.handoff is not None:
            self.handoff(work)
            return {"operation": work.operation, "status": "queued"}
        outcome = run_work(self.ctx, work, self.remediation)
        return {"operation": work.operation, "status": str(outcome.status)}

    def _notify_findings(self, findings: list[Finding], verified_ips: set[str],
                         trigger: Trigger) -> None:
        """Publish 'finding opened' once per finding not fixed yet (state record, first wins)."""
        notifier = self.ctx.notifier
        if notifier is None:
            return
        for f in findings:
            if f.frontend_ip not in verified_ips and self._first_notice(f):
                notifier.finding_opened(f, trigger)

    def _first_notice(self, finding: Finding) -> bool:
        if self.ctx.journal is None:
            return True
        return self.ctx.journal.open_record(RecordKind.FINDING_NOTIFIED, finding.vm_id,
                                            finding.id, operation_id=uuid.uuid4().hex,
                                            exclusive=True)
