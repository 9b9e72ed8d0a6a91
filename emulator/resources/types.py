"""The resource types the emulator serves and the child collections ARM nests in them."""

from __future__ import annotations

__all__ = ["VNET", "NSG", "NIC", "LB", "PIP", "VM", "CHILDREN", "TYPES", "ref_id"]

VM = "Microsoft.Compute/virtualMachines"


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


def ref_id(ref) -> str | None:
    """`{"id": ...}` -> the id."""
    return ref.get("id") if isinstance(ref, dict) else None
