"""Emulator fixtures (see emulator/README.md).

def test_x(emulator, arm_clients):
    emu = emulator()                 # small built-in scenario, env vars set
    c = arm_clients(emu)             # c.network, c.compute, c.graph, c.credential
    c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest

from emulator.server import Emulator

SUB = "00000000-0000-0000-0000-0000000000aa"
RG = "rg-test"
LOC = "westeurope"
P = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"
VNET_ID = f"{P}/Microsoft.Network/virtualNetworks/vnet1"
SUBNET_ID = f"{VNET_ID}/subnets/default"
OTHER_SUBNET_ID = f"{P}/Microsoft.Network/virtualNetworks/vnet2/subnets/default"
NSG_ID = f"{P}/Microsoft.Network/networkSecurityGroups/nsg1"
LB_ID = f"{P}/Microsoft.Network/loadBalancers/ilb"
POOL_ID = f"{LB_ID}/backendAddressPools/be"
RULE_A = f"{LB_ID}/loadBalancingRules/rule-a"
RULE_HA = f"{LB_ID}/loadBalancingRules/rule-ha"
SCENARIOS = Path(__file__).resolve().parents[2] / "emulator" / "scenarios"


def nic_doc(
    name: str,
    ip: str | None,
    subnet: str = SUBNET_ID,
    pools=(),
    vm: str | None = None,
    primary: bool = True,
) -> dict:
    ipc = {
        "name": "ipconfig1",
        "properties": {
            "privateIPAllocationMethod": "Static" if ip else "Dynamic",
            "subnet": {"id": subnet},
            "primary": True,
            "loadBalancerBackendAddressPools": [{"id": p} for p in pools],
        },
    }
    if ip:
        ipc["properties"]["privateIPAddress"] = ip
    props = {
        "ipConfigurations": [ipc],
        "enableAcceleratedNetworking": False,
        "networkSecurityGroup": {"id": NSG_ID},
    }
    if vm:
        props["virtualMachine"] = {"id": f"{P}/Microsoft.Compute/virtualMachines/{vm}"}
        props["primary"] = primary
    return {
        "id": f"{P}/Microsoft.Network/networkInterfaces/{name}",
        "name": name,
        "type": "Microsoft.Network/networkInterfaces",
        "location": LOC,
        "properties": props,
    }


def vm_doc(
    name: str,
    nic: str,
    os_type: str = "Windows",
    power: str = "running",
    size: str = "Standard_D2s_v3",
) -> dict:
    return {
        "id": f"{P}/Microsoft.Compute/virtualMachines/{name}",
        "name": name,
        "type": "Microsoft.Compute/virtualMachines",
        "location": LOC,
        "tags": {},
        "properties": {
            "hardwareProfile": {"vmSize": size},
            "storageProfile": {
                "osDisk": {"osType": os_type, "name": f"{name}-os", "createOption": "FromImage"}
            },
            "networkProfile": {
                "networkInterfaces": [
                    {
                        "id": f"{P}/Microsoft.Network/networkInterfaces/{nic}",
                        "properties": {"primary": True},
                    }
                ]
            },
            "instanceView": {
                "statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info"},
                    {"code": f"PowerState/{power}", "level": "Info"},
                ]
            },
        },
    }


def small_scenario() -> dict:
    """Two backends (vm1 Windows 10.0.1.10, vm2 Linux 10.0.1.20) behind ILB 'ilb':
    rule-a TCP 1972 on 10.0.1.100 (mirror, primary on vm1), rule-ha HA ports on 10.0.1.101.
    A spare NIC in the same subnet and one in another VNet."""

    def vnet(name, prefix):
        return {
            "id": f"{P}/Microsoft.Network/virtualNetworks/{name}",
            "name": name,
            "type": "Microsoft.Network/virtualNetworks",
            "location": LOC,
            "properties": {
                "addressSpace": {"addressPrefixes": [prefix]},
                "subnets": [{"name": "default", "properties": {"addressPrefix": prefix}}],
            },
        }

    def fe(n, ip):
        return {
            "name": n,
            "properties": {
                "privateIPAddress": ip,
                "privateIPAllocationMethod": "Static",
                "subnet": {"id": SUBNET_ID},
            },
        }

    lb = {
        "id": LB_ID,
        "name": "ilb",
        "type": "Microsoft.Network/loadBalancers",
        "location": LOC,
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {
            "frontendIPConfigurations": [fe("fe-a", "10.0.1.100"), fe("fe-b", "10.0.1.101")],
            "backendAddressPools": [
                {"name": "be", "properties": {}},
                {
                    "name": "be-ip",
                    "properties": {
                        "loadBalancerBackendAddresses": [
                            {
                                "name": "addr1",
                                "properties": {
                                    "ipAddress": "10.0.1.50",
                                    "virtualNetwork": {"id": VNET_ID},
                                },
                            }
                        ]
                    },
                },
            ],
            "probes": [
                {
                    "name": "probe-a",
                    "properties": {
                        "protocol": "Tcp",
                        "port": 1972,
                        "intervalInSeconds": 5,
                        "numberOfProbes": 1,
                    },
                }
            ],
            "loadBalancingRules": [
                {
                    "name": "rule-a",
                    "properties": {
                        "frontendIPConfiguration": {"id": f"{LB_ID}/frontendIPConfigurations/fe-a"},
                        "backendAddressPool": {"id": POOL_ID},
                        "probe": {"id": f"{LB_ID}/probes/probe-a"},
                        "protocol": "Tcp",
                        "frontendPort": 1972,
                        "backendPort": 1972,
                        "enableFloatingIP": False,
                        "idleTimeoutInMinutes": 4,
                    },
                },
                {
                    "name": "rule-ha",
                    "properties": {
                        "frontendIPConfiguration": {"id": f"{LB_ID}/frontendIPConfigurations/fe-b"},
                        "backendAddressPool": {"id": POOL_ID},
                        "probe": {"id": f"{LB_ID}/probes/probe-a"},
                        "protocol": "All",
                        "frontendPort": 0,
                        "backendPort": 0,
                        "enableFloatingIP": True,
                    },
                },
            ],
        },
    }
    ipc = lambda nic: f"{P}/Microsoft.Network/networkInterfaces/{nic}/ipConfigurations/ipconfig1"  # noqa: E731
    return {
        "resources": [
            vnet("vnet1", "10.0.1.0/24"),
            vnet("vnet2", "10.0.2.0/24"),
            {
                "id": NSG_ID,
                "name": "nsg1",
                "type": "Microsoft.Network/networkSecurityGroups",
                "location": LOC,
                "properties": {"securityRules": []},
            },
            nic_doc("vm1-nic", "10.0.1.10", pools=[POOL_ID], vm="vm1"),
            nic_doc("vm2-nic", "10.0.1.20", pools=[POOL_ID], vm="vm2"),
            nic_doc("spare-nic", "10.0.1.30"),
            nic_doc("other-nic", "10.0.2.10", subnet=OTHER_SUBNET_ID),
            lb,
            vm_doc("vm1", "vm1-nic", "Windows"),
            vm_doc("vm2", "vm2-nic", "Linux"),
        ],
        "skus": [
            {
                "resourceType": "virtualMachines",
                "name": "Standard_D2s_v3",
                "tier": "Standard",
                "size": "D2s_v3",
                "family": "standardDSv3Family",
                "locations": [LOC],
                "capabilities": [
                    {"name": "MaxNetworkInterfaces", "value": "2"},
                    {"name": "AcceleratedNetworkingEnabled", "value": "True"},
                ],
            },
            {
                "resourceType": "virtualMachines",
                "name": "Standard_B1s",
                "tier": "Standard",
                "size": "B1s",
                "family": "standardBSFamily",
                "locations": ["eastus"],
                "capabilities": [{"name": "MaxNetworkInterfaces", "value": "2"}],
            },
        ],
        "health": [
            {
                "ruleId": RULE_A,
                "response": {
                    "loadBalancerBackendAddresses": [
                        {
                            "ipAddress": "10.0.1.10",
                            "networkInterfaceIPConfigurationId": ipc("vm1-nic"),
                            "state": "Up",
                            "reason": "Up",
                        },
                        {
                            "ipAddress": "10.0.1.20",
                            "networkInterfaceIPConfigurationId": ipc("vm2-nic"),
                            "state": "Down",
                            "reason": "Down",
                        },
                    ]
                },
            }
        ],
        "emulator": {
            "mirrors": [
                {
                    "rules": [RULE_A],
                    "members": [ipc("vm1-nic"), ipc("vm2-nic")],
                    "primary": ipc("vm1-nic"),
                }
            ]
        },
    }


def build_clients(emu: Emulator, credential=None, **kwargs) -> SimpleNamespace:
    """Real SDK clients against the emulator (ManagedIdentityCredential from the env)."""
    from azure.identity import ManagedIdentityCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resourcegraph import ResourceGraphClient

    cred = credential or ManagedIdentityCredential()
    common = dict(base_url=emu.base_url, connection_verify=emu.ca_path, polling_interval=0)
    common.update(kwargs)
    return SimpleNamespace(
        credential=cred,
        network=NetworkManagementClient(cred, emu.subscription_id, **common),
        compute=ComputeManagementClient(cred, emu.subscription_id, **common),
        graph=ResourceGraphClient(cred, **common),
    )


@pytest.fixture
def emulator(monkeypatch):
    """Factory: emulator(scenario=None|dict|path|"default", guest=None, **Emulator kwargs).

    Starts the emulator, sets its env vars (IDENTITY_ENDPOINT, IDENTITY_HEADER,
    REQUESTS_CA_BUNDLE, HAIRPIN_ARM_ENDPOINT, AZURE_SUBSCRIPTION_ID) and stops it afterwards.
    """
    started: list[Emulator] = []

    def factory(scenario=None, guest=None, **kwargs) -> Emulator:
        if scenario is None:
            scenario = small_scenario()
        elif isinstance(scenario, str) and not scenario.endswith(".json"):
            scenario = SCENARIOS / f"{scenario}.json"
        emu = Emulator(
            copy.deepcopy(scenario) if isinstance(scenario, dict) else scenario, guest, **kwargs
        ).start()
        started.append(emu)
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
        return emu

    yield factory
    for emu in started:
        emu.stop()
    unfired = [rule for emu in started for rule in emu.faults.unfired()]
    assert not unfired, f"injected faults that never fired (the test tests nothing): {unfired}"


@pytest.fixture
def arm_clients():
    """Factory: arm_clients(emu, credential=None, **client kwargs) -> .network .compute .graph."""
    return build_clients
