"""The drift rule, one table of cases run through both unattended triggers: the drift sweep
(`Trigger(check_guests=True)`) and an event that says the guest restarted
(`Trigger(restarted={vm})`). Both decide through `drift.assess`; a case differs between them
only where the trigger's own facts do (a sweep verifies a fixed, running guest; an event says
the guest restarted), and the table says so per case."""

from __future__ import annotations

import json

import pytest

from shared.core import arm_ids, drift
from shared.core.risk import evaluate
from shared.core.vocab import DriftKind, RemediationCall
from shared.settings import Settings
from tests.support.topology_builder import EstateBuilder

VIP, OTHER_VIP, REMOVED_VIP = "10.0.1.100", "10.0.1.101", "10.0.1.150"
MANAGED = {"hairpin-managed": "true"}


def build(managed: str | None = None, *, power: str = "running", second_vip: bool = False):
    """vm1 and vm2 behind the VIP(s), vm1 the healthy member and declared to call them (so its
    own calls come back to it); `managed`: vm1's managed NIC is attached, detached or in_pool."""
    b = EstateBuilder()
    b.vnet()
    if managed is not None:
        b.nic("vm1-hairpin-nic", ["10.0.1.11"], primary=False, tags=MANAGED)
    extra = ["vm1-hairpin-nic"] if managed in ("attached", "in_pool") else []
    b.vm("vm1", "10.0.1.10", os_type="Linux", power=power, extra_nics=extra)
    b.vm("vm2", "10.0.1.20", os_type="Linux")
    frontends = {"fe1": VIP, "fe2": OTHER_VIP} if second_vip else {"fe1": VIP}
    b.lb("ilb1", frontends)
    for fe in frontends:
        b.rule("ilb1", f"r-{fe}", fe, "pool1")
        b.health("ilb1", f"r-{fe}", {"vm1": "Up", "vm2": "Down"})
    for vm in ("vm1", "vm2"):
        b.member("ilb1", "pool1", vm)
    if managed == "in_pool":
        b.member("ilb1", "pool1", "vm1-hairpin-nic")
    return b


SETTINGS = Settings.from_env({"HAIRPIN_DECLARED_CALLERS": json.dumps(
    {"vm1": [f"{VIP}:1972", f"{OTHER_VIP}:1972"]})})

A, E, V = RemediationCall.APPLY, RemediationCall.ENSURE_GUEST_ROUTES, RemediationCall.VERIFY

# name: (estate, verified VIPs of vm1, sweep's (drift, call), event's (drift, call))
CASES = {
    "new finding, no fix yet": (
        {}, [],
        ([DriftKind.NEW_FINDING], A), ([DriftKind.NEW_FINDING], A)),
    "fixed and verified": (
        {"managed": "attached"}, [VIP],
        ([], V), ([DriftKind.GUEST_RESTARTED], E)),
    "fixed, guest deallocated": (
        {"managed": "attached", "power": "deallocated"}, [VIP],
        ([], None), ([], None)),
    "fixed, a new frontend has no route": (
        {"managed": "attached", "second_vip": True}, [VIP],
        ([DriftKind.NEW_VIP], E), ([DriftKind.NEW_VIP, DriftKind.GUEST_RESTARTED], E)),
    "fixed, a frontend was removed": (
        {"managed": "attached"}, [VIP, REMOVED_VIP],
        ([DriftKind.STALE], E), ([DriftKind.STALE, DriftKind.GUEST_RESTARTED], E)),
    "managed NIC detached": (
        {"managed": "detached"}, [VIP],
        ([DriftKind.NIC_DETACHED], A), ([DriftKind.NIC_DETACHED], A)),
    "managed NIC deleted": (
        {}, [VIP],
        ([DriftKind.NIC_MISSING], A), ([DriftKind.NIC_MISSING], A)),
    "managed NIC put into a pool": (
        {"managed": "in_pool"}, [VIP],
        ([DriftKind.NIC_IN_POOL], A), ([DriftKind.NIC_IN_POOL, DriftKind.GUEST_RESTARTED], A)),
}


def assess(case: str, trigger_of):
    shape, verified_vips, _, _ = CASES[case]
    b = build(**shape)
    topology = b.topology()
    vm1 = arm_ids.normalize(b.vm_id("vm1"))
    verified = frozenset((vm1, ip) for ip in verified_vips)
    evaluation = evaluate(topology, SETTINGS, verified)
    found = drift.assess(topology, evaluation, verified, SETTINGS, trigger=trigger_of(vm1),
                         vm_keys=[vm1])
    return (found[0].drift, found[0].call) if found else ([], None)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_sweep_decides_by_the_table(case):
    assert assess(case, lambda vm: drift.Trigger(check_guests=True)) == CASES[case][2]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_restart_event_decides_by_the_table(case):
    assert assess(case, lambda vm: drift.Trigger(restarted=frozenset({vm}))) == CASES[case][3]


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_event_without_a_restart_decides_as_the_sweep_except_verification(case):
    """An ordinary write event (no restart) finds the same drift as the sweep; it only never
    runs the periodic guest verification."""
    sweep_drift, sweep_call = CASES[case][2]
    expected = (sweep_drift, None if sweep_call == V else sweep_call)
    assert assess(case, lambda vm: drift.Trigger()) == expected


def test_audit_mode_never_calls():
    d = drift.VmDrift("vm", drift=[DriftKind.NEW_FINDING], call=A)
    assert drift.unattended_call(d, Settings(mode="audit")) is None
    assert drift.unattended_call(d, Settings(mode="apply")) == A
