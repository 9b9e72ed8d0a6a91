"""Safety review: guard bypasses, cleanup after failures and bad input found in review, each
pinned by a test that fails without its fix."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from shared.core.vocab import RecordKind
from shared.services import fix_api, remediation
from shared.services.remediation.vm_runner import VmRunner
from tests.support.remediation import CLI, VM1, VM2, arm_writes


def _fixed_then_vm2_rolled_back(estate):
    """The default scenario fixed, then hs-vm2's NIC rolled back: only hs-vm2 is at risk."""
    emu, guest, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM1)
    assert remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash).status == "applied"
    rp, _ = remediation.rollback_plan(ctx, VM2)
    assert remediation.rollback(ctx, VM2, CLI, approval=rp.plan.hash).status == "applied"
    return emu, guest, ctx


@pytest.mark.azurite
def test_vm_started_after_a_no_deallocation_plan_is_not_deallocated(estate):
    """Planned while hs-vm2 was deallocated, the plan deallocates nothing, so the guard lets it
    run without approval (on demand) or window (unattended). Started meanwhile, hs-vm2 must
    not be deallocated on that judgement."""
    emu, _, ctx = _fixed_then_vm2_rolled_back(estate)
    emu.set_power(VM2, "deallocated")
    pr = remediation.plan_for_vm(ctx, VM2)
    assert [(v.vm_name, v.needs_deallocation) for v in pr.plan.vms] == [("hs-vm2", False)]
    emu.set_power(VM2, "running")  # an operator starts it before the run reaches it
    emu.requests.reset()
    out = remediation.run_plan(ctx, pr, CLI)  # no approval: none was needed
    paths = [e.path for e in arm_writes(emu)]
    assert not any(p.endswith("/deallocate") for p in paths), paths
    assert out.status == "refused" and "plan again" in " ".join(out.reasons), out.reasons
    assert emu.power_state(VM2) == "running"


@pytest.mark.azurite
def test_rollback_planned_while_deallocated_does_not_deallocate_a_started_vm(estate):
    emu, _, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM1)
    assert remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash).status == "applied"
    emu.set_power(VM2, "deallocated")
    rp, nics = remediation.rollback_plan(ctx, VM2)
    assert not rp.plan.vms[0].needs_deallocation
    # Started between the plan and the detach: the operator's start lands just as the rollback
    # reads the managed NIC, after its plan was made.
    emu.faults.add("GET", r"/networkInterfaces/hs-vm2-hairpin-nic$",
                   action=lambda: emu.set_power(VM2, "running"))
    emu.requests.reset()
    out = remediation.rollback(ctx, VM2, CLI)  # no approval: none was needed
    paths = [e.path for e in arm_writes(emu)]
    assert not any(p.endswith("/deallocate") for p in paths), paths
    assert not any(p.endswith("/runCommand") for p in paths), paths  # routes left in place
    assert out.status == "refused", out.reasons
    assert emu.power_state(VM2) == "running"


@pytest.mark.parametrize("power", ["deallocating", None])
def test_failure_while_vm_is_not_settled_keeps_the_deallocated_record(power):
    """After a failure, a VM we deallocated that is neither running nor down yet must keep its
    open record, so that the next run starts it; closing it would leave the VM down for good."""
    closed: list = []
    journal = SimpleNamespace(close_record=lambda *a, **k: closed.append(a))
    statuses = [{"code": f"PowerState/{power}"}] if power else []
    live = {"properties": {"instanceView": {"statuses": statuses}}}
    actions = SimpleNamespace(get_vm=lambda vm_id: live)
    run = SimpleNamespace(ctx=SimpleNamespace(journal=journal), for_vm=lambda vm_id: actions)
    runner = VmRunner(run, None, SimpleNamespace(vm_id=VM2, vm_name="hs-vm2"))
    runner.deallocated_by_us = True
    runner.restart_if_ours()
    assert [c for c in closed if c and c[0] == RecordKind.DEALLOCATED] == []
    assert "next run" in " ".join(runner.out.reasons)


def test_deeply_nested_json_is_a_400():
    resp = fix_api.parse_request(b'{"vm_id": ' + b"[" * 5000 + b"}")
    assert resp.status == 400 and "JSON" in resp.body["error"]
    resp = fix_api.parse_request(b"[" * 10000)
    assert resp.status == 400


@pytest.mark.azurite
def test_guest_routes_never_go_via_a_nic_not_tagged_managed_true(estate):
    """A NIC tagged `hairpin-managed=false` (rollback would never remove it) must not get our
    guest routes."""
    from tests.support.remediation import SUB

    emu, _, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM1)
    assert remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash).status == "applied"
    net = ctx.clients(SUB).network
    nic = net.network_interfaces.get("rg-healthshare", "hs-vm2-hairpin-nic")
    nic.tags = {"hairpin-managed": "false"}
    net.network_interfaces.begin_create_or_update("rg-healthshare", "hs-vm2-hairpin-nic",
                                                  nic).result()
    emu.requests.reset()
    out = remediation.ensure_guest_routes(ctx, VM2, CLI)
    assert not any(e.path.endswith("/runCommand") for e in arm_writes(emu))
    # Planning no longer counts it as ours at all (Nic.is_managed needs the value "true").
    assert out.status == "refused" and "no managed secondary NIC" in " ".join(out.reasons)


@pytest.mark.azurite
def test_budget_running_out_after_the_attach_still_starts_the_vm(estate):
    """The time budget is checked before each step; the start of a VM we deallocated is the
    one step it must never skip (the VM would stay down until some later trigger)."""
    emu, _, ctx = estate()
    # The budget is spent the moment hs-vm1's attach (its VM PATCH) is made.
    emu.faults.add("PATCH", r"/virtualMachines/hs-vm1$",
                   action=lambda: setattr(ctx, "deadline", time.monotonic()))
    pr = remediation.plan_for_vm(ctx, VM1)
    remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert emu.power_state(VM2) == "running"
    assert emu.power_state(VM1) == "running"
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []


@pytest.mark.parametrize("refs", [
    [("spare-nic", False), ("vm2-nic", True)],  # the NIC asked for is flagged primary
    [("vm2-nic", None)],  # the only NIC is the primary one
], ids=["flagged-primary", "only-nic"])
def test_detach_never_removes_the_primary_nic(refs, emulator, arm_clients):
    from shared.azure.actions import ArmActions, NotManaged
    from shared.azure.clients import AzureClients, counting_writes
    from tests.support.fixtures_emulator import RG, P

    emu = emulator()
    c = arm_clients(emu)
    c.compute.virtual_machines.begin_deallocate(RG, "vm2").result()
    vm = c.compute.virtual_machines.get(RG, "vm2").as_dict()
    vm["properties"].pop("instanceView", None)
    vm["properties"]["networkProfile"]["networkInterfaces"] = [
        {"id": f"{P}/Microsoft.Network/networkInterfaces/{name}",
         **({"properties": {"primary": primary}} if primary is not None else {})}
        for name, primary in refs]
    c.compute.virtual_machines.begin_create_or_update(RG, "vm2", vm).result()
    emu.requests.reset()
    actions = ArmActions(AzureClients(emu.subscription_id, arm_endpoint=emu.base_url,
                                      credential=c.credential, polling_interval=0))
    with counting_writes() as writes, pytest.raises(NotManaged):
        actions.detach_nic(f"{P}/Microsoft.Compute/virtualMachines/vm2",
                           f"{P}/Microsoft.Network/networkInterfaces/vm2-nic")
    puts = [e for e in emu.requests.writes()]
    assert puts == [] and writes.count == 0


def test_only_a_nic_tagged_managed_true_counts_as_ours():
    from shared.core.topology import Nic

    def nic(tags):
        return Nic(**{**{f: None for f in Nic.__dataclass_fields__}, "tags": tags})

    assert nic({"HAIRPIN-MANAGED": "True"}).is_managed("hairpin-managed")
    assert not nic({"hairpin-managed": "false"}).is_managed("hairpin-managed")
    assert not nic({}).is_managed("hairpin-managed")


def test_a_bad_setting_names_the_variable_never_its_value(monkeypatch):
    from shared.services import fix_api

    monkeypatch.setenv("HAIRPIN_NOTIFY_TOPIC_ENDPOINT", "not a url s3cret")
    resp = fix_api.http_post(b'{"vm_id": "x"}')
    assert resp.status == 500
    assert "HAIRPIN_NOTIFY_TOPIC_ENDPOINT" in resp.json() and "s3cret" not in resp.json()
