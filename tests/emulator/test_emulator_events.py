"""Event Grid system-topic events made by the emulator for the writes it serves."""

import pytest
from azure.core.exceptions import HttpResponseError

from tests.support.fixtures_emulator import RG


def test_writes_make_events_reads_do_not(emulator, arm_clients):
    emu = emulator()
    seen = []
    emu.on_event = seen.append
    c = arm_clients(emu)
    c.network.load_balancers.get(RG, "ilb")
    c.network.load_balancer_load_balancing_rules.begin_health(RG, "ilb", "rule-a").result()
    assert emu.events == []  # "GET operations don't create events"; health is a read
    c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    nic = c.network.network_interfaces.get(RG, "spare-nic")
    c.network.network_interfaces.begin_create_or_update(RG, "spare-nic", nic).result()
    c.network.network_interfaces.begin_delete(RG, "spare-nic").result()
    kinds = [(e["eventType"], e["data"]["operationName"]) for e in emu.events]
    assert kinds == [
        (
            "Microsoft.Resources.ResourceActionSuccess",
            "Microsoft.Compute/virtualMachines/deallocate/action",
        ),
        ("Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Network/networkInterfaces/write"),
        ("Microsoft.Resources.ResourceDeleteSuccess", "Microsoft.Network/networkInterfaces/delete"),
    ]
    ev = emu.events[0]
    assert ev["subject"].endswith("/virtualMachines/vm1")
    assert ev["topic"] == f"/subscriptions/{emu.subscription_id}"
    me = emu.tokens.identities[0]
    assert ev["data"]["claims"]["oid"] == me.principal_id
    assert ev["data"]["claims"]["appid"] == me.client_id
    assert ev["data"]["authorization"]["action"] == ev["data"]["operationName"]
    assert seen == emu.events


def test_failed_writes_make_failure_events(emulator, arm_clients):
    emu = emulator()
    c = arm_clients(emu)
    emu.faults.add("POST", r"/start$", lro_failed=True)
    with pytest.raises(HttpResponseError):
        c.compute.virtual_machines.begin_start(RG, "vm1").result()
    vm = c.compute.virtual_machines.get(RG, "vm1")
    vm.network_profile.network_interfaces.append(
        {"id": vm.network_profile.network_interfaces[0].id.replace("vm1-nic", "spare-nic")}
    )
    with pytest.raises(HttpResponseError):  # running VM: NIC change refused
        c.compute.virtual_machines.begin_create_or_update(RG, "vm1", vm).result()
    assert [e["eventType"] for e in emu.events] == [
        "Microsoft.Resources.ResourceActionFailure",
        "Microsoft.Resources.ResourceWriteFailure",
    ]
    assert all(e["data"]["status"] == "Failed" for e in emu.events)
