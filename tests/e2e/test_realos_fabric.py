"""The real-OS fabric (emulator/guests/realos) without a boot: a VM that is not booted answers
on the fabric while it runs, so a mirror failed over to it serves the VIP as on Azure. Before,
such a peer had no address on the fabric: a booted hs-vm1 verifying after `hairpin apply` (its
deallocation had moved both primaries to hs-vm2) counted 0/20 with a working fix."""

from __future__ import annotations

import json
import subprocess

import pytest

from emulator.guests.fabric import netns_unavailable_reason
from emulator.guests.netns import emulator_health
from emulator.guests.realos.guest import RealOsGuest
from emulator.guests.realos.machine import Image
from emulator.guests.scenario import Scenario
from tests.support.paths import SCENARIOS

_REASON = netns_unavailable_reason()
if _REASON:
    pytest.skip(f"network-namespace tests skipped: {_REASON}", allow_module_level=True)

pytestmark = pytest.mark.netns

DOC = json.loads((SCENARIOS / "default-linux.json").read_text())
VM = {r["name"]: r["id"] for r in DOC["resources"] if r["name"] in ("hs-vm1", "hs-vm2")}
NO_IMAGE = Image("/nonexistent")  # nothing is booted: no VM is named in the stacks


def namespaces(guest: RealOsGuest) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()
            if line.startswith(guest.fabric.run_id)}


def test_the_ilb_fails_over_to_a_peer_that_is_not_booted(emulator):
    vips = sorted({str(rule.vip) for rule in Scenario(DOC).ilb_rules()})
    with RealOsGuest(DOC, NO_IMAGE, {}) as guest:
        emu = emulator(DOC, guest=guest)
        guest.health_source = lambda: emulator_health(emu)
        guest.on_health_changed()
        for vip in vips:  # both mirrors' primary is hs-vm1
            probe = guest.fabric.connect(vip, 1972)
            assert (probe.ok, dict(probe.backends)) == (20, {"hs-vm1": 20}), vip
        served = namespaces(guest)

        emu.set_power(VM["hs-vm1"], "deallocated")
        guest.on_health_changed()  # as Run Command does before it runs a script
        for vip in vips:
            probe = guest.fabric.connect(vip, 1972)
            assert (probe.ok, dict(probe.backends)) == (20, {"hs-vm2": 20}), vip
        assert len(namespaces(guest)) == len(served) - 1  # hs-vm1's server is gone

        emu.set_power(VM["hs-vm2"], "deallocated")
        guest.on_health_changed()
        assert guest.fabric.connect(vips[0], 1972, count=4, timeout=1).ok == 0
    assert not namespaces(guest)
