"""The plan (pure): scope, order, NIC spec, steps, hash, renderings, HA-ports statements."""
# ruff: noqa: F811 - the `estate` fixture is imported from tests.support.remediation

from __future__ import annotations

import copy
import json

import pytest

from shared.core import risk
from shared.core.remediation.model import nic_id_for
from shared.core.remediation.plan import build_plan, etags_from_documents
from shared.core.topology import topology_from_snapshot
from shared.settings import Settings
from tests.support.remediation import DEFAULT, RGP, VM1, VM2

LINUX = DEFAULT.parent / "default-linux.json"


def load(path=DEFAULT):
    return json.loads(path.read_text())


def make(doc=None, settings=None, vm=VM1):
    doc = doc or load()
    settings = settings or Settings(mode="apply")
    t = topology_from_snapshot(doc)
    ev = risk.evaluate(t, settings)
    return build_plan(ev.findings, t, settings, vm_ids=[vm],
                      etags=etags_from_documents(doc["resources"])), t


def test_scope_and_order_serving_nothing_first():
    for vm in (VM1, VM2):
        plan, _ = make(vm=vm)
        assert [v.vm_name for v in plan.vms] == ["hs-vm2", "hs-vm1"]
    plan, _ = make()
    vm2, vm1 = plan.vms
    assert (vm2.serving, vm2.likelihood, vm1.serving, vm1.likelihood) == (False, 0.0, True, 1.0)
    assert [s.kind for s in vm2.steps] == ["ensure-nic", "deallocate", "attach-nic", "start",
                                          "guest-routes", "verify", "record"]
    # Failover stated per deallocation step.
    dealloc1 = next(s for s in vm1.steps if s.kind == "deallocate")
    assert dealloc1.deallocates and any("10.0.1.100" in f and "hs-vm2" in f
                                        for f in dealloc1.fails_over)
    dealloc2 = next(s for s in vm2.steps if s.kind == "deallocate")
    assert dealloc2.fails_over == ("nothing: the VM serves no frontend now",)


def test_nic_spec_follows_the_primary_nic():
    plan, t = make()
    nic = plan.vm(VM1).nic
    assert nic.name == "hs-vm1-hairpin-nic" and nic.id == f"{RGP}/Microsoft.Network/" \
        "networkInterfaces/hs-vm1-hairpin-nic"
    assert nic.subnet_id.endswith("/hs-vnet/subnets/default") and nic.vnet_id.endswith("hs-vnet")
    assert nic.private_ip == "10.0.1.11" and plan.vm(VM2).nic.private_ip == "10.0.1.21"
    assert nic.nsg_id.endswith("/hs-nsg") and nic.gateway == "10.0.1.1" and nic.prefix_len == 24
    assert nic.accelerated_networking is True  # D4s_v3 allows it and the primary has it
    body = nic.arm_body()
    props = body["properties"]
    assert body["tags"] == {"hairpin-managed": "true"}
    assert props["enableIPForwarding"] is False
    cfg = props["ipConfigurations"][0]["properties"]
    assert cfg["privateIPAllocationMethod"] == "Static" and "publicIPAddress" not in cfg
    assert "loadBalancerBackendAddressPools" not in cfg


def test_long_vm_name_gives_an_80_char_nic_name():
    assert len(risk.secondary_nic_name("v" * 100)) == 80
    assert risk.secondary_nic_name("hs-vm1") == "hs-vm1-hairpin-nic"
    assert nic_id_for(VM1, "x-hairpin-nic").endswith("/networkInterfaces/x-hairpin-nic")


def test_size_without_accelerated_networking():
    doc = load()
    for sku in doc["skus"]:
        for cap in sku["capabilities"]:
            if cap["name"] == "AcceleratedNetworkingEnabled":
                cap["value"] = "False"
    plan, _ = make(doc)
    assert plan.vm(VM1).nic.accelerated_networking is False


def test_secondary_subnet_setting_in_another_vnet_is_a_blocker():
    other = f"{RGP}/Microsoft.Network/virtualNetworks/other/subnets/x"
    plan, _ = make(settings=Settings(mode="apply", secondary_subnet_id=other))
    assert any("different_vnet" in b for b in plan.blockers)


def test_hash_binds_steps_and_estate_facts():
    a, _ = make()
    b, _ = make()
    assert a.hash == b.hash and len(a.hash) == 64
    doc = load()
    vm = next(r for r in doc["resources"] if r["name"] == "hs-vm2")
    vm["etag"] = 'W/"other"'
    c, _ = make(doc)
    assert c.hash != a.hash
    doc = load()
    vm = next(r for r in doc["resources"] if r["name"] == "hs-vm1")
    for st in vm["properties"]["instanceView"]["statuses"]:
        if st["code"].startswith("PowerState/"):
            st["code"] = "PowerState/stopped"
    d, _ = make(doc)
    assert d.hash != a.hash
    e, _ = make(settings=Settings(mode="apply", verify_connects=5))
    assert e.hash != a.hash


def _with_fixed_third_member(power_state: str) -> dict:
    """The default estate plus hs-vm3 in both pools with its managed NIC attached, not running: a
    pool peer outside the plan once its routes are verified."""
    doc = load()
    vm2, nic2 = (copy.deepcopy(next(r for r in doc["resources"] if r["name"] == name))
                 for name in ("hs-vm2", "hs-vm2-nic"))
    vm3, nic3 = (json.loads(json.dumps(r).replace("hs-vm2", "hs-vm3")) for r in (vm2, nic2))
    nic3["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] = "10.0.1.30"
    nic3["properties"]["macAddress"] = "00-0D-3A-1B-C7-33"
    vm3["properties"]["vmId"] = vm3["properties"]["vmId"][:-2] + "03"
    for st in vm3["properties"]["instanceView"]["statuses"]:
        if st["code"].startswith("PowerState/"):
            st["code"] = f"PowerState/{power_state}"
    managed = json.loads(json.dumps(nic3).replace("hs-vm3-nic", "hs-vm3-hairpin-nic"))
    managed["tags"] = {"hairpin-managed": "true"}
    cfg = managed["properties"]["ipConfigurations"][0]["properties"]
    cfg["privateIPAddress"], cfg["loadBalancerBackendAddressPools"] = "10.0.1.31", []
    managed["properties"]["primary"] = False
    vm3["properties"]["networkProfile"]["networkInterfaces"].append(
        {"id": managed["id"], "properties": {"primary": False}})
    lb = next(r for r in doc["resources"] if r["name"] == "ilb-healthshare")
    for pool in lb["properties"]["backendAddressPools"]:
        pool["properties"]["backendIPConfigurations"].append(
            {"id": nic3["properties"]["ipConfigurations"][0]["id"]})
    doc["resources"] += [nic3, managed, vm3]
    return doc


def test_hardening_plan_hash_binds_the_power_state_of_a_peer_outside_the_plan():
    """Mutation (c): hs-vm3 shares the pools, is fixed and verified, so it is not in the plan; a
    change of its power state leaves the steps alone and must still invalidate an approval."""
    settings = Settings(mode="apply")
    plans = []
    for power_state in ("deallocated", "stopped"):
        doc = _with_fixed_third_member(power_state)
        t = topology_from_snapshot(doc)
        verified = [(f.vm_id, f.frontend_ip) for f in risk.evaluate(t, settings).findings
                    if f.vm_name == "hs-vm3"]
        ev = risk.evaluate(t, settings, verified=verified)
        plans.append(build_plan(ev.findings, t, settings, vm_ids=[VM1],
                                etags=etags_from_documents(doc["resources"])))
    deallocated, stopped = plans
    assert [v.vm_name for v in deallocated.vms] == ["hs-vm2", "hs-vm1"]
    assert [v.as_dict() for v in deallocated.vms] == [v.as_dict() for v in stopped.vms]
    assert deallocated.hash != stopped.hash


def test_text_and_json_say_what_changes_and_who_is_deallocated():
    plan, _ = make()
    text = plan.to_text()
    assert "Deallocates: hs-vm2, hs-vm1" in text and "[DEALLOCATES THE VM]" in text
    assert "static IP 10.0.1.11" in text and f"--approve {plan.hash}" in text
    doc = json.loads(plan.to_json())
    assert doc["hash"] == plan.hash and doc["deallocates"] == ["hs-vm2", "hs-vm1"]
    assert [s["index"] for s in doc["steps"]] == list(range(1, 15))
    assert doc["steps"][1]["kind"] == "deallocate" and doc["steps"][1]["deallocates"] is True


def _with_managed_nic_on_vm1(doc: dict) -> dict:
    """hs-vm1 with its managed secondary NIC attached (what a completed fix leaves)."""
    nic = copy.deepcopy(next(r for r in doc["resources"] if r["name"] == "hs-vm1-nic"))
    nic["name"] = "hs-vm1-hairpin-nic"
    nic["id"] = nic["id"].replace("hs-vm1-nic", "hs-vm1-hairpin-nic")
    nic["tags"] = {"hairpin-managed": "true"}
    cfg = nic["properties"]["ipConfigurations"][0]
    cfg["id"] = cfg["id"].replace("hs-vm1-nic", "hs-vm1-hairpin-nic")
    cfg["properties"]["privateIPAddress"] = "10.0.1.11"
    cfg["properties"]["loadBalancerBackendAddressPools"] = []
    cfg["properties"]["primary"] = True
    nic["properties"]["primary"] = False
    doc["resources"].append(nic)
    vm = next(r for r in doc["resources"] if r["name"] == "hs-vm1")
    vm["properties"]["networkProfile"]["networkInterfaces"].append(
        {"id": nic["id"], "properties": {"primary": False}})
    return doc


def test_existing_managed_nic_plans_routes_only():
    doc = _with_managed_nic_on_vm1(load())
    plan, _ = make(doc)
    v1 = plan.vm(VM1)
    assert v1.nic.exists and not v1.needs_deallocation
    assert [s.kind for s in v1.steps] == ["guest-routes", "verify", "record"]


def _ha_ports(doc):
    for r in doc["resources"]:
        if r["type"].endswith("loadBalancers"):
            for rule in r["properties"]["loadBalancingRules"]:
                if "ucr" in rule["name"]:
                    rule["properties"].update(protocol="All", frontendPort=0, backendPort=0)
    return doc


@pytest.mark.parametrize("allow", [False, True])
def test_ha_ports_linux_needs_the_broad_rule_setting(allow):
    plan, _ = make(_ha_ports(load(LINUX)),
                   Settings(mode="apply", allow_broad_ha_ports_rule=allow))
    v1 = plan.vm(VM1)
    text = " ".join(v1.blockers + v1.notes)
    assert "cannot be narrowed by port" in text or "cannot be narrowed" in text.lower()
    if allow:
        assert not v1.blockers
        assert "local traffic between the VM's two addresses" in " ".join(v1.notes)
        routes = next(s for s in v1.steps if s.kind == "guest-routes")
        assert any("HA ports, broad" in c for c in routes.changes)
    else:
        assert any("ha_ports_needs_broad_rule" in b or "HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE" in b
                   for b in v1.blockers)


def test_ha_ports_windows_is_a_plain_host_route():
    plan, _ = make(_ha_ports(load()))
    v1 = plan.vm(VM1)
    assert not v1.blockers
    assert any("cannot be narrowed by port" in n and "Windows" in n for n in v1.notes)


def test_linux_plan_lists_the_policy_rules():
    plan, _ = make(load(LINUX))
    routes = next(s for s in plan.vm(VM1).steps if s.kind == "guest-routes")
    text = "\n".join(routes.changes)
    assert "ipproto tcp sport 1972" in text and "ipproto tcp sport 1973" in text
    assert "local-table rule moved" in text


def test_verified_routes_alone_are_not_a_fix():
    doc = load()
    plan, t = make(doc)
    ev = risk.evaluate(t, Settings(mode="apply"),
                       verified=[(f.vm_id, f.frontend_ip) for f in risk.evaluate(t).findings])
    empty = build_plan(ev.findings, t, Settings(), vm_ids=[VM1])
    assert not empty.empty  # verified routes alone do not count without the managed NIC


def test_hardening_plan_hash_binds_nic_and_load_balancer_etags_not_the_managed_nic():
    """make mutation: a NIC's or the load balancer's etag left out of the hash survived."""
    base, _ = make()
    for name in ("hs-vm2-nic", "ilb-healthshare"):
        doc = load()
        next(r for r in doc["resources"] if r["name"] == name)["etag"] = 'W/"changed"'
        changed, _ = make(doc)
        assert changed.hash != base.hash, name
    hashes = []
    for etag in ('W/"before-start"', 'W/"mac-assigned"'):  # Azure assigns the MAC at start
        doc = _with_managed_nic_on_vm1(load())
        next(r for r in doc["resources"] if r["name"] == "hs-vm1-hairpin-nic")["etag"] = etag
        hashes.append(make(doc)[0].hash)
    assert hashes[0] == hashes[1]
