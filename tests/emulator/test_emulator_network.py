"""Microsoft.Network through the real NetworkManagementClient against the emulator."""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.network import NetworkManagementClient

from tests.support.fixtures_emulator import (
    LB_ID,
    LOC,
    NSG_ID,
    OTHER_SUBNET_ID,
    POOL_ID,
    RG,
    RULE_A,
    SUBNET_ID,
    VNET_ID,
    nic_doc,
)


def _nic_body(ip=None, subnet=SUBNET_ID, pools=()):
    body = nic_doc("x", ip, subnet=subnet, pools=pools)
    return {"location": LOC, "properties": body["properties"]}


@pytest.fixture
def net(emulator, arm_clients):
    emu = emulator(page_size=2)
    return emu, arm_clients(emu).network


def test_get_and_list_with_paging(net):
    emu, network = net
    nics = list(network.network_interfaces.list(RG))
    assert [n.name for n in nics] == ["other-nic", "spare-nic", "vm1-nic", "vm2-nic"]
    # 4 NICs at page size 2: two pages, the second reached through nextLink
    assert emu.requests.count("GET", "Microsoft.Network/networkInterfaces") == 2
    assert "$skiptoken" in emu.requests[-1].query
    assert len(list(network.network_interfaces.list_all())) == 4
    vnet = network.virtual_networks.get(RG, "vnet1")
    assert vnet.address_space.address_prefixes == ["10.0.1.0/24"]
    assert vnet.etag.startswith('W/"')
    subnet = network.subnets.get(RG, "vnet1", "default")
    assert subnet.id == SUBNET_ID and subnet.address_prefix == "10.0.1.0/24"
    assert {c.id.split("/")[-3] for c in subnet.ip_configurations} == {
        "vm1-nic",
        "vm2-nic",
        "spare-nic",
    }
    assert [s.name for s in network.subnets.list(RG, "vnet1")] == ["default"]


def test_nic_create_allocates_lowest_free_ip_and_update_keeps_it(net):
    emu, network = net
    nic = network.network_interfaces.begin_create_or_update(RG, "new-nic", _nic_body()).result()
    # .0-.3 reserved, .10/.20/.30 taken, LB frontends .100/.101: first free is .4
    assert nic.ip_configurations[0].private_ip_address == "10.0.1.4"
    assert nic.ip_configurations[0].private_ip_allocation_method == "Dynamic"
    assert nic.provisioning_state == "Succeeded"
    assert nic.ip_configurations[0].primary is True
    nic2 = network.network_interfaces.begin_create_or_update(RG, "new-nic2", _nic_body()).result()
    assert nic2.ip_configurations[0].private_ip_address == "10.0.1.5"
    again = network.network_interfaces.begin_create_or_update(RG, "new-nic", nic).result()
    assert again.ip_configurations[0].private_ip_address == "10.0.1.4"
    assert again.etag != nic.etag
    assert emu.store.get(nic.id.upper())["name"] == "new-nic"  # case-insensitive IDs
    assert emu.requests.count("PUT", "Microsoft.Network/networkInterfaces") == 3
    put = [e for e in emu.requests if e.method == "PUT"][0]
    assert put.action == "Microsoft.Network/networkInterfaces/write"
    assert "Microsoft.Network/virtualNetworks/subnets/join/action" in put.linked_actions
    assert "Microsoft.Network/networkSecurityGroups/join/action" in put.linked_actions


@pytest.mark.parametrize(
    "ip,code",
    [
        ("10.0.1.10", "PrivateIPAddressInUse"),
        ("10.0.1.100", "PrivateIPAddressInUse"),  # an LB frontend holds it
        ("10.0.1.2", "PrivateIPAddressInReservedRange"),
        ("10.0.1.255", "PrivateIPAddressInReservedRange"),
        ("10.0.9.9", "PrivateIPAddressNotInSubnet"),
    ],
)
def test_static_ip_errors(net, ip, code):
    _, network = net
    with pytest.raises(HttpResponseError) as exc:
        network.network_interfaces.begin_create_or_update(RG, "bad", _nic_body(ip)).result()
    assert exc.value.status_code == 400
    assert exc.value.error.code == code


def test_subnet_full(emulator, arm_clients):
    emu = emulator()
    network = arm_clients(emu).network
    vnet = network.virtual_networks.begin_create_or_update(
        RG,
        "tiny",
        {
            "location": LOC,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.9.0.0/29"]},
                "subnets": [{"name": "s", "properties": {"addressPrefix": "10.9.0.0/29"}}],
            },
        },
    ).result()
    sid = vnet.subnets[0].id
    # /29 = 8 addresses; .0-.3 and .7 reserved -> .4 .5 .6 usable
    ips = [
        network.network_interfaces.begin_create_or_update(RG, f"t{i}", _nic_body(subnet=sid))
        .result()
        .ip_configurations[0]
        .private_ip_address
        for i in range(3)
    ]
    assert ips == ["10.9.0.4", "10.9.0.5", "10.9.0.6"]
    with pytest.raises(HttpResponseError) as exc:
        network.network_interfaces.begin_create_or_update(RG, "t4", _nic_body(subnet=sid)).result()
    assert exc.value.error.code == "SubnetIsFull"


def test_unknown_resource_and_group(net):
    _, network = net
    with pytest.raises(ResourceNotFoundError) as exc:
        network.load_balancers.get(RG, "nope")
    assert exc.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as exc:
        network.load_balancers.get("no-such-rg", "ilb")
    assert exc.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(HttpResponseError) as exc:
        network.network_interfaces.begin_create_or_update(
            RG, "bad", _nic_body(subnet=VNET_ID + "/subnets/missing")
        ).result()
    assert exc.value.error.code == "InvalidResourceReference"


def test_etag_if_match(net):
    emu, network = net
    # The Network SDK has no etag keyword on these operations; If-Match goes as a header.
    nsg = network.network_security_groups.get(RG, "nsg1")
    ok = network.network_security_groups.begin_create_or_update(
        RG, "nsg1", nsg, headers={"If-Match": nsg.etag}
    ).result()
    assert ok.etag != nsg.etag
    with pytest.raises(HttpResponseError) as exc:  # the old etag is stale now
        network.network_security_groups.begin_create_or_update(
            RG, "nsg1", nsg, headers={"If-Match": nsg.etag}
        ).result()
    assert exc.value.status_code == 412
    assert exc.value.error.code == "PreconditionFailed"
    assert emu.requests[-1].status == 412


def test_delete_lro_and_in_use_errors(net):
    emu, network = net
    network.network_interfaces.begin_delete(RG, "spare-nic").result()
    assert (
        emu.store.get(
            f"/subscriptions/{emu.subscription_id}/resourceGroups/{RG}/providers/"
            "Microsoft.Network/networkInterfaces/spare-nic"
        )
        is None
    )
    with pytest.raises(ResourceNotFoundError):
        network.network_interfaces.get(RG, "spare-nic")
    network.network_interfaces.begin_delete(RG, "spare-nic").result()  # 204: already gone
    with pytest.raises(HttpResponseError) as exc:
        network.network_interfaces.begin_delete(RG, "vm1-nic").result()
    assert exc.value.error.code == "NicInUse"
    with pytest.raises(HttpResponseError) as exc:
        network.network_security_groups.begin_delete(RG, "nsg1").result()
    assert exc.value.error.code == "InUseNetworkSecurityGroupCannotBeDeleted"
    delete = [e for e in emu.requests if e.method == "DELETE"][0]
    assert delete.action == "Microsoft.Network/networkInterfaces/delete"


def test_load_balancer_shape_and_pool_back_references(net):
    emu, network = net
    lb = network.load_balancers.get(RG, "ilb")
    assert lb.sku.name == "Standard"
    fe = {f.name: f.private_ip_address for f in lb.frontend_ip_configurations}
    assert fe == {"fe-a": "10.0.1.100", "fe-b": "10.0.1.101"}
    pools = {p.name: p for p in lb.backend_address_pools}
    assert sorted(c.id.split("/")[-3] for c in pools["be"].backend_ip_configurations) == [
        "vm1-nic",
        "vm2-nic",
    ]
    assert pools["be-ip"].load_balancer_backend_addresses[0].ip_address == "10.0.1.50"
    ha = [r for r in lb.load_balancing_rules if r.name == "rule-ha"][0]
    assert (ha.protocol, ha.frontend_port, ha.backend_port, ha.enable_floating_ip) == (
        "All",
        0,
        0,
        True,
    )
    # joining the pool from a new NIC shows up in the pool's back-reference
    network.network_interfaces.begin_create_or_update(
        RG, "joiner", _nic_body(pools=[POOL_ID])
    ).result()
    pool = network.load_balancer_backend_address_pools.get(RG, "ilb", "be")
    assert len(pool.backend_ip_configurations) == 3
    rules = list(network.load_balancer_load_balancing_rules.list(RG, "ilb"))
    assert [r.name for r in rules] == ["rule-a", "rule-ha"]


def test_load_balancer_create_with_dynamic_frontend_and_bad_rule(net):
    _, network = net
    body = {
        "location": LOC,
        "sku": {"name": "Standard"},
        "properties": {
            "frontendIPConfigurations": [
                {"name": "fe", "properties": {"subnet": {"id": SUBNET_ID}}}
            ],
            "backendAddressPools": [{"name": "be"}],
            "probes": [{"name": "p", "properties": {"protocol": "Tcp", "port": 80}}],
            "loadBalancingRules": [
                {
                    "name": "r",
                    "properties": {
                        "frontendIPConfiguration": {"id": f"{LB_ID}2/frontendIPConfigurations/fe"},
                        "backendAddressPool": {"id": f"{LB_ID}2/backendAddressPools/be"},
                        "probe": {"id": f"{LB_ID}2/probes/p"},
                        "protocol": "Tcp",
                        "frontendPort": 80,
                        "backendPort": 80,
                    },
                }
            ],
        },
    }
    lb = network.load_balancers.begin_create_or_update(RG, "ilb2", body).result()
    assert lb.frontend_ip_configurations[0].private_ip_address == "10.0.1.4"
    assert lb.frontend_ip_configurations[0].private_ip_allocation_method == "Dynamic"
    body["properties"]["loadBalancingRules"][0]["properties"]["probe"] = {
        "id": f"{LB_ID}2/probes/missing"
    }
    with pytest.raises(HttpResponseError) as exc:
        network.load_balancers.begin_create_or_update(RG, "ilb2", body).result()
    assert exc.value.error.code == "InvalidResourceReference"


def test_subnet_child_put_and_vnet_tags_patch(net):
    _, network = net
    sn = network.subnets.begin_create_or_update(
        RG, "vnet2", "extra", {"properties": {"addressPrefix": "10.0.2.128/25"}}
    ).result()
    assert sn.id.endswith("/virtualNetworks/vnet2/subnets/extra")
    assert sorted(s.name for s in network.virtual_networks.get(RG, "vnet2").subnets) == [
        "default",
        "extra",
    ]
    with pytest.raises(HttpResponseError) as exc:
        network.subnets.begin_create_or_update(
            RG, "vnet2", "outside", {"properties": {"addressPrefix": "10.7.0.0/24"}}
        ).result()
    assert exc.value.error.code == "NetcfgSubnetRangeOutsideVnet"
    tagged = network.virtual_networks.update_tags(RG, "vnet2", {"tags": {"a": "b"}})
    assert tagged.tags == {"a": "b"}
    with pytest.raises(HttpResponseError) as exc:
        network.subnets.begin_delete(RG, "vnet2", "default").result()
    assert exc.value.error.code == "InUseSubnetCannotBeDeleted"
    assert OTHER_SUBNET_ID.endswith("vnet2/subnets/default")


def test_rule_health_from_scenario_and_default(net):
    emu, network = net
    h = network.load_balancer_load_balancing_rules.begin_health(RG, "ilb", "rule-a").result()
    assert (h.up, h.down) == (1, 1)
    states = {a.ip_address: a.state for a in h.load_balancer_backend_addresses}
    assert states == {"10.0.1.10": "Up", "10.0.1.20": "Down"}
    # no health entry for rule-ha: every running member is Up
    h = network.load_balancer_load_balancing_rules.begin_health(RG, "ilb", "rule-ha").result()
    assert (h.up, h.down) == (2, 0)
    health = [e for e in emu.requests if e.method == "POST"][0]
    assert health.action == "Microsoft.Network/loadBalancers/loadBalancingRules/health/action"
    assert not health.is_write
    assert RULE_A.endswith("rule-a") and NSG_ID


def test_backend_pool_child_put_and_delete(net):
    emu, network = net
    pools = network.load_balancer_backend_address_pools
    body = {
        "properties": {
            "loadBalancerBackendAddresses": [
                {
                    "name": "a1",
                    "properties": {"ipAddress": "10.0.1.60", "virtualNetwork": {"id": VNET_ID}},
                }
            ]
        }
    }
    pool = pools.begin_create_or_update(RG, "ilb", "be-new", body).result()
    assert pool.id == f"{LB_ID}/backendAddressPools/be-new"
    assert pool.load_balancer_backend_addresses[0].ip_address == "10.0.1.60"
    assert sorted(p.name for p in pools.list(RG, "ilb")) == ["be", "be-ip", "be-new"]
    pools.begin_delete(RG, "ilb", "be-new").result()
    assert sorted(p.name for p in network.load_balancers.get(RG, "ilb").backend_address_pools) == [
        "be",
        "be-ip",
    ]
    actions = [e.action for e in emu.requests if e.method in ("PUT", "DELETE")]
    assert actions == [
        "Microsoft.Network/loadBalancers/backendAddressPools/write",
        "Microsoft.Network/loadBalancers/backendAddressPools/delete",
    ]


def test_unknown_subscription(net):
    emu, _ = net
    other = NetworkManagementClient(
        ManagedIdentityCredential(),
        "99999999-0000-0000-0000-000000000000",
        base_url=emu.base_url,
        connection_verify=emu.ca_path,
    )
    with pytest.raises(ResourceNotFoundError) as exc:
        list(other.network_interfaces.list_all())
    assert exc.value.error.code == "SubscriptionNotFound"
