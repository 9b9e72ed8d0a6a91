import copy
import dataclasses
import ipaddress
import json

import pytest

from shared.core.topology import build_topology, topology_from_snapshot
from tests.support.paths import ROOT
from tests.support.topology_builder import EstateBuilder

SPECS = ROOT / "tests" / "fixtures" / "specs"
SUB = "00000000-0000-0000-0000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-healthshare/providers"
LB = f"{RG}/Microsoft.Network/loadBalancers/ilb-healthshare"
CFG1 = f"{RG}/Microsoft.Network/networkInterfaces/hs-vm1-nic/ipConfigurations/ipconfig1"
CFG2 = f"{RG}/Microsoft.Network/networkInterfaces/hs-vm2-nic/ipConfigurations/ipconfig1"


def A(text):  # addresses are canonical text in the model
    return str(ipaddress.ip_address(text))


def scenario(name="default"):
    return json.loads((ROOT / "emulator" / "scenarios" / f"{name}.json").read_text())


def spec_body(name):
    return json.loads((SPECS / name).read_text())["responses"]["200"]["body"]


@pytest.fixture(scope="module")
def seed():
    return topology_from_snapshot(scenario())


def test_seed_estate(seed):
    assert {vm.name for vm in seed.vms.values()} == {"hs-vm1", "hs-vm2"}
    vm1 = seed.vm("hs-vm1")
    assert vm1.size == "Standard_D4s_v3" and vm1.os_type == "Windows"
    assert vm1.power_state == "running" and vm1.is_running and vm1.agent_ready
    nic = seed.nics_of_vm(vm1.id)[0]
    assert nic.primary and nic.accelerated_networking and nic.mac == "00-0D-3A-1B-C7-21"
    assert nic.nsg_id.endswith("/networkSecurityGroups/hs-nsg")
    assert nic.primary_ip_config.private_ip == A("10.0.1.10")
    assert seed.vm_of_ip_config(CFG1).name == "hs-vm1"
    assert seed.sku("standard_d4s_v3").max_nics == 2
    assert seed.sku("Standard_D4s_v3").accelerated_networking is True
    assert seed.unknowns == ()


def test_seed_load_balancer(seed):
    lb = seed.load_balancer(LB)
    assert lb.sku == "Standard"
    fes = [seed.frontends[k] for k in lb.frontend_keys]
    assert sorted(str(f.private_ip) for f in fes) == ["10.0.1.100", "10.0.1.101"]
    assert all(f.is_internal and not f.is_public for f in fes)
    rules = {seed.rules[k].name: seed.rules[k] for k in lb.rule_keys}
    pi, ucr = rules["rule-patient-index-1972"], rules["rule-ucr-registry-1972"]
    assert (pi.protocol, pi.frontend_port, pi.backend_port, pi.floating_ip) == (
        "Tcp",
        1972,
        1972,
        False,
    )
    assert (ucr.frontend_port, ucr.backend_port) == (1972, 1973)
    assert not pi.is_ha_ports
    assert seed.probes[pi.probe_key].port == 52773
    members = seed.members_of_pool(f"{LB}/backendAddressPools/pool-patient-index")
    assert [str(m.ip) for m in members] == ["10.0.1.10", "10.0.1.20"]
    assert {p.name for p in seed.pools_of_ip_config(CFG1)} == {
        "pool-patient-index",
        "pool-ucr-registry",
    }
    assert [r.name for r in seed.rules_of_pool(f"{LB}/backendAddressPools/pool-ucr-registry")] == [
        "rule-ucr-registry-1972"
    ]


def test_seed_health_and_subnet(seed):
    health = seed.health_of_rule(f"{LB}/loadBalancingRules/rule-patient-index-1972")
    assert health.state_of(seed.ip_config(CFG1).key, None) == "Up"
    assert health.state_of(None, "10.0.1.20") == "Down"
    subnet = seed.subnet(f"{RG}/Microsoft.Network/virtualNetworks/hs-vnet/subnets/default")
    assert str(subnet.prefix) == "10.0.1.0/24" and subnet.gateway == A("10.0.1.1")
    assert seed.used_ips_in_subnet(subnet.id) == {
        A("10.0.1.10"),
        A("10.0.1.20"),
        A("10.0.1.100"),
        A("10.0.1.101"),
    }


@pytest.mark.parametrize("shape", ["string", "object"])
def test_health_ipconfig_as_an_id_string_or_an_object(shape):
    # The service answers a string (spec example LoadBalancerHealth.json; azure-sdk-for-go
    # armnetwork 7.0.0 changed the field to a string); the 2024-05-01 schema declared {id}.
    doc = scenario()
    for entry in doc["health"]:
        entry["response"].pop("loadBalancingRuleName", None)  # the service does not send it
        for b in entry["response"]["loadBalancerBackendAddresses"]:
            ipc = b.pop("networkInterfaceIPConfigurationId")
            b["networkInterfaceIPConfigurationId"] = ipc if shape == "string" else {"id": ipc}
    topo = topology_from_snapshot(doc)
    health = topo.health_of_rule(f"{LB}/loadBalancingRules/rule-patient-index-1972")
    assert health.state_of(topo.ip_config(CFG1).key, None) == "Up"
    assert [b.ip_config_key for b in health.backends] == [
        b.ip_config_key for b in topology_from_snapshot(scenario()).health_of_rule(
            f"{LB}/loadBalancingRules/rule-patient-index-1972").backends]
    assert all(b.ip_config_key for b in health.backends)


def test_linux_variant():
    topo = topology_from_snapshot(scenario("default-linux"))
    assert {vm.os_type for vm in topo.vms.values()} == {"Linux"}


def test_lookups_are_case_insensitive(seed):
    assert (
        seed.vm(seed.vm("hs-vm1").id.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"))
        is not None
    )
    assert seed.ip_config(CFG2.lower()).private_ip == A("10.0.1.20")
    assert seed.vm("HS-VM2").name == "hs-vm2"
    assert seed.vm("nope") is None
    assert (
        seed.nics_of_vm(
            "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/virtualMachines/z"
        )
        == ()
    )


def test_references_in_other_case_still_link():
    snap = scenario()
    for doc in snap["resources"]:
        if doc["type"] == "Microsoft.Compute/virtualMachines":
            for ref in doc["properties"]["networkProfile"]["networkInterfaces"]:
                ref["id"] = ref["id"].upper().replace("/SUBSCRIPTIONS/", "/subscriptions/")
    topo = topology_from_snapshot(snap)
    assert topo.vm_of_ip_config(CFG1).name == "hs-vm1"


def test_model_is_immutable(seed):
    with pytest.raises(TypeError):
        seed.vms["x"] = None  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        seed.vm("hs-vm1").size = "big"  # type: ignore[misc]
    with pytest.raises(TypeError):
        seed.vm("hs-vm1").tags["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize("nic_side,pool_side", [(True, False), (False, True), (True, True)])
def test_nic_based_membership_from_either_side(nic_side, pool_side):
    b = EstateBuilder()
    b.vnet()
    b.vm("vm1", "10.0.1.10")
    b.lb()
    b.rule("ilb1", "r1", "fe1", "pool1")
    b.member("ilb1", "pool1", "vm1", nic_side=nic_side, pool_side=pool_side)
    topo = b.topology()
    members = topo.members_of_pool(b.lb_child("ilb1", "backendAddressPools", "pool1"))
    assert len(members) == 1 and members[0].via == "nic"
    assert topo.vm_of_ip_config(members[0].ip_config_key).name == "vm1"


def test_ip_based_pool_matched_by_ip_within_the_vnet():
    b = EstateBuilder()
    b.vnet("vnet1", subnets={"default": "10.0.1.0/24"})
    b.vnet("vnet2", subnets={"default": "10.0.1.0/24"})  # same addresses, other VNet
    b.vm("vm1", "10.0.1.10")
    b.vm("other", "10.0.1.11", vnet="vnet2")
    b.lb()
    b.rule("ilb1", "r1", "fe1", "pool1")
    b.ip_member("ilb1", "pool1", "10.0.1.10", vnet="vnet1")
    b.ip_member("ilb1", "pool1", "10.0.1.11", vnet="vnet1")  # that IP lives in vnet2 only
    topo = b.topology()
    members = topo.members_of_pool(b.lb_child("ilb1", "backendAddressPools", "pool1"))
    matched = [m for m in members if m.ip_config_key]
    assert [topo.vm_of_ip_config(m.ip_config_key).name for m in matched] == ["vm1"]
    assert [str(m.ip) for m in members if not m.ip_config_key] == ["10.0.1.11"]
    assert all(m.via == "ip" for m in members)


def test_ha_ports_and_public_frontends():
    b = EstateBuilder()
    b.vnet()
    b.vm("vm1", "10.0.1.10")
    b.lb("ilb1", {"fe1": "10.0.1.100"}, public={"pub": "pip1"})
    b.rule("ilb1", "ha", "fe1", "pool1", 0, 0, protocol="All")
    topo = b.topology()
    assert topo.rule(b.rule_id("ilb1", "ha")).is_ha_ports
    pub = topo.frontend(b.frontend_id("ilb1", "pub"))
    assert pub.is_public and not pub.is_internal


def test_resource_graph_power_state_shape():
    b = EstateBuilder()
    b.vnet()
    b.vm("vm1", "10.0.1.10", power=None)
    snap = b.snapshot()
    vm_doc = next(d for d in snap["resources"] if d["name"] == "vm1")
    vm_doc["properties"]["extended"] = {
        "instanceView": {"powerState": {"code": "PowerState/deallocated"}}
    }
    assert topology_from_snapshot(snap).vm("vm1").power_state == "deallocated"


def test_missing_fields_become_unknowns():
    b = EstateBuilder()
    b.vnet()
    b.vm("vm1", "10.0.1.10", size=None, os_type=None, power=None)
    b.lb()
    b.rule("ilb1", "r1", "fe1", "pool1")
    snap = b.snapshot()
    for doc in snap["resources"]:
        if doc["type"] == "Microsoft.Network/networkInterfaces":
            del doc["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        if doc["type"] == "Microsoft.Network/loadBalancers":
            del doc["properties"]["loadBalancingRules"][0]["properties"]["frontendPort"]
        if doc["type"] == "Microsoft.Network/virtualNetworks":
            del doc["properties"]["subnets"][0]["properties"]["addressPrefix"]
    topo = topology_from_snapshot(snap)
    vm = topo.vm("vm1")
    assert vm.size is None and vm.os_type is None and vm.power_state is None
    fields = {(u.resource_id.rsplit("/", 1)[-1], u.field) for u in topo.unknowns}
    assert ("vm1", "hardwareProfile.vmSize") in fields
    assert ("vm1", "storageProfile.osDisk.osType") in fields
    assert ("vm1", "instanceView.statuses") in fields
    assert ("ipconfig1", "privateIPAddress") in fields
    assert ("r1", "protocol/ports") in fields
    assert ("default", "addressPrefix") in fields
    assert topo.unknowns_for(vm.id)


@pytest.mark.parametrize(
    "junk",
    [
        [None, 5, "text", [], {}],
        [{"id": 5, "type": "Microsoft.Network/networkInterfaces"}],
        [
            {
                "id": "/subscriptions/x",
                "type": "Microsoft.Network/networkInterfaces",
                "properties": "oops",
            }
        ],
        [
            {
                "id": "/x/vm",
                "type": "Microsoft.Compute/virtualMachines",
                "properties": {
                    "networkProfile": {"networkInterfaces": [None, {"id": 3}, {"id": "/x/nic"}]},
                    "instanceView": {"statuses": "bad"},
                    "hardwareProfile": [],
                },
            }
        ],
        [
            {
                "id": "/x/lb",
                "type": "Microsoft.Network/loadBalancers",
                "properties": {
                    "frontendIPConfigurations": [
                        {"id": "/x/lb/f", "properties": {"privateIPAddress": "nope"}}
                    ],
                    "loadBalancingRules": [
                        {
                            "id": "/x/lb/r",
                            "properties": {"frontendPort": "x", "backendAddressPools": "bad"},
                        }
                    ],
                    "backendAddressPools": [
                        {
                            "id": "/x/lb/p",
                            "properties": {
                                "loadBalancerBackendAddresses": [
                                    {"properties": {"ipAddress": 7}},
                                    None,
                                ]
                            },
                        }
                    ],
                },
            }
        ],
    ],
)
def test_junk_never_crashes(junk):
    topo = build_topology(
        junk, skus=[None, {"resourceType": "virtualMachines"}], health=[None, {"ruleId": "/x/lb/r"}]
    )
    assert isinstance(topo.unknowns, tuple)


def test_snapshot_shape_errors():
    with pytest.raises(ValueError):
        topology_from_snapshot([])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        topology_from_snapshot({"skus": []})


def test_duplicate_documents_keep_one_regardless_of_order():
    snap = scenario()
    vm_doc = next(d for d in snap["resources"] if d["name"] == "hs-vm1")
    twin = copy.deepcopy(vm_doc)
    twin["tags"] = {"copy": "yes"}
    a = build_topology(snap["resources"] + [twin], snap["skus"], snap["health"])
    b = build_topology([twin] + snap["resources"], snap["skus"], snap["health"])
    assert a.vm("hs-vm1") == b.vm("hs-vm1")
    assert any(u.detail.startswith("resource listed more than once") for u in a.unknowns)


# ----------------------------------------------------------------- REST API spec examples


def test_spec_load_balancer_get():
    topo = build_topology([spec_body("risk-LoadBalancerGet.json")])
    lb = topo.load_balancer(
        "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/loadBalancers/lb"
    )
    assert lb.sku == "Basic"
    fe = topo.frontends[lb.frontend_keys[0]]
    assert fe.is_internal and fe.private_ip == A("10.0.1.4")
    rule = topo.rules[lb.rule_keys[0]]
    assert (rule.protocol, rule.frontend_port, rule.backend_port, rule.floating_ip) == (
        "Tcp",
        80,
        80,
        True,
    )
    assert topo.probes[rule.probe_key].request_path == "healthcheck.aspx"
    assert lb.nat_rules[0].frontend_port == 3389
    assert rule.pool_keys == lb.pool_keys


def test_spec_network_interface_get():
    topo = build_topology([spec_body("risk-NetworkInterfaceGet.json")])
    nic = topo.nic(
        "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/networkInterfaces/test-nic"
    )
    assert nic.primary and nic.accelerated_networking and nic.mac == "00-0D-3A-1B-C7-21"
    cfg = nic.primary_ip_config
    assert cfg.private_ip == A("172.20.2.4") and cfg.vnet_key.endswith("/virtualnetworks/rg1-vnet")
    assert nic.vm_id.endswith("/virtualMachines/vm1")


def test_spec_ip_based_pool_inside_a_load_balancer():
    pool = spec_body("risk-LBBackendAddressPoolWithBackendAddressesGet.json")
    nic = spec_body("risk-NetworkInterfaceGet.json")
    # Put the NIC at one of the pool's addresses, in the pool's VNet, and the pool in an LB.
    cfg = nic["properties"]["ipConfigurations"][0]["properties"]
    cfg["privateIPAddress"] = "10.0.0.5"
    cfg["subnet"]["id"] = (
        "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/"
        "virtualNetworks/vnetlb/subnets/default"
    )
    lb = {
        "id": "/subscriptions/subid/resourceGroups/testrg/providers/Microsoft.Network/"
        "loadBalancers/lb",
        "type": "Microsoft.Network/loadBalancers",
        "name": "lb",
        "sku": {"name": "Standard"},
        "properties": {"backendAddressPools": [pool]},
    }
    topo = build_topology([lb, nic])
    members = topo.members_of_pool(pool["id"])
    assert sorted(str(m.ip) for m in members) == ["10.0.0.4", "10.0.0.5"]
    matched = [m for m in members if m.ip_config_key]
    assert len(matched) == 1 and str(matched[0].ip) == "10.0.0.5"


def test_spec_skus_list():
    topo = build_topology(
        [], skus=spec_body("risk-ListAvailableResourceSkus.json")["value"]
    )
    a1 = topo.sku("Standard_A1")
    assert a1.max_nics == 2 and a1.accelerated_networking is False and a1.locations == ("westus",)


def test_spec_instance_view_gives_power_state():
    vm = {
        "id": "/subscriptions/s/resourceGroups/myResourceGroup/providers/Microsoft.Compute/"
        "virtualMachines/myVM",
        "type": "Microsoft.Compute/virtualMachines",
        "name": "myVM",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_A1"},
            "instanceView": spec_body("risk-VirtualMachine_Get_InstanceView.json"),
        },
    }
    topo = build_topology([vm])
    assert topo.vm("myVM").power_state == "running"
    assert topo.vm("myVM").agent_ready is True
