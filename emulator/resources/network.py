"""Microsoft.Network: virtual networks/subnets, NSGs, NICs, load balancers, rule health.

Documents are stored as ARM returns them. Back-references that ARM computes (a pool's
backendIPConfigurations, a subnet's ipConfigurations) are added on read, never stored.
"""

from __future__ import annotations

import copy
import ipaddress

from emulator.errors import bad_request, not_found
from emulator.resources.addresses import (
    assign_ip,
    find_subnet,
    ip_users,
    pool_members,
    subnet_network,
)
from emulator.resources.linked import LinkedAccess
from emulator.resources.types import CHILDREN, LB, NIC, NSG, TYPES, VNET, ref_id
from emulator.state import EmulatorHost, lower, new_etag, parent_id


def _fill_children(doc: dict) -> None:
    """Give every child its id, type and the parent's etag (as Microsoft.Network does)."""
    props = doc.setdefault("properties", {})
    for coll in CHILDREN.get(doc["type"].lower(), []):
        for child in props.get(coll) or []:
            child.setdefault("id", f"{doc['id']}/{coll}/{child.get('name')}")
            child.setdefault("type", f"{doc['type']}/{coll}")
            child["etag"] = doc["etag"]
            cprops = child.setdefault("properties", {})
            cprops["provisioningState"] = "Succeeded"


def _require(emu: EmulatorHost, ref_id: str, by: str) -> None:
    target = ref_id
    kind = ref_id.lower().split("/providers/")[-1]
    if "/subnets/" in kind:
        ok = find_subnet(emu, ref_id) is not None
    elif kind.startswith("microsoft.network/loadbalancers/") and kind.count("/") >= 4:
        lb = emu.store.raw(parent_id(ref_id))
        coll = ref_id.split("/")[-2]
        ok = lb is not None and any(
            lower(c.get("id", "")) == lower(ref_id) for c in lb.get("properties", {}).get(coll, [])
        )
    else:
        ok = ref_id in emu.store
    if not ok:
        raise bad_request(
            "InvalidResourceReference",
            f"Resource {target} referenced by resource {by} was not found.",
        )


# ---------------------------------------------------------------------------- PUT per type
def prepare_put(
    emu: EmulatorHost, rtype: str, rid: str, body: dict, existing: dict | None
) -> tuple[dict, list[LinkedAccess]]:
    """Validate a PUT and build the document to store; also the linked accesses it needs."""
    name = rid.rstrip("/").split("/")[-1]
    doc = {k: v for k, v in copy.deepcopy(body).items() if k not in ("etag", "id", "name", "type")}
    doc.update(
        {"name": name, "id": rid, "type": TYPES.get(rtype.lower(), rtype), "etag": new_etag()}
    )
    if "location" not in doc and existing:
        doc["location"] = existing.get("location")
    props = doc.setdefault("properties", {})
    props["provisioningState"] = "Succeeded"
    old_guid = (existing or {}).get("properties", {}).get("resourceGuid")
    props["resourceGuid"] = old_guid or props.get("resourceGuid") or emu.new_guid()
    _fill_children(doc)
    linked: list[LinkedAccess] = []
    t = doc["type"].lower()
    if t == VNET.lower():
        _check_vnet(emu, doc, existing)
    elif t == NIC.lower():
        linked = _check_nic(emu, doc, existing)
    elif t == LB.lower():
        linked = _check_lb(emu, doc)
    return doc, linked


def _check_vnet(emu: EmulatorHost, doc: dict, existing: dict | None) -> None:
    props = doc["properties"]
    spaces = [
        ipaddress.ip_network(p, strict=False)
        for p in props.get("addressSpace", {}).get("addressPrefixes", [])
    ]
    for sn in props.get("subnets", []):
        try:
            net = subnet_network(sn)
        except (TypeError, ValueError) as err:
            raise bad_request(
                "InvalidAddressPrefix", f"Subnet {sn.get('name')} has no valid prefix."
            ) from err
        if spaces and not any(net.subnet_of(s) for s in spaces):
            raise bad_request(
                "NetcfgSubnetRangeOutsideVnet",
                f"Subnet '{sn.get('name')}' is not valid because its IP address range "
                f"is outside the IP address range of virtual network '{doc['name']}'.",
            )
    if existing:
        kept = {lower(s["id"]) for s in props.get("subnets", [])}
        for sn in existing.get("properties", {}).get("subnets", []):
            if lower(sn["id"]) not in kept and ip_users(emu, sn["id"]):
                raise bad_request(
                    "InUseSubnetCannotBeDeleted",
                    f"Subnet {sn['name']} is in use by "
                    f"{next(iter(ip_users(emu, sn['id']).values()))} and cannot be deleted.",
                )


def _check_nic(emu: EmulatorHost, doc: dict, existing: dict | None) -> list[LinkedAccess]:
    props = doc["properties"]
    ipcs = props.get("ipConfigurations") or []
    if not ipcs:
        raise bad_request(
            "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
            f"Network interface {doc['id']} must have one or more IP configurations.",
        )
    if not any(c.get("properties", {}).get("primary") for c in ipcs):
        ipcs[0]["properties"]["primary"] = True
    for c in ipcs:
        c["properties"].setdefault("primary", False)
    # ARM owns these: keep what it had, ignore what the client sent.
    old = (existing or {}).get("properties", {})
    for key in ("macAddress", "virtualMachine", "primary"):
        props.pop(key, None)
        if key in old:
            props[key] = copy.deepcopy(old[key])
    props.setdefault("enableAcceleratedNetworking", False)
    props.setdefault("enableIPForwarding", False)
    linked, taken = set(), set()
    if ref_id(props.get("networkSecurityGroup")):
        _require(emu, props["networkSecurityGroup"]["id"], doc["id"])
        linked.add(LinkedAccess("Microsoft.Network/networkSecurityGroups/join/action",
                                props["networkSecurityGroup"]["id"]))
    for c in ipcs:
        p = c["properties"]
        assign_ip(emu, c["id"], p, taken)
        if ref_id(p.get("subnet")):
            linked.add(LinkedAccess("Microsoft.Network/virtualNetworks/subnets/join/action",
                                    ref_id(p["subnet"])))
        for pool in p.get("loadBalancerBackendAddressPools") or []:
            _require(emu, pool["id"], c["id"])
            linked.add(LinkedAccess(
                "Microsoft.Network/loadBalancers/backendAddressPools/join/action", pool["id"]))
        if ref_id(p.get("publicIPAddress")):
            linked.add(LinkedAccess("Microsoft.Network/publicIPAddresses/join/action",
                                    ref_id(p["publicIPAddress"])))
    return sorted(linked)


def _check_lb(emu: EmulatorHost, doc: dict) -> list[LinkedAccess]:
    props = doc["properties"]
    linked, taken = set(), set()
    for fe in props.get("frontendIPConfigurations") or []:
        p = fe["properties"]
        if ref_id(p.get("subnet")):
            assign_ip(emu, fe["id"], p, taken)
            linked.add(LinkedAccess("Microsoft.Network/virtualNetworks/subnets/join/action",
                                    ref_id(p["subnet"])))
        if ref_id(p.get("publicIPAddress")):
            linked.add(LinkedAccess("Microsoft.Network/publicIPAddresses/join/action",
                                    ref_id(p["publicIPAddress"])))
    names = {coll: {lower(c["id"]) for c in props.get(coll) or []} for coll in CHILDREN[LB.lower()]}
    for rule in props.get("loadBalancingRules") or []:
        p = rule["properties"]
        for key, coll in (
            ("frontendIPConfiguration", "frontendIPConfigurations"),
            ("backendAddressPool", "backendAddressPools"),
            ("probe", "probes"),
        ):
            ref = ref_id(p.get(key))
            if ref and lower(ref) not in names[coll]:
                raise bad_request(
                    "InvalidResourceReference",
                    f"Resource {ref} referenced by resource {rule['id']} was not found.",
                )
        if str(p.get("protocol", "")).lower() == "all" and (
            p.get("frontendPort") or p.get("backendPort")
        ):
            raise bad_request(
                "LoadBalancingRuleHaPortsMustHaveZeroPorts",
                f"Rule {rule['id']} with protocol All (HA ports) needs ports 0.",
            )
        p.setdefault("enableFloatingIP", False)
    return sorted(linked)


def check_delete(emu: EmulatorHost, doc: dict) -> None:
    t = doc["type"].lower()
    if t == NIC.lower() and ref_id(doc.get("properties", {}).get("virtualMachine")):
        vm = doc["properties"]["virtualMachine"]["id"]
        if vm in emu.store:
            raise bad_request(
                "NicInUse",
                f"Network Interface {doc['id']} is used by existing resource {vm}. "
                f"In order to delete the network interface, it must be dissociated "
                f"from the resource.",
            )
    if t == NSG.lower():
        for nic in emu.store.raw_of_type(NIC):
            if lower(ref_id(nic["properties"].get("networkSecurityGroup")) or "") == lower(
                doc["id"]
            ):
                raise bad_request(
                    "InUseNetworkSecurityGroupCannotBeDeleted",
                    f"Network security group {doc['id']} cannot be deleted because "
                    f"it is in use by {nic['id']}.",
                )
    if t == VNET.lower():
        for sn in doc.get("properties", {}).get("subnets", []):
            users = ip_users(emu, sn["id"])
            if users:
                raise bad_request(
                    "InUseSubnetCannotBeDeleted",
                    f"Subnet {sn['name']} is in use by {next(iter(users.values()))} "
                    f"and cannot be deleted.",
                )


# ---------------------------------------------------------------------------- computed views
def view(emu: EmulatorHost, doc: dict) -> dict:
    t = doc["type"].lower()
    if t == LB.lower():
        members = pool_members(emu)
        for pool in doc.get("properties", {}).get("backendAddressPools", []):
            refs = [{"id": i} for i in members.get(lower(pool["id"]), [])]
            if refs:
                pool.setdefault("properties", {})["backendIPConfigurations"] = refs
    elif t == VNET.lower():
        for sn in doc.get("properties", {}).get("subnets", []):
            users = [
                i for i in ip_users(emu, sn["id"]).values() if "/networkinterfaces/" in lower(i)
            ]
            if users:
                sn.setdefault("properties", {})["ipConfigurations"] = [{"id": i} for i in users]
    return doc


def child_view(doc: dict, coll: str, name: str | None):
    items = doc.get("properties", {}).get(coll)
    if items is None and coll not in CHILDREN.get(doc["type"].lower(), []):
        return None
    items = items or []
    if name is None:
        return items
    for item in items:
        if item.get("name", "").lower() == name.lower():
            return item
    raise not_found(f"{doc['id']}/{coll}/{name}")


