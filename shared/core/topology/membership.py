"""Pure: which IP configurations are members of which backend pools (part of the topology
build), from both sides of NIC-based pools and by address for IP-based pools."""

from __future__ import annotations

from collections.abc import Mapping

from shared.core.topology.resources import BackendPool, IpConfig, PoolMember
from shared.core.topology.unknowns import Unknowns

Members = dict[str, dict[tuple, PoolMember]]  # pool key -> member slot -> member


def link(ip_configs: Mapping[str, IpConfig], pools: Mapping[str, BackendPool],
         pool_refs: Mapping[str, set[str]],
         unknowns: Unknowns) -> tuple[dict[str, tuple[PoolMember, ...]], dict[str, set[str]]]:
    """(pool key -> members in a stable order, ipConfiguration key -> pool keys)."""
    members: Members = {k: {} for k in pools}
    # NIC side: ipConfiguration.loadBalancerBackendAddressPools (the pool may be unknown).
    for cfg in ip_configs.values():
        for pk in cfg.pool_keys:
            members.setdefault(pk, {})[("c", cfg.key)] = PoolMember(cfg.key, cfg.private_ip, "nic")
    # Pool side: backendIPConfigurations (the NIC may be outside the documents). A member the
    # NIC side already added is the same value: not built twice.
    for pk, refs in pool_refs.items():
        found = members[pk]
        for ck in refs:
            if ("c", ck) not in found:
                cfg = ip_configs.get(ck)
                found[("c", ck)] = PoolMember(ck, cfg.private_ip if cfg else None, "nic")
    _add_ip_based(members, ip_configs, pools, unknowns)
    pool_members: dict[str, tuple[PoolMember, ...]] = {}
    ip_config_pools: dict[str, set[str]] = {}
    for pk, found in members.items():
        ordered = tuple(found[k] for k in sorted(found))
        pool_members[pk] = ordered
        for m in ordered:
            if m.ip_config_key is not None:
                ip_config_pools.setdefault(m.ip_config_key, set()).add(pk)
    return pool_members, ip_config_pools


def _add_ip_based(members: Members, ip_configs: Mapping[str, IpConfig],
                  pools: Mapping[str, BackendPool], unknowns: Unknowns) -> None:
    """IP-based entries: match a NIC by private IP inside the pool's VNet."""
    by_vnet_ip = _holders(ip_configs, pools, unknowns)
    for pk, pool in pools.items():
        for address in pool.addresses:
            if address.ip is None:
                continue
            if address.vnet_key is None:
                unknowns.add(pool.id, "virtualNetwork",
                             f"IP-based entry {address.ip} without a VNet: not matched to a NIC")
                ck = None
            else:
                ck = by_vnet_ip.get((address.vnet_key, address.ip))
            if ck is not None:
                members[pk].setdefault(("c", ck), PoolMember(ck, address.ip, "ip"))
            else:
                members[pk].setdefault(("a", address.ip), PoolMember(None, address.ip, "ip"))


def _holders(ip_configs: Mapping[str, IpConfig], pools: Mapping[str, BackendPool],
             unknowns: Unknowns) -> dict[tuple[str | None, str], str]:
    """(VNet key, address) -> the ipConfiguration holding it, for the addresses pools name
    (most estates have few IP-based pools, so only those are indexed)."""
    wanted = {a.ip for pool in pools.values() for a in pool.addresses if a.ip is not None}
    holders: dict[tuple[str | None, str], list[IpConfig]] = {}
    if wanted:
        for cfg in ip_configs.values():
            if cfg.private_ip in wanted:
                holders.setdefault((cfg.vnet_key, cfg.private_ip), []).append(cfg)
    by_vnet_ip: dict[tuple[str | None, str], str] = {}
    for slot, cfgs in holders.items():
        if len(cfgs) > 1:
            for cfg in cfgs:
                unknowns.add(cfg.id, "privateIPAddress",
                             f"{cfg.private_ip} is used by more than one NIC in the VNet "
                             "(IP-based pool entries cannot tell them apart)")
        # deterministic whatever the order
        by_vnet_ip[slot] = cfgs[0].key if len(cfgs) == 1 else min(c.key for c in cfgs)
    return by_vnet_ip
