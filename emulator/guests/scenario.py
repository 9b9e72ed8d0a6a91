"""The parts of a scenario document the namespace fabric needs: VM NICs with their addresses
and MACs, subnets, and the internal load balancer's rules with their pool members and health.
Read from the raw ARM documents the emulator serves (test and demo asset, not product logic)."""

from __future__ import annotations

import copy
import hashlib
import subprocess
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network


def lower(value: object) -> str:
    return str(value or "").lower()


def _props(doc: dict) -> dict:
    return doc.get("properties") or {}


def subnet_gateway(prefix: IPv4Network) -> IPv4Address:
    return prefix.network_address + 1


@dataclass
class NicAddr:
    ip: IPv4Address
    subnet: IPv4Network
    ipconfig_id: str
    subnet_id: str = ""


@dataclass
class NicPlan:
    id: str
    name: str
    mac: str
    primary: bool
    addresses: list[NicAddr]


@dataclass
class IlbRule:
    id: str
    name: str
    vip: IPv4Address
    protocol: str  # Tcp | Udp | All
    frontend_port: int
    backend_port: int
    floating_ip: bool
    members: list[IPv4Address]  # pool members (all, before health)


@dataclass
class VmState:
    name: str
    index: int
    netns: str
    nics: list[NicPlan] = field(default_factory=list)
    servers: list[subprocess.Popen] = field(default_factory=list)
    running: bool = False
    boot_log: list[dict] = field(default_factory=list)


def _mac_for(nic: dict) -> str:
    mac = _props(nic).get("macAddress")
    if isinstance(mac, str) and len(mac.replace("-", "").replace(":", "")) == 12:
        raw = mac.replace("-", "").replace(":", "").lower()
    else:  # NIC not yet given a MAC: derive one from its ID (00:0d:3a is Azure's prefix)
        raw = "000d3a" + hashlib.sha256(lower(nic.get("id")).encode()).hexdigest()[:6]
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


_CHILDREN = {
    "microsoft.network/virtualnetworks": ["subnets"],
    "microsoft.network/networkinterfaces": ["ipConfigurations"],
    "microsoft.network/loadbalancers": ["frontendIPConfigurations", "backendAddressPools",
                                        "loadBalancingRules", "probes"],
}


def _with_child_ids(doc: dict) -> dict:
    """Scenario files may omit child IDs; ARM (and the emulator) derive them from the name."""
    colls = _CHILDREN.get(lower(doc.get("type")))
    if not colls or not doc.get("id"):
        return doc
    doc = copy.deepcopy(doc)
    for coll in colls:
        for child in _props(doc).get(coll) or []:
            child.setdefault("id", f"{doc['id']}/{coll}/{child.get('name')}")
    return doc


class Scenario:
    """The parts of a scenario document the fabric needs (raw ARM documents)."""

    def __init__(self, doc: dict):
        self.doc = doc
        res = [_with_child_ids(r) for r in doc.get("resources") or []]
        by_type: dict[str, list[dict]] = {}
        for r in res:
            by_type.setdefault(lower(r.get("type")), []).append(r)
        self.subnets: dict[str, IPv4Network] = {}
        for vnet in by_type.get("microsoft.network/virtualnetworks", []):
            for sn in _props(vnet).get("subnets") or []:
                p = _props(sn)
                prefix = p.get("addressPrefix") or (p.get("addressPrefixes") or [None])[0]
                if prefix:
                    self.subnets[lower(sn.get("id"))] = IPv4Network(prefix, strict=False)
        for sn in by_type.get("microsoft.network/virtualnetworks/subnets", []):
            prefix = _props(sn).get("addressPrefix")
            if prefix:
                self.subnets[lower(sn.get("id"))] = IPv4Network(prefix, strict=False)
        self.nics = {lower(n.get("id")): n for n in
                     by_type.get("microsoft.network/networkinterfaces", [])}
        self.vms = {v["name"]: v for v in by_type.get("microsoft.compute/virtualmachines", [])}
        self.lbs = by_type.get("microsoft.network/loadbalancers", [])
        self.health = list(doc.get("health") or [])

    def subnet_of(self, subnet_ref: dict | None, ip: IPv4Address) -> IPv4Network:
        net = self.subnets.get(lower((subnet_ref or {}).get("id")))
        if net is None:  # unknown subnet document: assume the /24 around the address
            net = IPv4Network(f"{ip}/24", strict=False)
        return net

    def nic_plan(self, nic: dict, primary_hint: bool | None = None) -> NicPlan:
        addrs = []
        for cfg in _props(nic).get("ipConfigurations") or []:
            p = _props(cfg)
            if not p.get("privateIPAddress"):
                continue
            ip = IPv4Address(p["privateIPAddress"])
            addrs.append((bool(p.get("primary")), NicAddr(
                ip, self.subnet_of(p.get("subnet"), ip), lower(cfg.get("id")),
                str((p.get("subnet") or {}).get("id") or ""))))
        addrs.sort(key=lambda a: not a[0])  # primary ipconfig first
        primary = primary_hint if primary_hint is not None else bool(_props(nic).get("primary"))
        return NicPlan(lower(nic.get("id")), str(nic.get("name")), _mac_for(nic), primary,
                       [a for _, a in addrs])

    def vm_nics(self, vm: dict, nics: list[dict] | None = None) -> list[NicPlan]:
        """The VM's NICs, primary first then in attach order (eth0, eth1, ...)."""
        refs = (_props(vm).get("networkProfile") or {}).get("networkInterfaces") or []
        hints = {lower(r.get("id")): (r.get("properties") or {}).get("primary") for r in refs}
        if nics is None:
            nics = [self.nics[lower(r.get("id"))] for r in refs
                    if lower(r.get("id")) in self.nics]
        order = {k: i for i, k in enumerate(hints)}
        plans = [self.nic_plan(n, hints.get(lower(n.get("id")))) for n in nics]
        if plans and not any(p.primary for p in plans):
            plans[0].primary = True
        plans.sort(key=lambda p: (not p.primary, order.get(p.id, len(order))))
        return plans

    def ipconfig_ips(self) -> dict[str, IPv4Address]:
        out = {}
        for nic in self.nics.values():
            for cfg in _props(nic).get("ipConfigurations") or []:
                ip = _props(cfg).get("privateIPAddress")
                if ip:
                    out[lower(cfg.get("id"))] = IPv4Address(ip)
        return out

    def ilb_rules(self) -> list[IlbRule]:
        ipcfg = self.ipconfig_ips()
        pool_members: dict[str, list[IPv4Address]] = {}
        for nic in self.nics.values():  # NIC-based pools
            for cfg in _props(nic).get("ipConfigurations") or []:
                ip = _props(cfg).get("privateIPAddress")
                for pool in _props(cfg).get("loadBalancerBackendAddressPools") or []:
                    if ip:
                        pool_members.setdefault(lower(pool.get("id")), []).append(IPv4Address(ip))
        rules = []
        for lb in self.lbs:
            p = _props(lb)
            for pool in p.get("backendAddressPools") or []:  # IP-based pools
                for addr in _props(pool).get("loadBalancerBackendAddresses") or []:
                    ap = _props(addr)
                    ip = ap.get("ipAddress") or ipcfg.get(
                        lower((ap.get("networkInterfaceIPConfiguration") or {}).get("id")))
                    if ip:
                        lst = pool_members.setdefault(lower(pool.get("id")), [])
                        if IPv4Address(str(ip)) not in lst:
                            lst.append(IPv4Address(str(ip)))
            fronts = {lower(f.get("id")): _props(f).get("privateIPAddress")
                      for f in p.get("frontendIPConfigurations") or []}
            for rule in p.get("loadBalancingRules") or []:
                rp = _props(rule)
                vip = fronts.get(lower((rp.get("frontendIPConfiguration") or {}).get("id")))
                if not vip:
                    continue  # public frontend: not an ILB hairpin
                pools = [rp["backendAddressPool"]] if rp.get("backendAddressPool") else []
                pools += rp.get("backendAddressPools") or []
                members: list[IPv4Address] = []
                for pool in pools:
                    for ip in pool_members.get(lower(pool.get("id")), []):
                        if ip not in members:
                            members.append(ip)
                rules.append(IlbRule(lower(rule.get("id")), str(rule.get("name")),
                                     IPv4Address(vip), str(rp.get("protocol", "Tcp")).title(),
                                     int(rp.get("frontendPort") or 0),
                                     int(rp.get("backendPort") or rp.get("frontendPort") or 0),
                                     bool(rp.get("enableFloatingIP")), members))
        return rules

    def healthy(self, rule: IlbRule, health: list[dict]) -> list[IPv4Address]:
        """Members the probe sees Up (all members when the scenario gives no health)."""
        ipcfg = self.ipconfig_ips()
        for entry in health:
            if lower(entry.get("ruleId")) != rule.id:
                continue
            up = set()
            for a in (entry.get("response") or {}).get("loadBalancerBackendAddresses") or []:
                if str(a.get("state", "")).lower() != "up":
                    continue
                ip = a.get("ipAddress") or ipcfg.get(
                    lower(a.get("networkInterfaceIPConfigurationId")))
                if ip:
                    up.add(IPv4Address(str(ip)))
            return [m for m in rule.members if m in up]
        return list(rule.members)
