"""A generated estate for the benchmarks: raw ARM documents as Resource Graph or ARM return them.

Each ILB has 2-5 internal frontends (some with a Floating IP rule, every tenth ILB also a
public frontend), one or two TCP rules per frontend, and NIC-based pools of 2-4 VMs drawn from
the ILB's own group of VMs (mirror-like; every 25th ILB has IP-based pools). Every VM has two
NICs (the second is a data NIC in no pool); half the rules have health (one member Up). One
VNet per 250 VMs, with a /24 for primary NICs and frontends and a second /24 for data NICs.
The same seed gives the same estate.
"""

from __future__ import annotations

import random

SUB = "00000000-0000-0000-0000-00000000beef"
SIZES = [("Standard_D4s_v3", 2), ("Standard_D8s_v3", 4), ("Standard_D16s_v3", 8)]
VMS_PER_VNET = 250
RG = f"/subscriptions/{SUB}/resourceGroups/rg-bench/providers"
NET = f"{RG}/Microsoft.Network"


def generate(n_vms: int = 10_000, n_lbs: int = 1_000, seed: int = 42):
    """(resources, skus, health) of an estate of `n_vms` VMs and `n_lbs` internal LBs."""
    return Estate(n_vms, n_lbs, seed).build()


def _vnet_id(v: int) -> str:
    return f"{NET}/virtualNetworks/vnet{v}"


def _primary_ip(i: int) -> str:
    v, base = divmod(i, VMS_PER_VNET)
    return f"10.{v // 256}.{v % 256}.{4 + base}"


def _data_ip(i: int) -> str:
    v, base = divmod(i, VMS_PER_VNET)
    return f"10.{128 + v // 256}.{v % 256}.{4 + base}"


class Estate:
    def __init__(self, n_vms: int, n_lbs: int, seed: int) -> None:
        self.n_vms, self.n_lbs = n_vms, n_lbs
        self.rnd = random.Random(seed)
        self.health: list[dict] = []
        self.nics: dict[int, list[dict]] = {}  # VM index -> its two NICs

    def build(self) -> tuple[list[dict], list[dict], list[dict]]:
        vnets = [self.vnet(v) for v in range(max(1, self.n_vms // VMS_PER_VNET))]
        vms = [self.vm(i) for i in range(self.n_vms)]
        group = max(2, self.n_vms // self.n_lbs)
        lbs = [self.load_balancer(k, group) for k in range(self.n_lbs)]
        nics = [nic for pair in self.nics.values() for nic in pair]
        return vnets + vms + lbs + nics, self.skus(), self.health

    def vnet(self, v: int) -> dict:
        vid = _vnet_id(v)
        default, data = f"10.{v // 256}.{v % 256}.0/24", f"10.{128 + v // 256}.{v % 256}.0/24"
        return {
            "id": vid,
            "name": f"vnet{v}",
            "type": "Microsoft.Network/virtualNetworks",
            "location": "eastus",
            "properties": {
                "addressSpace": {"addressPrefixes": [default, data]},
                "subnets": [
                    {"id": f"{vid}/subnets/default", "name": "default",
                     "properties": {"addressPrefix": default}},
                    {"id": f"{vid}/subnets/data", "name": "data",
                     "properties": {"addressPrefix": data}},
                ],
            },
        }

    def nic(self, i: int, n: int, vm_id: str) -> dict:
        nid = f"{NET}/networkInterfaces/vm{i}-nic{n}"
        subnet = f"{_vnet_id(i // VMS_PER_VNET)}/subnets/{'default' if n == 0 else 'data'}"
        mac = "-".join(f"{b:02X}" for b in (i // 65536 % 256, i // 256 % 256, i % 256))
        return {
            "id": nid,
            "name": f"vm{i}-nic{n}",
            "type": "Microsoft.Network/networkInterfaces",
            "location": "eastus",
            "tags": {},
            "properties": {
                "primary": n == 0,
                "enableAcceleratedNetworking": True,
                "macAddress": "00-0D-3A-" + mac,
                "networkSecurityGroup": {"id": f"{NET}/networkSecurityGroups/nsg"},
                "virtualMachine": {"id": vm_id},
                "ipConfigurations": [
                    {
                        "id": f"{nid}/ipConfigurations/ipconfig1",
                        "name": "ipconfig1",
                        "properties": {
                            "privateIPAddress": _primary_ip(i) if n == 0 else _data_ip(i),
                            "primary": True,
                            "subnet": {"id": subnet},
                            "loadBalancerBackendAddressPools": [],
                        },
                    }
                ],
            },
        }

    def vm(self, i: int) -> dict:
        vm_id = f"{RG}/Microsoft.Compute/virtualMachines/vm{i}"
        nics = self.nics[i] = [self.nic(i, n, vm_id) for n in range(2)]
        return {
            "id": vm_id,
            "name": f"vm{i}",
            "type": "Microsoft.Compute/virtualMachines",
            "location": "eastus",
            "tags": {"hairpin-calls": "10.200.0.1:1972"} if i % 7 == 0 else {},
            "properties": {
                "hardwareProfile": {"vmSize": SIZES[i % 3][0]},
                "storageProfile": {"osDisk": {"osType": "Linux" if i % 2 else "Windows"}},
                "networkProfile": {
                    "networkInterfaces": [
                        {"id": nics[0]["id"], "properties": {"primary": True}},
                        {"id": nics[1]["id"], "properties": {"primary": False}},
                    ]
                },
                "instanceView": {
                    "statuses": [
                        {"code": "ProvisioningState/succeeded"},
                        {"code": "PowerState/running" if i % 50 else "PowerState/deallocated"},
                    ]
                },
            },
        }

    def load_balancer(self, k: int, group: int) -> dict:
        lb_id = f"{NET}/loadBalancers/ilb{k}"
        members = list(range(k * group, min(self.n_vms, (k + 1) * group)))
        subnet = f"{_vnet_id((members[0] if members else 0) // VMS_PER_VNET)}/subnets/default"
        lb = {"frontendIPConfigurations": [], "backendAddressPools": [], "loadBalancingRules": [],
              "probes": []}
        for f in range(self.rnd.randint(2, 5)):
            fe_id = f"{lb_id}/frontendIPConfigurations/fe{f}"
            lb["frontendIPConfigurations"].append({
                "id": fe_id,
                "name": f"fe{f}",
                "properties": {"privateIPAddress": f"10.{200 + k // 256}.{k % 256}.{f + 1}",
                               "subnet": {"id": subnet}},
            })
            chosen = self.rnd.sample(members, min(len(members), self.rnd.randint(2, 4)))
            pool = self.pool(f"{lb_id}/backendAddressPools/pool{f}", chosen, ip_based=k % 25 == 0)
            lb["backendAddressPools"].append(pool)
            for r in range(self.rnd.randint(1, 2)):
                self.rule(lb, lb_id, f, r, fe_id, pool["id"], chosen)
        if k % 10 == 0:
            self.public_frontend(lb, lb_id, k)
        return {
            "id": lb_id,
            "name": f"ilb{k}",
            "type": "Microsoft.Network/loadBalancers",
            "location": "eastus",
            "sku": {"name": "Standard"},
            "properties": lb,
        }

    def pool(self, pool_id: str, chosen: list[int], *, ip_based: bool) -> dict:
        addresses, backend_cfgs = [], []
        for m in chosen:
            cfg = self.nics[m][0]["properties"]["ipConfigurations"][0]
            if ip_based:
                addresses.append({
                    "name": f"a{m}",
                    "properties": {"ipAddress": cfg["properties"]["privateIPAddress"],
                                   "virtualNetwork": {"id": _vnet_id(m // VMS_PER_VNET)}},
                })
            else:
                cfg["properties"]["loadBalancerBackendAddressPools"].append({"id": pool_id})
                backend_cfgs.append({"id": cfg["id"]})
        return {
            "id": pool_id,
            "name": pool_id.rsplit("/", 1)[1],
            "properties": {"backendIPConfigurations": backend_cfgs,
                           "loadBalancerBackendAddresses": addresses},
        }

    def rule(self, lb: dict, lb_id: str, f: int, r: int, fe_id: str, pool_id: str,
             chosen: list[int]) -> None:
        rule_id = f"{lb_id}/loadBalancingRules/fe{f}-r{r}"
        probe_id = f"{lb_id}/probes/fe{f}-r{r}"
        lb["probes"].append({"id": probe_id, "name": f"fe{f}-r{r}",
                             "properties": {"protocol": "Tcp", "port": 1972 + r}})
        lb["loadBalancingRules"].append({
            "id": rule_id,
            "name": f"fe{f}-r{r}",
            "properties": {
                "frontendIPConfiguration": {"id": fe_id},
                "backendAddressPool": {"id": pool_id},
                "probe": {"id": probe_id},
                "protocol": "Tcp",
                "frontendPort": 1972 + r,
                "backendPort": 1972 + r,
                "enableFloatingIP": self.rnd.random() < 0.1,
            },
        })
        if self.rnd.random() < 0.5:
            self.health.append({"ruleId": rule_id, "response": {
                "loadBalancerBackendAddresses": [self.backend_health(m, m == chosen[0])
                                                 for m in chosen]}})

    def backend_health(self, m: int, up: bool) -> dict:
        cfg = self.nics[m][0]["properties"]["ipConfigurations"][0]
        return {"ipAddress": cfg["properties"]["privateIPAddress"],
                "networkInterfaceIPConfigurationId": cfg["id"], "state": "Up" if up else "Down"}

    def public_frontend(self, lb: dict, lb_id: str, k: int) -> None:
        fe_id = f"{lb_id}/frontendIPConfigurations/public"
        lb["frontendIPConfigurations"].append({
            "id": fe_id,
            "name": "public",
            "properties": {"publicIPAddress": {"id": f"{NET}/publicIPAddresses/pip{k}"}},
        })
        lb["loadBalancingRules"].append({
            "id": f"{lb_id}/loadBalancingRules/public",
            "name": "public",
            "properties": {
                "frontendIPConfiguration": {"id": fe_id},
                "backendAddressPool": {"id": lb["backendAddressPools"][0]["id"]},
                "protocol": "Tcp",
                "frontendPort": 443,
                "backendPort": 443,
                "enableFloatingIP": False,
            },
        })

    def skus(self) -> list[dict]:
        return [
            {
                "resourceType": "virtualMachines",
                "name": name,
                "locations": ["eastus"],
                "capabilities": [
                    {"name": "MaxNetworkInterfaces", "value": str(n)},
                    {"name": "AcceleratedNetworkingEnabled", "value": "True"},
                ],
            }
            for name, n in SIZES
        ]
