"""The steps of one VM's remediation (`VmRunner`): ensure the managed NIC, deallocate (pool
peers re-checked live), attach, start, guest routes and verification (`GuestSteps`), record,
and start again a VM we left down after a failure."""

from __future__ import annotations

import dataclasses
import logging
from types import MappingProxyType

from shared.azure.actions import ArmActions, RunCommandPending
from shared.core.arm_docs import is_managed
from shared.core.arm_ids import normalize
from shared.core.remediation import guard
from shared.core.remediation.model import VmPlan
from shared.core.remediation.outcome import VmOutcome
from shared.core.topology import Topology
from shared.core.vocab import JournalAction, JournalResult, PowerState, RecordKind, Status, StepKind
from shared.services.remediation.guest_steps import GuestSteps
from shared.services.remediation.preflight import reserve_downtime, run_preflight
from shared.services.remediation.run import (
    RefuseRun,
    Run,
    StopRun,
    error_text,
    left_deallocated_by_others,
    stop_reason,
)
from shared.services.remediation.steps import StepRecorder
from shared.services.remediation.targets import PlanResult
from shared.storage.locks import LockBusy, pool_lock, vm_lock

__all__ = ["VmRunner", "with_live_power"]

log = logging.getLogger("hairpin.remediation")


def with_live_power(run: Run, topology: Topology, vm_keys) -> Topology:
    """The topology with the power states of `vm_keys` re-read from ARM now."""
    vms = dict(topology.vms)
    for key in vm_keys:
        vm = vms.get(key)
        if vm is None:
            continue
        live = run.for_vm(vm.id).get_vm(vm.id)
        state = ArmActions.power_state(live) if live is not None else PowerState.DELETED
        vms[key] = dataclasses.replace(vm, power_state=state)
    return dataclasses.replace(topology, vms=MappingProxyType(vms))


class VmRunner:
    """One VM of a plan, run step by step with live preconditions."""

    def __init__(self, run: Run, plan_result: PlanResult, vm_plan: VmPlan) -> None:
        self.run = run
        self.pr = plan_result
        self.v = vm_plan
        self.actions = run.for_vm(vm_plan.vm_id)
        self.rec = StepRecorder(run, vm_plan)
        self.guest = GuestSteps(run, self.actions, self.rec)
        self.deallocated_by_us = False  # the VM is down because of this run (or an earlier one)

    @property
    def out(self) -> VmOutcome:
        return self.rec.out

    # -- the steps
    def ensure_nic(self) -> None:
        spec, tag = self.v.nic, self.run.ctx.settings.managed_tag
        nic = self.actions.get_nic(spec.id)
        if nic is not None:
            if not is_managed(nic, tag):
                raise RefuseRun(f"a NIC named {spec.name} exists but is not tagged {tag}=true: "
                                "this project did not create it and will not use or change it")
            owner = ((nic.get("properties") or {}).get("virtualMachine") or {}).get("id")
            if owner and normalize(owner) != self.v.key:
                raise RefuseRun(f"NIC {spec.name} is attached to another VM ({owner})")
            self.rec.step(StepKind.ENSURE_NIC, "unchanged", nic_id=nic.get("id"))
            return
        self.rec.write(StepKind.ENSURE_NIC,
                       lambda: self.actions.create_nic(spec.id, spec.arm_body()),
                       after=lambda doc: {"id": doc.get("id"), "etag": doc.get("etag"),
                                          "properties": doc.get("properties")})
        self.rec.step(StepKind.ENSURE_NIC, "created", nic_id=spec.id)

    def attach(self, live_vm: dict) -> dict:
        """Deallocate (guarded) -> attach -> start. Returns the live VM afterwards."""
        v = self.v
        power = ArmActions.power_state(live_vm)
        if power == PowerState.RUNNING:
            self.deallocate("attach managed NIC", v.nic.id, preflight=True)
            self.rec.step(StepKind.DEALLOCATE, "deallocated")
        elif power == PowerState.STOPPED:
            self.deallocate_stopped()
        elif power == PowerState.DEALLOCATED and self.left_down_by_us():
            self.deallocated_by_us = True
            self.rec.step(StepKind.DEALLOCATE, "already deallocated by an earlier run")
        elif power == PowerState.DEALLOCATED:
            self.rec.step(StepKind.DEALLOCATE, "already deallocated (not by us)")
        else:
            raise StopRun(f"{v.vm_name} is {power or 'in an unknown power state'}: waiting")
        before_nics = ArmActions.nic_ids(live_vm)
        self.rec.write(StepKind.ATTACH, lambda: self.actions.attach_nic(v.vm_id, v.nic.id),
                       before={"nics": before_nics},
                       after=lambda doc: {"nics": ArmActions.nic_ids(doc),
                                          "etag": doc.get("etag")})
        self.rec.step(StepKind.ATTACH, "attached", nic_id=v.nic.id)
        started = self.start() if self.deallocated_by_us else None
        return started or self.actions.get_vm(v.vm_id) or live_vm

    def deallocate_stopped(self) -> None:
        """Stopped but still allocated: NICs change only on a deallocated VM (docs/azure-facts.md,
        "NIC changes"). It runs nothing, so no peer takes over, and it is left deallocated, as
        it was not running; the plan must say so (the guard judged it)."""
        v = self.v
        self.refuse_unplanned_deallocation()
        self.run.check_budget(f"deallocating {v.vm_name}")
        run_preflight(self.run, self.actions, v, self.pr.topology, running=False)
        self.rec.write(StepKind.DEALLOCATE, lambda: self.actions.deallocate(v.vm_id),
                       before={"power_state": PowerState.STOPPED},
                       after=lambda _: {"power_state": PowerState.DEALLOCATED})
        self.rec.step(StepKind.DEALLOCATE, "deallocated (was stopped; stays down)")
        self.out.reasons.append(f"{v.vm_name} was stopped: it is left deallocated; the routes "
                                "are pushed when it starts")

    def deallocate(self, reason: str, nic_id: str, *, preflight: bool) -> None:
        """Deallocate a running VM under the guard's pool rule, re-checked live, after the
        preflight (for an attach; a rollback's detach reserves the downtime only). The
        `deallocated` record is opened first: a crash from here on leaves evidence."""
        v, journal = self.v, self.run.ctx.journal
        self.refuse_unplanned_deallocation()
        self.check_peers()
        self.run.check_budget(f"deallocating {v.vm_name}")
        if preflight:
            run_preflight(self.run, self.actions, v, self.pr.topology, running=True)
        else:
            reserve_downtime(self.run)
        journal.open_record(RecordKind.DEALLOCATED, v.vm_id, operation_id=self.run.op,
                            plan_hash=self.run.plan_hash,
                            data={"reason": reason, "nic": nic_id})
        self.deallocated_by_us = True
        self.rec.write(StepKind.DEALLOCATE, lambda: self.actions.deallocate(v.vm_id),
                       before={"power_state": PowerState.RUNNING},
                       after=lambda _: {"power_state": PowerState.DEALLOCATED})

    def left_down_by_us(self) -> bool:
        """Did a run of ours deallocate this VM and not start it yet (journal)?"""
        return bool(self.run.ctx.journal.open_records(RecordKind.DEALLOCATED, self.v.vm_id))

    def start(self) -> dict | None:
        """Start the VM, then wait (bounded) for its VM agent: Run Command needs it Ready, and
        after a start it is not at once (docs/azure-facts.md, "VM agent"). Returns the VM as
        last read (None if it is gone)."""
        v, ctx = self.v, self.run.ctx
        self.rec.write(StepKind.START, lambda: self.actions.start(v.vm_id),
                       before={"power_state": PowerState.DEALLOCATED},
                       after=lambda _: {"power_state": PowerState.RUNNING})
        ctx.journal.close_record(RecordKind.DEALLOCATED, v.vm_id)
        self.deallocated_by_us = False
        self.rec.step(StepKind.START, "started")
        waited = self.actions.wait_agent_ready(
            v.vm_id, timeout=ctx.settings.agent_ready_timeout_seconds,
            interval=ctx.agent_poll_interval, margin=ctx.deadline_margin)
        if ArmActions.agent_ready(waited) is False:
            self.rec.step(StepKind.START, "VM agent not Ready when the wait ended (at most "
                          f"{ctx.settings.agent_ready_timeout_seconds:.0f} s, within the budget)")
        return waited

    def refuse_unplanned_deallocation(self) -> None:
        """The guard (window, approval) judged a plan that does not deallocate this VM (it was
        deallocated when planned): a VM running now is not deallocated on that judgement."""
        if not self.v.needs_deallocation:
            raise RefuseRun(f"{self.v.vm_name} is running now, but the plan (made while it was "
                            "not running) does not deallocate it: plan again, so that the guard "
                            "(maintenance window, approval) judges the deallocation")

    def check_peers(self) -> None:
        """The guard's pool rule again, on power states read live just now."""
        t = self.pr.topology
        vm = t.vms.get(self.v.key)
        peers = {p.key for p in t.pool_peers(vm)} if vm is not None else set()
        live = with_live_power(self.run, t, peers | {self.v.key})
        others = left_deallocated_by_others(self.run.ctx, self.run.op)
        problems = guard.check_deallocation(self.v.vm_id, live, remediating=[
            x for x in others if normalize(x) != self.v.key])
        if problems:
            raise RefuseRun("; ".join(problems))

    # -- the whole VM
    def execute(self, *, mode: str = "apply") -> VmOutcome:
        """mode: apply (all steps), routes (push + verify), verify (verify only)."""
        v, ctx = self.v, self.run.ctx
        names = [pool_lock(p) for p in v.pool_ids] + [vm_lock(v.vm_id)]
        try:
            self.run.held = ctx.locks.hold(names, operation_id=self.run.op)
        except LockBusy as exc:
            self.out.status = Status.PENDING
            self.out.reasons.append(f"busy: {exc}")
            return self.out
        try:
            self._steps(mode)
        except RefuseRun as exc:
            self.out.status = Status.REFUSED
            self.out.reasons.append(str(exc))
            self.run.journal(JournalAction.APPLY, JournalResult.REFUSED, v.vm_id, error=str(exc))
        except RunCommandPending as exc:
            self.out.status = Status.PENDING
            self.out.reasons.append(str(exc))
            self.run.journal(JournalAction.GUEST, JournalResult.PENDING, v.vm_id, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure ends as a clean outcome
            self._failed(exc)
        finally:
            held, self.run.held = self.run.held, None
            held.release()
        return self.out

    def _steps(self, mode: str) -> None:
        v = self.v
        live = self.actions.get_vm(v.vm_id)
        if live is None:
            raise RefuseRun(f"VM {v.vm_name} no longer exists")
        if mode == "apply":
            attached = normalize(v.nic.id) in {normalize(x) for x in ArmActions.nic_ids(live)}
            if not attached:
                self.ensure_nic()
                live = self.attach(live)
            else:
                self.rec.step(StepKind.ATTACH, "already attached")
                power = ArmActions.power_state(live)
                if power is not None and power.is_down and self.left_down_by_us():
                    self.deallocated_by_us = True
                    live = self.start() or live
        ok = self.guest.routes_and_verify(live, push=mode != "verify")
        if ok:
            changed = self.rec.wrote and mode != "verify"
            self.out.status = Status.APPLIED if changed else Status.UNCHANGED
        else:
            self.out.status = Status.FAILED
            self.out.reasons.append("verification below 100%: " + ", ".join(
                f"{n['vip']}:{n['port']} {n['ok']}/{n['total']}" for n in self.out.verification))
        self.rec.record(self.out.status)

    def _failed(self, exc: Exception) -> None:
        reason = stop_reason(exc)
        if reason is not None:
            self.out.status = Status.PENDING
            self.out.reasons.append(reason)
            self.run.journal(JournalAction.APPLY, JournalResult.PENDING, self.v.vm_id,
                             error=reason)
            # A clean stop too never ends with a VM we deallocated down: its start was
            # reserved in the budget before the deallocation (preflight).
            self.restart_if_ours()
            return
        log.warning("remediation of %s failed: %s", self.v.vm_name, exc, exc_info=True)
        self.out.status = Status.FAILED
        self.out.reasons.append(error_text(exc))
        self.run.journal(JournalAction.APPLY, JournalResult.FAILED, self.v.vm_id,
                         error=error_text(exc))
        self.restart_if_ours()

    def restart_if_ours(self) -> None:
        """After a failure or a stop: never leave a VM we deallocated down (best effort; else
        the open record makes the next run start it first)."""
        if not self.deallocated_by_us:
            return
        try:
            live = self.actions.get_vm(self.v.vm_id)
            power = ArmActions.power_state(live)
            if power is not None and power.is_down:
                self.start()
            elif live is None or power == PowerState.RUNNING:
                self.run.ctx.journal.close_record(RecordKind.DEALLOCATED, self.v.vm_id)
            else:
                # deallocating, starting, unknown: keep the record, the next run starts it.
                state = power or "in an unknown power state"
                self.out.reasons.append(f"{self.v.vm_name} is {state}; the next run starts it "
                                        "if it stays down")
        except Exception as exc:  # noqa: BLE001
            self.out.reasons.append(f"could not start {self.v.vm_name} again "
                                    f"({error_text(exc)}); the next run starts it first")
