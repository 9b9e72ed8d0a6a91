"""A tiny builder of raw ARM documents for risk/topology tests (shapes as ARM GET returns them)."""

from __future__ import annotations

import copy
from typing import Any

from shared.core.topology import topology_from_snapshot

SUB = "00000000-0000-0000-0000-00000000abcd"


class EstateBuilder:
    def __init__(
        self, subscription: str = SUB, resource_group: str = "rg-test", location: str = "eastus"
    ) -> None:
        self.sub = subscription
        self.rg = resource_group
        self.location = location
        self.vnets: dict[str, dict] = {}
        self.nics: dict[str, dict] = {}
        self.vms: dict[str, dict] = {}
        self.lbs: dict[str, dict] = {}
        self.skus: dict[str, dict] = {}
        self.health_entries: dict[str, dict] = {}
        self.sku("Standard_D4s_v3", max_nics=2, accelerated=True)

    # ----------------------------------------------------------------- ids
    def net_id(self, kind: str, name: str) -> str:
        return f"{self.group_id}/providers/Microsoft.Network/{kind}/{name}"

    def vm_id(self, name: str) -> str:
        return f"{self.group_id}/providers/Microsoft.Compute/virtualMachines/{name}"

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{self.rg}"

    def subnet_id(self, vnet: str = "vnet1", subnet: str = "default") -> str:
        return f"{self.net_id('virtualNetworks', vnet)}/subnets/{subnet}"

    def ipconfig_id(self, nic: str, cfg: str = "ipconfig1") -> str:
        return f"{self.net_id('networkInterfaces', nic)}/ipConfigurations/{cfg}"

    def lb_child(self, lb: str, kind: str, name: str) -> str:
        return f"{self.net_id('loadBalancers', lb)}/{kind}/{name}"

    def rule_id(self, lb: str, rule: str) -> str:
        return self.lb_child(lb, "loadBalancingRules", rule)

    def frontend_id(self, lb: str, fe: str) -> str:
        return self.lb_child(lb, "frontendIPConfigurations", fe)

    # ----------------------------------------------------------------- resources
    def sku(
        self, name: str, max_nics: int | None = 2, accelerated: bool | None = True
    ) -> EstateBuilder:
        caps = [{"name": "vCPUs", "value": "4"}]
        if max_nics is not None:
            caps.append({"name": "MaxNetworkInterfaces", "value": str(max_nics)})
        if accelerated is not None:
            caps.append({"name": "AcceleratedNetworkingEnabled", "value": str(accelerated)})
        self.skus[name] = {
            "resourceType": "virtualMachines",
            "name": name,
            "tier": "Standard",
            "locations": [self.location],
            "capabilities": caps,
            "restrictions": [],
        }
        return self

    def vnet(
        self,
        name: str = "vnet1",
        prefix: str = "10.0.0.0/16",
        subnets: dict[str, str] | None = None,
    ) -> str:
        subnets = subnets or {"default": "10.0.1.0/24"}
        vid = self.net_id("virtualNetworks", name)
        self.vnets[name] = {
            "id": vid,
            "name": name,
            "type": "Microsoft.Network/virtualNetworks",
            "location": self.location,
            "properties": {
                "addressSpace": {"addressPrefixes": [prefix]},
                "subnets": [
                    {
                        "id": f"{vid}/subnets/{s}",
                        "name": s,
                        "type": "Microsoft.Network/virtualNetworks/subnets",
                        "properties": {"addressPrefix": p, "ipConfigurations": []},
                    }
                    for s, p in subnets.items()
                ],
            },
        }
        return vid

    def nic(
        self,
        name: str,
        ips: list[str],
        vnet: str = "vnet1",
        subnet: str = "default",
        primary: bool = True,
        accelerated: bool = True,
        tags: dict | None = None,
        vm: str | None = None,
    ) -> str:
        nid = self.net_id("networkInterfaces", name)
        configs = []
        for i, ip in enumerate(ips):
            configs.append(
                {
                    "id": self.ipconfig_id(name, f"ipconfig{i + 1}"),
                    "name": f"ipconfig{i + 1}",
                    "properties": {
                        "privateIPAddress": ip,
                        "privateIPAllocationMethod": "Static",
                        "subnet": {"id": self.subnet_id(vnet, subnet)},
                        "primary": i == 0,
                        "loadBalancerBackendAddressPools": [],
                    },
                }
            )
        doc = {
            "id": nid,
            "name": name,
            "type": "Microsoft.Network/networkInterfaces",
            "location": self.location,
            "tags": dict(tags or {}),
            "properties": {
                "ipConfigurations": configs,
                "primary": primary,
                "enableAcceleratedNetworking": accelerated,
                "enableIPForwarding": False,
                "macAddress": "00-0D-3A-00-00-%02X" % (len(self.nics) % 256),
                "networkSecurityGroup": {"id": self.net_id("networkSecurityGroups", "nsg1")},
            },
        }
        if vm:
            doc["properties"]["virtualMachine"] = {"id": self.vm_id(vm)}
        self.nics[name] = doc
        return nid

    def vm(
        self,
        name: str,
        ip: str | None = None,
        *,
        vnet: str = "vnet1",
        subnet: str = "default",
        size: str | None = "Standard_D4s_v3",
        os_type: str | None = "Windows",
        power: str | None = "running",
        tags: dict | None = None,
        extra_nics: list[str] = (),
        accelerated: bool = True,
    ) -> str:
        nic_name = f"{name}-nic"
        if ip is not None:
            self.nic(nic_name, [ip], vnet, subnet, accelerated=accelerated, vm=name)
        props: dict[str, Any] = {
            "hardwareProfile": {"vmSize": size} if size else {},
            "storageProfile": {"osDisk": {"osType": os_type}} if os_type else {},
            "networkProfile": {
                "networkInterfaces": (
                    [
                        {
                            "id": self.net_id("networkInterfaces", nic_name),
                            "properties": {"primary": True},
                        }
                    ]
                    if ip is not None
                    else []
                )
                + [
                    {"id": self.net_id("networkInterfaces", n), "properties": {"primary": False}}
                    for n in extra_nics
                ]
            },
        }
        if power is not None:
            props["instanceView"] = {
                "statuses": [
                    {"code": "ProvisioningState/succeeded"},
                    {"code": f"PowerState/{power}"},
                ]
            }
        self.vms[name] = {
            "id": self.vm_id(name),
            "name": name,
            "type": "Microsoft.Compute/virtualMachines",
            "location": self.location,
            "tags": dict(tags or {}),
            "properties": props,
        }
        for n in extra_nics:
            self.nics[n]["properties"]["virtualMachine"] = {"id": self.vm_id(name)}
        return self.vm_id(name)

    def lb(
        self,
        name: str = "ilb1",
        frontends: dict[str, str] | None = None,
        *,
        sku: str = "Standard",
        public: dict[str, str] | None = None,
        vnet: str = "vnet1",
        subnet: str = "default",
    ) -> str:
        frontends = frontends or {"fe1": "10.0.1.100"}
        fes = [
            {
                "id": self.frontend_id(name, fe),
                "name": fe,
                "properties": {
                    "privateIPAddress": ip,
                    "privateIPAllocationMethod": "Static",
                    "subnet": {"id": self.subnet_id(vnet, subnet)},
                },
            }
            for fe, ip in frontends.items()
        ]
        for fe, pip in (public or {}).items():
            fes.append(
                {
                    "id": self.frontend_id(name, fe),
                    "name": fe,
                    "properties": {
                        "publicIPAddress": {"id": self.net_id("publicIPAddresses", pip)}
                    },
                }
            )
        self.lbs[name] = {
            "id": self.net_id("loadBalancers", name),
            "name": name,
            "type": "Microsoft.Network/loadBalancers",
            "location": self.location,
            "sku": {"name": sku},
            "properties": {
                "frontendIPConfigurations": fes,
                "backendAddressPools": [],
                "loadBalancingRules": [],
                "probes": [],
                "inboundNatRules": [],
            },
        }
        return self.lbs[name]["id"]

    def _pool(self, lb: str, pool: str) -> dict:
        pools = self.lbs[lb]["properties"]["backendAddressPools"]
        for p in pools:
            if p["name"] == pool:
                return p
        doc = {
            "id": self.lb_child(lb, "backendAddressPools", pool),
            "name": pool,
            "properties": {"backendIPConfigurations": [], "loadBalancerBackendAddresses": []},
        }
        pools.append(doc)
        return doc

    def rule(
        self,
        lb: str,
        name: str,
        frontend: str,
        pool: str,
        frontend_port: int = 1972,
        backend_port: int | None = None,
        *,
        protocol: str = "Tcp",
        floating: bool = False,
        probe_port: int | None = 80,
    ) -> str:
        self._pool(lb, pool)
        props = self.lbs[lb]["properties"]
        rule = {
            "id": self.rule_id(lb, name),
            "name": name,
            "properties": {
                "frontendIPConfiguration": {"id": self.frontend_id(lb, frontend)},
                "backendAddressPool": {"id": self.lb_child(lb, "backendAddressPools", pool)},
                "protocol": protocol,
                "frontendPort": frontend_port,
                "backendPort": frontend_port if backend_port is None else backend_port,
                "enableFloatingIP": floating,
            },
        }
        if probe_port is not None:
            probe_id = self.lb_child(lb, "probes", f"probe-{name}")
            props["probes"].append(
                {
                    "id": probe_id,
                    "name": f"probe-{name}",
                    "properties": {"protocol": "Tcp", "port": probe_port},
                }
            )
            rule["properties"]["probe"] = {"id": probe_id}
        props["loadBalancingRules"].append(rule)
        return rule["id"]

    def member(
        self,
        lb: str,
        pool: str,
        vm_or_nic: str,
        *,
        nic_side: bool = True,
        pool_side: bool = True,
        cfg: str = "ipconfig1",
    ) -> None:
        """NIC-based membership of a VM's NIC (`vm1` -> `vm1-nic`), from either or both sides."""
        nic = vm_or_nic if vm_or_nic in self.nics else f"{vm_or_nic}-nic"
        pool_doc = self._pool(lb, pool)
        cfg_id = self.ipconfig_id(nic, cfg)
        if nic_side:
            for c in self.nics[nic]["properties"]["ipConfigurations"]:
                if c["id"] == cfg_id:
                    c["properties"]["loadBalancerBackendAddressPools"].append(
                        {"id": pool_doc["id"]}
                    )
        if pool_side:
            pool_doc["properties"]["backendIPConfigurations"].append({"id": cfg_id})

    def ip_member(self, lb: str, pool: str, ip: str, vnet: str | None = "vnet1") -> None:
        """IP-based pool entry (Standard LB): address + virtual network, no NIC reference."""
        entry: dict[str, Any] = {"name": f"addr-{ip}", "properties": {"ipAddress": ip}}
        if vnet is not None:
            entry["properties"]["virtualNetwork"] = {"id": self.net_id("virtualNetworks", vnet)}
        self._pool(lb, pool)["properties"]["loadBalancerBackendAddresses"].append(entry)

    def health(self, lb: str, rule: str, states: dict[str, str]) -> None:
        """Per-rule health: {vm name or IP: "Up"/"Down"}."""
        backends = []
        for who, state in states.items():
            if who in self.vms:
                nic = self.nics[f"{who}-nic"]
                cfg = nic["properties"]["ipConfigurations"][0]
                backends.append(
                    {
                        "ipAddress": cfg["properties"]["privateIPAddress"],
                        "networkInterfaceIPConfigurationId": cfg["id"],
                        "state": state,
                        "reason": f"{state}_Probe",
                    }
                )
            else:
                backends.append({"ipAddress": who, "state": state, "reason": f"{state}_Probe"})
        rid = self.rule_id(lb, rule)
        self.health_entries[rid] = {
            "ruleId": rid,
            "response": {
                "up": sum(1 for b in backends if b["state"] == "Up"),
                "down": sum(1 for b in backends if b["state"] != "Up"),
                "loadBalancerBackendAddresses": backends,
            },
        }

    # ----------------------------------------------------------------- output
    def resources(self) -> list[dict]:
        return copy.deepcopy(
            list(self.vnets.values())
            + list(self.nics.values())
            + list(self.lbs.values())
            + list(self.vms.values())
        )

    def snapshot(self) -> dict:
        return {
            "resources": self.resources(),
            "skus": copy.deepcopy(list(self.skus.values())),
            "health": copy.deepcopy(list(self.health_entries.values())),
        }

    def topology(self):

        return topology_from_snapshot(self.snapshot())


def mirror_pair(
    os_type: str = "Windows",
    primary: str = "vm1",
    *,
    health: bool = True,
    tags1: dict | None = None,
) -> EstateBuilder:
    """Two VMs behind one ILB frontend (a mirror VIP), primary healthy."""
    b = EstateBuilder()
    b.vnet()
    b.vm("vm1", "10.0.1.10", os_type=os_type, tags=tags1)
    b.vm("vm2", "10.0.1.20", os_type=os_type)
    b.lb("ilb1", {"fe1": "10.0.1.100"})
    b.rule("ilb1", "r1", "fe1", "pool1", 1972)
    b.member("ilb1", "pool1", "vm1")
    b.member("ilb1", "pool1", "vm2")
    if health:
        b.health(
            "ilb1",
            "r1",
            {
                "vm1": "Up" if primary == "vm1" else "Down",
                "vm2": "Up" if primary == "vm2" else "Down",
            },
        )
    return b
