"""Pure: the immutable resource types of the estate model (IP configurations, NICs, VMs,
subnets and VNets, load balancers with their frontends, rules, probes and pools, SKUs and rule
health). Each keeps the ID as ARM spelled it in `id` and its comparison form in `key`."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from shared.core import ipam
from shared.core.arm_docs import tags_mark_managed
from shared.core.topology.readers import vnet_of_subnet
from shared.core.vocab import HealthSource, PowerState

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class IpConfig:
    id: str
    key: str
    name: str
    nic_key: str
    private_ip: (
        str | None
    )  # canonical text ("10.0.1.10"); ipaddress objects only where math is done
    subnet_id: str | None
    subnet_key: str | None
    primary: bool | None
    # NIC-side pool references (ipConfiguration.loadBalancerBackendAddressPools).
    pool_keys: tuple[str, ...] = ()

    @property
    def vnet_key(self) -> str | None:
        return vnet_of_subnet(self.subnet_key)


@dataclass(frozen=True, slots=True)
class Nic:
    id: str
    key: str
    name: str
    location: str | None
    tags: Mapping[str, str]
    ip_configs: tuple[IpConfig, ...]
    primary: bool | None
    accelerated_networking: bool | None
    ip_forwarding: bool | None
    nsg_id: str | None
    mac: str | None
    vm_id: str | None  # NIC's own back-reference (properties.virtualMachine)

    @property
    def primary_ip_config(self) -> IpConfig | None:
        for cfg in self.ip_configs:
            if cfg.primary:
                return cfg
        return self.ip_configs[0] if len(self.ip_configs) == 1 else None

    @property
    def vnet_key(self) -> str | None:
        cfg = self.primary_ip_config
        return cfg.vnet_key if cfg else None

    def is_managed(self, managed_tag: str) -> bool:
        """Created by this project: `<managed_tag>=true` (`arm_docs.tags_mark_managed`)."""
        return tags_mark_managed(self.tags, managed_tag)


@dataclass(frozen=True, slots=True)
class Vm:
    id: str
    key: str
    name: str
    location: str | None
    size: str | None
    os_type: str | None  # "Windows" | "Linux" | None
    power_state: PowerState | None
    agent_ready: bool | None
    tags: Mapping[str, str]
    nic_keys: tuple[str, ...]  # primary NIC first, then ARM order
    primary_nic_key: str | None

    @property
    def is_running(self) -> bool:
        return self.power_state == PowerState.RUNNING

    def tag(self, name: str) -> str | None:
        low = name.lower()
        for k, v in self.tags.items():
            if k.lower() == low:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    key: str
    name: str
    vnet_key: str
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    ip_config_ids: tuple[str, ...]  # back-references as the VNet document lists them

    @property
    def gateway(self) -> str | None:
        """First usable address (Azure's default gateway), or None when the prefix is unknown."""
        try:
            return str(ipam.gateway(self.prefix)) if self.prefix is not None else None
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class VNet:
    id: str
    key: str
    name: str
    location: str | None
    address_prefixes: tuple[str, ...]
    subnet_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Frontend:
    id: str
    key: str
    name: str
    lb_key: str
    private_ip: str | None
    subnet_key: str | None
    public_ip_id: str | None  # publicIPAddress or publicIPPrefix reference

    @property
    def is_public(self) -> bool:
        return self.public_ip_id is not None

    @property
    def is_internal(self) -> bool:
        return self.public_ip_id is None and (
            self.private_ip is not None or self.subnet_key is not None
        )


@dataclass(frozen=True, slots=True)
class Probe:
    id: str
    key: str
    name: str
    protocol: str | None
    port: int | None
    request_path: str | None


@dataclass(frozen=True, slots=True)
class LbRule:
    id: str
    key: str
    name: str
    lb_key: str
    frontend_key: str | None
    pool_keys: tuple[str, ...]
    probe_key: str | None
    protocol: str | None  # "Tcp" | "Udp" | "All"
    frontend_port: int | None
    backend_port: int | None
    floating_ip: bool | None

    @property
    def is_ha_ports(self) -> bool:
        """HA ports: protocol All, ports 0: every port of every protocol is balanced."""
        return (self.protocol or "").lower() == "all" and self.frontend_port == 0


@dataclass(frozen=True, slots=True)
class NatRule:
    id: str
    key: str
    name: str
    lb_key: str
    frontend_key: str | None
    protocol: str | None
    frontend_port: int | None
    backend_port: int | None
    floating_ip: bool | None
    ip_config_key: str | None  # backendIPConfiguration (single-VM NAT rules)


@dataclass(frozen=True, slots=True)
class PoolAddress:
    """An IP-based pool entry (loadBalancerBackendAddresses with ipAddress + virtualNetwork)."""

    name: str | None
    ip: str | None
    vnet_key: str | None


@dataclass(frozen=True, slots=True)
class PoolMember:
    """One backend of a pool: a NIC ipConfiguration we know, or an address we could not match."""

    ip_config_key: str | None
    ip: str | None
    via: str  # "nic" (NIC-based pool) | "ip" (IP-based pool entry)


@dataclass(frozen=True, slots=True)
class BackendPool:
    id: str
    key: str
    name: str
    lb_key: str
    vnet_key: str | None
    addresses: tuple[PoolAddress, ...]


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    id: str
    key: str
    name: str
    location: str | None
    sku: str | None  # "Standard" | "Basic" | "Gateway" | None
    tags: Mapping[str, str]
    frontend_keys: tuple[str, ...]
    rule_keys: tuple[str, ...]
    pool_keys: tuple[str, ...]
    probe_keys: tuple[str, ...]
    nat_rules: tuple[NatRule, ...]


@dataclass(frozen=True, slots=True)
class Sku:
    name: str
    max_nics: int | None
    accelerated_networking: bool | None
    locations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BackendHealth:
    ip: str | None
    ip_config_key: str | None
    state: str | None  # "Up" | "Down" | ...
    reason: str | None


@dataclass(frozen=True, slots=True)
class RuleHealth:
    rule_key: str
    up: int | None
    down: int | None
    backends: tuple[BackendHealth, ...]
    source: HealthSource | None = None  # None: a snapshot that does not say

    def state_of(self, ip_config_key: str | None, ip: object) -> str | None:
        """'Up'/'Down'/... for a backend, matched by ipConfiguration ID first, then by IP."""
        if ip_config_key is not None:
            for b in self.backends:
                if b.ip_config_key == ip_config_key:
                    return b.state
        if ip is not None:
            ip_text = str(ip)
            for b in self.backends:
                if b.ip == ip_text:
                    return b.state
        return None
