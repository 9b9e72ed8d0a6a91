"""Evaluate the VMs an event's pass claimed, from current state, and hand off to remediation.

Reads the scope's documents, evaluates risk with the journal's verified routes, records drift
per VM and makes at most one remediation call per VM (`apply`, or `ensure_guest_routes` for a
VM that already carries the managed NIC): never for our own writes, never in audit mode. The
guard lives in `shared.services.remediation`. `EventEvaluation` is a part of
`shared.services.events.EventProcessor` (a mixin): it uses the processor's `ctx`, `config`,
`journal`, `stats`, `remediation`, `_trigger` and `_journal`.
"""

from __future__ import annotations

from shared.core import arm_ids
from shared.core.events import EventResult, ResourceEvent
from shared.core.events.model import _op_id
from shared.core.journal import RESULT_SKIPPED, RESULT_SUCCEEDED
from shared.core.topology import build_topology
from shared.services.events.scope import StateReader
from shared.services.notify import outcome_field

GUEST_ACTIONS = ("start/action", "restart/action", "redeploy/action", "reapply/action")
ACTIONABLE = ("high", "medium")


class EventEvaluation:
    """Evaluation of claimed VMs, drift, notifications and the remediation call (part of
    `EventProcessor`)."""

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, ev: ResourceEvent, reader: StateReader, vm_ids: list[str], own: bool,
                  result: EventResult) -> None:
        from shared.azure.discovery import discover_scope, discover_subscription
        from shared.core.risk import evaluate

        self.stats["passes"] += len(vm_ids)
        settings = self.ctx.settings
        if len(vm_ids) > self.config.bulk_read_threshold:
            # Many VMs: a few paged listings cost less than one GET per resource.
            subs = sorted({arm_ids.parse(v).subscription.lower() for v in vm_ids})
            resources: list[dict] = []
            for sub in subs:
                resources += discover_subscription(self.ctx.clients(sub), include_health=False,
                                                   include_skus=False)["resources"]
        else:
            snapshot = discover_scope(self.ctx.clients, vm_ids=vm_ids, include_health=False)
            resources = snapshot["resources"]
        topology = build_topology(resources)
        present = [v for v in vm_ids if topology.vm(v) is not None]
        for vm_id in sorted(set(vm_ids) - set(present)):
            self.stats["gone"] += 1
            result.drift.setdefault(vm_id, []).append("vm_gone")
            self._journal(ev, vm_id, RESULT_SKIPPED, result, note="VM no longer exists")
        if not present:
            result.status = "gone"
            result.reason = "no VM in scope exists any more"
            return
        result.evaluated = sorted(present)
        verified = self.journal.verified_routes() if self.journal is not None else frozenset()
        evaluation = evaluate(topology, settings, verified)
        trigger = self._trigger(ev)
        for vm_id in present:
            self._evaluate_vm(ev, vm_id, topology, evaluation, verified, own, trigger, result)

    def _evaluate_vm(self, ev, vm_id, topology, evaluation, verified, own, trigger,
                     result: EventResult) -> None:
        settings = self.ctx.settings
        vm = topology.vm(vm_id)
        if vm is None:
            return
        findings = [f for f in evaluation.for_vm(vm_id) if f.severity in ACTIONABLE]
        result.findings += [f.id for f in findings]
        managed = [n for n in topology.nics_of_vm(vm.id)
                   if n.key != vm.primary_nic_key and n.is_managed(settings.managed_tag)]
        vm_key = arm_ids.normalize(vm.id)
        verified_ips = {ip for (v, ip) in verified if v == vm_key}
        current_ips = {f.frontend_ip for f in evaluation.for_vm(vm_id) if f.frontend_ip}
        current_ips |= {n.frontend_ip for n in evaluation.not_affected
                        if arm_ids.same(n.vm_id, vm_id) and n.frontend_ip}
        drift: list[str] = []
        if verified_ips and not managed:
            drift.append("managed_nic_missing")
        if managed and any(cfg.pool_keys for n in managed for cfg in n.ip_configs):
            drift.append("managed_nic_in_pool")
        stale = sorted(verified_ips - current_ips)
        if stale:
            drift.append("stale_routes:" + ",".join(stale))
        new_vips = sorted({f.frontend_ip for f in findings if f.frontend_ip} - verified_ips)
        if managed and new_vips:
            drift.append("routes_missing:" + ",".join(new_vips))
        guest_check = (managed and vm.is_running and ev.is_action
                       and ev.operation.lower().endswith(GUEST_ACTIONS))
        if guest_check:
            drift.append("guest_routes_unverified_after_" + ev.operation.rsplit("/", 2)[-2])
        if drift:
            result.drift[vm.id] = drift

        if own:
            note = ("own write: state evaluated, no remediation started"
                    + (f"; drift left to the sweep: {', '.join(drift)}" if drift else ""))
            self._journal(ev, vm.id, RESULT_SUCCEEDED, result, note=note, drift=drift,
                          findings=[f.id for f in findings])
            return
        notifier = getattr(self.ctx, "notifier", None)
        if notifier is not None:
            for f in findings:
                if f.frontend_ip not in verified_ips and self._first_notice(f):
                    notifier.finding_opened(f, trigger)
        action = None
        if settings.mode == "audit":
            action = None
        elif managed and "managed_nic_in_pool" in drift:
            action = "apply"  # the NIC side needs work (the plan takes it out of the pool)
        elif managed and (new_vips or stale or guest_check):
            action = "ensure_guest_routes"
        elif findings:
            action = "apply"
        outcome = None
        if action is not None:
            self.stats["remediations"] += 1
            if action == "apply":
                outcome = self.remediation.apply(self.ctx, vm.id, trigger)
            else:
                from shared.services.sweep import close_stale_routes

                outcome = self.remediation.ensure_guest_routes(self.ctx, vm.id, trigger)
                cleaned = close_stale_routes(self.ctx, vm.id, stale, vm.os_type, outcome)
                if cleaned:
                    drift.append("stale_routes_cleaned:" + ",".join(cleaned))
            status = str(outcome_field(outcome, "status") or "unknown")
            result.remediations.append({"vm_id": vm.id, "call": action, "status": status})
            if notifier is not None:
                notifier.outcome(outcome, trigger, vm_id=vm.id,
                                 drift=drift if action == "ensure_guest_routes" else ())
        note = (f"{action}: {outcome_field(outcome, 'status')}" if action else
                ("audit mode: no remediation" if settings.mode == "audit" and findings
                 else "nothing to do"))
        self._journal(ev, vm.id, RESULT_SUCCEEDED, result, note=note, drift=drift,
                      findings=[f.id for f in findings])

    def _first_notice(self, finding) -> bool:
        """Publish 'finding opened' once per finding (state record, first wins)."""
        if self.journal is None:
            return True
        return self.journal.open_record("finding-notified", finding.vm_id, finding.id,
                                        operation_id=_op_id(), exclusive=True)
