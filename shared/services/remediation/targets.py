"""Remediation targets and plans: parse a target (VM resource ID or finding ID), observe its
subscription live, and build the `PlanResult` (for a VM, a finding, or one VM narrowed)."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from azure.core.exceptions import HttpResponseError

from shared.azure.discovery import discover_subscription
from shared.core import arm_ids, risk
from shared.core.arm_ids import normalize
from shared.core.remediation import plan as planning
from shared.core.remediation.model import Plan
from shared.core.remediation.outcome import Outcome
from shared.core.scope import OutOfScope, ScopeError, check_in_scope, resolve_subscriptions
from shared.core.topology import Topology, topology_from_snapshot
from shared.core.vocab import PowerState, Status, StepKind
from shared.services.context import ServiceContext

FINDING_ID = re.compile(r"\Ahp-[0-9a-f]{20}\Z")
MAX_TARGET_CHARS = 1024  # ARM ids of VMs are far shorter (group 90, name 64 characters)
VM_TYPE = "Microsoft.Compute/virtualMachines"
log = logging.getLogger(__name__)


class TargetError(ValueError):
    """Bad input: `status` 400 (malformed) or 404 (unknown VM or finding)."""

    def __init__(self, message: str, status: int = 400) -> None:  # 403: out of scope
        super().__init__(message)
        self.status = status


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


# --------------------------------------------------------------------------- targets

def parse_target(text: Any) -> tuple[str, str]:
    """("vm", id) or ("finding", id); TargetError(400) for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise TargetError("expected a VM resource ID or a finding ID (hp-...)")
    text = text.strip()
    if len(text) > MAX_TARGET_CHARS:  # it is journaled: bounded before anything reads it
        raise TargetError(f"a target is at most {MAX_TARGET_CHARS} characters")
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


def subscriptions_for(ctx: ServiceContext, explicit: str | None) -> tuple[str, ...]:
    """Where to look for a finding (`shared.core.scope.resolve_subscriptions`)."""
    try:
        subs = resolve_subscriptions(explicit, ctx.settings.subscriptions, os.environ)
    except ScopeError as exc:
        raise TargetError(str(exc), 403 if isinstance(exc, OutOfScope) else 400) from None
    if not subs:
        raise TargetError("no subscription: pass --subscription or set HAIRPIN_SUBSCRIPTIONS "
                          "or AZURE_SUBSCRIPTION_ID")
    return subs


def verified_routes(ctx: ServiceContext) -> frozenset:
    """(VM key, frontend IP) pairs the journal records as fixed and verified."""
    return ctx.journal.verified_routes() if ctx.journal is not None else frozenset()


def observe(ctx: ServiceContext, subscription_id: str, *, with_verified: bool = True):
    """The live estate of one subscription, which must be in the configured scope."""
    try:
        check_in_scope(subscription_id, ctx.settings.subscriptions)
    except OutOfScope as exc:
        raise TargetError(str(exc), 403) from None
    try:
        snapshot = discover_subscription(ctx.clients(subscription_id))
    except HttpResponseError as exc:
        if exc.status_code not in (403, 404):
            raise
        # One answer whether the subscription does not exist or is not readable: ARM's
        # SubscriptionNotFound / AuthorizationFailed would tell a caller which ones we read.
        log.info("subscription %s not readable: %s", subscription_id, exc.status_code)
        raise TargetError(f"subscription {subscription_id} was not found or this app cannot "
                          "read it", 404) from None
    topology = assume_resumed(ctx, topology_from_snapshot(snapshot))
    evaluation = risk.evaluate(topology, ctx.settings,
                               verified_routes(ctx) if with_verified else ())
    return snapshot, topology, evaluation


def assume_resumed(ctx: ServiceContext, topology: Topology) -> Topology:
    """VMs this project left deallocated are started again first by any run: plan them as
    running, so the plan (and its hash) is the one that will run."""
    if ctx.journal is None:
        return topology
    keys = {normalize(r.vm_id) for r in ctx.journal.left_deallocated()}
    vms = dict(topology.vms)
    changed = False
    for key in keys:
        vm = vms.get(key)
        if vm is not None and vm.power_state is not None and vm.power_state.is_down:
            vms[key] = dataclasses.replace(vm, power_state=PowerState.RUNNING)
            changed = True
    return dataclasses.replace(topology, vms=MappingProxyType(vms)) if changed else topology


def build_plan_result(ctx, snapshot, topology, evaluation, subscription_id, vm_ids,
                      target) -> PlanResult:
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
    snapshot, topology, evaluation = observe(ctx, sub)
    vm = topology.vms.get(normalize(vm_id))
    if vm is None:
        raise TargetError(f"VM {vm_id} was not found in subscription {sub}", 404)
    return build_plan_result(ctx, snapshot, topology, evaluation, sub, [vm.id],
                  {"vm_id": vm.id, "vm_name": vm.name})


def plan_for_finding(ctx: ServiceContext, finding_id: str,
                     subscription_id: str | None = None) -> PlanResult:
    kind, fid = parse_target(finding_id)
    if kind != "finding":
        raise TargetError("expected a finding ID (hp-...)")
    for sub in subscriptions_for(ctx, subscription_id):
        snapshot, topology, evaluation = observe(ctx, sub, with_verified=False)
        finding = evaluation.finding(fid)
        if finding is None:
            continue
        # Re-evaluate with verified routes: a fixed finding yields an empty plan.
        evaluation = risk.evaluate(topology, ctx.settings, verified_routes(ctx))
        return build_plan_result(ctx, snapshot, topology, evaluation, sub, [finding.vm_id],
                      {"finding_id": fid, "vm_id": finding.vm_id, "vm_name": finding.vm_name})
    raise TargetError(f"finding {fid} was not found (it may be fixed, or in another "
                      "subscription: pass the subscription)", 404)


def plan_for_target(ctx: ServiceContext, target: str,
                    subscription_id: str | None = None) -> PlanResult:
    kind, value = parse_target(target)
    return plan_for_vm(ctx, value) if kind == "vm" else plan_for_finding(
        ctx, value, subscription_id)


def observe_vm(ctx: ServiceContext, vm_id: str, not_a_vm: str):
    """The live estate of a VM's subscription (findings without verified routes, so every
    at-risk frontend is covered) and the VM itself; TargetError when it is not there."""
    kind, vm_id = parse_target(vm_id)
    if kind != "vm":
        raise TargetError(not_a_vm)
    sub = arm_ids.parse(vm_id).subscription
    snapshot, topology, evaluation = observe(ctx, sub, with_verified=False)
    vm = topology.vms.get(normalize(vm_id))
    if vm is None:
        raise TargetError(f"VM {vm_id} was not found in subscription {sub}", 404)
    return sub, snapshot, topology, evaluation, vm


def single_vm_plan(ctx: ServiceContext, vm_id: str, *, needs_nic: bool = True):
    """PlanResult narrowed to one VM, or an Outcome saying why not."""
    sub, snapshot, topology, evaluation, vm = observe_vm(ctx, vm_id, "expected a VM resource ID")
    pr = build_plan_result(ctx, snapshot, topology, evaluation, sub, [vm.id],
                {"vm_id": vm.id, "vm_name": vm.name})
    v = pr.plan.vm(vm.id)
    if v is None:
        return pr, None, Outcome(Status.UNCHANGED, [f"{vm.name} has no high or medium finding"])
    if v.nic is None or not v.nic.exists:
        if needs_nic:
            return pr, None, Outcome(Status.REFUSED, [f"{vm.name} has no managed secondary NIC "
                                               "attached: run apply first"])
        # Measuring an unfixed VM: nothing is created, deallocated or attached.
        v = dataclasses.replace(v, needs_deallocation=False, blockers=(), steps=tuple(
            s for s in v.steps if s.kind == StepKind.VERIFY))
    narrowed = Plan((v,), pr.plan.facts, pr.plan.hash, pr.plan.target)
    return dataclasses.replace(pr, plan=narrowed), v, None
