"""Hardening (issue 12, `make mutation`): every branch of the guard answered with its exact
decision: verdict, reasons, may_deallocate and the per-VM reasons, as the operator reads them.
The default scenario: hs-vm1 and hs-vm2 share two pools of ilb-healthshare, and the plan for
hs-vm1 deallocates both (hs-vm2 first)."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from shared.core import risk
from shared.core.remediation.guard import Decision, check_deallocation, decide, window_open
from shared.core.remediation.plan import build_plan, etags_from_documents
from shared.core.topology import topology_from_snapshot
from shared.core.vocab import TriggerKind, Verdict
from shared.settings import Settings
from tests.support.remediation import (
    APPLY,
    IN_WINDOW,
    OUT_OF_WINDOW,
    VM1,
    VM2,
    WINDOW,
    hs_vm1_alone_in_its_pools,
    topology_with,
)

IN_WINDOW_SETTINGS = Settings(mode="apply", maintenance_window=WINDOW)
OPTED_IN = {"hairpin-remediation": "auto"}
POOLS = ("pool ilb-healthshare/pool-patient-index", "pool ilb-healthshare/pool-ucr-registry")


def estate(power=None, tags=None):
    t, doc = topology_with(power=power, tags=tags)
    findings = risk.evaluate(t, APPLY).findings
    return t, build_plan(findings, t, APPLY, vm_ids=[VM1],
                         etags=etags_from_documents(doc["resources"]))


def test_hardening_guard_modes_and_the_empty_plan():
    t, plan = estate()
    empty = build_plan([], t, APPLY, vm_ids=[VM1])
    assert decide(empty, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW) == \
        Decision(Verdict.RUN, ("nothing to do",))
    assert decide(plan, t, Settings(), trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                  approval=plan.hash) == Decision(Verdict.REFUSED, (
                      "mode is audit: nothing is ever written (set HAIRPIN_MODE=apply to "
                      "remediate)",))
    assert decide(plan, t, Settings(mode="plan"), trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                  approval=plan.hash) == Decision(Verdict.PENDING, (
                      "mode is plan: the plan is recorded, nothing is changed (set "
                      "HAIRPIN_MODE=apply to remediate)",))


def test_hardening_guard_refuses_while_a_peer_is_down_or_being_remediated():
    t, plan = estate(power={"hs-vm2": "deallocated"})
    down = tuple(f"{pool}: peer hs-vm2 is deallocated, not running" for pool in POOLS)
    assert decide(plan, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                  approval=plan.hash) == Decision(
        Verdict.REFUSED, tuple(f"hs-vm1: {r}" for r in down), False, {"hs-vm1": down})
    t, plan = estate()
    busy = tuple(f"{pool}: peer hs-vm2 is being remediated (deallocated by an unfinished run)"
                 for pool in POOLS)
    assert decide(plan, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                  approval=plan.hash, remediating=[VM2.upper()]) == Decision(
        Verdict.REFUSED, tuple(f"hs-vm1: {r}" for r in busy), False, {"hs-vm1": busy})


def test_hardening_guard_unknown_and_stopped_vms():
    t, _ = estate(power={"hs-vm1": "stopped", "hs-vm2": "deallocated"})
    vm9 = VM1.replace("hs-vm1", "hs-vm9")
    assert check_deallocation(vm9, t) == [f"VM {vm9} is not in the estate"]
    assert check_deallocation(VM1, t) == []  # stopped: serves nothing, no peer takes over
    t, _ = estate(power={"hs-vm2": "starting"})
    assert check_deallocation(VM1, t) == [f"{pool}: peer hs-vm2 is starting, not running"
                                          for pool in POOLS]


def test_hardening_guard_unattended_needs_opt_in_and_an_open_window():
    t, plan = estate(tags={"hs-vm1": OPTED_IN})
    assert decide(plan, t, IN_WINDOW_SETTINGS, trigger_kind=TriggerKind.EVENT,
                  now=IN_WINDOW) == Decision(Verdict.REFUSED, (
                      "hs-vm2: not opted in to unattended remediation (tag "
                      "hairpin-remediation=auto)",))
    t, plan = estate(tags={"hs-vm1": OPTED_IN, "hs-vm2": OPTED_IN})
    assert decide(plan, t, IN_WINDOW_SETTINGS, trigger_kind=TriggerKind.EVENT,
                  now=IN_WINDOW) == Decision(Verdict.RUN, (
                      "unattended apply: every VM opted in, inside its maintenance window",),
                      True)
    outside = "outside the maintenance window Sat 01:00-05:00 UTC (HAIRPIN_MAINTENANCE_WINDOW)"
    assert decide(plan, t, IN_WINDOW_SETTINGS, trigger_kind=TriggerKind.TIMER,
                  now=OUT_OF_WINDOW) == Decision(Verdict.PENDING, (
                      f"hs-vm2: deallocation needed but {outside}",
                      f"hs-vm1: deallocation needed but {outside}",
                      "the plan is recorded as pending"))
    none = "no maintenance window is configured (settings or VM tag)"
    assert decide(plan, t, APPLY, trigger_kind=TriggerKind.SWEEP, now=IN_WINDOW) == Decision(
        Verdict.PENDING, (f"hs-vm2: deallocation needed but {none}",
                          f"hs-vm1: deallocation needed but {none}",
                          "the plan is recorded as pending"))


def test_hardening_guard_window_from_the_vm_tag():
    tag = "hairpin-maintenance-window"
    t, plan = estate(tags={"hs-vm1": {**OPTED_IN, tag: "someday"}, "hs-vm2": OPTED_IN})
    assert decide(plan, t, IN_WINDOW_SETTINGS, trigger_kind=TriggerKind.EVENT,
                  now=IN_WINDOW) == Decision(Verdict.PENDING, (
                      f"hs-vm1: deallocation needed but tag {tag} is not a window ('someday' is "
                      "not '[DAYS] HH:MM-HH:MM [ZONE]', e.g. 'Sat 01:00-05:00 UTC')",
                      "the plan is recorded as pending"))
    t, _ = estate(tags={"hs-vm1": {tag: "Wed 11:00-13:00 UTC"}})
    vm1 = next(v for v in t.vms.values() if v.name == "hs-vm1")
    assert window_open(vm1, IN_WINDOW_SETTINGS, OUT_OF_WINDOW) == (
        True, f"inside the maintenance window Wed 11:00-13:00 UTC (tag {tag})")
    assert window_open(vm1, IN_WINDOW_SETTINGS, IN_WINDOW) == (
        False, f"outside the maintenance window Wed 11:00-13:00 UTC (tag {tag})")
    assert window_open(None, IN_WINDOW_SETTINGS, IN_WINDOW) == (
        True, "inside the maintenance window Sat 01:00-05:00 UTC (HAIRPIN_MAINTENANCE_WINDOW)")


def test_hardening_guard_on_demand_approval_of_the_exact_hash():
    t, plan = estate()
    for kind in (TriggerKind.CLI, TriggerKind.HTTP):
        assert decide(plan, t, APPLY, trigger_kind=kind, now=IN_WINDOW) == Decision(
            Verdict.PENDING, ("the plan deallocates hs-vm2, hs-vm1: approve this exact plan "
                              f"with --approve {plan.hash} (HTTP: \"approve\")",))
    assert decide(plan, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                  approval=" " + "A" * 70) == Decision(Verdict.REFUSED, (
                      f"stale approval: approved {'A' * 64} but the plan is now {plan.hash} "
                      "(the estate or the plan changed); review the plan again",))
    assert decide(plan, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                  approval=f" {plan.hash.upper()}\n") == Decision(
        Verdict.RUN, (f"approved plan {plan.hash}",), True)


def test_hardening_guard_routes_only_plans_and_blockers():
    t, plan = estate()
    routes_only = dataclasses.replace(plan, vms=tuple(
        dataclasses.replace(v, needs_deallocation=False) for v in plan.vms))
    assert decide(routes_only, t, APPLY, trigger_kind=TriggerKind.HTTP, now=IN_WINDOW) == \
        Decision(Verdict.RUN, ("no deallocation needed: Run Command only",))
    assert decide(routes_only, t, APPLY, trigger_kind=TriggerKind.HTTP, now=IN_WINDOW,
                  approval=f" {'b' * 80}") == Decision(Verdict.REFUSED, (
                      f"stale approval: approved {'b' * 64} but the plan is now {plan.hash}",))
    assert decide(routes_only, t, APPLY, trigger_kind=TriggerKind.HTTP, now=IN_WINDOW,
                  approval=plan.hash.upper()).allowed
    t, plan = estate(tags={"hs-vm1": OPTED_IN, "hs-vm2": OPTED_IN})
    routes_only = dataclasses.replace(plan, vms=tuple(
        dataclasses.replace(v, needs_deallocation=False) for v in plan.vms))
    assert decide(routes_only, t, APPLY, trigger_kind=TriggerKind.EVENT, now=OUT_OF_WINDOW) == \
        Decision(Verdict.RUN, ("unattended apply: every VM opted in",), False)
    blocked = dataclasses.replace(plan, vms=tuple(
        dataclasses.replace(v, blockers=("no free address",)) if v.vm_name == "hs-vm1" else v
        for v in plan.vms))
    assert decide(blocked, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                  approval=plan.hash) == Decision(Verdict.REFUSED,
                                                  ("blocked: hs-vm1: no free address",))


def test_hardening_guard_unknown_member_and_last_running_member():
    t, _ = estate()
    without_vm2 = dataclasses.replace(t, vms=MappingProxyType(
        {k: v for k, v in t.vms.items() if v.name != "hs-vm2"}))
    assert check_deallocation(VM1, without_vm2) == [
        f"{pool}: member 10.0.1.20 is not a known VM, so it is not known to stay up"
        for pool in POOLS]
    alone = topology_from_snapshot(hs_vm1_alone_in_its_pools())
    assert check_deallocation(VM1, alone) == [
        f"{pool}: hs-vm1 is the last running member; deallocating it would take the service "
        "down" for pool in POOLS]


def test_hardening_guard_reasons_of_every_vm_and_unknown_power():
    t, plan = estate()
    assert check_deallocation(VM2, t) == [] and check_deallocation(VM1, t) == []
    d = decide(plan, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW, approval=plan.hash,
               remediating=[VM1, VM2])
    busy = {name: tuple(f"{pool}: peer {peer} is being remediated (deallocated by an "
                        "unfinished run)" for pool in POOLS)
            for name, peer in (("hs-vm2", "hs-vm1"), ("hs-vm1", "hs-vm2"))}
    assert d == Decision(Verdict.REFUSED, tuple(f"{name}: {r}" for name in ("hs-vm2", "hs-vm1")
                                                for r in busy[name]), False, busy)
    t, _ = estate(power={"hs-vm2": None})
    assert check_deallocation(VM1, t) == [
        f"{pool}: peer hs-vm2 is in an unknown power state, not running" for pool in POOLS]
