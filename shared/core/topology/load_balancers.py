"""Pure: load balancer documents -> `LoadBalancer` and its frontends, pools, probes, rules and
NAT rules (part of the topology build)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.topology.readers import (
    as_bool,
    as_dict,
    as_int,
    as_ip,
    as_list,
    as_str,
    as_tags,
    name_or_last_segment,
    ref_id,
    vnet_of_subnet,
)
from shared.core.topology.resources import (
    BackendPool,
    Frontend,
    LbRule,
    LoadBalancer,
    NatRule,
    PoolAddress,
    Probe,
)
from shared.core.topology.unknowns import Unknowns

Docs = Mapping[str, tuple[str, Mapping[str, Any]]]


@dataclass
class LoadBalancerParts:
    """Everything read from the load balancer documents, keyed by normalised ID."""

    load_balancers: dict[str, LoadBalancer] = field(default_factory=dict)
    frontends: dict[str, Frontend] = field(default_factory=dict)
    rules: dict[str, LbRule] = field(default_factory=dict)
    pools: dict[str, BackendPool] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)
    # pool key -> ipConfiguration keys the pool document lists (NIC-based membership)
    pool_refs: dict[str, set[str]] = field(default_factory=dict)


def read(lb_docs: Docs, unknowns: Unknowns) -> LoadBalancerParts:
    parts = LoadBalancerParts()
    for key, (rid, doc) in lb_docs.items():
        _Reader(parts, key, rid, unknowns).read(doc)
    return parts


class _Reader:
    """One load balancer document into `parts`."""

    def __init__(self, parts: LoadBalancerParts, key: str, rid: str, unknowns: Unknowns):
        self.parts = parts
        self.key = key
        self.rid = rid
        self.unknowns = unknowns

    def read(self, doc: Mapping[str, Any]) -> None:
        props = as_dict(doc.get("properties"))
        fe_keys = [self.frontend(as_dict(raw)) for raw in as_list(
            props.get("frontendIPConfigurations"))]
        pool_keys = [self.pool(as_dict(raw)) for raw in as_list(props.get("backendAddressPools"))]
        probe_keys = [self.probe(as_dict(raw)) for raw in as_list(props.get("probes"))]
        rule_keys = [self.rule(as_dict(raw)) for raw in as_list(props.get("loadBalancingRules"))]
        nat_rules = [self.nat_rule(as_dict(raw)) for raw in as_list(props.get("inboundNatRules"))]
        self.parts.load_balancers[self.key] = LoadBalancer(
            self.rid, self.key, name_or_last_segment(doc, self.rid), as_str(doc.get("location")),
            as_str(as_dict(doc.get("sku")).get("name")), as_tags(doc.get("tags")),
            _present(fe_keys), _present(rule_keys), _present(pool_keys), _present(probe_keys),
            _present(nat_rules))

    def frontend(self, raw: Mapping[str, Any]) -> str | None:
        fid = as_str(raw.get("id"))
        if fid is None:
            self.unknowns.add(self.rid, "frontendIPConfigurations", "a frontend without an id")
            return None
        fp = as_dict(raw.get("properties"))
        public = ref_id(fp.get("publicIPAddress")) or ref_id(fp.get("publicIPPrefix"))
        ip = as_ip(fp.get("privateIPAddress"))
        subnet_id = ref_id(fp.get("subnet"))
        if public is None and ip is None:
            self.unknowns.add(fid, "privateIPAddress", "internal frontend without an address")
        fe = Frontend(fid, normalize(fid), name_or_last_segment(raw, fid), self.key, ip,
                      normalize(subnet_id) if subnet_id else None, public)
        self.parts.frontends[fe.key] = fe
        return fe.key

    def pool(self, raw: Mapping[str, Any]) -> str | None:
        pid = as_str(raw.get("id"))
        if pid is None:
            self.unknowns.add(self.rid, "backendAddressPools", "a pool without an id")
            return None
        pkey = normalize(pid)
        pp = as_dict(raw.get("properties"))
        pool_vnet = ref_id(pp.get("virtualNetwork"))
        refs = self.parts.pool_refs.setdefault(pkey, set())
        for r in as_list(pp.get("backendIPConfigurations")):
            ref = ref_id(r)
            if ref:
                refs.add(normalize(ref))
        addresses = []
        for entry in as_list(pp.get("loadBalancerBackendAddresses")):
            entry = as_dict(entry)
            ep = as_dict(entry.get("properties"))
            nic_ref = ref_id(ep.get("networkInterfaceIPConfiguration"))
            if nic_ref:  # NIC-based pools echo their members here too
                refs.add(normalize(nic_ref))
                continue
            addresses.append(self.pool_address(pid, entry, ep, pool_vnet))
        self.parts.pools[pkey] = BackendPool(
            pid, pkey, name_or_last_segment(raw, pid), self.key,
            normalize(pool_vnet) if pool_vnet else None, tuple(addresses))
        return pkey

    def pool_address(self, pid: str, entry: Mapping[str, Any], ep: Mapping[str, Any],
                     pool_vnet: str | None) -> PoolAddress:
        vnet = ref_id(ep.get("virtualNetwork")) or pool_vnet
        subnet_ref = ref_id(ep.get("subnet"))
        if vnet is None and subnet_ref:
            vnet = vnet_of_subnet(normalize(subnet_ref))
        ip = as_ip(ep.get("ipAddress"))
        if ip is None:
            self.unknowns.add(pid, "loadBalancerBackendAddresses",
                              f"entry {entry.get('name')!r} has no usable ipAddress")
        return PoolAddress(as_str(entry.get("name")), ip, normalize(vnet) if vnet else None)

    def probe(self, raw: Mapping[str, Any]) -> str | None:
        prid = as_str(raw.get("id"))
        if prid is None:
            return None
        pp = as_dict(raw.get("properties"))
        probe = Probe(prid, normalize(prid), name_or_last_segment(raw, prid),
                      as_str(pp.get("protocol")), as_int(pp.get("port")),
                      as_str(pp.get("requestPath")))
        self.parts.probes[probe.key] = probe
        return probe.key

    def rule(self, raw: Mapping[str, Any]) -> str | None:
        rule_id = as_str(raw.get("id"))
        if rule_id is None:
            self.unknowns.add(self.rid, "loadBalancingRules", "a rule without an id")
            return None
        rp = as_dict(raw.get("properties"))
        fe_ref = ref_id(rp.get("frontendIPConfiguration"))
        rule_pools = {normalize(r) for r in [ref_id(rp.get("backendAddressPool"))]
                      + [ref_id(p) for p in as_list(rp.get("backendAddressPools"))] if r}
        floating = as_bool(rp.get("enableFloatingIP"))
        if floating is None:
            floating = False  # ARM's default when the property is absent
        probe = ref_id(rp.get("probe"))
        rule = LbRule(rule_id, normalize(rule_id), name_or_last_segment(raw, rule_id), self.key,
                      normalize(fe_ref) if fe_ref else None, tuple(sorted(rule_pools)),
                      normalize(probe) if probe else None, as_str(rp.get("protocol")),
                      as_int(rp.get("frontendPort")), as_int(rp.get("backendPort")), floating)
        if rule.frontend_key is None:
            self.unknowns.add(rule_id, "frontendIPConfiguration", "missing")
        if not rule.pool_keys:
            self.unknowns.add(rule_id, "backendAddressPool", "missing: the rule has no backends")
        if rule.frontend_port is None or rule.backend_port is None or rule.protocol is None:
            self.unknowns.add(rule_id, "protocol/ports", "missing: ports unknown")
        self.parts.rules[rule.key] = rule
        return rule.key

    def nat_rule(self, raw: Mapping[str, Any]) -> NatRule | None:
        nid = as_str(raw.get("id"))
        if nid is None:
            return None
        np_ = as_dict(raw.get("properties"))
        fe_ref = ref_id(np_.get("frontendIPConfiguration"))
        backend = ref_id(np_.get("backendIPConfiguration"))
        return NatRule(nid, normalize(nid), name_or_last_segment(raw, nid), self.key,
                       normalize(fe_ref) if fe_ref else None, as_str(np_.get("protocol")),
                       as_int(np_.get("frontendPort")), as_int(np_.get("backendPort")),
                       as_bool(np_.get("enableFloatingIP")),
                       normalize(backend) if backend else None)


def _present(items: list) -> tuple:
    return tuple(x for x in items if x is not None)
