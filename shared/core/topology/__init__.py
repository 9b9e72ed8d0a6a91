"""Pure: an immutable model of an Azure estate (`model`), built from raw ARM documents
(`build`, with the tolerant field readers of `readers`)."""

from shared.core.topology.model import (
    BackendHealth,
    BackendPool,
    Frontend,
    IpConfig,
    LbRule,
    LoadBalancer,
    NatRule,
    Nic,
    PoolAddress,
    PoolMember,
    Probe,
    RuleHealth,
    Sku,
    Subnet,
    Topology,
    Unknown,
    Vm,
    VNet,
    gc_paused,
)

__all__ = [
    "BackendHealth", "BackendPool", "Frontend", "IpConfig", "LbRule", "LoadBalancer", "NatRule",
    "Nic", "PoolAddress", "PoolMember", "Probe", "RuleHealth", "Sku", "Subnet", "Topology",
    "Unknown", "Vm", "VNet", "gc_paused",
]
