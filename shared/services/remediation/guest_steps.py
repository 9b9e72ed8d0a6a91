"""The guest side of one VM's remediation: push the route script through Run Command, verify
from inside the guest (N TCP connects per VIP), and keep the `verified-route` records true."""

from __future__ import annotations

import ipaddress

from shared.azure.actions import ActionError, ArmActions, RunCommandPending
from shared.core import guest as guest_scripts
from shared.core.arm_docs import is_managed
from shared.core.remediation.model import VmPlan
from shared.core.vocab import PowerState, RecordKind, StepKind
from shared.services.remediation.run import RefuseRun, Run
from shared.services.remediation.steps import StepRecorder
from shared.settings import Settings

__all__ = ["GuestSteps", "guest_facts", "guest_spec", "os_of", "verify_script"]


def guest_spec(vm_plan: VmPlan, nic: dict, settings: Settings) -> guest_scripts.GuestRouteSpec:
    """The route script's values, from the plan and the managed NIC as ARM has it now."""
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


def os_of(vm_plan: VmPlan) -> str:
    return (vm_plan.os_type or "linux").lower()


def verify_script(targets, os_name: str, count: int) -> str:
    """`targets`: a GuestRouteSpec or VerifyTargets (render_*_verify accept both)."""
    if os_name == "windows":
        return guest_scripts.render_windows_verify(targets, count=count)
    return guest_scripts.render_linux_verify(targets, count=count)


class GuestSteps:
    """Routes and verification for one VM, written down by its StepRecorder."""

    def __init__(self, run: Run, actions: ArmActions, recorder: StepRecorder) -> None:
        self.run = run
        self.actions = actions
        self.rec = recorder
        self.v = recorder.v

    def routes_and_verify(self, live_vm: dict, *, push: bool = True) -> bool:
        """Push the routes (unless `push=False`) and verify; True when every connect worked."""
        v, settings = self.v, self.run.ctx.settings
        power = ArmActions.power_state(live_vm)
        if power != PowerState.RUNNING:
            raise RunCommandPending(f"{v.vm_name} is {power or 'not running'}: guest routes are "
                                    "pushed when it runs", "VmNotRunning")
        os_name = os_of(v)
        if not push and (v.nic is None or not v.nic.exists):
            # Not fixed yet: measure the hairpin itself (nothing to record as verified).
            return self.measure(live_vm, os_name)
        nic = self.actions.get_nic(v.nic.id)
        if nic is None:
            raise ActionError(f"managed NIC {v.nic.name} disappeared", "NotFound")
        if not is_managed(nic, settings.managed_tag):
            # Re-checked live: the tag may have changed since planning; routes go only via ours.
            raise RefuseRun(f"NIC {v.nic.name} is not tagged {settings.managed_tag}=true: this "
                            "project did not create it and routes no guest traffic through it")
        spec = guest_spec(v, nic, settings)
        if push:
            self.push(live_vm, os_name, spec)
        if not spec.verify_targets():
            self.rec.step(StepKind.VERIFY, "skipped: no TCP target (HA ports/UDP only)")
            return True
        numbers, verify_result = self._run_verify(live_vm, os_name, spec)
        ok_vips = {n["vip"] for n in numbers if n["ok"] == n["total"]}
        bad_vips = {n["vip"] for n in numbers} - ok_vips
        self._record_verified(ok_vips - bad_vips, bad_vips, numbers)
        all_ok = bool(verify_result.get("ok")) and not bad_vips
        self.rec.step(StepKind.VERIFY, "passed" if all_ok else "failed", numbers=numbers,
                      **guest_facts(verify_result))
        return all_ok

    def push(self, live_vm: dict, os_name: str, spec: guest_scripts.GuestRouteSpec) -> None:
        v = self.v
        script = guest_scripts.render(spec, os_name, "apply")
        result = self.rec.write(StepKind.ROUTES, lambda: self.actions.run_command(
            v.vm_id, guest_scripts.command_id(os_name), guest_scripts.script_lines(script),
            vm=live_vm), before={"vips": list(v.vips)}, after=lambda r: r.result)
        if not result.ok:
            raise ActionError(f"guest route script failed on {v.vm_name}: "
                              f"{result.result.get('error')}: {result.result.get('message')}",
                              "GuestScriptFailed")
        self.rec.step(StepKind.ROUTES, result.result.get("result", "?"),
                      changes=result.result.get("changes", []))
        if result.result.get("result") == "applied":
            self.rec.wrote = True

    def _record_verified(self, ok_vips: set[str], bad_vips: set[str], numbers) -> None:
        journal, v = self.run.ctx.journal, self.v
        for vip in ok_vips:
            journal.open_record(RecordKind.VERIFIED_ROUTE, v.vm_id, vip, operation_id=self.run.op,
                                plan_hash=self.run.plan_hash,
                                data={"nic": v.nic.id,
                                      "verification": [n for n in numbers if n["vip"] == vip]})
        for vip in bad_vips:
            journal.close_record(RecordKind.VERIFIED_ROUTE, v.vm_id, vip)

    def _run_verify(self, live_vm: dict, os_name: str, targets) -> tuple[list[dict], dict]:
        script = verify_script(targets, os_name, self.run.ctx.settings.verify_connects)
        result = self.rec.write(StepKind.VERIFY, lambda: self.actions.run_command(
            self.v.vm_id, guest_scripts.command_id(os_name), guest_scripts.script_lines(script),
            vm=live_vm), after=lambda r: r.result)
        numbers = [{"vip": r.get("vip"), "port": r.get("port"), "ok": r.get("ok"),
                    "total": r.get("total"), "backends": r.get("backends"),
                    **({"route": r["route"]} if "route" in r else {})}
                   for r in result.result.get("verify", [])]
        self.rec.out.verification = numbers
        return numbers, result.result


    def measure(self, live_vm: dict, os_name: str) -> bool:
        """Connects to the at-risk VIPs of a VM without the fix: how bad is it now?"""
        targets = tuple(dict.fromkeys(
            guest_scripts.VerifyTarget(r.vip, r.frontend_port)
            for r in self.v.routes if r.protocol.lower() == "tcp"))
        if not targets:
            self.rec.step(StepKind.VERIFY, "skipped: no TCP target (HA ports/UDP only)")
            return True
        numbers, result = self._run_verify(live_vm, os_name, targets)
        all_ok = bool(result.get("ok")) and all(n["ok"] == n["total"] for n in numbers)
        self.rec.step(StepKind.VERIFY, "passed" if all_ok else "failed", numbers=numbers)
        return all_ok


def guest_facts(verify_result: dict) -> dict:
    """What a Linux guest reported holding of the fix beside its connects (format 2 verify):
    the narrow rules, the local-table rule prefs, the persistence mechanism; {} otherwise."""
    return {k: verify_result[k] for k in ("rules", "local_rule", "mechanism")
            if k in verify_result}
