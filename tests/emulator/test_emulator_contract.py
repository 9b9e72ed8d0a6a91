"""The emulator answers as Azure does where the product's code once assumed otherwise
(docs/azure-contract.md gives each source): a VM's NIC list without `primary` flags, the Linux
Run Command result, the per-rule health body, and no If-None-Match guarantee on a NIC PUT."""

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError

from emulator.guests import RecordingGuest
from tests.support.fixtures_emulator import RG, RULE_A, nic_doc


@pytest.fixture
def env(emulator, arm_clients):
    emu = emulator()
    return emu, arm_clients(emu)


def _nic(emu, name):
    return (f"/subscriptions/{emu.subscription_id}/resourceGroups/{RG}/providers/"
            f"Microsoft.Network/networkInterfaces/{name}")


@pytest.mark.parametrize("flags", [(None, None), (True, None)])
def test_several_nics_each_need_the_primary_property(env, flags):
    # ansible/ansible#40648: "NetworkInterfaceMustHavePrimaryPropertySet / Network interface
    # myvm02-nic-fe must have Primary property set."
    emu, c = env
    c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    refs = [{"id": _nic(emu, n), "properties": {} if f is None else {"primary": f}}
            for n, f in zip(("vm1-nic", "spare-nic"), flags, strict=True)]
    with pytest.raises(HttpResponseError) as exc:
        c.compute.virtual_machines.begin_update(
            RG, "vm1", {"properties": {"networkProfile": {"networkInterfaces": refs}}}).result()
    unset = "vm1-nic" if flags[0] is None else "spare-nic"
    assert exc.value.status_code == 400
    assert exc.value.error.code == "NetworkInterfaceMustHavePrimaryPropertySet"
    assert exc.value.error.message == f"Network interface {unset} must have Primary property set."
    # One NIC needs no flag; several with every flag set are accepted.
    refs = [{"id": _nic(emu, "vm1-nic"), "properties": {"primary": True}},
            {"id": _nic(emu, "spare-nic"), "properties": {"primary": False}}]
    vm = c.compute.virtual_machines.begin_update(
        RG, "vm1", {"properties": {"networkProfile": {"networkInterfaces": refs}}}).result()
    assert [r.primary for r in vm.network_profile.network_interfaces] == [True, False]


def test_linux_run_command_always_reports_enable_succeeded(emulator, arm_clients):
    # Azure/run-command-extension-linux main/cmds.go: enable() returns the [stdout]/[stderr]
    # tails with a nil error ("extension should not fail if script throws error"), and main.go
    # reports "Enable succeeded: <msg>"; the exit status is never reported.
    guest = RecordingGuest({"vms": {"vm2": {"exitCode": 1, "stdout": '{"result":"error"}',
                                            "stderr": "hairpin: error: x"}}})
    emu = emulator(guest=guest)
    res = arm_clients(emu).compute.virtual_machines.begin_run_command(
        RG, "vm2", {"commandId": "RunShellScript", "script": ["exit 1"]}).result()
    (item,) = res.value
    assert (item.code, item.level, item.display_status) == (
        "ProvisioningState/succeeded", "Info", "Provisioning succeeded")
    assert item.message == ('Enable succeeded: \n[stdout]\n{"result":"error"}\n[stderr]\n'
                            "hairpin: error: x")
    assert "exit status" not in item.message


def test_rule_health_body_is_up_down_and_addresses(env):
    # LoadBalancerHealth.json (spec 2024-05-01): no rule name in the body, the ipconfig as an
    # id string; a scenario entry's extra fields are not answered either.
    emu, c = env
    emu.health.clear()
    emu.health[RULE_A.lower()] = {"loadBalancingRuleName": "rule-a", "up": 0, "down": 0,
                                  "loadBalancerBackendAddresses": []}
    rules = c.network.load_balancer_load_balancing_rules
    for name in ("rule-a", "rule-ha"):  # a scenario entry, and the pool-derived default
        body = rules.begin_health(RG, "ilb", name).result().as_dict()
        assert set(body) <= {"up", "down", "loadBalancerBackendAddresses"}, body
    body = rules.begin_health(RG, "ilb", "rule-ha").result().as_dict()
    ids = [a["networkInterfaceIPConfigurationId"] for a in body["loadBalancerBackendAddresses"]]
    assert ids and all(isinstance(i, str) and i.lower().startswith(
        f"/subscriptions/{emu.subscription_id}".lower()) for i in ids)


def test_nic_put_does_not_promise_if_none_match(env):
    # NetworkInterfaces_CreateOrUpdate (Microsoft.Network 2024-05-01 networkInterface.json)
    # declares no If-None-Match header: a PUT over an existing NIC is an update.
    emu, c = env
    body = nic_doc("spare-nic", "10.0.1.31")
    body.pop("id", None)
    nic = c.network.network_interfaces.begin_create_or_update(
        RG, "spare-nic", body, headers={"If-None-Match": "*"}).result()
    assert nic.ip_configurations[0].private_ip_address == "10.0.1.31"
    # If-Match stays honoured where the product sends it (VM PATCH, documented for Compute).
    vm = c.compute.virtual_machines.get(RG, "vm1")
    c.compute.virtual_machines.begin_update(
        RG, "vm1", {"tags": {"a": "1"}}, etag=vm.etag,
        match_condition=MatchConditions.IfNotModified).result()
    with pytest.raises(HttpResponseError) as exc:
        c.compute.virtual_machines.begin_update(
            RG, "vm1", {"tags": {"a": "2"}}, etag=vm.etag,
            match_condition=MatchConditions.IfNotModified).result()
    assert exc.value.status_code == 412
