"""End to end on the emulator through the real SDK, with Azurite for journal and locks: the
default scenario (two Windows mirror members) goes from its high and medium findings to none."""

from __future__ import annotations

import pytest

from shared.azure.discovery import discover_subscription
from shared.core import risk
from shared.core.topology import topology_from_snapshot
from shared.core.vocab import RecordKind
from shared.services import remediation
from tests.support.remediation import (
    CLI,
    NIC1,
    NIC2,
    VM1,
    VM2,
    arm_writes,
    nics_named,
    vm_nic_ids,
)

pytestmark = pytest.mark.azurite

PATIENT_RULE = "rule-patient-index-1972"


def audit(ctx, sub):
    snap = discover_subscription(ctx.clients(sub))
    t = topology_from_snapshot(snap)
    return risk.evaluate(t, ctx.settings, ctx.journal.verified_routes())


def _primary_owner(emu, rule_name):
    from emulator.resources import health as rule_health
    from emulator.resources import types

    lb_id = [d["id"] for d in emu.store.of_type(types.LB)][0]
    health = rule_health.rule_health(emu, lb_id, rule_name)
    up = [b for b in health["loadBalancerBackendAddresses"] if b["state"] == "Up"]
    return [b["networkInterfaceIPConfigurationId"].split("/networkInterfaces/")[1].split("/")[0]
            for b in up]


def test_default_scenario_applied_end_to_end(estate, capsys):
    emu, guest, ctx = estate()
    before = audit(ctx, emu.subscription_id)
    assert {f.severity for f in before.findings} == {"high", "medium"}
    assert {f.vm_name for f in before.findings} == {"hs-vm1", "hs-vm2"}
    assert _primary_owner(emu, PATIENT_RULE) == ["hs-vm1-nic"]

    pr = remediation.plan_for_vm(ctx, VM1)
    assert [v.vm_name for v in pr.plan.vms] == ["hs-vm2", "hs-vm1"]  # serving-nothing first
    assert "Deallocates: hs-vm2, hs-vm1" in pr.plan.to_text()

    # Without approval nothing is written.
    emu.requests.reset()
    pending = remediation.apply(ctx, VM1, CLI)
    assert pending.status == "pending" and "approve" in pending.reasons[0]
    assert arm_writes(emu) == []

    # Track the failover: primaries move to hs-vm2 while hs-vm1 is deallocated (seen when
    # hs-vm1 boots again: no fail-back).
    seen = []
    original = guest.on_start

    def on_start(vm, nics):
        original(vm, nics)
        if vm["name"] == "hs-vm1":
            seen.append(_primary_owner(emu, PATIENT_RULE))

    guest.on_start = on_start
    emu.requests.reset()
    out = remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert out.status == "applied", out.reasons
    assert [v.vm_name for v in out.vms] == ["hs-vm2", "hs-vm1"]
    writes = arm_writes(emu)
    with capsys.disabled():
        print(f"\n[e2e] apply ARM writes: {len(writes)} (adapter counted {out.arm_writes}):",
              ", ".join(f"{e.method} {e.path.rsplit('/', 2)[-2]}/{e.path.rsplit('/', 1)[-1]}"
                        for e in writes))
    # Per VM: NIC, the preflight's read-only probe (Run Command), dealloc, PATCH, start, routes
    # and verification (2 x Run Command).
    assert len(writes) == out.arm_writes == 2 * 7
    for vm in ("hs-vm1", "hs-vm2"):
        mine = [e.path.rsplit("/", 1)[-1] for e in writes if f"/{vm}" in e.path]
        assert mine == [f"{vm}-hairpin-nic", "runCommand", "deallocate", vm, "start",
                        "runCommand", "runCommand"]
    assert guest.commands[0]["kind"] == "probe"
    assert seen == [["hs-vm2-nic"]]  # the fixed peer took over
    for v in out.vms:
        assert [(n["vip"], n["ok"], n["total"]) for n in v.verification] == [
            ("10.0.1.100", 20, 20), ("10.0.1.101", 20, 20)]
    assert len(nics_named(emu, "hs-vm1-hairpin-nic")) == 1
    assert vm_nic_ids(emu, VM1)[-1] == NIC1 and vm_nic_ids(emu, VM2)[-1] == NIC2
    assert emu.power_state(VM1) == emu.power_state(VM2) == "running"
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []

    after = audit(ctx, emu.subscription_id)
    assert [f for f in after.findings if f.severity in ("high", "medium")] == []
    assert after.not_affected_counts()["fixed_and_verified"] == 4

    # A second apply does nothing.
    emu.requests.reset()
    again = remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert again.status == "unchanged" and again.arm_writes == 0
    with capsys.disabled():
        print(f"[e2e] second apply ARM writes: {len(arm_writes(emu))}")
    assert arm_writes(emu) == []

    # History shows every write with before/after.
    entries = remediation.history(ctx, VM1)
    actions = [(e["action"], e["result"]) for e in reversed(entries)]
    assert ("deallocate", "started") in actions and ("start", "succeeded") in actions
    assert actions.index(("preflight", "succeeded")) < actions.index(("deallocate", "started"))
    assert all(e["plan_hash"] == pr.plan.hash for e in entries if e["action"] != "plan")


def test_ensure_guest_routes_and_verify_after_restart(estate):
    emu, guest, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM2)
    assert remediation.apply(ctx, VM2, CLI, approval=pr.plan.hash).status == "applied"
    emu.requests.reset()
    # Routes are persistent (New-NetRoute): after a reboot verification still passes.
    emu.set_power(VM2, "deallocated")
    emu.set_power(VM2, "running")
    out = remediation.verify(ctx, VM2, CLI)
    assert out.status == "unchanged" and out.verified is True, out.reasons
    routes = remediation.ensure_guest_routes(ctx, VM2, CLI)
    assert routes.status in ("applied", "unchanged"), routes.reasons
    assert [n["ok"] for n in routes.vms[0].verification] == [20, 20]
    # Only Run Command writes (push + verify), never a NIC or VM change.
    assert {e.action.split("/")[-2] for e in arm_writes(emu)} == {"runCommand"}


def test_linux_scenario_pushes_the_policy_routing_script(estate):
    """default-linux: the same flow with RunShellScript; the modelled guest reads the Linux
    script's values (the real routing is proven in the network-namespace model)."""
    import json

    from tests.support.remediation import DEFAULT

    emu, guest, ctx = estate(json.loads((DEFAULT.parent / "default-linux.json").read_text()))
    pr = remediation.plan_for_vm(ctx, VM1)
    out = remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert out.status == "applied", out.reasons
    scripts = [c for c in emu.requests if c.path.endswith("/runCommand")]
    assert len(scripts) == 6  # per VM: the preflight probe, the routes, the verification
    kinds = [(c["vm"], c["kind"], json.loads(c["result"]).get("result", "verify"))
             for c in guest.commands]
    assert kinds == [("hs-vm2", "probe", "verify"), ("hs-vm2", "apply", "applied"),
                     ("hs-vm2", "verify", "verify"), ("hs-vm1", "probe", "verify"),
                     ("hs-vm1", "apply", "applied"), ("hs-vm1", "verify", "verify")]
    assert all(n["ok"] == 20 for v in out.vms for n in v.verification)


def test_verify_measures_an_unfixed_vm_without_changing_it(estate):
    """Before any fix, `verify` measures the hairpin itself: the flows mapped back to hs-vm1
    fail, hs-vm2's calls (to hs-vm1, the primary) succeed; only Run Command is written."""
    emu, guest, ctx = estate()
    emu.requests.reset()
    out = remediation.verify(ctx, VM1, CLI)
    assert out.status == "failed" and out.verified is False
    assert [(n["vip"], n["ok"], n["total"]) for n in out.vms[0].verification] == [
        ("10.0.1.100", 0, 20), ("10.0.1.101", 0, 20)]
    writes = arm_writes(emu)
    assert [w.action for w in writes] == ["Microsoft.Compute/virtualMachines/runCommand/action"]
    assert nics_named(emu, "hs-vm1-hairpin-nic") == []
    assert ctx.journal.verified_routes() == frozenset()  # nothing fixed, nothing recorded

    peer = remediation.verify(ctx, VM2, CLI)
    assert peer.status == "unchanged" and peer.verified is True
    assert {n["vip"]: n["backends"] for n in peer.vms[0].verification} == {
        "10.0.1.100": {"hs-vm1": 20}, "10.0.1.101": {"hs-vm1": 20}}


def test_stopped_vms_are_deallocated_for_the_attach_and_left_down(estate):
    """Stopped but still allocated is not enough for a NIC change (docs/azure-facts.md, "NIC
    changes"): the plan deallocates, under the guard, the VMs that are stopped; they ran nothing
    before, so nothing fails over and nothing is started afterwards. The routes are pushed when
    someone starts the VM."""
    emu, guest, ctx = estate()
    for vm in (VM1, VM2):
        emu.set_power(vm, "stopped")
    pr = remediation.plan_for_vm(ctx, VM2)
    steps = [(s.vm_name, s.kind) for s in pr.plan.steps]
    assert ("hs-vm2", "deallocate") in steps and ("hs-vm2", "start") not in steps
    assert any("stopped -> deallocated" in c for s in pr.plan.steps for c in s.changes)
    emu.requests.reset()
    out = remediation.apply(ctx, VM2, CLI, approval=pr.plan.hash)
    assert out.status == "pending", out.reasons
    writes = [(e.method, e.path.rsplit("/", 1)[-1]) for e in arm_writes(emu)]
    assert ("POST", "deallocate") in writes and ("POST", "start") not in writes
    assert emu.power_state(VM1) == emu.power_state(VM2) == "deallocated"
    assert NIC2.lower() in {n.lower() for n in vm_nic_ids(emu, VM2)}
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []  # not ours to start
    assert any("left deallocated" in r for r in out.reasons)
    emu.set_power(VM2, "running")  # the operator starts it
    routes = remediation.ensure_guest_routes(ctx, VM2, CLI)
    assert routes.status == "applied", routes.reasons


def test_after_the_start_the_run_waits_for_the_vm_agent_then_pushes_the_routes(estate):
    """A started VM's agent reports Not Ready for a while (the guest boots); Run Command fails
    until it is Ready. The run waits for it (bounded), and does not leave the routes to the
    next trigger."""
    emu, guest, ctx = estate(emu_kwargs={"agent_ready_seconds": 1.5})
    pr = remediation.plan_for_vm(ctx, VM1)
    out = remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert out.status == "applied", out.reasons
    assert out.verified is True
    assert guest.vms["hs-vm1"].active.get("10.0.1.100")
    assert guest.vms["hs-vm2"].active.get("10.0.1.100")
    log = list(emu.requests)
    for vm in ("hs-vm1", "hs-vm2"):
        mine = [e for e in log if f"/virtualMachines/{vm}" in e.path]
        started = max(i for i, e in enumerate(mine) if e.path.endswith("/start"))
        ran = min(i for i, e in enumerate(mine) if e.path.endswith("/runCommand")
                  and i > started)
        polls = [e for e in mine[started:ran] if e.method == "GET"
                 and e.path.endswith(f"/virtualMachines/{vm}")]
        assert len(polls) >= 2, f"{vm}: no wait for the agent between start and Run Command"
