"""Pure: an immutable model of an Azure estate (`model`), built from raw ARM documents
(`build_topology`, `topology_from_snapshot`; tolerant field readers in `readers`)."""

from shared.core.topology.build import build_topology, topology_from_snapshot
from shared.core.topology.model import Topology, gc_paused
from shared.core.topology.resources import (
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
    Vm,
    VNet,
)
from shared.core.topology.unknowns import Unknown

__all__ = [
    "BackendHealth", "BackendPool", "Frontend", "IpConfig", "LbRule", "LoadBalancer", "NatRule",
    "Nic", "PoolAddress", "PoolMember", "Probe", "RuleHealth", "Sku", "Subnet", "Topology",
    "Unknown", "Vm", "VNet", "build_topology", "gc_paused", "topology_from_snapshot",
]
