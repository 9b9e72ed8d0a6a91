"""Microsoft.Network: virtual networks/subnets, NSGs, NICs, load balancers, rule health.

Documents are stored as ARM returns them. Back-references that ARM computes (a pool's
backendIPConfigurations, a subnet's ipConfigurations) are added on read, never stored.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import TYPE_CHECKING

from emulator.errors import bad_request, not_found
from emulator.state import lower, new_etag, parent_id

if TYPE_CHECKING:
    from emulator.server import Emulator

VNET = "Microsoft.Network/virtualNetworks"
NSG = "Microsoft.Network/networkSecurityGroups"
NIC = "Microsoft.Network/networkInterfaces"
LB = "Microsoft.Network/loadBalancers"
PIP = "Microsoft.Network/publicIPAddresses"

# child collections of each top-level type -> child type segment
CHILDREN = {
    VNET.lower(): ["subnets", "virtualNetworkPeerings"],
    NSG.lower(): ["securityRules", "defaultSecurityRules"],
    NIC.lower(): ["ipConfigurations"],
    LB.lower(): [
        "frontendIPConfigurations",
        "backendAddressPools",
        "loadBalancingRules",
        "probes",
        "inboundNatRules",
        "outboundRules",
        "inboundNatPools",
    ],
}
TYPES = {t.lower(): t for t in (VNET, NSG, NIC, LB, PIP)}


def _ref_id(ref) -> str | None:
    return ref.get("id") if isinstance(ref, dict) else None


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


# ---------------------------------------------------------------------------- address space
def find_subnet(emu: Emulator, subnet_id: str) -> tuple[dict, dict] | None:
    vnet = emu.store.raw(parent_id(subnet_id))
    if vnet is None:
        return None
    for sn in vnet.get("properties", {}).get("subnets", []):
        if lower(sn.get("id", "")) == lower(subnet_id):
            return vnet, sn
    return None


def subnet_network(subnet: dict) -> ipaddress.IPv4Network:
    p = subnet.get("properties", {})
    prefix = p.get("addressPrefix") or (p.get("addressPrefixes") or [None])[0]
    return ipaddress.ip_network(prefix, strict=False)


def reserved(net: ipaddress.IPv4Network) -> set:
    """Azure reserves network, .1 gateway, .2-.3 DNS, and broadcast."""
    base = int(net.network_address)
    return {ipaddress.ip_address(base + i) for i in range(4)} | {net.broadcast_address}


def _index(emu: Emulator) -> dict:
    """Derived lookups over all NICs and LBs, rebuilt only when the store changed.

    "ips": lower subnet id -> {private IP: owner id}; "pools": lower pool id -> ipconfig ids.
    """
    cached = getattr(emu, "_net_index", None)
    if cached is not None and cached[0] == emu.store.version:
        return cached[1]
    ips: dict[str, dict] = {}
    pools: dict[str, list[str]] = {}
    for doc in emu.store.raw_of_type(NIC):
        for ipc in doc.get("properties", {}).get("ipConfigurations", []):
            p = ipc.get("properties", {})
            sid = _ref_id(p.get("subnet"))
            if sid and p.get("privateIPAddress"):
                ips.setdefault(lower(sid), {})[p["privateIPAddress"].split("/")[0]] = ipc.get("id")
            for pool in p.get("loadBalancerBackendAddressPools") or []:
                pools.setdefault(lower(pool["id"]), []).append(ipc["id"])
    for doc in emu.store.raw_of_type(LB):
        for fe in doc.get("properties", {}).get("frontendIPConfigurations", []):
            p = fe.get("properties", {})
            sid = _ref_id(p.get("subnet"))
            if sid and p.get("privateIPAddress"):
                ips.setdefault(lower(sid), {})[p["privateIPAddress"]] = fe.get("id")
    index = {"ips": ips, "pools": pools}
    emu._net_index = (emu.store.version, index)
    return index


def ip_users(emu: Emulator, subnet_id: str) -> dict:
    """Private IP -> owner (ipconfig / frontend id) of everything allocated in a subnet."""
    return dict(_index(emu)["ips"].get(lower(subnet_id), {}))


def assign_ip(emu: Emulator, owner_id: str, props: dict, taken_here: set) -> None:
    """Validate a static private IP or allocate the lowest free one (Dynamic)."""
    subnet_id = _ref_id(props.get("subnet"))
    if not subnet_id:
        return
    found = find_subnet(emu, subnet_id)
    if found is None:
        raise bad_request(
            "InvalidResourceReference",
            f"Resource {subnet_id} referenced by resource {owner_id} was not found.",
        )
    net = subnet_network(found[1])
    users = {
        ip: who
        for ip, who in ip_users(emu, subnet_id).items()
        if not lower(who or "").startswith(lower(parent_id(owner_id)) + "/")
    }
    method = props.get("privateIPAllocationMethod") or (
        "Static" if props.get("privateIPAddress") else "Dynamic"
    )
    props["privateIPAllocationMethod"] = method
    props.setdefault("privateIPAddressVersion", "IPv4")
    ip = props.get("privateIPAddress")
    if method == "Static" or ip:
        if not ip:
            raise bad_request(
                "PrivateIPAddressIsRequired",
                f"{owner_id}: a Static allocation needs privateIPAddress.",
            )
        addr = ipaddress.ip_address(ip.split("/")[0])
        if addr not in net:
            raise bad_request(
                "PrivateIPAddressNotInSubnet",
                f"IP configuration {owner_id} is using the private IP address {ip} "
                f"which does not belong to the range of subnet {subnet_id} ({net}).",
            )
        if addr in reserved(net):
            raise bad_request(
                "PrivateIPAddressInReservedRange",
                f"Private static IP address {ip} falls within reserved IP range of "
                f"subnet prefix {net}.",
            )
        if str(addr) in users or str(addr) in taken_here:
            raise bad_request(
                "PrivateIPAddressInUse",
                f"IP configuration {owner_id} is using the private IP address {ip} "
                f"which is already allocated to resource {users.get(str(addr), owner_id)}.",
            )
        taken_here.add(str(addr))
        return
    busy = set(users) | taken_here | {str(a) for a in reserved(net)}
    for host in net.hosts():
        if str(host) not in busy:
            props["privateIPAddress"] = str(host)
            taken_here.add(str(host))
            return
    raise bad_request(
        "SubnetIsFull",
        f"Subnet {found[1].get('name')} with address prefix {net} does not have "
        f"enough capacity for 1 IP addresses.",
    )


def _require(emu: Emulator, ref_id: str, by: str) -> None:
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
    emu: Emulator, rtype: str, rid: str, body: dict, existing: dict | None
) -> tuple[dict, list[str]]:
    """Validate a PUT and build the document to store; also the linked RBAC actions."""
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
    linked: list[str] = []
    t = doc["type"].lower()
    if t == VNET.lower():
        _check_vnet(emu, doc, existing)
    elif t == NIC.lower():
        linked = _check_nic(emu, doc, existing)
    elif t == LB.lower():
        linked = _check_lb(emu, doc)
    return doc, linked


def _check_vnet(emu: Emulator, doc: dict, existing: dict | None) -> None:
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


def _check_nic(emu: Emulator, doc: dict, existing: dict | None) -> list[str]:
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
    if _ref_id(props.get("networkSecurityGroup")):
        _require(emu, props["networkSecurityGroup"]["id"], doc["id"])
        linked.add("Microsoft.Network/networkSecurityGroups/join/action")
    for c in ipcs:
        p = c["properties"]
        assign_ip(emu, c["id"], p, taken)
        if _ref_id(p.get("subnet")):
            linked.add("Microsoft.Network/virtualNetworks/subnets/join/action")
        for pool in p.get("loadBalancerBackendAddressPools") or []:
            _require(emu, pool["id"], c["id"])
            linked.add("Microsoft.Network/loadBalancers/backendAddressPools/join/action")
        if _ref_id(p.get("publicIPAddress")):
            linked.add("Microsoft.Network/publicIPAddresses/join/action")
    return sorted(linked)


def _check_lb(emu: Emulator, doc: dict) -> list[str]:
    props = doc["properties"]
    linked, taken = set(), set()
    for fe in props.get("frontendIPConfigurations") or []:
        p = fe["properties"]
        if _ref_id(p.get("subnet")):
            assign_ip(emu, fe["id"], p, taken)
            linked.add("Microsoft.Network/virtualNetworks/subnets/join/action")
        if _ref_id(p.get("publicIPAddress")):
            linked.add("Microsoft.Network/publicIPAddresses/join/action")
    names = {coll: {lower(c["id"]) for c in props.get(coll) or []} for coll in CHILDREN[LB.lower()]}
    for rule in props.get("loadBalancingRules") or []:
        p = rule["properties"]
        for key, coll in (
            ("frontendIPConfiguration", "frontendIPConfigurations"),
            ("backendAddressPool", "backendAddressPools"),
            ("probe", "probes"),
        ):
            ref = _ref_id(p.get(key))
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


def check_delete(emu: Emulator, doc: dict) -> None:
    t = doc["type"].lower()
    if t == NIC.lower() and _ref_id(doc.get("properties", {}).get("virtualMachine")):
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
            if lower(_ref_id(nic["properties"].get("networkSecurityGroup")) or "") == lower(
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
def view(emu: Emulator, doc: dict) -> dict:
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


def pool_members(emu: Emulator) -> dict[str, list[str]]:
    """Lower pool id -> ipconfig ids of NICs that name the pool (NIC-based pools)."""
    return _index(emu)["pools"]


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


# ---------------------------------------------------------------------------- rule health
def _ipconfig_vm_running(emu: Emulator, ipconfig_id: str | None) -> bool | None:
    if not ipconfig_id:
        return None
    nic = emu.store.raw(parent_id(ipconfig_id))
    vm = _ref_id((nic or {}).get("properties", {}).get("virtualMachine"))
    if not vm:
        return None
    return emu.power_state(vm) == "running"


def _ip_of(emu: Emulator, ipconfig_id: str) -> str | None:
    nic = emu.store.raw(parent_id(ipconfig_id))
    for ipc in (nic or {}).get("properties", {}).get("ipConfigurations", []):
        if lower(ipc["id"]) == lower(ipconfig_id):
            return ipc["properties"].get("privateIPAddress")
    return None


def rule_health(emu: Emulator, lb_id: str, rule_name: str) -> dict:
    """Body of POST .../loadBalancingRules/{rule}/health.

    Base: the scenario's `health` entry for the rule, else every pool member Up. Then power state
    wins: a member whose VM is not running is Down; for rules in `emulator.mirrors` only the
    current primary is Up (failover moves the primary, with no fail-back).
    """
    lb = emu.store.get(lb_id)
    if lb is None:
        raise not_found(lb_id)
    rule = child_view(lb, "loadBalancingRules", rule_name)
    rule_id = rule["id"]
    entry = emu.health.get(lower(rule_id))
    if entry is not None:
        body = copy.deepcopy(entry)
        addrs = body.setdefault("loadBalancerBackendAddresses", [])
    else:
        pool = lower(_ref_id(rule["properties"].get("backendAddressPool")) or "")
        addrs = [
            {
                "ipAddress": _ip_of(emu, i),
                "networkInterfaceIPConfigurationId": i,
                "state": "Up",
                "reason": "Up_Probe_Success",
            }
            for i in pool_members(emu).get(pool, [])
        ]
        body = {"loadBalancerBackendAddresses": addrs, "loadBalancingRuleName": rule["name"]}
    primary = emu.mirror_primary_for(rule_id)
    for a in addrs:
        ipc = a.get("networkInterfaceIPConfigurationId")
        if primary is not None and ipc:
            up = lower(ipc) == lower(primary) and _ipconfig_vm_running(emu, ipc) is not False
        else:
            up = a.get("state", "Up") == "Up" and _ipconfig_vm_running(emu, ipc) is not False
        state = "Up" if up else "Down"
        if a.get("state") != state or not a.get("reason"):
            a["reason"] = "Up_Probe_Success" if up else "Down_Probe_Failure"
        a["state"] = state
    body["up"] = sum(1 for a in addrs if a["state"] == "Up")
    body["down"] = len(addrs) - body["up"]
    return body
