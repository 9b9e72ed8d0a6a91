"""The steps of one VM's remediation (`_VmRunner`): ensure the managed NIC, deallocate (pool
peers re-checked live), attach, start, guest routes, verify, record, and restart a VM we left
down after a failure. Part of `shared.services.remediation`, which re-exports every name."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from shared.azure.actions import ActionError, ArmActions, RunCommandPending
from shared.core import guest as guest_scripts
from shared.core.arm_docs import is_managed
from shared.core.arm_ids import normalize
from shared.core.journal import (
    OPEN_DEALLOCATED,
    OPEN_VERIFIED_ROUTE,
    RESULT_FAILED,
    RESULT_PENDING,
    RESULT_REFUSED,
    RESULT_STARTED,
    RESULT_SUCCEEDED,
)
from shared.core.remediation import guard
from shared.core.remediation.model import VmPlan
from shared.core.remediation.outcome import VmOutcome
from shared.core.topology import Topology
from shared.core.vocab import Status, StepKind
from shared.services.remediation.run import (
    _error_text,
    _left_deallocated_by_others,
    _Refuse,
    _Run,
    _Stop,
    _stop_reason,
)
from shared.services.remediation.targets import PlanResult
from shared.storage.locks import LockBusy, pool_lock, vm_lock

# The logger of shared.services.remediation, where this code lived: same records, same name.
log = logging.getLogger("shared.services.remediation")


# --------------------------------------------------------------------------- live facts

def _with_live_power(run: _Run, topology: Topology, vm_keys) -> Topology:
    """The topology with the power states of `vm_keys` re-read from ARM now."""
    vms = dict(topology.vms)
    for key in vm_keys:
        vm = vms.get(key)
        if vm is None:
            continue
        live = run.for_vm(vm.id).get_vm(vm.id)
        state = ArmActions.power_state(live) if live is not None else "deleted"
        vms[key] = dataclasses.replace(vm, power_state=state)
    return dataclasses.replace(topology, vms=MappingProxyType(vms))


def _pool_peer_keys(topology: Topology, vm_id: str) -> set[str]:
    vm = topology.vms.get(normalize(vm_id))
    keys: set[str] = set()
    if vm is None:
        return keys
    for nk in vm.nic_keys:
        nic = topology.nics.get(nk)
        for cfg in nic.ip_configs if nic else ():
            for pk in topology.ip_config_pools.get(cfg.key, ()):
                for m in topology.members_of_pool(pk):
                    peer = topology.vm_of_ip_config(m.ip_config_key) if m.ip_config_key else None
                    if peer is not None:
                        keys.add(peer.key)
    return keys


# --------------------------------------------------------------------------- guest values

def _spec(vm_plan: VmPlan, nic: dict, settings) -> guest_scripts.GuestRouteSpec:
    props = nic.get("properties") or {}
    mac = props.get("macAddress")
    if not mac:
        raise RunCommandPending(f"{vm_plan.nic.name} has no MAC address yet (assigned when the VM "
                                "starts)", "NoMac")
    cfgs = props.get("ipConfigurations") or []
    ip = next((c.get("properties", {}).get("privateIPAddress") for c in cfgs
               if c.get("properties", {}).get("privateIPAddress")), None)
    prefix_len = vm_plan.nic.prefix_len
    gateway = vm_plan.nic.gateway
    if ip is None or prefix_len is None or gateway is None or vm_plan.primary_ip is None:
        raise ActionError(f"{vm_plan.nic.name}: address, gateway or prefix unknown", "Unknown")
    routes = tuple(guest_scripts.VipRoute(
        ipaddress.IPv4Address(r.vip), guest_scripts.Protocol.parse(r.protocol),
        r.frontend_port, r.backend_port) for r in vm_plan.routes)
    return guest_scripts.GuestRouteSpec(
        primary_ip=ipaddress.IPv4Address(vm_plan.primary_ip),
        secondary_ip=ipaddress.IPv4Address(ip), secondary_mac=guest_scripts.MacAddress.parse(mac),
        gateway=ipaddress.IPv4Address(gateway), prefix_len=int(prefix_len), routes=routes,
        ha_ports_broad_rule_allowed=settings.allow_broad_ha_ports_rule)


def _os(vm_plan: VmPlan) -> str:
    return (vm_plan.os_type or "linux").lower()


def _verify_script(targets, os_name: str, count: int) -> str:
    """`targets`: a GuestRouteSpec or VerifyTargets (render_*_verify accept both)."""
    if os_name == "windows":
        return guest_scripts.render_windows_verify(targets, count=count)
    return guest_scripts.render_linux_verify(targets, count=count)


# --------------------------------------------------------------------------- one VM

class _VmRunner:
    def __init__(self, run: _Run, pr: PlanResult, vm_plan: VmPlan) -> None:
        self.run = run
        self.pr = pr
        self.v = vm_plan
        self.actions = run.for_vm(vm_plan.vm_id)
        self.out = VmOutcome(vm_plan.vm_id, vm_plan.vm_name)
        self.deallocated_by_us = False
        self.wrote = False

    # -- helpers
    def step(self, kind: str, result: str, **extra) -> None:
        self.out.steps.append({"step": kind, "result": result, **extra})

    def write(self, kind: str, action: Callable[[], Any], *, before=None,
              after: Callable[[Any], Any] | None = None) -> Any:
        """Journal `started`, do it, journal `succeeded` (or `failed`, then re-raise).
        Starting a VM we deallocated is never skipped for the budget: stopping there would
        leave it down until some later run."""
        if kind != StepKind.START:
            self.run.check_budget(f"{kind} on {self.v.vm_name}")
        self.run.journal(kind, RESULT_STARTED, self.v.vm_id, step=kind, before=before)
        try:
            value = action()
        except BaseException as exc:
            self.run.journal(kind, RESULT_FAILED, self.v.vm_id, step=kind, before=before,
                             error=_error_text(exc))
            raise
        self.run.journal(kind, RESULT_SUCCEEDED, self.v.vm_id, step=kind, before=before,
                         after=after(value) if after else None)
        if kind not in (StepKind.ROUTES, StepKind.VERIFY):
            self.wrote = True  # a configuration change (Run Command writes are judged below)
        return value

    # -- the steps
    def ensure_nic(self, live_vm: dict) -> None:
        spec = self.v.nic
        nic = self.actions.get_nic(spec.id)
        if nic is not None:
            if not is_managed(nic, self.run.ctx.settings.managed_tag):
                raise _Refuse(f"a NIC named {spec.name} exists but is not tagged "
                              f"{self.run.ctx.settings.managed_tag}=true: this project did not "
                              "create it and will not use or change it")
            owner = ((nic.get("properties") or {}).get("virtualMachine") or {}).get("id")
            if owner and normalize(owner) != self.v.key:
                raise _Refuse(f"NIC {spec.name} is attached to another VM ({owner})")
            self.step(StepKind.ENSURE_NIC, "unchanged", nic_id=nic.get("id"))
            return
        self.write(StepKind.ENSURE_NIC,
                   lambda: self.actions.create_nic(spec.id, spec.arm_body()),
                   before=None, after=lambda doc: {"id": doc.get("id"), "etag": doc.get("etag"),
                                                   "properties": doc.get("properties")})
        self.step(StepKind.ENSURE_NIC, "created", nic_id=spec.id)

    def attach(self, live_vm: dict) -> dict:
        """Deallocate (guarded) -> attach -> start. Returns the live VM afterwards."""
        ctx, v = self.run.ctx, self.v
        power = ArmActions.power_state(live_vm)
        open_recs = ctx.journal.open_records(OPEN_DEALLOCATED, v.vm_id)
        if power == "running":
            self.refuse_unplanned_deallocation()
            self.check_peers()
            self.run.check_budget(f"deallocating {v.vm_name}")
            # Opened before the deallocation: a crash from here on leaves evidence.
            ctx.journal.open_record(OPEN_DEALLOCATED, v.vm_id, operation_id=self.run.op,
                                    plan_hash=self.run.plan_hash,
                                    data={"reason": "attach managed NIC", "nic": v.nic.id})
            self.deallocated_by_us = True
            self.write(StepKind.DEALLOCATE, lambda: self.actions.deallocate(v.vm_id),
                       before={"power_state": "running"},
                       after=lambda _: {"power_state": "deallocated"})
            self.step(StepKind.DEALLOCATE, "deallocated")
        elif power in ("deallocated", "stopped") and open_recs:
            self.deallocated_by_us = True  # an earlier run of ours left it so
            self.step(StepKind.DEALLOCATE, "already deallocated by an earlier run")
        elif power in ("deallocated", "stopped"):
            self.step(StepKind.DEALLOCATE, f"already {power} (not by us)")
        else:
            raise _Stop(f"{v.vm_name} is {power or 'in an unknown power state'}: waiting")
        before_nics = ArmActions.nic_ids(live_vm)
        self.write(StepKind.ATTACH, lambda: self.actions.attach_nic(v.vm_id, v.nic.id),
                   before={"nics": before_nics},
                   after=lambda doc: {"nics": ArmActions.nic_ids(doc), "etag": doc.get("etag")})
        self.step(StepKind.ATTACH, "attached", nic_id=v.nic.id)
        if self.deallocated_by_us:
            self.start()
        return self.actions.get_vm(v.vm_id) or live_vm

    def start(self) -> None:
        v = self.v
        self.write(StepKind.START, lambda: self.actions.start(v.vm_id),
                   before={"power_state": "deallocated"},
                   after=lambda _: {"power_state": "running"})
        self.run.ctx.journal.close_record(OPEN_DEALLOCATED, v.vm_id)
        self.deallocated_by_us = False
        self.step(StepKind.START, "started")

    def refuse_unplanned_deallocation(self) -> None:
        """The guard (window, approval) judged a plan that does not deallocate this VM (it was
        deallocated when planned): a VM running now is not deallocated on that judgement."""
        if not self.v.needs_deallocation:
            raise _Refuse(f"{self.v.vm_name} is running now, but the plan (made while it was "
                          "not running) does not deallocate it: plan again, so that the guard "
                          "(maintenance window, approval) judges the deallocation")

    def check_peers(self) -> None:
        """The guard's pool rule again, on power states read live just now."""
        t = self.pr.topology
        live = _with_live_power(self.run, t, _pool_peer_keys(t, self.v.vm_id) | {self.v.key})
        others = _left_deallocated_by_others(self.run.ctx, self.run.op)
        problems = guard.check_deallocation(self.v.vm_id, live, remediating=[
            x for x in others if normalize(x) != self.v.key])
        if problems:
            raise _Refuse("; ".join(problems))

    def routes_and_verify(self, live_vm: dict, *, push: bool = True) -> bool:
        v, ctx = self.v, self.run.ctx
        power = ArmActions.power_state(live_vm)
        if power != "running":
            raise RunCommandPending(f"{v.vm_name} is {power or 'not running'}: guest routes are "
                                    "pushed when it runs", "VmNotRunning")
        os_name = _os(v)
        if not push and (v.nic is None or not v.nic.exists):
            # Not fixed yet: measure the hairpin itself (nothing to record as verified).
            return self._measure(live_vm, os_name)
        nic = self.actions.get_nic(v.nic.id)
        if nic is None:
            raise ActionError(f"managed NIC {v.nic.name} disappeared", "NotFound")
        if not is_managed(nic, ctx.settings.managed_tag):
            # Re-checked live: the tag may have changed since planning; routes go only via ours.
            raise _Refuse(f"NIC {v.nic.name} is not tagged {ctx.settings.managed_tag}=true: "
                          "this project did not "
                          "create it and routes no guest traffic through it")
        spec = _spec(v, nic, ctx.settings)
        if push:
            script = guest_scripts.render(spec, os_name, "apply")
            result = self.write(StepKind.ROUTES, lambda: self.actions.run_command(
                v.vm_id, guest_scripts.command_id(os_name), guest_scripts.script_lines(script),
                vm=live_vm), before={"vips": list(v.vips)}, after=lambda r: r.result)
            if not result.ok:
                raise ActionError(f"guest route script failed on {v.vm_name}: "
                                  f"{result.result.get('error')}: {result.result.get('message')}",
                                  "GuestScriptFailed")
            self.step(StepKind.ROUTES, result.result.get("result", "?"),
                      changes=result.result.get("changes", []))
            if result.result.get("result") == "applied":
                self.wrote = True
        targets = spec.verify_targets()
        if not targets:
            self.step(StepKind.VERIFY, "skipped: no TCP target (HA ports/UDP only)")
            return True
        numbers, verify_result = self._run_verify(live_vm, os_name, spec)
        ok_vips = {n["vip"] for n in numbers if n["ok"] == n["total"]}
        bad_vips = {n["vip"] for n in numbers} - ok_vips
        for vip in ok_vips - bad_vips:
            ctx.journal.open_record(OPEN_VERIFIED_ROUTE, v.vm_id, vip, operation_id=self.run.op,
                                    plan_hash=self.run.plan_hash,
                                    data={"nic": v.nic.id, "verification": [
                                        n for n in numbers if n["vip"] == vip]})
        for vip in bad_vips:
            ctx.journal.close_record(OPEN_VERIFIED_ROUTE, v.vm_id, vip)
        all_ok = bool(verify_result.get("ok")) and not bad_vips
        self.step(StepKind.VERIFY, "passed" if all_ok else "failed", numbers=numbers)
        return all_ok

    def _run_verify(self, live_vm: dict, os_name: str, targets) -> tuple[list[dict], dict]:
        script = _verify_script(targets, os_name, self.run.ctx.settings.verify_connects)
        result = self.write(StepKind.VERIFY, lambda: self.actions.run_command(
            self.v.vm_id, guest_scripts.command_id(os_name), guest_scripts.script_lines(script),
            vm=live_vm), after=lambda r: r.result)
        numbers = [{"vip": r.get("vip"), "port": r.get("port"), "ok": r.get("ok"),
                    "total": r.get("total"), "backends": r.get("backends")}
                   for r in result.result.get("verify", [])]
        self.out.verification = numbers
        return numbers, result.result

    def _measure(self, live_vm: dict, os_name: str) -> bool:
        """Connects to the at-risk VIPs of a VM without the fix: how bad is it now?"""
        targets = tuple(dict.fromkeys(
            guest_scripts.VerifyTarget(r.vip, r.frontend_port)
            for r in self.v.routes if r.protocol.lower() == "tcp"))
        if not targets:
            self.step(StepKind.VERIFY, "skipped: no TCP target (HA ports/UDP only)")
            return True
        numbers, result = self._run_verify(live_vm, os_name, targets)
        all_ok = bool(result.get("ok")) and all(n["ok"] == n["total"] for n in numbers)
        self.step(StepKind.VERIFY, "passed" if all_ok else "failed", numbers=numbers)
        return all_ok

    def record(self, status: str) -> None:
        self.run.journal(StepKind.RECORD, RESULT_SUCCEEDED if status in (Status.APPLIED, Status.UNCHANGED)
                         else RESULT_FAILED, self.v.vm_id, step=StepKind.RECORD,
                         after={"status": status, "verification": self.out.verification,
                                "steps": self.out.steps})
        self.step(StepKind.RECORD, status)

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
            live = self.actions.get_vm(v.vm_id)
            if live is None:
                raise _Refuse(f"VM {v.vm_name} no longer exists")
            if mode == "apply":
                attached = normalize(v.nic.id) in {normalize(x) for x in ArmActions.nic_ids(live)}
                if not attached:
                    self.ensure_nic(live)
                    live = self.attach(live)
                else:
                    self.step(StepKind.ATTACH, "already attached")
                    if ArmActions.power_state(live) in ("deallocated", "stopped") and \
                            ctx.journal.open_records(OPEN_DEALLOCATED, v.vm_id):
                        self.deallocated_by_us = True
                        self.start()
                        live = self.actions.get_vm(v.vm_id) or live
            ok = self.routes_and_verify(live, push=mode != "verify")
            if ok:
                self.out.status = Status.APPLIED if self.wrote and mode != "verify" else Status.UNCHANGED
            else:
                self.out.status = Status.FAILED
                self.out.reasons.append("verification below 100%: " + ", ".join(
                    f"{n['vip']}:{n['port']} {n['ok']}/{n['total']}"
                    for n in self.out.verification))
            self.record(self.out.status)
        except _Refuse as exc:
            self.out.status = Status.REFUSED
            self.out.reasons.append(str(exc))
            self.run.journal("apply", RESULT_REFUSED, v.vm_id, error=str(exc))
        except RunCommandPending as exc:
            self.out.status = Status.PENDING
            self.out.reasons.append(str(exc))
            self.run.journal("guest", RESULT_PENDING, v.vm_id, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure ends as a clean outcome
            reason = _stop_reason(exc)
            if reason is not None:
                self.out.status = Status.PENDING
                self.out.reasons.append(reason)
                self.run.journal("apply", RESULT_PENDING, v.vm_id, error=reason)
            else:
                log.warning("remediation of %s failed: %s", v.vm_name, exc, exc_info=True)
                self.out.status = Status.FAILED
                self.out.reasons.append(_error_text(exc))
                self.run.journal("apply", RESULT_FAILED, v.vm_id, error=_error_text(exc))
                self.restart_if_ours()
        finally:
            held, self.run.held = self.run.held, None
            held.release()
        return self.out

    def restart_if_ours(self) -> None:
        """After a failure: never leave a VM we deallocated down (best effort; else the open
        record makes the next run start it first)."""
        if not self.deallocated_by_us:
            return
        try:
            live = self.actions.get_vm(self.v.vm_id)
            power = ArmActions.power_state(live)
            if power in ("deallocated", "stopped"):
                self.start()
            elif live is None or power == "running":
                self.run.ctx.journal.close_record(OPEN_DEALLOCATED, self.v.vm_id)
            else:
                # deallocating, starting, unknown: keep the record, the next run starts it.
                state = power or "in an unknown power state"
                self.out.reasons.append(f"{self.v.vm_name} is {state}; the next run starts it "
                                        "if it stays down")
        except Exception as exc:  # noqa: BLE001
            self.out.reasons.append(f"could not start {self.v.vm_name} again ({_error_text(exc)}); "
                                    "the next run starts it first")
