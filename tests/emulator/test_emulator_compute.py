"""Microsoft.Compute through the real ComputeManagementClient against the emulator."""

import threading

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from emulator.guests import RecordingGuest
from tests.support.fixtures_emulator import LOC, RG, nic_doc, small_scenario

NIC_IDS = lambda emu, *names: [  # noqa: E731
    f"/subscriptions/{emu.subscription_id}/resourceGroups/{RG}/providers/"
    f"Microsoft.Network/networkInterfaces/{n}"
    for n in names
]


def power(compute, name):
    return compute.virtual_machines.instance_view(RG, name).statuses[-1].code


@pytest.fixture
def env(emulator, arm_clients):
    emu = emulator()
    return emu, arm_clients(emu)


def test_vm_get_instance_view_and_lists(env):
    emu, c = env
    vm = c.compute.virtual_machines.get(RG, "vm1")
    assert vm.instance_view is None  # only with $expand, as in ARM
    assert vm.hardware_profile.vm_size == "Standard_D2s_v3"
    assert vm.storage_profile.os_disk.os_type == "Windows"
    assert vm.network_profile.network_interfaces[0].primary is True
    vm = c.compute.virtual_machines.get(RG, "vm1", expand="instanceView")
    assert vm.instance_view.statuses[-1].code == "PowerState/running"
    assert power(c.compute, "vm2") == "PowerState/running"
    assert sorted(v.name for v in c.compute.virtual_machines.list(RG)) == ["vm1", "vm2"]
    listed = list(c.compute.virtual_machines.list_all(status_only="true"))
    assert all(v.instance_view.statuses[-1].code == "PowerState/running" for v in listed)
    skus = list(c.compute.resource_skus.list(filter=f"location eq '{LOC}'"))
    assert [s.name for s in skus] == ["Standard_D2s_v3"]
    caps = {x.name: x.value for x in skus[0].capabilities}
    assert caps["MaxNetworkInterfaces"] == "2"
    assert emu.requests.count(action="Microsoft.Compute/skus/read") == 1
    assert emu.requests.count(action="Microsoft.Compute/virtualMachines/instanceView/read") == 1


def test_power_lros_and_guest_hooks(env):
    emu, c = env
    vms = c.compute.virtual_machines
    assert emu.guest.started[:2] == [
        ("vm1", NIC_IDS(emu, "vm1-nic")),
        ("vm2", NIC_IDS(emu, "vm2-nic")),
    ]
    vms.begin_deallocate(RG, "vm1").result()
    assert power(c.compute, "vm1") == "PowerState/deallocated"
    assert emu.guest.deallocated == ["vm1"]
    vms.begin_start(RG, "vm1").result()
    assert power(c.compute, "vm1") == "PowerState/running"
    vms.begin_power_off(RG, "vm1").result()
    assert power(c.compute, "vm1") == "PowerState/stopped"
    with pytest.raises(HttpResponseError) as exc:
        vms.begin_restart(RG, "vm1").result()
    assert exc.value.error.code == "OperationNotAllowed"
    vms.begin_start(RG, "vm1").result()
    vms.begin_restart(RG, "vm1").result()
    assert power(c.compute, "vm1") == "PowerState/running"
    actions = [e.action for e in emu.requests if e.method == "POST"]
    assert actions[0] == "Microsoft.Compute/virtualMachines/deallocate/action"
    assert "Microsoft.Compute/virtualMachines/powerOff/action" in actions
    # every LRO reported InProgress at least once before Succeeded
    polls = emu.requests.count("GET", "Microsoft.Compute/locations/operations")
    assert polls >= 2 * len(actions)


def _attach(c, emu, name, nics, primary_first=True, **kw):
    vm = c.compute.virtual_machines.get(RG, name)
    refs = [
        {"id": i, "properties": {"primary": primary_first and n == 0}}
        for n, i in enumerate(NIC_IDS(emu, *nics))
    ]
    vm.network_profile.network_interfaces = refs
    return c.compute.virtual_machines.begin_create_or_update(RG, name, vm, **kw).result()


def test_nic_attach_needs_deallocation_then_updates_back_references(env):
    emu, c = env
    # Running, then stopped but still allocated: both refused with 400 (docs/azure-facts.md).
    vm_id = emu.store.get(NIC_IDS(emu, "vm1-nic")[0])["properties"]["virtualMachine"]["id"]
    for state in ("running", "stopped"):
        emu.set_power(vm_id, state)
        with pytest.raises(HttpResponseError) as exc:
            _attach(c, emu, "vm1", ["vm1-nic", "spare-nic"])
        assert exc.value.status_code == 400, state
        assert exc.value.error.code == (
            "AddingOrDeletingNetworkInterfacesOnARunningVirtualMachineNotSupported"
        )
    c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    vm = _attach(c, emu, "vm1", ["vm1-nic", "spare-nic"])
    assert len(vm.network_profile.network_interfaces) == 2
    spare = c.network.network_interfaces.get(RG, "spare-nic")
    assert spare.virtual_machine.id.endswith("/virtualMachines/vm1")
    assert spare.primary is False
    assert spare.mac_address is None  # no MAC until the VM starts
    c.compute.virtual_machines.begin_start(RG, "vm1").result()
    spare = c.network.network_interfaces.get(RG, "spare-nic")
    assert spare.mac_address.startswith("00-0D-3A-")
    assert emu.guest.started[-1] == ("vm1", NIC_IDS(emu, "vm1-nic", "spare-nic"))
    assert [e.status for e in emu.requests if e.method == "PUT"] == [400, 400, 200]
    put = [e for e in emu.requests if e.method == "PUT"][2]
    assert put.action == "Microsoft.Compute/virtualMachines/write"
    assert put.linked_actions == ["Microsoft.Network/networkInterfaces/join/action"]
    # detach again
    c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    _attach(c, emu, "vm1", ["vm1-nic"])
    assert c.network.network_interfaces.get(RG, "spare-nic").virtual_machine is None


@pytest.mark.parametrize(
    "nics,primary_first,code",
    [
        (["vm1-nic", "spare-nic", "other-nic"], True, "NetworkInterfaceCountExceeded"),
        (["vm1-nic", "other-nic"], True, "NetworkInterfacesInDifferentVirtualNetworks"),
        (["vm1-nic", "spare-nic"], False, "VirtualMachineMustHaveOneNetworkInterfaceAsPrimary"),
        (["vm1-nic", "vm2-nic"], True, "NicInUse"),
    ],
)
def test_nic_list_errors(env, nics, primary_first, code):
    emu, c = env
    c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    with pytest.raises(HttpResponseError) as exc:
        _attach(c, emu, "vm1", nics, primary_first)
    assert exc.value.error.code == code


def test_vm_put_if_match(env):
    emu, c = env
    vm = c.compute.virtual_machines.get(RG, "vm1")
    vm.tags = {"hairpin-remediation": "auto"}
    c.compute.virtual_machines.begin_create_or_update(
        RG, "vm1", vm, etag=vm.etag, match_condition=MatchConditions.IfNotModified
    ).result()
    with pytest.raises(HttpResponseError) as exc:
        c.compute.virtual_machines.begin_create_or_update(
            RG, "vm1", vm, etag=vm.etag, match_condition=MatchConditions.IfNotModified
        ).result()
    assert exc.value.status_code == 412
    assert c.compute.virtual_machines.get(RG, "vm1").tags == {"hairpin-remediation": "auto"}


def test_run_command_linux_and_windows_shapes(emulator, arm_clients):
    guest = RecordingGuest(
        {"stdout": "ok", "vms": {"vm2": {"exitCode": 3, "stdout": "partial", "stderr": "boom"}}}
    )
    emu = emulator(guest=guest)
    c = arm_clients(emu)
    win = c.compute.virtual_machines.begin_run_command(
        RG,
        "vm1",
        {
            "commandId": "RunPowerShellScript",
            "script": ["Write-Output ok"],
            "parameters": [{"name": "a", "value": "1"}],
        },
    ).result()
    assert [v.code for v in win.value] == [
        "ComponentStatus/StdOut/succeeded",
        "ComponentStatus/StdErr/succeeded",
    ]
    assert win.value[0].message == "ok"
    lin = c.compute.virtual_machines.begin_run_command(
        RG, "vm2", {"commandId": "RunShellScript", "script": ["false"]}
    ).result()
    # The Linux extension reports success whatever the exit status (3 here), and not the status.
    assert lin.value[0].code == "ProvisioningState/succeeded"
    assert lin.value[0].message == "Enable succeeded: \n[stdout]\npartial\n[stderr]\nboom"
    assert guest.commands[0] == {
        "vm": "vm1",
        "commandId": "RunPowerShellScript",
        "script": ["Write-Output ok"],
        "parameters": [{"name": "a", "value": "1"}],
    }
    assert guest.scripts_for("vm2") == [["false"]]
    with pytest.raises(HttpResponseError) as exc:  # wrong command for the OS
        c.compute.virtual_machines.begin_run_command(
            RG, "vm2", {"commandId": "RunPowerShellScript", "script": ["x"]}
        ).result()
    assert exc.value.error.code == "InvalidParameter"
    assert emu.requests.count(action="Microsoft.Compute/virtualMachines/runCommand/action") == 3


def test_run_command_output_truncated_to_last_4096_bytes(emulator, arm_clients):
    out = "".join(f"{i:05d}\n" for i in range(2000))  # 12,000 bytes
    emu = emulator(guest=RecordingGuest(handler=lambda vm, cid, s, p: (0, out, "")))
    c = arm_clients(emu)
    res = c.compute.virtual_machines.begin_run_command(
        RG, "vm2", {"commandId": "RunShellScript", "script": ["seq"]}
    ).result()
    msg = res.value[0].message
    stdout = msg.split("[stdout]\n", 1)[1].rsplit("\n[stderr]\n", 1)[0]
    assert stdout == out[-4096:]
    assert len(stdout.encode()) == 4096


def test_run_command_conflict_while_running_and_not_running_vm(emulator, arm_clients):
    release = threading.Event()

    def slow(vm, cid, script, params):
        release.wait(10)
        return 0, "done", ""

    emu = emulator(guest=RecordingGuest(handler=slow))
    c = arm_clients(emu)
    first = c.compute.virtual_machines.begin_run_command(
        RG, "vm2", {"commandId": "RunShellScript", "script": ["sleep 1"]}
    )
    with pytest.raises(ResourceExistsError) as exc:
        c.compute.virtual_machines.begin_run_command(
            RG, "vm2", {"commandId": "RunShellScript", "script": ["echo 2"]}
        )
    assert exc.value.status_code == 409 and exc.value.error.code == "Conflict"
    # another VM is not blocked
    c.compute.virtual_machines.begin_run_command(
        RG, "vm1", {"commandId": "RunPowerShellScript", "script": ["x"]}
    )
    release.set()
    assert "done" in first.result().value[0].message
    c.compute.virtual_machines.begin_run_command(  # free again afterwards
        RG, "vm2", {"commandId": "RunShellScript", "script": ["echo 3"]}
    ).result()
    c.compute.virtual_machines.begin_deallocate(RG, "vm2").result()
    with pytest.raises(HttpResponseError) as exc:
        c.compute.virtual_machines.begin_run_command(
            RG, "vm2", {"commandId": "RunShellScript", "script": ["echo"]}
        ).result()
    assert exc.value.status_code == 409 and exc.value.error.code == "OperationNotAllowed"


def test_health_follows_power_state_like_a_mirror(env):
    emu, c = env
    rules = c.network.load_balancer_load_balancing_rules

    def states():
        h = rules.begin_health(RG, "ilb", "rule-a").result()
        return {a.ip_address: a.state for a in h.load_balancer_backend_addresses}

    assert states() == {"10.0.1.10": "Up", "10.0.1.20": "Down"}
    c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    assert states() == {"10.0.1.10": "Down", "10.0.1.20": "Up"}  # failover to vm2
    c.compute.virtual_machines.begin_start(RG, "vm1").result()
    assert states() == {"10.0.1.10": "Down", "10.0.1.20": "Up"}  # no automatic fail-back
    c.compute.virtual_machines.begin_deallocate(RG, "vm2").result()
    assert states() == {"10.0.1.10": "Up", "10.0.1.20": "Down"}
    ha = rules.begin_health(RG, "ilb", "rule-ha").result()  # plain rule: power only
    assert {a.ip_address: a.state for a in ha.load_balancer_backend_addresses} == {
        "10.0.1.10": "Up",
        "10.0.1.20": "Down",
    }


def test_create_vm_boots_it_and_delete_detaches_nics(env):
    emu, c = env
    body = {
        "location": LOC,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
            "storageProfile": {"osDisk": {"osType": "Linux", "createOption": "FromImage"}},
            "networkProfile": {"networkInterfaces": [{"id": NIC_IDS(emu, "spare-nic")[0]}]},
        },
    }
    vm = c.compute.virtual_machines.begin_create_or_update(RG, "vm3", body).result()
    assert vm.provisioning_state == "Succeeded" and vm.vm_id
    assert power(c.compute, "vm3") == "PowerState/running"
    assert c.network.network_interfaces.get(RG, "spare-nic").primary is True
    c.compute.virtual_machines.begin_delete(RG, "vm3").result()
    assert c.network.network_interfaces.get(RG, "spare-nic").virtual_machine is None
    assert small_scenario()["resources"]  # the fixture scenario is not mutated
    assert (
        nic_doc("z", None)["properties"]["ipConfigurations"][0]["properties"][
            "privateIPAllocationMethod"
        ]
        == "Dynamic"
    )


@pytest.mark.parametrize("name", ["default", "default-linux"])
def test_shipped_scenarios_load_and_fail_over(emulator, arm_clients, name):
    from tests.support.fixtures_emulator import SCENARIOS

    if not (SCENARIOS / f"{name}.json").exists():
        pytest.skip(f"emulator/scenarios/{name}.json not written yet")
    emu = emulator(name)
    c = arm_clients(emu)
    vms = {d["name"]: d for d in emu.store.all() if d["type"].endswith("virtualMachines")}
    assert set(vms) >= {"hs-vm1", "hs-vm2"}
    rg = vms["hs-vm1"]["id"].split("/")[4]
    lbs = list(c.network.load_balancers.list(rg))
    rules = [(lb.name, r.name) for lb in lbs for r in lb.load_balancing_rules]

    def up():
        return {
            a.ip_address
            for lb, r in rules
            for a in c.network.load_balancer_load_balancing_rules.begin_health(rg, lb, r)
            .result()
            .load_balancer_backend_addresses
            if a.state == "Up"
        }

    assert up() == {"10.0.1.10"}  # both mirror primaries on hs-vm1
    c.compute.virtual_machines.begin_deallocate(rg, "hs-vm1").result()
    assert up() == {"10.0.1.20"}  # failover to hs-vm2


def test_run_command_agent_not_ready_and_duration(emulator, arm_clients):
    import time

    emu = emulator(run_command_seconds=0.3)
    c = arm_clients(emu)
    vm2 = c.compute.virtual_machines.get(RG, "vm2").id
    t = time.monotonic()
    c.compute.virtual_machines.begin_run_command(
        RG, "vm2", {"commandId": "RunShellScript", "script": ["true"]}
    ).result()
    assert time.monotonic() - t >= 0.3
    emu.set_agent_ready(vm2, False)
    iv = c.compute.virtual_machines.instance_view(RG, "vm2")
    assert iv.vm_agent.statuses[0].display_status == "Not Ready"
    with pytest.raises(HttpResponseError) as exc:
        c.compute.virtual_machines.begin_run_command(
            RG, "vm2", {"commandId": "RunShellScript", "script": ["true"]}
        ).result()
    assert "VMAgentStatusCommunicationError" in str(exc.value)
    assert emu.guest.scripts_for("vm2") == [["true"]]  # the second never reached the guest
    emu.set_agent_ready(vm2, True)
    c.compute.virtual_machines.begin_run_command(
        RG, "vm2", {"commandId": "RunShellScript", "script": ["true"]}
    ).result()
