"""The guard: pure decisions on the default scenario's topology, and the same rules end to end
(no tag -> no write, outside window -> pending plan, pool peer down -> refuse, single-member
pool -> refuse, stale approval -> refuse)."""

from __future__ import annotations

import pytest

from shared.core import risk
from shared.core.journal import Trigger
from shared.core.remediation import guard
from shared.core.remediation.plan import build_plan, etags_from_documents
from shared.core.topology import topology_from_snapshot
from shared.core.vocab import TriggerKind
from shared.services import remediation
from shared.settings import Settings
from tests.support.remediation import (
    APPLY,
    IN_WINDOW,
    OUT_OF_WINDOW,
    VM1,
    VM2,
    WINDOW,
    arm_writes,
    hs_vm1_alone_in_its_pools,
    topology_with,
)


def _plan(t, doc, settings=APPLY, vm=VM1):
    ev = risk.evaluate(t, settings)
    return build_plan(ev.findings, t, settings, vm_ids=[vm],
                      etags=etags_from_documents(doc["resources"]))


def test_audit_mode_never_writes_and_plan_mode_is_pending():
    t, doc = topology_with()
    p = _plan(t, doc)
    d = guard.decide(p, t, Settings(), trigger_kind=TriggerKind.CLI, now=IN_WINDOW, approval=p.hash)
    assert d.status == "refused" and "audit" in d.reasons[0]
    d = guard.decide(p, t, Settings(mode="plan"), trigger_kind=TriggerKind.CLI, now=IN_WINDOW,
                     approval=p.hash)
    assert d.status == "pending"


def test_on_demand_deallocation_needs_the_exact_plan_hash():
    t, doc = topology_with()
    p = _plan(t, doc)
    cli = TriggerKind.CLI
    assert guard.decide(p, t, APPLY, trigger_kind=cli, now=IN_WINDOW).status == "pending"
    stale = guard.decide(p, t, APPLY, trigger_kind=cli, now=IN_WINDOW, approval="0" * 64)
    assert stale.status == "refused" and "stale approval" in stale.reasons[0]
    ok = guard.decide(p, t, APPLY, trigger_kind=TriggerKind.CLI, now=IN_WINDOW, approval=p.hash)
    assert ok.allowed and ok.may_deallocate


def test_unattended_needs_opt_in_tag_on_every_vm():
    t, doc = topology_with(tags={"hs-vm1": {"hairpin-remediation": "auto"}})
    p = _plan(t, doc)
    settings = Settings(mode="apply", maintenance_window=WINDOW)
    d = guard.decide(p, t, settings, trigger_kind=TriggerKind.EVENT, now=IN_WINDOW)
    assert d.status == "refused" and "hs-vm2: not opted in" in d.reasons[0]


def test_unattended_outside_the_window_is_pending_inside_runs():
    tags = {"hairpin-remediation": "auto"}
    t, doc = topology_with(tags={"hs-vm1": tags, "hs-vm2": tags})
    p = _plan(t, doc)
    settings = Settings(mode="apply", maintenance_window=WINDOW)
    out = guard.decide(p, t, settings, trigger_kind=TriggerKind.TIMER, now=OUT_OF_WINDOW)
    assert out.status == "pending" and "outside the maintenance window" in out.reasons[0]
    assert guard.decide(p, t, settings, trigger_kind=TriggerKind.TIMER, now=IN_WINDOW).allowed
    # No window at all: never deallocates unattended.
    out = guard.decide(p, t, APPLY, trigger_kind=TriggerKind.TIMER, now=IN_WINDOW)
    assert out.status == "pending" and "no maintenance window" in out.reasons[0]


def test_vm_tag_window_overrides_settings():
    tags = {"hairpin-remediation": "auto", "hairpin-maintenance-window": "Wed 11:00-13:00 UTC"}
    t, doc = topology_with(tags={"hs-vm1": tags, "hs-vm2": tags})
    p = _plan(t, doc)
    settings = Settings(mode="apply", maintenance_window=WINDOW)
    assert guard.decide(p, t, settings, trigger_kind=TriggerKind.EVENT, now=OUT_OF_WINDOW).allowed
    assert not guard.decide(p, t, settings, trigger_kind=TriggerKind.EVENT, now=IN_WINDOW).allowed


def test_pool_peer_not_running_refuses_with_the_reason():
    t, doc = topology_with(power={"hs-vm1": "deallocated"})
    reasons = guard.check_deallocation(VM2, t)
    assert reasons == [f"pool ilb-healthshare/{p.name}: peer hs-vm1 is deallocated, not running"
                       for p in sorted(t.pools.values(), key=lambda p: p.key)]
    # Probe health is not the guard: hs-vm2 is probe-down yet running, so hs-vm1 may go.
    t2, _ = topology_with()
    assert guard.check_deallocation(VM1, t2) == []
    # A peer being remediated (left deallocated by another run) counts as not running.
    assert "being remediated" in guard.check_deallocation(VM1, t2, remediating=[VM2])[0]


def test_single_member_pool_refuses():
    doc = hs_vm1_alone_in_its_pools()
    t = topology_from_snapshot(doc)
    reasons = guard.check_deallocation(VM1, t)
    assert reasons and "last running member" in reasons[0]
    settings = Settings(mode="apply", declared_callers=Settings.from_env(
        {"HAIRPIN_DECLARED_CALLERS": '{"hs-vm1": ["10.0.1.100:1972"]}'}).declared_callers)
    p = _plan(t, doc, settings)
    assert [v.vm_name for v in p.vms] == ["hs-vm1"]
    d = guard.decide(p, t, settings, trigger_kind=TriggerKind.CLI, now=IN_WINDOW, approval=p.hash)
    assert d.status == "refused"
    assert any("running member" in r for r in d.reasons), d.reasons


# ------------------------------------------------------------------ end to end (emulator)

@pytest.mark.azurite
def test_no_tag_means_no_write(estate):
    emu, _, ctx = estate(maintenance_window=WINDOW, clock=lambda: IN_WINDOW)
    emu.requests.reset()
    out = remediation.apply(ctx, VM1, Trigger(TriggerKind.EVENT, event_id="e1"))
    assert out.status == "refused" and "not opted in" in " ".join(out.reasons)
    assert arm_writes(emu) == []
    assert ctx.journal.latest(VM1).result == "refused"


@pytest.mark.azurite
def test_outside_the_window_records_a_pending_plan(estate):
    emu, _, ctx = estate(maintenance_window=WINDOW, clock=lambda: OUT_OF_WINDOW)
    for vm in (VM1, VM2):
        emu.store.raw(vm)["tags"]["hairpin-remediation"] = "auto"
    emu.requests.reset()
    out = remediation.apply(ctx, VM1, Trigger(TriggerKind.TIMER))
    assert out.status == "pending" and "outside the maintenance window" in out.reasons[0]
    assert arm_writes(emu) == []
    entry = ctx.journal.latest(VM1)
    assert entry.action == "plan" and entry.result == "pending"
    assert entry.plan_hash == out.plan_hash and entry.after["order"] == ["hs-vm2", "hs-vm1"]
    # Inside the window the same trigger fixes both.
    ctx.clock = lambda: IN_WINDOW
    assert remediation.apply(ctx, VM1, Trigger(TriggerKind.TIMER)).status == "applied"


@pytest.mark.azurite
def test_peer_deallocated_refuses_with_the_reason(estate):
    emu, _, ctx = estate()
    emu.set_power(VM1, "deallocated")
    pr = remediation.plan_for_vm(ctx, VM2)
    emu.requests.reset()
    out = remediation.apply(ctx, VM2, Trigger(TriggerKind.CLI), approval=pr.plan.hash)
    assert out.status == "refused", out.reasons
    assert "peer hs-vm1 is deallocated" in " ".join(out.reasons)
    assert arm_writes(emu) == []


@pytest.mark.azurite
def test_stale_approval_refuses(estate):
    emu, _, ctx = estate()
    emu.requests.reset()
    out = remediation.apply(ctx, VM1, Trigger(TriggerKind.CLI), approval="a" * 64)
    assert out.status == "refused" and "stale approval" in out.reasons[0]
    assert arm_writes(emu) == []


@pytest.mark.azurite
def test_peer_goes_down_between_plan_and_deallocation_is_rechecked_live(estate):
    from shared.storage.journal import Journal

    emu, _, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM2)
    inner = ctx.journal

    class StopPeerAfterNic(Journal):  # hs-vm1 stops while hs-vm2's NIC is being created
        def __init__(self):
            self.__dict__.update(inner.__dict__)

        def append(self, entry):
            saved = super().append(entry)
            if entry.action == "ensure-nic" and entry.result == "succeeded":
                emu.set_power(VM1, "stopped")
            return saved

    ctx.journal = StopPeerAfterNic()
    out = remediation.apply(ctx, VM2, Trigger(TriggerKind.CLI), approval=pr.plan.hash)
    assert out.status == "refused", out.reasons
    assert "peer hs-vm1 is stopped" in " ".join(out.reasons)
    assert emu.power_state(VM2) == "running"
    assert not [e for e in emu.requests if e.path.endswith("hs-vm2/deallocate")]


@pytest.mark.azurite
def test_one_vm_per_pool_at_a_time(estate, storage_ns):
    from shared.storage.locks import LockManager, pool_lock

    emu, _, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM1)
    other = LockManager(storage_ns.blob_service(),
                        container=ctx.settings.storage_names.lock_container,
                        lease_seconds=15, holder="other-process")
    held = other.hold([pool_lock(pr.plan.vms[0].pool_ids[0])], operation_id="op-other")
    try:
        emu.requests.reset()
        out = remediation.apply(ctx, VM1, Trigger(TriggerKind.CLI), approval=pr.plan.hash)
        assert out.status == "pending" and out.resumable
        assert "other-process" in " ".join(out.reasons)
        assert arm_writes(emu) == []
    finally:
        held.release()
    assert remediation.apply(ctx, VM1, Trigger(TriggerKind.CLI),
                             approval=pr.plan.hash).status == "applied"
