"""Rollback: remove the managed NIC(s) of a VM (cleanup script, deallocate, detach, start,
delete) under the same guard as apply; only NICs tagged `<managed_tag>=true` are ever touched."""

from __future__ import annotations

import hashlib
import ipaddress

from shared.azure.actions import ArmActions, NotManaged, RunCommandPending
from shared.core import guest as guest_scripts
from shared.core import risk
from shared.core.arm_docs import is_managed
from shared.core.arm_ids import normalize
from shared.core.journal import Trigger
from shared.core.remediation import plan as planning
from shared.core.remediation.model import Plan, Step, VmPlan, canonical_json, nic_id_for
from shared.core.remediation.outcome import Outcome
from shared.core.topology import Nic, Topology, Vm
from shared.core.vocab import JournalAction, JournalResult, PowerState, RecordKind, Status, StepKind
from shared.services.context import ServiceContext
from shared.services.remediation.api import decide, not_allowed
from shared.services.remediation.resume import resume_interrupted
from shared.services.remediation.run import RefuseRun, Run, error_text, plan_summary, stop_reason
from shared.services.remediation.targets import PlanResult, observe_vm, verified_routes
from shared.services.remediation.vm_runner import VmRunner
from shared.storage.locks import LockBusy, pool_lock, vm_lock

__all__ = ["rollback", "rollback_plan"]


def rollback(ctx: ServiceContext, vm_id: str, trigger: Trigger, *, approval: str | None = None,
             operation_id: str | None = None) -> Outcome:
    """Remove the routes, detach and delete the managed NIC under the same guard; journaled.
    Never touches a NIC this project did not create."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr, nics = rollback_plan(ctx, vm_id)
    plan = pr.plan
    with Run(ctx, trigger, operation_id, plan.hash) as run:
        out = Outcome(Status.UNCHANGED, operation_id=run.op, plan_hash=plan.hash,
                      plan=plan.as_dict(), resumed=[o.as_dict() for o in resumed])
        if plan.empty:
            out.reasons.append("nothing to roll back: no NIC tagged "
                               f"{ctx.settings.managed_tag}=true on this VM")
            return out
        decision = decide(ctx, pr, trigger, approval, run)
        if not decision.allowed:
            result = not_allowed(out, decision)
            run.journal(JournalAction.ROLLBACK, result, plan.vms[0].vm_id,
                        after=plan_summary(plan), error="; ".join(decision.reasons))
            return out
        _run_rollback(ctx, run, VmRunner(run, pr, plan.vms[0]), nics, out)
        out.arm_writes = run.writes + sum(o.arm_writes for o in resumed)
    return out


def _run_rollback(ctx: ServiceContext, run: Run, runner: VmRunner, nics: list[dict],
                  out: Outcome) -> None:
    v = runner.v
    out.vms.append(runner.out)
    names = [pool_lock(p) for p in v.pool_ids] + [vm_lock(v.vm_id)]
    try:
        run.held = ctx.locks.hold(names, operation_id=run.op)
    except LockBusy as exc:
        out.status, out.resumable = Status.PENDING, True
        out.reasons.append(f"busy: {exc}")
        return
    try:
        for info in nics:
            _rollback_nic(runner, info)
        runner.out.status = Status.APPLIED
        for vip in {key for (_, key) in ctx.journal.verified_routes(v.vm_id)}:
            ctx.journal.close_record(RecordKind.VERIFIED_ROUTE, v.vm_id, vip)
        runner.rec.record(Status.APPLIED)
    except (RefuseRun, NotManaged) as exc:
        runner.out.status = Status.REFUSED
        runner.out.reasons.append(str(exc))
    except Exception as exc:  # noqa: BLE001
        reason = stop_reason(exc)
        runner.out.status = Status.PENDING if reason else Status.FAILED
        runner.out.reasons.append(reason or error_text(exc))
        run.journal(JournalAction.ROLLBACK,
                    JournalResult.PENDING if reason else JournalResult.FAILED, v.vm_id,
                    error=reason or error_text(exc))
        if not reason:
            runner.restart_if_ours()
    finally:
        held, run.held = run.held, None
        held.release()
    out.status = runner.out.status
    out.reasons.extend(runner.out.reasons)
    out.resumable = out.status == Status.PENDING


# --------------------------------------------------------------------------- the plan

def rollback_plan(ctx: ServiceContext, vm_id: str) -> tuple[PlanResult, list[dict]]:
    """A plan that removes the managed NIC(s) of a VM: cleanup script, deallocate, detach,
    start, delete. Only NICs tagged `<managed_tag>=true` are ever included."""
    sub, snapshot, topology, evaluation, vm = observe_vm(
        ctx, vm_id, "rollback needs a VM resource ID (--vm)")
    tag = ctx.settings.managed_tag
    attached = list(topology.managed_nics(vm, tag))
    orphan = topology.nics.get(normalize(nic_id_for(vm.id, risk.secondary_nic_name(vm.name))))
    orphans = ([orphan] if orphan is not None and orphan.vm_id is None
               and orphan.is_managed(tag) else [])
    vips = sorted({f.frontend_ip for f in evaluation.findings
                   if normalize(f.vm_id) == vm.key and f.frontend_ip}) or sorted(
        {key for (vk, key) in verified_routes(ctx) if vk == vm.key})
    needs_dealloc = bool(attached) and vm.power_state != PowerState.DEALLOCATED
    steps = _steps(topology, vm, attached, orphans, vips, needs_dealloc, tag)
    if not steps:
        plan = Plan((), {}, hashlib.sha256(b"empty").hexdigest(), {"vm_id": vm.id})
        return PlanResult(plan, topology, evaluation, sub, {"vm_id": vm.id}), []
    pools = tuple(topology.pools[p].id for p in topology.pool_keys_of_vm(vm)
                  if p in topology.pools)
    v = VmPlan(vm_id=vm.id, vm_name=vm.name, os_type=vm.os_type, power_state=vm.power_state,
               likelihood=0.0, serving=False, finding_ids=(), routes=(), nic=None,
               primary_ip=None, primary_nic_id=None, needs_deallocation=needs_dealloc,
               pool_ids=pools, takeover_peers=(), fails_over=(), steps=tuple(steps),
               blockers=(), notes=())
    etags = planning.etags_from_documents(snapshot["resources"])
    nic_ids = [n.id for n in attached + orphans]
    facts = {vm.id: {"etag": etags.get(vm.key), "power_state": vm.power_state,
                     "nics": {n: etags.get(normalize(n)) for n in nic_ids}}}
    digest = hashlib.sha256(canonical_json(
        {"rollback": v.as_dict(), "facts": facts, "vips": vips}).encode()).hexdigest()
    plan = Plan((v,), facts, digest, {"vm_id": vm.id, "rollback": True})
    return PlanResult(plan, topology, evaluation, sub, dict(plan.target)), [
        {"nic_id": n.id, "attached": n in attached, "vips": vips} for n in attached + orphans]


def _steps(t: Topology, vm: Vm, attached: list[Nic], orphans: list[Nic], vips: list[str],
           needs_dealloc: bool, tag: str) -> list[Step]:
    steps: list[Step] = []

    def add(kind: StepKind, description: str, precondition: str, changes=(),
            deallocates: bool = False, fails_over=()) -> None:
        steps.append(Step(kind, vm.id, vm.name, description, precondition, tuple(changes),
                          deallocates, tuple(fails_over)))

    for nic in attached:
        if vm.is_running:
            add(StepKind.CLEANUP_ROUTES, f"remove the guest routes via {nic.name} (cleanup "
                "script)", "the script reports 'unchanged'", [f"- host route {x}/32" for x in vips])
        if needs_dealloc:
            add(StepKind.DEALLOCATE, f"deallocate {vm.name}", f"{vm.name} is deallocated",
                [f"{vm.name} running -> deallocated"], True, planning.serving_frontends(t, vm))
        add(StepKind.DETACH, f"detach {nic.name} from {vm.name}",
            f"{nic.name} is not in the NIC list", [f"networkProfile: - {nic.name}"])
        if needs_dealloc:
            add(StepKind.START, f"start {vm.name}", f"{vm.name} is running",
                [f"{vm.name} deallocated -> running"])
        add(StepKind.DELETE_NIC, f"delete {nic.name} (tagged {tag}=true)",
            f"{nic.name} does not exist", [f"- NIC {nic.name}"])
    for nic in orphans:
        add(StepKind.DELETE_NIC, f"delete unattached {nic.name}", f"{nic.name} does not exist",
            [f"- NIC {nic.name}"])
    if steps:
        add(StepKind.RECORD, "record the rollback", "never skipped")
    return steps


# --------------------------------------------------------------------------- the steps

def _rollback_nic(runner: VmRunner, info: dict) -> None:
    v, actions, ctx = runner.v, runner.actions, runner.run.ctx
    nic_id = info["nic_id"]
    nic = actions.get_nic(nic_id)
    if nic is None:
        runner.rec.step(StepKind.DELETE_NIC, "already gone")
        return
    if not is_managed(nic, ctx.settings.managed_tag):
        raise NotManaged(f"NIC {nic.get('name')} is not tagged {ctx.settings.managed_tag}=true: "
                         "never touched")
    live = actions.get_vm(v.vm_id)
    attached = live is not None and normalize(nic_id) in {normalize(x) for x in
                                                          ArmActions.nic_ids(live)}
    if attached:
        _detach(runner, live, nic, info)
    runner.rec.write(StepKind.DELETE_NIC, lambda: actions.delete_nic(nic_id),
                     before={"id": nic_id, "etag": nic.get("etag")}, after=lambda _: None)
    runner.rec.step(StepKind.DELETE_NIC, "deleted", nic_id=nic_id)


def _detach(runner: VmRunner, live: dict, nic: dict, info: dict) -> None:
    """Routes out, then deallocate (guarded), detach and start again."""
    v, actions = runner.v, runner.actions
    nic_id = info["nic_id"]
    if ArmActions.power_state(live) == PowerState.RUNNING:
        runner.refuse_unplanned_deallocation()  # before the routes go: nothing half done
        if info["vips"]:
            _cleanup_routes(runner, live, nic, info["vips"])
        runner.deallocate("rollback", nic_id, preflight=False)
    elif runner.left_down_by_us():
        runner.deallocated_by_us = True
    runner.rec.write(StepKind.DETACH, lambda: actions.detach_nic(v.vm_id, nic_id),
                     before={"nics": ArmActions.nic_ids(live)},
                     after=lambda doc: {"nics": ArmActions.nic_ids(doc)})
    runner.rec.step(StepKind.DETACH, "detached", nic_id=nic_id)
    if runner.deallocated_by_us:
        runner.start()


def _cleanup_routes(runner: VmRunner, live: dict, nic: dict, vips: list[str]) -> None:
    v, settings = runner.v, runner.run.ctx.settings
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
        runner.rec.step(StepKind.CLEANUP_ROUTES, "skipped: NIC values unknown")
        return
    spec = guest_scripts.GuestRouteSpec(
        primary_ip=cfg.private_ip, secondary_ip=ipaddress.IPv4Address(ip),
        secondary_mac=guest_scripts.MacAddress.parse(mac), gateway=subnet.gateway,
        prefix_len=subnet.prefix.prefixlen,
        routes=tuple(guest_scripts.VipRoute(ipaddress.IPv4Address(x), guest_scripts.Protocol.TCP,
                                            1, 1) for x in vips[:guest_scripts.MAX_ROUTES]),
        ha_ports_broad_rule_allowed=settings.allow_broad_ha_ports_rule)
    os_name = (vm.os_type or "linux").lower()
    script = guest_scripts.render(spec, os_name, "cleanup")
    try:
        result = runner.rec.write(StepKind.CLEANUP_ROUTES, lambda: runner.actions.run_command(
            v.vm_id, guest_scripts.command_id(os_name), guest_scripts.script_lines(script),
            vm=live), before={"vips": vips}, after=lambda r: r.result)
        runner.rec.step(StepKind.CLEANUP_ROUTES, result.result.get("result", "?"))
    except RunCommandPending as exc:
        # The NIC goes anyway; routes via a missing adapter are inert (and re-checked at boot).
        runner.rec.step(StepKind.CLEANUP_ROUTES, f"skipped: {exc}")
