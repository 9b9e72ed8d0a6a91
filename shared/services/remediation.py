"""Remediation: the one code path every entry point (CLI, HTTP, queue, events, sweep) uses.

    plan_for_vm / plan_for_finding  -> PlanResult   (live discovery + risk.evaluate + plan)
    apply(ctx, target, trigger, approval=)          -> Outcome
    resume_interrupted(ctx, trigger)                 -> [Outcome]  (start VMs we left deallocated)
    ensure_guest_routes / verify / rollback          -> Outcome

Safety: `shared.guard` decides whether a plan may run; before each deallocation the pool peers'
power states are re-read live and the guard's pool rule is checked again; one VM per pool at a
time (Blob-lease locks per pool and per VM); the `deallocated` open record is written *before*
a deallocation and closed only after the start, so any later run (any trigger) starts the VM
first. Every write is journaled before (`started`) and after (`succeeded`/`failed`) with
before/after documents. Every step re-checks its precondition against live state, so a rerun
continues where a stopped run left off. A run stopped by its budget (RetryBudgetExceeded, a
near deadline, a busy lock) stops cleanly with status `pending` and `resumable: true`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from azure.core.exceptions import HttpResponseError

from shared import arm_ids, guard, guest_scripts, observability, risk
from shared import plan as planning
from shared.arm_ids import normalize
from shared.azure.actions import (
    ActionError,
    ArmActions,
    NotManaged,
    RunCommandPending,
)
from shared.azure.discovery import discover_subscription
from shared.azure.retry import RetryBudgetExceeded
from shared.journal_model import (
    OPEN_DEALLOCATED,
    OPEN_VERIFIED_ROUTE,
    RESULT_FAILED,
    RESULT_PENDING,
    RESULT_REFUSED,
    RESULT_STARTED,
    RESULT_SUCCEEDED,
    JournalEntry,
    Trigger,
)
from shared.plan import Plan, Step, VmPlan
from shared.services.context import ServiceContext
from shared.storage.locks import LockBusy, LockLost, pool_lock, vm_lock
from shared.topology import Topology

log = logging.getLogger(__name__)

__all__ = [
    "APPLIED", "UNCHANGED", "PENDING", "REFUSED", "FAILED", "TargetError", "PlanResult",
    "VmOutcome", "Outcome", "plan_for_vm", "plan_for_finding", "plan_for_target", "apply",
    "resume_interrupted", "ensure_guest_routes", "verify", "rollback", "rollback_plan",
    "history", "parse_target", "FINDING_ID",
]

APPLIED, UNCHANGED, PENDING, REFUSED, FAILED = (
    "applied", "unchanged", "pending", "refused", "failed")
FINDING_ID = re.compile(r"\Ahp-[0-9a-f]{20}\Z")
VM_TYPE = "Microsoft.Compute/virtualMachines"
DEADLINE_MARGIN_S = 30.0  # stop before a step when less than this is left of the budget


class TargetError(ValueError):
    """Bad input: `status` 400 (malformed) or 404 (unknown VM or finding)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Stop(Exception):
    """Stop this run cleanly: status pending, resumable."""


class _Refuse(Exception):
    pass


# --------------------------------------------------------------------------- results

@dataclass
class PlanResult:
    plan: Plan
    topology: Topology
    evaluation: risk.Evaluation
    subscription_id: str
    target: dict
    resources: list = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {"target": self.target, "subscription_id": self.subscription_id,
                "plan": self.plan.as_dict(),
                "findings": [f.as_dict() for f in self.evaluation.findings
                             if any(normalize(f.vm_id) == v.key for v in self.plan.vms)]}


@dataclass
class VmOutcome:
    vm_id: str
    vm_name: str
    status: str = UNCHANGED
    steps: list[dict] = field(default_factory=list)
    verification: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Outcome:
    status: str
    reasons: list[str] = field(default_factory=list)
    operation_id: str = ""
    plan_hash: str | None = None
    vms: list[VmOutcome] = field(default_factory=list)
    arm_writes: int = 0
    resumable: bool = False
    plan: dict | None = None
    resumed: list[dict] = field(default_factory=list)
    # True: every verification run passed; False: one failed; None: none ran.
    verified: bool | None = None

    def as_dict(self) -> dict:
        return {"status": self.status, "verified": self.verified,
                "reasons": list(self.reasons),
                "operation_id": self.operation_id, "plan_hash": self.plan_hash,
                "vms": [v.as_dict() for v in self.vms], "arm_writes": self.arm_writes,
                "resumable": self.resumable, "plan": self.plan, "resumed": self.resumed}

    def vm(self, name_or_id: str) -> VmOutcome | None:
        key = name_or_id.lower()
        return next((v for v in self.vms if v.vm_name.lower() == key
                     or normalize(v.vm_id) == normalize(name_or_id)), None)


def new_operation_id() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- targets

def parse_target(text: Any) -> tuple[str, str]:
    """("vm", id) or ("finding", id); TargetError(400) for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise TargetError("expected a VM resource ID or a finding ID (hp-...)")
    text = text.strip()
    if text.lower().startswith("/subscriptions/"):
        parsed = arm_ids.try_parse(text)
        if parsed is None or not parsed.is_type(VM_TYPE) or not arm_ids.is_subscription_id(
                parsed.subscription or ""):
            raise TargetError(f"{text[:200]!r} is not a virtual machine resource ID "
                              "(/subscriptions/{guid}/resourceGroups/{rg}/providers/"
                              "Microsoft.Compute/virtualMachines/{name})")
        return "vm", str(parsed)
    if FINDING_ID.match(text.lower()):
        return "finding", text.lower()
    raise TargetError(f"{text[:80]!r} is neither a VM resource ID nor a finding ID "
                      "(hp- followed by 20 hex digits)")


def _subscriptions(ctx: ServiceContext, explicit: str | None) -> list[str]:
    if explicit:
        if not arm_ids.is_subscription_id(explicit):
            raise TargetError(f"{explicit[:60]!r} is not a subscription ID")
        return [explicit.lower()]
    subs = list(ctx.settings.subscriptions)
    env = os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not subs and env:
        subs = [env.lower()]
    if not subs:
        raise TargetError("no subscription: pass --subscription or set AZURE_SUBSCRIPTION_ID "
                          "or HAIRPIN_SUBSCRIPTIONS")
    return subs


def _verified(ctx: ServiceContext) -> frozenset:
    return ctx.journal.verified_routes() if ctx.journal is not None else frozenset()


def _observe(ctx: ServiceContext, subscription_id: str, *, with_verified: bool = True):
    snapshot = discover_subscription(ctx.clients(subscription_id))
    topology = _assume_resumed(ctx, Topology.from_snapshot(snapshot))
    evaluation = risk.evaluate(topology, ctx.settings,
                               _verified(ctx) if with_verified else ())
    return snapshot, topology, evaluation


def _assume_resumed(ctx: ServiceContext, topology: Topology) -> Topology:
    """VMs this project left deallocated are started again first by any run: plan them as
    running, so the plan (and its hash) is the one that will run."""
    if ctx.journal is None:
        return topology
    keys = {normalize(r.vm_id) for r in ctx.journal.left_deallocated()}
    vms = dict(topology.vms)
    changed = False
    for key in keys:
        vm = vms.get(key)
        if vm is not None and vm.power_state in ("deallocated", "stopped"):
            vms[key] = dataclasses.replace(vm, power_state="running")
            changed = True
    return dataclasses.replace(topology, vms=MappingProxyType(vms)) if changed else topology


def _build(ctx, snapshot, topology, evaluation, subscription_id, vm_ids, target) -> PlanResult:
    plan = planning.build_plan(evaluation.findings, topology, ctx.settings, vm_ids=vm_ids,
                               etags=planning.etags_from_documents(snapshot["resources"]),
                               target=target)
    return PlanResult(plan, topology, evaluation, subscription_id, target, snapshot["resources"])


def plan_for_vm(ctx: ServiceContext, vm_id: str) -> PlanResult:
    """The plan covering `vm_id` and every VM with a high/medium finding in its pools."""
    kind, vm_id = parse_target(vm_id)
    if kind != "vm":
        raise TargetError("expected a VM resource ID")
    sub = arm_ids.parse(vm_id).subscription
    snapshot, topology, evaluation = _observe(ctx, sub)
    vm = topology.vms.get(normalize(vm_id))
    if vm is None:
        raise TargetError(f"VM {vm_id} was not found in subscription {sub}", 404)
    return _build(ctx, snapshot, topology, evaluation, sub, [vm.id],
                  {"vm_id": vm.id, "vm_name": vm.name})


def plan_for_finding(ctx: ServiceContext, finding_id: str,
                     subscription_id: str | None = None) -> PlanResult:
    kind, fid = parse_target(finding_id)
    if kind != "finding":
        raise TargetError("expected a finding ID (hp-...)")
    for sub in _subscriptions(ctx, subscription_id):
        snapshot, topology, evaluation = _observe(ctx, sub, with_verified=False)
        finding = evaluation.finding(fid)
        if finding is None:
            continue
        # Re-evaluate with verified routes: a fixed finding yields an empty plan.
        evaluation = risk.evaluate(topology, ctx.settings, _verified(ctx))
        return _build(ctx, snapshot, topology, evaluation, sub, [finding.vm_id],
                      {"finding_id": fid, "vm_id": finding.vm_id, "vm_name": finding.vm_name})
    raise TargetError(f"finding {fid} was not found (it may be fixed, or in another "
                      "subscription: pass the subscription)", 404)


def plan_for_target(ctx: ServiceContext, target: str,
                    subscription_id: str | None = None) -> PlanResult:
    kind, value = parse_target(target)
    return plan_for_vm(ctx, value) if kind == "vm" else plan_for_finding(
        ctx, value, subscription_id)


# --------------------------------------------------------------------------- runner

class _Run:
    """State of one run: journal helper, actions per subscription, deadline."""

    def __init__(self, ctx: ServiceContext, trigger: Trigger, operation_id: str | None,
                 plan_hash: str | None = None) -> None:
        self.ctx = ctx
        self.trigger = trigger
        self.op = operation_id or new_operation_id()
        self.plan_hash = plan_hash
        self._actions: dict[str, ArmActions] = {}
        self.held = None

    def actions(self, subscription_id: str) -> ArmActions:
        key = subscription_id.lower()
        if key not in self._actions:
            self._actions[key] = ArmActions(
                self.ctx.clients(subscription_id), managed_tag=self.ctx.settings.managed_tag,
                deadline=self.ctx.deadline,
                run_command_timeout=self.ctx.settings.run_command_timeout_seconds,
                conflict_backoff=getattr(self.ctx, "run_command_backoff", 1.0))
        return self._actions[key]

    def for_vm(self, vm_id: str) -> ArmActions:
        return self.actions(arm_ids.parse(vm_id).subscription)

    @property
    def writes(self) -> int:
        return sum(a.writes for a in self._actions.values())

    def journal(self, action: str, result: str, vm_id: str | None = None, *,
                step: str | None = None, before=None, after=None, error: str | None = None):
        if self.ctx.journal is None:
            return None
        return self.ctx.journal.append(JournalEntry(
            action=action, result=result, trigger=self.trigger, operation_id=self.op,
            vm_id=vm_id, plan_hash=self.plan_hash, step=step, before=before, after=after,
            error=error))

    def check_budget(self, what: str) -> None:
        if self.held is not None:
            self.held.check()
        if self.ctx.deadline is not None and time.monotonic() > self.ctx.deadline - min(
                DEADLINE_MARGIN_S, getattr(self.ctx, "deadline_margin", DEADLINE_MARGIN_S)):
            raise _Stop(f"the time budget is nearly spent: stopped before {what}; "
                        "the next run continues from here")


def _needs_storage(ctx: ServiceContext) -> str | None:
    if ctx.journal is None or ctx.locks is None:
        return ("remediation needs storage for its journal and locks: set "
                "HAIRPIN_STORAGE_CONNECTION or AzureWebJobsStorage")
    return None


def _summary(plan: Plan) -> dict:
    return {"hash": plan.hash, "order": [v.vm_name for v in plan.vms],
            "deallocates": [v.vm_name for v in plan.vms if v.needs_deallocation],
            "steps": [f"{s.vm_name}:{s.kind}" for s in plan.steps]}


def _stop_reason(exc: BaseException) -> str | None:
    """A reason when `exc` means "stopped by budget" (clean, resumable)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RetryBudgetExceeded):
            return f"stopped by the retry budget: {exc}"
        if isinstance(exc, LockBusy):
            return f"busy: {exc}"
        if isinstance(exc, LockLost):
            return f"lock lost: {exc}"
        if isinstance(exc, _Stop):
            return str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, HttpResponseError):
        return f"{exc.status_code} {exc.message or exc}".splitlines()[0][:500]
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


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


def _left_deallocated_by_others(ctx: ServiceContext, op: str) -> list[str]:
    if ctx.journal is None:
        return []
    return [r.vm_id for r in ctx.journal.left_deallocated() if r.operation_id != op]


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
        if kind != planning.STEP_START:
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
        if kind not in (planning.STEP_ROUTES, planning.STEP_VERIFY):
            self.wrote = True  # a configuration change (Run Command writes are judged below)
        return value

    # -- the steps
    def ensure_nic(self, live_vm: dict) -> None:
        spec = self.v.nic
        nic = self.actions.get_nic(spec.id)
        if nic is not None:
            tags = {k.lower(): v for k, v in (nic.get("tags") or {}).items()}
            if tags.get(self.run.ctx.settings.managed_tag.lower(), "").lower() != "true":
                raise _Refuse(f"a NIC named {spec.name} exists but is not tagged "
                              f"{self.run.ctx.settings.managed_tag}=true: this project did not "
                              "create it and will not use or change it")
            owner = ((nic.get("properties") or {}).get("virtualMachine") or {}).get("id")
            if owner and normalize(owner) != self.v.key:
                raise _Refuse(f"NIC {spec.name} is attached to another VM ({owner})")
            self.step(planning.STEP_ENSURE_NIC, "unchanged", nic_id=nic.get("id"))
            return
        self.write(planning.STEP_ENSURE_NIC,
                   lambda: self.actions.create_nic(spec.id, spec.arm_body()),
                   before=None, after=lambda doc: {"id": doc.get("id"), "etag": doc.get("etag"),
                                                   "properties": doc.get("properties")})
        self.step(planning.STEP_ENSURE_NIC, "created", nic_id=spec.id)

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
            self.write(planning.STEP_DEALLOCATE, lambda: self.actions.deallocate(v.vm_id),
                       before={"power_state": "running"},
                       after=lambda _: {"power_state": "deallocated"})
            self.step(planning.STEP_DEALLOCATE, "deallocated")
        elif power in ("deallocated", "stopped") and open_recs:
            self.deallocated_by_us = True  # an earlier run of ours left it so
            self.step(planning.STEP_DEALLOCATE, "already deallocated by an earlier run")
        elif power in ("deallocated", "stopped"):
            self.step(planning.STEP_DEALLOCATE, f"already {power} (not by us)")
        else:
            raise _Stop(f"{v.vm_name} is {power or 'in an unknown power state'}: waiting")
        before_nics = ArmActions.nic_ids(live_vm)
        self.write(planning.STEP_ATTACH, lambda: self.actions.attach_nic(v.vm_id, v.nic.id),
                   before={"nics": before_nics},
                   after=lambda doc: {"nics": ArmActions.nic_ids(doc), "etag": doc.get("etag")})
        self.step(planning.STEP_ATTACH, "attached", nic_id=v.nic.id)
        if self.deallocated_by_us:
            self.start()
        return self.actions.get_vm(v.vm_id) or live_vm

    def start(self) -> None:
        v = self.v
        self.write(planning.STEP_START, lambda: self.actions.start(v.vm_id),
                   before={"power_state": "deallocated"},
                   after=lambda _: {"power_state": "running"})
        self.run.ctx.journal.close_record(OPEN_DEALLOCATED, v.vm_id)
        self.deallocated_by_us = False
        self.step(planning.STEP_START, "started")

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
        tag = ctx.settings.managed_tag
        if next((str(val) for k, val in (nic.get("tags") or {}).items()
                 if k.lower() == tag.lower()), "").lower() != "true":
            # Planning counts any NIC carrying the tag's name; routes go only via ours.
            raise _Refuse(f"NIC {v.nic.name} is not tagged {tag}=true: this project did not "
                          "create it and routes no guest traffic through it")
        spec = _spec(v, nic, ctx.settings)
        if push:
            script = guest_scripts.render(spec, os_name, "apply")
            result = self.write(planning.STEP_ROUTES, lambda: self.actions.run_command(
                v.vm_id, guest_scripts.command_id(os_name), guest_scripts.script_lines(script),
                vm=live_vm), before={"vips": list(v.vips)}, after=lambda r: r.result)
            if not result.ok:
                raise ActionError(f"guest route script failed on {v.vm_name}: "
                                  f"{result.result.get('error')}: {result.result.get('message')}",
                                  "GuestScriptFailed")
            self.step(planning.STEP_ROUTES, result.result.get("result", "?"),
                      changes=result.result.get("changes", []))
            if result.result.get("result") == "applied":
                self.wrote = True
        targets = spec.verify_targets()
        if not targets:
            self.step(planning.STEP_VERIFY, "skipped: no TCP target (HA ports/UDP only)")
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
        self.step(planning.STEP_VERIFY, "passed" if all_ok else "failed", numbers=numbers)
        return all_ok

    def _run_verify(self, live_vm: dict, os_name: str, targets) -> tuple[list[dict], dict]:
        script = _verify_script(targets, os_name, self.run.ctx.settings.verify_connects)
        result = self.write(planning.STEP_VERIFY, lambda: self.actions.run_command(
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
            self.step(planning.STEP_VERIFY, "skipped: no TCP target (HA ports/UDP only)")
            return True
        numbers, result = self._run_verify(live_vm, os_name, targets)
        all_ok = bool(result.get("ok")) and all(n["ok"] == n["total"] for n in numbers)
        self.step(planning.STEP_VERIFY, "passed" if all_ok else "failed", numbers=numbers)
        return all_ok

    def record(self, status: str) -> None:
        self.run.journal(planning.STEP_RECORD, RESULT_SUCCEEDED if status in (APPLIED, UNCHANGED)
                         else RESULT_FAILED, self.v.vm_id, step=planning.STEP_RECORD,
                         after={"status": status, "verification": self.out.verification,
                                "steps": self.out.steps})
        self.step(planning.STEP_RECORD, status)

    # -- the whole VM
    def execute(self, *, mode: str = "apply") -> VmOutcome:
        """mode: apply (all steps), routes (push + verify), verify (verify only)."""
        v, ctx = self.v, self.run.ctx
        names = [pool_lock(p) for p in v.pool_ids] + [vm_lock(v.vm_id)]
        try:
            self.run.held = ctx.locks.hold(names, operation_id=self.run.op)
        except LockBusy as exc:
            self.out.status = PENDING
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
                    self.step(planning.STEP_ATTACH, "already attached")
                    if ArmActions.power_state(live) in ("deallocated", "stopped") and \
                            ctx.journal.open_records(OPEN_DEALLOCATED, v.vm_id):
                        self.deallocated_by_us = True
                        self.start()
                        live = self.actions.get_vm(v.vm_id) or live
            ok = self.routes_and_verify(live, push=mode != "verify")
            if ok:
                self.out.status = APPLIED if self.wrote and mode != "verify" else UNCHANGED
            else:
                self.out.status = FAILED
                self.out.reasons.append("verification below 100%: " + ", ".join(
                    f"{n['vip']}:{n['port']} {n['ok']}/{n['total']}"
                    for n in self.out.verification))
            self.record(self.out.status)
        except _Refuse as exc:
            self.out.status = REFUSED
            self.out.reasons.append(str(exc))
            self.run.journal("apply", RESULT_REFUSED, v.vm_id, error=str(exc))
        except RunCommandPending as exc:
            self.out.status = PENDING
            self.out.reasons.append(str(exc))
            self.run.journal("guest", RESULT_PENDING, v.vm_id, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure ends as a clean outcome
            reason = _stop_reason(exc)
            if reason is not None:
                self.out.status = PENDING
                self.out.reasons.append(reason)
                self.run.journal("apply", RESULT_PENDING, v.vm_id, error=reason)
            else:
                log.warning("remediation of %s failed: %s", v.vm_name, exc, exc_info=True)
                self.out.status = FAILED
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


# --------------------------------------------------------------------------- public API

def resume_interrupted(ctx: ServiceContext, trigger: Trigger, *,
                       operation_id: str | None = None) -> list[Outcome]:
    """Start every VM this project deallocated and did not start again (journal open records),
    unless another live run holds its lock. Any entry point calls this first."""
    if ctx.journal is None:
        return []
    outcomes: list[Outcome] = []
    for rec in ctx.journal.left_deallocated():
        run = _Run(ctx, trigger, operation_id, rec.plan_hash)
        out = Outcome(UNCHANGED, operation_id=run.op, plan_hash=rec.plan_hash)
        vm_out = VmOutcome(rec.vm_id, arm_ids.name_of(rec.vm_id))
        out.vms.append(vm_out)
        try:
            held = ctx.locks.hold([vm_lock(rec.vm_id)], operation_id=run.op) if ctx.locks else None
        except LockBusy as exc:
            out.status = PENDING
            out.reasons.append(f"{vm_out.vm_name}: a run in progress holds it ({exc})")
            outcomes.append(out)
            continue
        try:
            _close_interrupted(ctx, run, rec)
            actions = run.for_vm(rec.vm_id)
            live = actions.get_vm(rec.vm_id)
            power = ArmActions.power_state(live) if live else None
            if live is None or power == "running":
                ctx.journal.close_record(OPEN_DEALLOCATED, rec.vm_id)
                vm_out.reasons.append("already running" if live else "VM no longer exists")
            elif power in ("deallocated", "stopped"):
                run.journal(planning.STEP_START, RESULT_STARTED, rec.vm_id, step="resume",
                            before={"power_state": power, "left_by": rec.operation_id})
                try:
                    actions.start(rec.vm_id)
                except Exception as exc:
                    run.journal(planning.STEP_START, RESULT_FAILED, rec.vm_id, step="resume",
                                error=_error_text(exc))
                    raise
                run.journal(planning.STEP_START, RESULT_SUCCEEDED, rec.vm_id, step="resume",
                            after={"power_state": "running"})
                ctx.journal.close_record(OPEN_DEALLOCATED, rec.vm_id)
                out.status = vm_out.status = APPLIED
                out.reasons.append(f"{vm_out.vm_name}: started again (left deallocated by "
                                   f"operation {rec.operation_id})")
            else:
                out.status = PENDING
                out.reasons.append(f"{vm_out.vm_name} is {power}: checked again next run")
        except Exception as exc:  # noqa: BLE001
            out.status = PENDING if _stop_reason(exc) else FAILED
            out.resumable = True
            out.reasons.append(f"{vm_out.vm_name}: could not start it: {_error_text(exc)}")
        finally:
            if held is not None:
                held.release()
        out.arm_writes = run.writes
        outcomes.append(out)
    return outcomes


def _close_interrupted(ctx: ServiceContext, run: _Run, rec) -> None:
    """Journal the steps the interrupted run started and never finished (append-only: a
    `failed` entry under the original operation), so the journal says what happened."""
    entries = list(reversed(ctx.journal.history(rec.vm_id, 200, operation_id=rec.operation_id)))
    open_steps: dict[str, int] = {}
    for e in entries:
        if e.result == RESULT_STARTED:
            open_steps[e.action] = open_steps.get(e.action, 0) + 1
        elif e.result in (RESULT_SUCCEEDED, RESULT_FAILED) and open_steps.get(e.action):
            open_steps[e.action] -= 1
    for action, count in open_steps.items():
        for _ in range(count):
            ctx.journal.append(JournalEntry(
                action=action, result=RESULT_FAILED, trigger=run.trigger,
                operation_id=rec.operation_id, vm_id=rec.vm_id, plan_hash=rec.plan_hash,
                step=action, error=f"interrupted: the run stopped during this step; resumed by "
                                   f"operation {run.op}"))


def _guarded_run(ctx: ServiceContext, pr: PlanResult, trigger: Trigger, approval: str | None,
                 operation_id: str | None, *, mode: str = "apply",
                 resumed: list[Outcome] | None = None) -> Outcome:
    """`_run_plan` with the run's IDs on every log line and its outcome counted."""
    operation_id = operation_id or new_operation_id()
    with observability.correlate(operation_id=operation_id, plan_hash=pr.plan.hash,
                                 trigger=trigger.kind, event_id=trigger.event_id):
        out = _run_plan(ctx, pr, trigger, approval, operation_id, mode=mode, resumed=resumed)
    observability.record_outcome(out, trigger=trigger.kind)
    return out


def _run_plan(ctx: ServiceContext, pr: PlanResult, trigger: Trigger, approval: str | None,
              operation_id: str, *, mode: str, resumed: list[Outcome] | None) -> Outcome:
    plan = pr.plan
    run = _Run(ctx, trigger, operation_id, plan.hash)
    out = Outcome(UNCHANGED, operation_id=run.op, plan_hash=plan.hash, plan=plan.as_dict(),
                  resumed=[o.as_dict() for o in resumed or []])
    out.arm_writes = sum(o.arm_writes for o in resumed or [])
    if plan.empty:
        out.reasons.append("nothing to do: no VM in scope has a high or medium finding")
        return out
    decision = guard.decide(plan, pr.topology, ctx.settings, trigger_kind=trigger.kind,
                            now=ctx.clock(), approval=approval,
                            remediating=_left_deallocated_by_others(ctx, run.op))
    if decision.allowed and (missing := _needs_storage(ctx)):
        decision = guard.Decision(guard.REFUSED, (missing,))
    if not decision.allowed:
        out.status = PENDING if decision.status == guard.PENDING else REFUSED
        out.reasons.extend(decision.reasons)
        for v in plan.vms:
            run.journal("plan", RESULT_PENDING if out.status == PENDING else RESULT_REFUSED,
                        v.vm_id, step=mode, after=_summary(plan), error="; ".join(
                            decision.reasons))
        return out
    out.reasons.extend(decision.reasons)
    statuses = []
    for v in plan.vms:
        runner = _VmRunner(run, pr, v)
        vm_out = runner.execute(mode=mode)
        out.vms.append(vm_out)
        statuses.append(vm_out.status)
        if vm_out.status not in (APPLIED, UNCHANGED):
            # Never go on to the next VM: its safety depends on this one being fixed.
            out.reasons.extend(f"{v.vm_name}: {r}" for r in vm_out.reasons)
            rest = [x.vm_name for x in plan.vms[plan.vms.index(v) + 1:]]
            if rest:
                out.reasons.append(f"stopped before {', '.join(rest)}")
            break
    out.arm_writes += run.writes
    for status in (FAILED, REFUSED, PENDING):
        if status in statuses:
            out.status = status
            break
    else:
        out.status = APPLIED if APPLIED in statuses else UNCHANGED
    out.resumable = out.status == PENDING
    checks = [n["ok"] == n["total"] for v in out.vms for n in v.verification]
    if checks:
        out.verified = all(checks)
    elif any(s["step"] == planning.STEP_VERIFY and s["result"].startswith("skipped")
             for v in out.vms for s in v.steps):
        out.verified = True  # nothing to verify (HA ports / UDP only)
    if out.verified and mode == "verify":
        out.reasons.append("verified: every connect succeeded")
    return out


def apply(ctx: ServiceContext, vm_id_or_finding_id: str, trigger: Trigger, *,
          approval: str | None = None, operation_id: str | None = None,
          subscription_id: str | None = None) -> Outcome:
    """Guard, then every step with live preconditions; see the module docstring."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr = plan_for_target(ctx, vm_id_or_finding_id, subscription_id)
    return _guarded_run(ctx, pr, trigger, approval, operation_id, resumed=resumed)


def _observe_vm(ctx: ServiceContext, vm_id: str, not_a_vm: str):
    """The live estate of a VM's subscription (findings without verified routes, so every
    at-risk frontend is covered) and the VM itself; TargetError when it is not there."""
    kind, vm_id = parse_target(vm_id)
    if kind != "vm":
        raise TargetError(not_a_vm)
    sub = arm_ids.parse(vm_id).subscription
    snapshot, topology, evaluation = _observe(ctx, sub, with_verified=False)
    vm = topology.vms.get(normalize(vm_id))
    if vm is None:
        raise TargetError(f"VM {vm_id} was not found in subscription {sub}", 404)
    return sub, snapshot, topology, evaluation, vm


def _single_vm_plan(ctx: ServiceContext, vm_id: str, *, needs_nic: bool = True):
    """PlanResult narrowed to one VM, or an Outcome saying why not."""
    sub, snapshot, topology, evaluation, vm = _observe_vm(ctx, vm_id, "expected a VM resource ID")
    pr = _build(ctx, snapshot, topology, evaluation, sub, [vm.id],
                {"vm_id": vm.id, "vm_name": vm.name})
    v = pr.plan.vm(vm.id)
    if v is None:
        return pr, None, Outcome(UNCHANGED, [f"{vm.name} has no high or medium finding"])
    if v.nic is None or not v.nic.exists:
        if needs_nic:
            return pr, None, Outcome(REFUSED, [f"{vm.name} has no managed secondary NIC "
                                               "attached: run apply first"])
        # Measuring an unfixed VM: nothing is created, deallocated or attached.
        v = dataclasses.replace(v, needs_deallocation=False, blockers=(), steps=tuple(
            s for s in v.steps if s.kind == planning.STEP_VERIFY))
    narrowed = Plan((v,), pr.plan.facts, pr.plan.hash, pr.plan.target)
    return dataclasses.replace(pr, plan=narrowed), v, None


def ensure_guest_routes(ctx: ServiceContext, vm_id: str, trigger: Trigger, *,
                        operation_id: str | None = None) -> Outcome:
    """Re-push and verify the guest routes of a VM that already has the managed NIC."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr, v, early = _single_vm_plan(ctx, vm_id)
    if early is not None:
        return early
    return _guarded_run(ctx, pr, trigger, None, operation_id, mode="routes", resumed=resumed)


def verify(ctx: ServiceContext, vm_id: str, trigger: Trigger, *,
           operation_id: str | None = None) -> Outcome:
    """Verify from inside the guest; keeps the verified-route records in step. On a VM
    without the managed NIC it measures the hairpin itself (and records nothing)."""
    pr, v, early = _single_vm_plan(ctx, vm_id, needs_nic=False)
    if early is not None:
        return early
    return _guarded_run(ctx, pr, trigger, None, operation_id, mode="verify")


# --------------------------------------------------------------------------- rollback

def rollback_plan(ctx: ServiceContext, vm_id: str) -> tuple[PlanResult, list[dict]]:
    """A plan that removes the managed NIC(s) of a VM: cleanup script, deallocate, detach,
    start, delete. Only NICs tagged `<managed_tag>=true` are ever included."""
    sub, snapshot, topology, evaluation, vm = _observe_vm(
        ctx, vm_id, "rollback needs a VM resource ID (--vm)")
    tag = ctx.settings.managed_tag
    attached = [topology.nics[k] for k in vm.nic_keys
                if k in topology.nics and k != vm.primary_nic_key
                and (topology.nics[k].tags.get(tag) or next(
                    (val for key, val in topology.nics[k].tags.items()
                     if key.lower() == tag.lower()), "")).lower() == "true"]
    orphan_id = planning.nic_id_for(vm.id, risk.secondary_nic_name(vm.name))
    orphan = topology.nics.get(normalize(orphan_id))
    orphans = [orphan] if orphan is not None and orphan.vm_id is None and orphan.tags and any(
        k.lower() == tag.lower() and v.lower() == "true" for k, v in orphan.tags.items()) else []
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
            steps.append(Step(planning.STEP_DEALLOCATE, vm.id, vm.name, f"deallocate {vm.name}",
                              f"{vm.name} is deallocated", (f"{vm.name} running -> deallocated",),
                              True, tuple(planning._serving_frontends(topology, vm))))
        steps.append(Step("detach-nic", vm.id, vm.name, f"detach {nic.name} from {vm.name}",
                          f"{nic.name} is not in the NIC list", (f"networkProfile: - {nic.name}",)))
        if needs_dealloc:
            steps.append(Step(planning.STEP_START, vm.id, vm.name, f"start {vm.name}",
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
    steps.append(Step(planning.STEP_RECORD, vm.id, vm.name, "record the rollback",
                      "never skipped"))
    pools = tuple(topology.pools[p].id for p in sorted(
        {pk for nk in vm.nic_keys if nk in topology.nics for c in topology.nics[nk].ip_configs
         for pk in topology.ip_config_pools.get(c.key, ())}) if p in topology.pools)
    v = VmPlan(vm.id, vm.name, vm.os_type, vm.power_state, 0.0, False, (), (), None,
               None, None, needs_dealloc, pools, (), (), tuple(steps), (), ())
    facts = {vm.id: {"etag": etags.get(vm.key), "power_state": vm.power_state,
                     "nics": {n: etags.get(normalize(n)) for n in nic_ids}}}
    digest = hashlib.sha256(planning.canonical_json(
        {"rollback": v.as_dict(), "facts": facts, "vips": vips}).encode()).hexdigest()
    plan = Plan((v,), facts, digest, {"vm_id": vm.id, "rollback": True})
    return PlanResult(plan, topology, evaluation, sub, dict(plan.target)), [
        {"nic_id": n.id, "attached": n in attached, "vips": vips} for n in attached + orphans]


def rollback(ctx: ServiceContext, vm_id: str, trigger: Trigger, *, approval: str | None = None,
             operation_id: str | None = None) -> Outcome:
    """Remove the routes, detach and delete the managed NIC under the same guard; journaled.
    Never touches a NIC this project did not create."""
    resumed = resume_interrupted(ctx, trigger, operation_id=operation_id)
    pr, nics = rollback_plan(ctx, vm_id)
    plan = pr.plan
    run = _Run(ctx, trigger, operation_id, plan.hash)
    out = Outcome(UNCHANGED, operation_id=run.op, plan_hash=plan.hash, plan=plan.as_dict(),
                  resumed=[o.as_dict() for o in resumed])
    if plan.empty:
        out.reasons.append("nothing to roll back: no NIC tagged "
                           f"{ctx.settings.managed_tag}=true on this VM")
        return out
    decision = guard.decide(plan, pr.topology, ctx.settings, trigger_kind=trigger.kind,
                            now=ctx.clock(), approval=approval,
                            remediating=_left_deallocated_by_others(ctx, run.op))
    if decision.allowed and (missing := _needs_storage(ctx)):
        decision = guard.Decision(guard.REFUSED, (missing,))
    v = plan.vms[0]
    if not decision.allowed:
        out.status = PENDING if decision.status == guard.PENDING else REFUSED
        out.reasons.extend(decision.reasons)
        run.journal("rollback", RESULT_PENDING if out.status == PENDING else RESULT_REFUSED,
                    v.vm_id, after=_summary(plan), error="; ".join(decision.reasons))
        return out
    runner = _VmRunner.__new__(_VmRunner)
    runner.run, runner.pr, runner.v = run, pr, v
    runner.actions = run.for_vm(v.vm_id)
    runner.out = VmOutcome(v.vm_id, v.vm_name)
    runner.deallocated_by_us = False
    runner.wrote = False
    out.vms.append(runner.out)
    names = [pool_lock(p) for p in v.pool_ids] + [vm_lock(v.vm_id)]
    try:
        run.held = ctx.locks.hold(names, operation_id=run.op)
    except LockBusy as exc:
        out.status, out.resumable = PENDING, True
        out.reasons.append(f"busy: {exc}")
        return out
    try:
        for info in nics:
            _rollback_nic(runner, info)
        runner.out.status = APPLIED
        for vip in {key for (vk, key) in ctx.journal.verified_routes(v.vm_id)}:
            ctx.journal.close_record(OPEN_VERIFIED_ROUTE, v.vm_id, vip)
        runner.record(APPLIED)
    except _Refuse as exc:
        runner.out.status = REFUSED
        runner.out.reasons.append(str(exc))
    except NotManaged as exc:
        runner.out.status = REFUSED
        runner.out.reasons.append(str(exc))
    except Exception as exc:  # noqa: BLE001
        reason = _stop_reason(exc)
        runner.out.status = PENDING if reason else FAILED
        runner.out.reasons.append(reason or _error_text(exc))
        run.journal("rollback", RESULT_PENDING if reason else RESULT_FAILED, v.vm_id,
                    error=reason or _error_text(exc))
        if not reason:
            runner.restart_if_ours()
    finally:
        held, run.held = run.held, None
        held.release()
    out.status = runner.out.status
    out.reasons.extend(runner.out.reasons)
    out.resumable = out.status == PENDING
    out.arm_writes = run.writes + sum(o.arm_writes for o in resumed)
    return out


def _rollback_nic(runner: _VmRunner, info: dict) -> None:
    v, actions, ctx = runner.v, runner.actions, runner.run.ctx
    nic_id = info["nic_id"]
    nic = actions.get_nic(nic_id)
    if nic is None:
        runner.step("delete-nic", "already gone")
        return
    tags = {k.lower(): val for k, val in (nic.get("tags") or {}).items()}
    if tags.get(ctx.settings.managed_tag.lower(), "").lower() != "true":
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
            runner.write(planning.STEP_DEALLOCATE, lambda: actions.deallocate(v.vm_id),
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


# --------------------------------------------------------------------------- history

def history(ctx: ServiceContext, vm_id: str, limit: int = 50) -> list[dict]:
    kind, vm_id = parse_target(vm_id)
    if kind != "vm":
        raise TargetError("history needs a VM resource ID (--vm)")
    if ctx.journal is None:
        raise TargetError("no storage configured: the journal lives in Table storage "
                          "(HAIRPIN_STORAGE_CONNECTION)")
    return [e.to_json() for e in ctx.journal.history(vm_id, limit)]

