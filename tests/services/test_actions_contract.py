"""The write adapter against the emulator where Azure's contract differs from what the code once
assumed (docs/azure-contract.md): no If-None-Match guarantee on a NIC PUT, and every NIC of a
several-NIC VM PATCH needs its `primary` flag."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from shared.azure.actions import ArmActions, EtagConflict, NotManaged, primary_flags
from tests.support.events import make_ctx
from tests.support.fixtures_emulator import LOC, SUBNET_ID, P, small_scenario

VM1 = f"{P}/Microsoft.Compute/virtualMachines/vm1"
SPARE = f"{P}/Microsoft.Network/networkInterfaces/spare-nic"
MANAGED = f"{P}/Microsoft.Network/networkInterfaces/vm1-hairpin-nic"


def managed_body(ip: str = "10.0.1.31") -> dict:
    return {"location": LOC, "tags": {"hairpin-managed": "true"},
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": SUBNET_ID}, "privateIPAllocationMethod": "Static",
                "privateIPAddress": ip, "primary": True}}]}}


def actions(emu) -> ArmActions:
    return ArmActions(make_ctx(emu).clients(emu.subscription_id))


def test_create_nic_never_overwrites_someone_elses_nic_of_that_name(emulator):
    # The PUT declares no If-None-Match: only the re-read keeps a foreign NIC safe.
    emu = emulator()
    before = emu.store.get(SPARE)
    with pytest.raises(NotManaged):
        actions(emu).create_nic(SPARE, managed_body())
    assert emu.requests.writes() == []
    assert emu.store.get(SPARE) == before


def test_create_nic_twice_is_a_conflict_not_an_overwrite(emulator):
    emu = emulator()
    a = actions(emu)
    a.create_nic(MANAGED, managed_body())
    with pytest.raises(EtagConflict):
        a.create_nic(MANAGED, managed_body("10.0.1.32"))
    assert len(emu.requests.writes()) == 1
    ip = emu.store.get(MANAGED)["properties"]["ipConfigurations"][0]["properties"]
    assert ip["privateIPAddress"] == "10.0.1.31"


def test_attach_sends_primary_on_every_nic_even_when_the_vm_reads_without_it(emulator):
    # A VM with two NICs, the second read back without `primary`, and room for a third.
    scenario = small_scenario()
    for doc in scenario["resources"]:
        if doc["id"] == VM1:
            doc["properties"]["networkProfile"]["networkInterfaces"].append({"id": SPARE})
        if doc["id"] == SPARE:
            doc["properties"]["virtualMachine"] = {"id": VM1}
    for sku in scenario["skus"]:
        for cap in sku["capabilities"]:
            if cap["name"] == "MaxNetworkInterfaces":
                cap["value"] = "3"
    emu = emulator(scenario)
    a = actions(emu)
    a.create_nic(MANAGED, managed_body())
    a.deallocate(VM1)
    vm = a.attach_nic(VM1, MANAGED)
    refs = vm["properties"]["networkProfile"]["networkInterfaces"]
    assert [r["properties"]["primary"] for r in refs] == [True, False, False]
    assert refs[2]["properties"]["deleteOption"] == "Delete"


def test_a_patch_without_the_flags_is_what_azure_refuses(emulator):
    # The check above is the emulator's, not a formality: the same list without flags fails.
    emu = emulator()
    a = actions(emu)
    a.create_nic(MANAGED, managed_body())
    a.deallocate(VM1)
    with pytest.raises(HttpResponseError) as exc:
        a.clients.compute.virtual_machines.begin_update("rg-test", "vm1", {"properties": {
            "networkProfile": {"networkInterfaces": [
                {"id": f"{P}/Microsoft.Network/networkInterfaces/vm1-nic"},
                {"id": MANAGED}]}}}).result()
    assert exc.value.error.code == "NetworkInterfaceMustHavePrimaryPropertySet"


@pytest.mark.parametrize("flags, expected", [
    ([None], [True]), ([True, None], [True, False]), ([None, None], [True, False]),
    ([False, True, None], [False, True, False]), ([True, True], [True, False]),
])
def test_primary_flags(flags, expected):
    refs = [{"id": str(i), "properties": {} if f is None else {"primary": f}}
            for i, f in enumerate(flags)]
    assert primary_flags(refs) == expected
