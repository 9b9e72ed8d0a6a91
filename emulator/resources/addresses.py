"""Microsoft.Network address space: subnets, reserved addresses, who holds which private IP
(indexed per store version), and static/dynamic IP assignment."""

from __future__ import annotations

import ipaddress

from emulator.errors import bad_request
from emulator.resources.types import LB, NIC, ref_id
from emulator.state import EmulatorHost, lower, parent_id


# ---------------------------------------------------------------------------- address space
def find_subnet(emu: EmulatorHost, subnet_id: str) -> tuple[dict, dict] | None:
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


def network_index(emu: EmulatorHost) -> dict:
    """Derived lookups over all NICs and LBs, rebuilt only when the store changed.

    "ips": lower subnet id -> {private IP: owner id}; "pools": lower pool id -> ipconfig ids.
    """
    cached = emu.net_index
    if cached is not None and cached[0] == emu.store.version:
        return cached[1]
    ips: dict[str, dict] = {}
    pools: dict[str, list[str]] = {}
    for doc in emu.store.raw_of_type(NIC):
        for ipc in doc.get("properties", {}).get("ipConfigurations", []):
            p = ipc.get("properties", {})
            sid = ref_id(p.get("subnet"))
            if sid and p.get("privateIPAddress"):
                ips.setdefault(lower(sid), {})[p["privateIPAddress"].split("/")[0]] = ipc.get("id")
            for pool in p.get("loadBalancerBackendAddressPools") or []:
                pools.setdefault(lower(pool["id"]), []).append(ipc["id"])
    for doc in emu.store.raw_of_type(LB):
        for fe in doc.get("properties", {}).get("frontendIPConfigurations", []):
            p = fe.get("properties", {})
            sid = ref_id(p.get("subnet"))
            if sid and p.get("privateIPAddress"):
                ips.setdefault(lower(sid), {})[p["privateIPAddress"]] = fe.get("id")
    index = {"ips": ips, "pools": pools}
    emu.net_index = (emu.store.version, index)
    return index


def ip_users(emu: EmulatorHost, subnet_id: str) -> dict:
    """Private IP -> owner (ipconfig / frontend id) of everything allocated in a subnet."""
    return dict(network_index(emu)["ips"].get(lower(subnet_id), {}))


def assign_ip(emu: EmulatorHost, owner_id: str, props: dict, taken_here: set) -> None:
    """Validate a static private IP or allocate the lowest free one (Dynamic)."""
    subnet_id = ref_id(props.get("subnet"))
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
        _check_static(owner_id, ip, net, subnet_id, users, taken_here)
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


def _check_static(owner_id: str, ip: str | None, net, subnet_id: str, users: dict,
                  taken_here: set) -> None:
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


def pool_members(emu: EmulatorHost) -> dict[str, list[str]]:
    """Lower pool id -> ipconfig ids of NICs that name the pool (NIC-based pools)."""
    return network_index(emu)["pools"]
