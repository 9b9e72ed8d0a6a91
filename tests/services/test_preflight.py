"""The preflight before a VM's first deallocation (issue: never take a VM down unless every
later step will succeed), on the emulator with the real SDK and Azurite. Each failing check
stops the run as pending, before any deallocation, with the check named in the outcome and in
the journal; the VM keeps running."""

from __future__ import annotations

import time

import pytest

from shared.core import permissions
from shared.core.vocab import RecordKind
from shared.services import remediation
from tests.support.remediation import CLI, NIC2, VM1, VM2, arm_writes

pytestmark = pytest.mark.azurite


def approve_and_apply(ctx):
    pr = remediation.plan_for_vm(ctx, VM1)
    return remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)


def on_nic_created(emu, rid, change):
    """change(document of `rid`) right after the managed NIC's PUT: after the plan was made,
    before the preflight."""
    def hook(event):
        if event["subject"].lower() == NIC2.lower() and event["eventType"].endswith(
                "WriteSuccess"):
            with emu.lock:
                doc = emu.store.get(rid)
                change(doc["properties"])
                emu.store.put(doc)
    emu.on_event = hook


def assert_refused_before_deallocation(emu, ctx, out, check: str, words: str):
    assert out.status == "pending", out.reasons
    reason = next(r for r in out.reasons if "preflight" in r)
    assert f"preflight {check} failed" in reason and words in reason, reason
    assert [e for e in arm_writes(emu) if e.path.endswith(("/deallocate", "/start"))] == []
    assert emu.power_state(VM1) == emu.power_state(VM2) == "running"
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []
    (entry,) = [e for e in ctx.journal.history(VM2, 50) if e.action == "preflight"]
    assert entry.result == "pending" and check in entry.error
    assert entry.after["checks"][check] != "ok"
    assert out.vm("hs-vm1") is None  # the run stopped: the serving VM was not touched


def test_preflight_passes_and_is_journaled_before_the_deallocation(estate):
    emu, guest, ctx = estate()
    out = approve_and_apply(ctx)
    assert out.status == "applied", out.reasons
    (entry,) = [e for e in ctx.journal.history(VM2, 50) if e.action == "preflight"]
    assert entry.result == "succeeded" and entry.error is None
    assert set(entry.after["checks"].values()) == {"ok"}
    assert set(entry.after["checks"]) == {"budget", "size", "nic", "permissions", "agent",
                                          "probe"}
    history = [(e.action, e.result) for e in reversed(ctx.journal.history(VM2, 50))]
    assert history.index(("preflight", "succeeded")) < history.index(("deallocate", "started"))


def test_preflight_refuses_without_the_time_to_bring_the_vm_back(estate):
    # 200 s left: more than the 30 s margin of a step, less than the 420 s of p95 downtime.
    emu, _, ctx = estate(deadline=time.monotonic() + 200)
    out = approve_and_apply(ctx)
    assert_refused_before_deallocation(emu, ctx, out, "budget", "needs 420 s")


def test_preflight_refuses_a_size_that_takes_no_more_nics(estate):
    emu, _, ctx = estate()
    on_nic_created(emu, VM2, lambda p: p["hardwareProfile"].update(
        vmSize="Standard_Resized_Meanwhile"))
    out = approve_and_apply(ctx)
    assert_refused_before_deallocation(emu, ctx, out, "size", "Standard_Resized_Meanwhile")


def test_preflight_refuses_a_nic_that_is_not_succeeded(estate):
    emu, _, ctx = estate()
    on_nic_created(emu, NIC2, lambda p: p.update(provisioningState="Failed"))
    out = approve_and_apply(ctx)
    assert_refused_before_deallocation(emu, ctx, out, "nic", "Failed")


def test_preflight_refuses_when_the_identity_could_not_start_the_vm(estate):
    role = set(permissions.REMEDIATION_ACTIONS) - {
        "Microsoft.Compute/virtualMachines/start/action"}
    emu, _, ctx = estate(emu_kwargs={"roles": {"*": role}})
    out = approve_and_apply(ctx)
    assert_refused_before_deallocation(emu, ctx, out, "permissions",
                                       "Microsoft.Compute/virtualMachines/start/action")


def test_preflight_refuses_when_permissions_cannot_be_read(estate):
    role = set(permissions.REMEDIATION_ACTIONS) - {"Microsoft.Authorization/permissions/read"}
    emu, _, ctx = estate(emu_kwargs={"roles": {"*": role}})
    out = approve_and_apply(ctx)
    assert_refused_before_deallocation(emu, ctx, out, "permissions", "AuthorizationFailed")


def test_preflight_refuses_when_the_vm_agent_is_not_ready(estate):
    emu, _, ctx = estate()
    emu.set_agent_ready(VM2, False)
    out = approve_and_apply(ctx)
    assert_refused_before_deallocation(emu, ctx, out, "agent", "not Ready")


def test_preflight_refuses_when_the_guest_lacks_a_prerequisite(estate):
    emu, guest, ctx = estate()
    guest.probe_problems["hs-vm2"] = ["ip rule has no ipproto/sport selectors (iproute2 >= 4.17)"]
    out = approve_and_apply(ctx)
    assert_refused_before_deallocation(emu, ctx, out, "probe", "ipproto/sport selectors")
    (probe,) = [c for c in guest.commands if c["vm"] == "hs-vm2"]
    assert probe["kind"] == "probe"  # read-only: no route script ran
