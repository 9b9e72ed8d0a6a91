"""Example payloads from Azure/azure-rest-api-specs (tests/fixtures/specs, MIT) loaded into the
emulator come back equal through the SDK models."""

import json

from azure.mgmt.compute.models import RunCommandResult
from azure.mgmt.network.models import LoadBalancer, LoadBalancerHealthPerRule, NetworkInterface

from emulator.guests import RecordingGuest
from tests.support.paths import FIXTURES

SPECS = FIXTURES / "specs"


def example(name: str) -> dict:
    doc = json.loads((SPECS / name).read_text())
    return doc["responses"]["200"]["body"]


def test_load_balancer_example(emulator, arm_clients):
    body = example("LoadBalancerGet.json")
    emu = emulator({"resources": [body]})
    got = arm_clients(emu).network.load_balancers.get("rg1", "lb")
    assert got.as_dict() == LoadBalancer(body).as_dict() == body
    rules = arm_clients(emu).network.load_balancer_load_balancing_rules.list("rg1", "lb")
    assert [r.as_dict() for r in rules] == body["properties"]["loadBalancingRules"]


def test_network_interface_example(emulator, arm_clients):
    body = example("NetworkInterfaceGet.json")
    emu = emulator({"resources": [body]})
    got = arm_clients(emu).network.network_interfaces.get("rg1", "test-nic").as_dict()
    # The example has no etag; the emulator gives every resource one, as ARM does.
    assert got.pop("etag").startswith('W/"')
    assert NetworkInterface(got).as_dict() == NetworkInterface(body).as_dict() == body
    got = NetworkInterface(got)
    assert got.ip_configurations[1].private_ip_address == "172.20.2.16/28"


def test_virtual_machine_example(emulator, arm_clients):
    body = example("VirtualMachine_Get.json")
    emu = emulator({"resources": [body]})
    assert emu.subscription_id == "{subscription-id}"
    got = arm_clients(emu).compute.virtual_machines.get("myResourceGroup", "myVM")
    assert got.as_dict() == body
    assert got.network_profile.network_interfaces[0].id.endswith("/{myNIC}")


def test_rule_health_example(emulator, arm_clients):
    body = example("LoadBalancerHealth.json")
    lb_id = "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/loadBalancers/lb1"
    lb = {
        "id": lb_id,
        "name": "lb1",
        "type": "Microsoft.Network/loadBalancers",
        "location": "eastus",
        "properties": {
            "loadBalancingRules": [
                {
                    "name": "rulelb",
                    "properties": {"protocol": "Tcp", "frontendPort": 80, "backendPort": 80},
                }
            ]
        },
    }
    emu = emulator(
        {
            "resources": [lb],
            "health": [{"ruleId": f"{lb_id}/loadBalancingRules/rulelb", "response": body}],
        }
    )
    got = (
        arm_clients(emu)
        .network.load_balancer_load_balancing_rules.begin_health("rg1", "lb1", "rulelb")
        .result()
    )
    assert got.as_dict() == LoadBalancerHealthPerRule(body).as_dict() == body


def test_run_command_example(emulator, arm_clients):
    body = example("VirtualMachineRunCommand.json")
    vm = {
        "id": "/subscriptions/24fb23e3-6ba3-41f0-9b6e-e41131d5d61e/resourceGroups/"
        "crptestar98131/providers/Microsoft.Compute/virtualMachines/vm3036",
        "name": "vm3036",
        "type": "Microsoft.Compute/virtualMachines",
        "location": "westus",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
            "storageProfile": {"osDisk": {"osType": "Windows"}},
            "networkProfile": {"networkInterfaces": []},
        },
    }
    guest = RecordingGuest({"stdout": body["value"][0]["message"], "stderr": ""})
    emu = emulator({"resources": [vm]}, guest=guest)
    got = (
        arm_clients(emu)
        .compute.virtual_machines.begin_run_command(
            "crptestar98131", "vm3036", {"commandId": "RunPowerShellScript"}
        )
        .result()
    )
    assert got.as_dict() == RunCommandResult(body).as_dict() == body
