"""Rollback plan and steps: remove the managed NIC(s) of a VM (cleanup script, deallocate,
detach, start, delete); only NICs tagged `<managed_tag>=true` are ever touched. The entry point
`rollback` is in `shared.services.remediation` (it looks `rollback_plan` up there at call time),
which re-exports every name."""

from __future__ import annotations

import hashlib
import ipaddress

from shared.azure.actions import ArmActions, NotManaged, RunCommandPending
from shared.core import guest as guest_scripts
from shared.core import risk
from shared.core.arm_docs import is_managed
from shared.core.arm_ids import normalize
from shared.core.journal import OPEN_DEALLOCATED
from shared.core.remediation import plan as planning
from shared.core.remediation.model import Plan, Step, VmPlan, canonical_json, nic_id_for
from shared.core.vocab import StepKind
from shared.services.context import ServiceContext
from shared.services.remediation.targets import PlanResult, _observe_vm, _verified
from shared.services.remediation.vm_runner import _VmRunner


def rollback_plan(ctx: ServiceContext, vm_id: str) -> tuple[PlanResult, list[dict]]:
    """A plan that removes the managed NIC(s) of a VM: cleanup script, deallocate, detach,
    start, delete. Only NICs tagged `<managed_tag>=true` are ever included."""
    sub, snapshot, topology, evaluation, vm = _observe_vm(
        ctx, vm_id, "rollback needs a VM resource ID (--vm)")
    tag = ctx.settings.managed_tag
    attached = [topology.nics[k] for k in vm.nic_keys
                if k in topology.nics and k != vm.primary_nic_key
                and topology.nics[k].is_managed(tag)]
    orphan_id = nic_id_for(vm.id, risk.secondary_nic_name(vm.name))
    orphan = topology.nics.get(normalize(orphan_id))
    orphans = ([orphan] if orphan is not None and orphan.vm_id is None
               and orphan.is_managed(tag) else [])
    etags = planning.etags_from_documents(snapshot["resources"])
    findings = [f for f in evaluation.findings if normalize(f.vm_id) == vm.key]
    vips = sorted({f.frontend_ip for f in findings if f.frontend_ip}) or sorted(
        {key for (vk, key) in _verified(ctx) if vk == vm.key})
    steps: list[Step] = []
    needs_dealloc = bool(attached) and vm.power_state != "deallocated"
    for nic in attached:
        if vm.is_running:
            steps.append(Step("cleanup-routes", vm.id, vm.name,
                              f"remove the guest routes via {nic.name} (cleanup script)",
                              "the script reports 'unchanged'",
                              tuple(f"- host route {x}/32" for x in vips)))
        if needs_dealloc:
            steps.append(Step(StepKind.DEALLOCATE, vm.id, vm.name, f"deallocate {vm.name}",
                              f"{vm.name} is deallocated", (f"{vm.name} running -> deallocated",),
                              True, tuple(planning.serving_frontends(topology, vm))))
        steps.append(Step("detach-nic", vm.id, vm.name, f"detach {nic.name} from {vm.name}",
                          f"{nic.name} is not in the NIC list", (f"networkProfile: - {nic.name}",)))
        if needs_dealloc:
            steps.append(Step(StepKind.START, vm.id, vm.name, f"start {vm.name}",
                              f"{vm.name} is running", (f"{vm.name} deallocated -> running",)))
        steps.append(Step("delete-nic", vm.id, vm.name, f"delete {nic.name} (tagged {tag}=true)",
                          f"{nic.name} does not exist", (f"- NIC {nic.name}",)))
    for nic in orphans:
        steps.append(Step("delete-nic", vm.id, vm.name, f"delete unattached {nic.name}",
                          f"{nic.name} does not exist", (f"- NIC {nic.name}",)))
    nic_ids = [n.id for n in attached + orphans]
    if not steps:
        plan = Plan((), {}, hashlib.sha256(b"empty").hexdigest(), {"vm_id": vm.id})
        return PlanResult(plan, topology, evaluation, sub, {"vm_id": vm.id}), []
    steps.append(Step(StepKind.RECORD, vm.id, vm.name, "record the rollback",
                      "never skipped"))
    pools = tuple(topology.pools[p].id for p in sorted(
        {pk for nk in vm.nic_keys if nk in topology.nics for c in topology.nics[nk].ip_configs
         for pk in topology.ip_config_pools.get(c.key, ())}) if p in topology.pools)
    v = VmPlan(vm.id, vm.name, vm.os_type, vm.power_state, 0.0, False, (), (), None,
               None, None, needs_dealloc, pools, (), (), tuple(steps), (), ())
    facts = {vm.id: {"etag": etags.get(vm.key), "power_state": vm.power_state,
                     "nics": {n: etags.get(normalize(n)) for n in nic_ids}}}
    digest = hashlib.sha256(canonical_json(
        {"rollback": v.as_dict(), "facts": facts, "vips": vips}).encode()).hexdigest()
    plan = Plan((v,), facts, digest, {"vm_id": vm.id, "rollback": True})
    return PlanResult(plan, topology, evaluation, sub, dict(plan.target)), [
        {"nic_id": n.id, "attached": n in attached, "vips": vips} for n in attached + orphans]


def _rollback_nic(runner: _VmRunner, info: dict) -> None:
    v, actions, ctx = runner.v, runner.actions, runner.run.ctx
    nic_id = info["nic_id"]
    nic = actions.get_nic(nic_id)
    if nic is None:
        runner.step("delete-nic", "already gone")
        return
    if not is_managed(nic, ctx.settings.managed_tag):
        raise NotManaged(f"NIC {nic.get('name')} is not tagged {ctx.settings.managed_tag}=true: "
                         "never touched")
    live = actions.get_vm(v.vm_id)
    attached = live is not None and normalize(nic_id) in {normalize(x) for x in
                                                          ArmActions.nic_ids(live)}
    if attached:
        if ArmActions.power_state(live) == "running":
            runner.refuse_unplanned_deallocation()  # before the routes go: nothing half done
        if ArmActions.power_state(live) == "running" and info["vips"]:
            _cleanup_routes(runner, live, nic, info["vips"])
        power = ArmActions.power_state(live)
        if power == "running":
            runner.check_peers()
            runner.run.check_budget(f"deallocating {v.vm_name}")
            ctx.journal.open_record(OPEN_DEALLOCATED, v.vm_id, operation_id=runner.run.op,
                                    plan_hash=runner.run.plan_hash,
                                    data={"reason": "rollback", "nic": nic_id})
            runner.deallocated_by_us = True
            runner.write(StepKind.DEALLOCATE, lambda: actions.deallocate(v.vm_id),
                         before={"power_state": "running"},
                         after=lambda _: {"power_state": "deallocated"})
        elif ctx.journal.open_records(OPEN_DEALLOCATED, v.vm_id):
            runner.deallocated_by_us = True
        runner.write("detach-nic", lambda: actions.detach_nic(v.vm_id, nic_id),
                     before={"nics": ArmActions.nic_ids(live)},
                     after=lambda doc: {"nics": ArmActions.nic_ids(doc)})
        runner.step("detach-nic", "detached", nic_id=nic_id)
        if runner.deallocated_by_us:
            runner.start()
    runner.write("delete-nic", lambda: actions.delete_nic(nic_id),
                 before={"id": nic_id, "etag": nic.get("etag")}, after=lambda _: None)
    runner.step("delete-nic", "deleted", nic_id=nic_id)


def _cleanup_routes(runner: _VmRunner, live: dict, nic: dict, vips: list[str]) -> None:
    v, ctx = runner.v, runner.run.ctx
    t = runner.pr.topology
    vm = t.vms[v.key]
    cfg = t.nics[vm.primary_nic_key].primary_ip_config if vm.primary_nic_key in t.nics else None
    props = nic.get("properties") or {}
    mac = props.get("macAddress")
    ip = next((c.get("properties", {}).get("privateIPAddress")
               for c in props.get("ipConfigurations") or []), None)
    subnet_id = next(((c.get("properties", {}).get("subnet") or {}).get("id")
                      for c in props.get("ipConfigurations") or []), None)
    subnet = t.subnet(subnet_id) if subnet_id else None
    if not (mac and ip and cfg and cfg.private_ip and subnet and subnet.prefix):
        runner.step("cleanup-routes", "skipped: NIC values unknown")
        return
    spec = guest_scripts.GuestRouteSpec(
        primary_ip=cfg.private_ip, secondary_ip=ipaddress.IPv4Address(ip),
        secondary_mac=guest_scripts.MacAddress.parse(mac), gateway=subnet.gateway,
        prefix_len=subnet.prefix.prefixlen,
        routes=tuple(guest_scripts.VipRoute(ipaddress.IPv4Address(x), guest_scripts.Protocol.TCP,
                                            1, 1) for x in vips[:guest_scripts.MAX_ROUTES]),
        ha_ports_broad_rule_allowed=ctx.settings.allow_broad_ha_ports_rule)
    os_name = (vm.os_type or "linux").lower()
    script = guest_scripts.render(spec, os_name, "cleanup")
    try:
        result = runner.write("cleanup-routes", lambda: runner.actions.run_command(
            v.vm_id, guest_scripts.command_id(os_name), guest_scripts.script_lines(script),
            vm=live), before={"vips": vips}, after=lambda r: r.result)
        runner.step("cleanup-routes", result.result.get("result", "?"))
    except RunCommandPending as exc:
        # The NIC goes anyway; routes via a missing adapter are inert (and re-checked at boot).
        runner.step("cleanup-routes", f"skipped: {exc}")
