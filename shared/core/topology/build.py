"""Pure: build a `Topology` from raw ARM documents (+ SKU list items and rule health).

`Topology.from_documents` / `from_snapshot` (shared.core.topology.model) are the entry points; `_Builder`
is the mutable scratch space of one build. See shared.core.topology.model for the rules every reader here
follows (tolerant of missing or odd fields, IDs compared through their normalised key).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from shared.core.arm_ids import normalize
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
)
from shared.core.topology.readers import (
    _EMPTY,
    _bool,
    _canonical,
    _dict,
    _int,
    _ip,
    _list,
    _name,
    _ref,
    _str,
    _tags,
    _vnet_of_subnet,
)

T_VM = "microsoft.compute/virtualmachines"
T_NIC = "microsoft.network/networkinterfaces"
T_VNET = "microsoft.network/virtualnetworks"
T_SUBNET = "microsoft.network/virtualnetworks/subnets"
T_LB = "microsoft.network/loadbalancers"


# --------------------------------------------------------------------------- builder


class _Builder:
    """Mutable scratch space for one `from_documents` call (keeps Topology itself immutable)."""

    def __init__(self) -> None:
        self.unknowns: list[Unknown] = []
        self.docs: dict[str, dict[str, tuple[str, Mapping[str, Any]]]] = {
            T_VM: {},
            T_NIC: {},
            T_VNET: {},
            T_SUBNET: {},
            T_LB: {},
        }
        self.ignored = 0

    def unknown(self, rid: str, field_name: str, detail: str) -> None:
        self.unknowns.append(Unknown(rid, field_name, detail))

    # ----------------------------------------------------------------- collect
    def collect(self, resources: Iterable[Any]) -> None:
        for index, doc in enumerate(resources if resources is not None else ()):
            if not isinstance(doc, dict):
                self.unknown(f"resources[{index}]", "document", "not a JSON object; ignored")
                continue
            rid = _str(doc.get("id"))
            rtype = _str(doc.get("type"))
            if rid is None or rtype is None:
                self.unknown(rid or f"resources[{index}]", "id/type", "missing; document ignored")
                continue
            bucket = self.docs.get(rtype.lower())
            if bucket is None:
                self.ignored += 1  # NSGs, public IPs, disks...: not needed by the model
                continue
            key = normalize(rid)
            if key in bucket:
                # Same resource twice (overlapping pages, two discovery paths): keep one,
                # chosen by content so the result does not depend on input order.
                kept = bucket[key][1]
                if _canonical(doc) < _canonical(kept):
                    bucket[key] = (rid, doc)
                self.unknown(key, "id", "resource listed more than once; one copy kept")
                continue
            bucket[key] = (rid, doc)

    # ----------------------------------------------------------------- build
    def build(
        self, resources: Iterable[Any], skus: Iterable[Any], health: Iterable[Any]
    ) -> Topology:
        self.collect(resources)
        vnets, subnets = self.build_network()
        nics, ip_configs = self.build_nics()
        vms, nic_vm = self.build_vms(nics)
        (lbs, frontends, rules, pools, probes, pool_refs) = self.build_lbs()
        pool_members, ip_config_pools = self.link_pools(nics, ip_configs, pools, pool_refs)
        pool_rules: dict[str, list[str]] = {}
        for rule in rules.values():
            for pk in rule.pool_keys:
                pool_rules.setdefault(pk, []).append(rule.key)
        sku_map = self.build_skus(skus)
        health_map = self.build_health(health)

        by_name: dict[str, list[str]] = {}
        for vm in vms.values():
            by_name.setdefault(vm.name.lower(), []).append(vm.key)
        by_resource: dict[str, list[Unknown]] = {}
        for u in self.unknowns:
            by_resource.setdefault(normalize(u.resource_id), []).append(u)
        ordered_unknowns = tuple(
            sorted(set(self.unknowns), key=lambda u: (u.resource_id.lower(), u.field, u.detail))
        )

        frozen = MappingProxyType
        return Topology(
            vms=frozen(vms),
            nics=frozen(nics),
            ip_configs=frozen(ip_configs),
            vnets=frozen(vnets),
            subnets=frozen(subnets),
            load_balancers=frozen(lbs),
            frontends=frozen(frontends),
            rules=frozen(rules),
            pools=frozen(pools),
            probes=frozen(probes),
            skus=frozen(sku_map),
            health=frozen(health_map),
            unknowns=ordered_unknowns,
            pool_members=frozen(pool_members),
            ip_config_pools=frozen({k: tuple(sorted(v)) for k, v in ip_config_pools.items()}),
            pool_rules=frozen({k: tuple(sorted(v)) for k, v in pool_rules.items()}),
            nic_vm=frozen(nic_vm),
            vms_by_name=frozen({k: tuple(sorted(v)) for k, v in by_name.items()}),
            unknowns_by_resource=frozen(
                {
                    k: tuple(sorted(set(v), key=lambda u: (u.field, u.detail)))
                    for k, v in by_resource.items()
                }
            ),
            ignored_resources=self.ignored,
        )

    # ----------------------------------------------------------------- networks
    def _subnet(self, rid: str, doc: Mapping[str, Any], vnet_key: str) -> Subnet:
        props = _dict(doc.get("properties"))
        prefix_text = _str(props.get("addressPrefix"))
        if prefix_text is None:
            prefixes = [p for p in _list(props.get("addressPrefixes")) if isinstance(p, str)]
            prefix_text = prefixes[0] if prefixes else None
        prefix = None
        if prefix_text is None:
            self.unknown(rid, "addressPrefix", "missing: gateway and free addresses unknown")
        else:
            try:
                prefix = ipaddress.ip_network(prefix_text, strict=False)
            except ValueError:
                self.unknown(rid, "addressPrefix", f"not a prefix: {prefix_text!r}")
        refs = tuple(r for r in (_ref(x) for x in _list(props.get("ipConfigurations"))) if r)
        return Subnet(rid, normalize(rid), _name(doc, rid), vnet_key, prefix, refs)

    def build_network(self) -> tuple[dict[str, VNet], dict[str, Subnet]]:
        vnets: dict[str, VNet] = {}
        subnets: dict[str, Subnet] = {}
        for key, (rid, doc) in self.docs[T_VNET].items():
            props = _dict(doc.get("properties"))
            subnet_keys = []
            for sub in _list(props.get("subnets")):
                sid = _str(_dict(sub).get("id"))
                if sid is None:
                    self.unknown(rid, "subnets", "a subnet without an id; ignored")
                    continue
                subnet = self._subnet(sid, _dict(sub), key)
                subnets[subnet.key] = subnet
                subnet_keys.append(subnet.key)
            prefixes = tuple(
                p
                for p in _list(_dict(props.get("addressSpace")).get("addressPrefixes"))
                if isinstance(p, str)
            )
            vnets[key] = VNet(
                rid,
                key,
                _name(doc, rid),
                _str(doc.get("location")),
                prefixes,
                tuple(sorted(subnet_keys)),
            )
        # Standalone subnet documents (GET .../subnets/{name}) complete or override.
        for key, (rid, doc) in self.docs[T_SUBNET].items():
            subnets[key] = self._subnet(rid, doc, _vnet_of_subnet(key) or key)
        return vnets, subnets

    # ----------------------------------------------------------------- NICs
    def build_nics(self) -> tuple[dict[str, Nic], dict[str, IpConfig]]:
        # The hot loop of large estates (20,000 NICs in the benchmark): dictionary reads are
        # inlined for well-formed documents and fall back to the tolerant readers otherwise.
        nics: dict[str, Nic] = {}
        ip_configs: dict[str, IpConfig] = {}
        for key, (rid, doc) in self.docs[T_NIC].items():
            props = doc.get("properties")
            if type(props) is not dict:
                props = _EMPTY
            configs = []
            raw_configs = props.get("ipConfigurations")
            if type(raw_configs) is not list or not raw_configs:
                raw_configs = []
                self.unknown(rid, "ipConfigurations", "missing: the NIC's addresses are unknown")
            for raw in raw_configs:
                if type(raw) is not dict:
                    raw = _EMPTY
                cid = raw.get("id")
                if type(cid) is not str or not cid:
                    self.unknown(
                        rid, "ipConfigurations", "an ipConfiguration without an id; ignored"
                    )
                    continue
                cprops = raw.get("properties")
                if type(cprops) is not dict:
                    cprops = _EMPTY
                ip_text = cprops.get("privateIPAddress")
                ip = _ip(ip_text)
                if ip is None:
                    self.unknown(
                        cid,
                        "privateIPAddress",
                        "missing" if ip_text is None else f"not an address: {ip_text!r}",
                    )
                subnet_id = _ref(cprops.get("subnet"))
                if subnet_id is None:
                    self.unknown(cid, "subnet", "missing: subnet and VNet unknown")
                pool_refs = cprops.get("loadBalancerBackendAddressPools")
                if pool_refs:
                    pools = tuple(
                        sorted({normalize(r) for r in (_ref(p) for p in _list(pool_refs)) if r})
                    )
                else:
                    pools = ()
                name = raw.get("name")
                cfg = IpConfig(
                    cid,
                    normalize(cid),
                    name if type(name) is str and name else _name(raw, cid),
                    key,
                    ip,
                    subnet_id,
                    normalize(subnet_id) if subnet_id else None,
                    _bool(cprops.get("primary")),
                    pools,
                )
                configs.append(cfg)
                ip_configs[cfg.key] = cfg
            if len(configs) == 1 and configs[0].primary is None:
                # ARM omits `primary` on single-config NICs in some API versions: it is primary.
                configs[0] = _replace_primary(configs[0])
                ip_configs[configs[0].key] = configs[0]
            name = doc.get("name")
            tags = doc.get("tags")
            nics[key] = Nic(
                rid,
                key,
                name if type(name) is str and name else _name(doc, rid),
                _str(doc.get("location")),
                _tags(tags) if tags else _EMPTY,
                tuple(configs),
                _bool(props.get("primary")),
                _bool(props.get("enableAcceleratedNetworking")),
                _bool(props.get("enableIPForwarding")),
                _ref(props.get("networkSecurityGroup")),
                _str(props.get("macAddress")),
                _ref(props.get("virtualMachine")),
            )
        return nics, ip_configs

    # ----------------------------------------------------------------- VMs
    def build_vms(self, nics: dict[str, Nic]) -> tuple[dict[str, Vm], dict[str, str]]:
        vms: dict[str, Vm] = {}
        nic_vm: dict[str, str] = {}
        claims: dict[str, list[tuple[str, str]]] = {}
        for key, (rid, doc) in self.docs[T_VM].items():
            props = _dict(doc.get("properties"))
            size = _str(_dict(props.get("hardwareProfile")).get("vmSize"))
            if size is None:
                self.unknown(rid, "hardwareProfile.vmSize", "missing: NIC limit unknown")
            os_type = _os_type(props)
            if os_type is None:
                self.unknown(rid, "storageProfile.osDisk.osType", "missing: guest OS unknown")
            power, agent = _instance_view(props)
            if power is None:
                self.unknown(rid, "instanceView.statuses", "no PowerState: power state unknown")
            refs: list[tuple[str, bool | None]] = []
            for item in _list(_dict(props.get("networkProfile")).get("networkInterfaces")):
                nid = _ref(item)
                if nid:
                    primary = _bool(_dict(_dict(item).get("properties")).get("primary"))
                    if primary is None:
                        primary = _bool(_dict(item).get("primary"))
                    refs.append((normalize(nid), primary))
            if not refs:
                self.unknown(rid, "networkProfile.networkInterfaces", "missing: NICs unknown")
            primary_key = _primary_nic(refs, nics)
            if refs and primary_key is None:
                self.unknown(rid, "networkProfile.networkInterfaces", "no NIC marked primary")
            if len(refs) == 1 and refs[0][0] == primary_key:
                ordered: tuple[str, ...] = (primary_key,)
            else:
                ordered = tuple(
                    dict.fromkeys(([primary_key] if primary_key else []) + [k for k, _ in refs])
                )
            for nk in ordered:
                if nk not in nics:
                    self.unknown(
                        rid, "networkProfile.networkInterfaces", f"NIC {nk} is not in the documents"
                    )
                claims.setdefault(nk, []).append((key, rid))
            vms[key] = Vm(
                rid,
                key,
                _name(doc, rid),
                _str(doc.get("location")),
                size,
                os_type,
                power,
                agent,
                _tags(doc.get("tags")) if doc.get("tags") else _EMPTY,
                ordered,
                primary_key,
            )
        for nk, owners in claims.items():
            if len(owners) > 1:
                for _, owner_id in owners:
                    self.unknown(
                        owner_id,
                        "networkProfile.networkInterfaces",
                        f"NIC {nk} is listed by more than one VM",
                    )
            # deterministic whatever the order
            nic_vm[nk] = owners[0][0] if len(owners) == 1 else min(k for k, _ in owners)
        # NICs whose VM lists nothing (partial documents) still point at their VM.
        for nk, nic in nics.items():
            if nk not in nic_vm and nic.vm_id and normalize(nic.vm_id) in vms:
                nic_vm[nk] = normalize(nic.vm_id)
        return vms, nic_vm

    # ----------------------------------------------------------------- load balancers
    def build_lbs(self):  # noqa: C901 - one pass over one document type, kept together
        lbs: dict[str, LoadBalancer] = {}
        frontends: dict[str, Frontend] = {}
        rules: dict[str, LbRule] = {}
        pools: dict[str, BackendPool] = {}
        probes: dict[str, Probe] = {}
        # pool key -> ipConfiguration keys the pool document lists (NIC-based membership).
        pool_refs: dict[str, set[str]] = {}
        for key, (rid, doc) in self.docs[T_LB].items():
            props = _dict(doc.get("properties"))
            sku = _str(_dict(doc.get("sku")).get("name"))
            fe_keys, rule_keys, pool_keys, probe_keys, nat_rules = [], [], [], [], []
            for raw in _list(props.get("frontendIPConfigurations")):
                raw = _dict(raw)
                fid = _str(raw.get("id"))
                if fid is None:
                    self.unknown(rid, "frontendIPConfigurations", "a frontend without an id")
                    continue
                fp = _dict(raw.get("properties"))
                public = _ref(fp.get("publicIPAddress")) or _ref(fp.get("publicIPPrefix"))
                ip = _ip(fp.get("privateIPAddress"))
                subnet_id = _ref(fp.get("subnet"))
                if public is None and ip is None:
                    self.unknown(fid, "privateIPAddress", "internal frontend without an address")
                fe = Frontend(
                    fid,
                    normalize(fid),
                    _name(raw, fid),
                    key,
                    ip,
                    normalize(subnet_id) if subnet_id else None,
                    public,
                )
                frontends[fe.key] = fe
                fe_keys.append(fe.key)
            for raw in _list(props.get("backendAddressPools")):
                raw = _dict(raw)
                pid = _str(raw.get("id"))
                if pid is None:
                    self.unknown(rid, "backendAddressPools", "a pool without an id")
                    continue
                pkey = normalize(pid)
                pp = _dict(raw.get("properties"))
                pool_vnet = _ref(pp.get("virtualNetwork"))
                refs = pool_refs.setdefault(pkey, set())
                for r in _list(pp.get("backendIPConfigurations")):
                    ref = _ref(r)
                    if ref:
                        refs.add(normalize(ref))
                addresses = []
                for entry in _list(pp.get("loadBalancerBackendAddresses")):
                    entry = _dict(entry)
                    ep = _dict(entry.get("properties"))
                    nic_ref = _ref(ep.get("networkInterfaceIPConfiguration"))
                    if nic_ref:  # NIC-based pools echo their members here too
                        refs.add(normalize(nic_ref))
                        continue
                    vnet = _ref(ep.get("virtualNetwork")) or pool_vnet
                    subnet_ref = _ref(ep.get("subnet"))
                    if vnet is None and subnet_ref:
                        vnet = _vnet_of_subnet(normalize(subnet_ref))
                    ip = _ip(ep.get("ipAddress"))
                    if ip is None:
                        self.unknown(
                            pid,
                            "loadBalancerBackendAddresses",
                            f"entry {entry.get('name')!r} has no usable ipAddress",
                        )
                    addresses.append(
                        PoolAddress(_str(entry.get("name")), ip, normalize(vnet) if vnet else None)
                    )
                pools[pkey] = BackendPool(
                    pid,
                    pkey,
                    _name(raw, pid),
                    key,
                    normalize(pool_vnet) if pool_vnet else None,
                    tuple(addresses),
                )
                pool_keys.append(pkey)
            for raw in _list(props.get("probes")):
                raw = _dict(raw)
                prid = _str(raw.get("id"))
                if prid is None:
                    continue
                pp = _dict(raw.get("properties"))
                probe = Probe(
                    prid,
                    normalize(prid),
                    _name(raw, prid),
                    _str(pp.get("protocol")),
                    _int(pp.get("port")),
                    _str(pp.get("requestPath")),
                )
                probes[probe.key] = probe
                probe_keys.append(probe.key)
            for raw in _list(props.get("loadBalancingRules")):
                raw = _dict(raw)
                rule_id = _str(raw.get("id"))
                if rule_id is None:
                    self.unknown(rid, "loadBalancingRules", "a rule without an id")
                    continue
                rp = _dict(raw.get("properties"))
                fe_ref = _ref(rp.get("frontendIPConfiguration"))
                rule_pools = {
                    normalize(r)
                    for r in [_ref(rp.get("backendAddressPool"))]
                    + [_ref(p) for p in _list(rp.get("backendAddressPools"))]
                    if r
                }
                floating = _bool(rp.get("enableFloatingIP"))
                if floating is None:
                    floating = False  # ARM's default when the property is absent
                rule = LbRule(
                    rule_id,
                    normalize(rule_id),
                    _name(raw, rule_id),
                    key,
                    normalize(fe_ref) if fe_ref else None,
                    tuple(sorted(rule_pools)),
                    normalize(p) if (p := _ref(rp.get("probe"))) else None,
                    _str(rp.get("protocol")),
                    _int(rp.get("frontendPort")),
                    _int(rp.get("backendPort")),
                    floating,
                )
                if rule.frontend_key is None:
                    self.unknown(rule_id, "frontendIPConfiguration", "missing")
                if not rule.pool_keys:
                    self.unknown(rule_id, "backendAddressPool", "missing: the rule has no backends")
                if rule.frontend_port is None or rule.backend_port is None or rule.protocol is None:
                    self.unknown(rule_id, "protocol/ports", "missing: ports unknown")
                rules[rule.key] = rule
                rule_keys.append(rule.key)
            for raw in _list(props.get("inboundNatRules")):
                raw = _dict(raw)
                nid = _str(raw.get("id"))
                if nid is None:
                    continue
                np_ = _dict(raw.get("properties"))
                fe_ref = _ref(np_.get("frontendIPConfiguration"))
                backend = _ref(np_.get("backendIPConfiguration"))
                nat_rules.append(
                    NatRule(
                        nid,
                        normalize(nid),
                        _name(raw, nid),
                        key,
                        normalize(fe_ref) if fe_ref else None,
                        _str(np_.get("protocol")),
                        _int(np_.get("frontendPort")),
                        _int(np_.get("backendPort")),
                        _bool(np_.get("enableFloatingIP")),
                        normalize(backend) if backend else None,
                    )
                )
            lbs[key] = LoadBalancer(
                rid,
                key,
                _name(doc, rid),
                _str(doc.get("location")),
                sku,
                _tags(doc.get("tags")),
                tuple(fe_keys),
                tuple(rule_keys),
                tuple(pool_keys),
                tuple(probe_keys),
                tuple(nat_rules),
            )
        return lbs, frontends, rules, pools, probes, pool_refs

    # ----------------------------------------------------------------- membership
    def link_pools(self, nics, ip_configs, pools, pool_refs):
        """Pool -> members, from both sides of NIC-based pools and by IP for IP-based pools."""
        members: dict[str, dict[tuple, PoolMember]] = {k: {} for k in pools}
        # NIC side: ipConfiguration.loadBalancerBackendAddressPools (pool may be unknown).
        for cfg in ip_configs.values():
            for pk in cfg.pool_keys:
                members.setdefault(pk, {})[("c", cfg.key)] = PoolMember(
                    cfg.key, cfg.private_ip, "nic"
                )
        # Pool side: backendIPConfigurations (the NIC may be outside the documents). A member
        # the NIC side already added is the same value: not built twice.
        for pk, refs in pool_refs.items():
            found = members[pk]
            for ck in refs:
                if ("c", ck) not in found:
                    cfg = ip_configs.get(ck)
                    found[("c", ck)] = PoolMember(ck, cfg.private_ip if cfg else None, "nic")
        # IP-based entries: match a NIC by private IP inside the pool's VNet. Only addresses
        # that some pool names are indexed (most estates have few IP-based pools).
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
                    self.unknown(
                        cfg.id,
                        "privateIPAddress",
                        f"{cfg.private_ip} is used by more than one NIC in the VNet "
                        "(IP-based pool entries cannot tell them apart)",
                    )
            # deterministic whatever the order
            by_vnet_ip[slot] = cfgs[0].key if len(cfgs) == 1 else min(c.key for c in cfgs)
        for pk, pool in pools.items():
            for address in pool.addresses:
                if address.ip is None:
                    continue
                if address.vnet_key is None:
                    self.unknown(
                        pool.id,
                        "virtualNetwork",
                        f"IP-based entry {address.ip} without a VNet: not matched to a NIC",
                    )
                    ck = None
                else:
                    ck = by_vnet_ip.get((address.vnet_key, address.ip))
                if ck is not None:
                    members[pk].setdefault(("c", ck), PoolMember(ck, address.ip, "ip"))
                else:
                    members[pk].setdefault(("a", address.ip), PoolMember(None, address.ip, "ip"))
        pool_members: dict[str, tuple[PoolMember, ...]] = {}
        ip_config_pools: dict[str, set[str]] = {}
        for pk, found in members.items():
            ordered = tuple(found[k] for k in sorted(found))
            pool_members[pk] = ordered
            for m in ordered:
                if m.ip_config_key is not None:
                    ip_config_pools.setdefault(m.ip_config_key, set()).add(pk)
        return pool_members, ip_config_pools

    # ----------------------------------------------------------------- skus and health
    def build_skus(self, skus: Iterable[Any]) -> dict[str, Sku]:
        out: dict[str, Sku] = {}
        for item in skus if skus is not None else ():
            item = _dict(item)
            if (_str(item.get("resourceType")) or "").lower() != "virtualmachines":
                continue
            name = _str(item.get("name"))
            if name is None:
                continue
            caps = {}
            for cap in _list(item.get("capabilities")):
                cap = _dict(cap)
                if isinstance(cap.get("name"), str):
                    caps[cap["name"].lower()] = cap.get("value")
            locations = tuple(sorted(str(x).lower() for x in _list(item.get("locations"))))
            sku = Sku(
                name,
                _int(caps.get("maxnetworkinterfaces")),
                _bool(caps.get("acceleratednetworkingenabled")),
                locations,
            )
            previous = out.get(name.lower())
            if previous is None or (previous.max_nics is None and sku.max_nics is not None):
                out[name.lower()] = sku
            elif previous.max_nics is not None and sku.max_nics is not None:
                # One entry per region: the capability is the same everywhere in practice;
                # keep the smaller limit if two regions ever disagree (never over-promise).
                out[name.lower()] = Sku(
                    previous.name,
                    min(previous.max_nics, sku.max_nics),
                    previous.accelerated_networking,
                    tuple(sorted(set(previous.locations) | set(locations))),
                )
        return out

    def build_health(self, health: Iterable[Any]) -> dict[str, RuleHealth]:
        entries: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for index, entry in enumerate(health if health is not None else ()):
            entry = _dict(entry)
            rule_id = _str(entry.get("ruleId"))
            response = entry.get("response")
            if rule_id is None or not isinstance(response, dict):
                self.unknown(
                    rule_id or f"health[{index}]", "health", "entry without ruleId/response"
                )
                continue
            key = normalize(rule_id)
            if key in entries:
                # The same rule twice: keep one, chosen by content (input order must not matter).
                self.unknown(rule_id, "health", "health listed more than once; one copy kept")
                if _canonical(response) >= _canonical(entries[key][1]):
                    continue
            entries[key] = (rule_id, response)
        out: dict[str, RuleHealth] = {}
        for key, (_rule_id, response) in entries.items():
            backends = []
            for b in _list(response.get("loadBalancerBackendAddresses")):
                b = _dict(b)
                cfg = _str(b.get("networkInterfaceIPConfigurationId"))
                backends.append(
                    BackendHealth(
                        _str(b.get("ipAddress")),
                        normalize(cfg) if cfg else None,
                        _str(b.get("state")),
                        _str(b.get("reason")),
                    )
                )
            backends.sort(
                key=lambda b: (b.ip_config_key or "", b.ip or "", b.state or "", b.reason or "")
            )
            out[key] = RuleHealth(
                key, _int(response.get("up")), _int(response.get("down")), tuple(backends)
            )
        return out


def _replace_primary(cfg: IpConfig) -> IpConfig:
    return IpConfig(
        cfg.id,
        cfg.key,
        cfg.name,
        cfg.nic_key,
        cfg.private_ip,
        cfg.subnet_id,
        cfg.subnet_key,
        True,
        cfg.pool_keys,
    )


def _os_type(props: Mapping[str, Any]) -> str | None:
    value = _str(_dict(_dict(props.get("storageProfile")).get("osDisk")).get("osType"))
    if value:
        low = value.lower()
        return "Windows" if low == "windows" else "Linux" if low == "linux" else value
    os_profile = _dict(props.get("osProfile"))
    if os_profile.get("windowsConfiguration") is not None:
        return "Windows"
    if os_profile.get("linuxConfiguration") is not None:
        return "Linux"
    return None


def _instance_view(props: Mapping[str, Any]) -> tuple[str | None, bool | None]:
    """Power state and agent readiness, from ARM's instanceView or Resource Graph's `extended`."""
    view = _dict(props.get("instanceView"))
    power = None
    for status in _list(view.get("statuses")):
        code = _str(_dict(status).get("code"))
        if code and code.lower().startswith("powerstate/"):
            power = code.split("/", 1)[1].lower()
    if power is None:
        extended = _dict(_dict(_dict(props.get("extended")).get("instanceView")).get("powerState"))
        code = _str(extended.get("code"))
        if code and code.lower().startswith("powerstate/"):
            power = code.split("/", 1)[1].lower()
    agent = None
    agent_statuses = _list(_dict(view.get("vmAgent")).get("statuses"))
    if agent_statuses:
        display = _str(_dict(agent_statuses[0]).get("displayStatus"))
        agent = None if display is None else display.lower() == "ready"
    return power, agent


def _primary_nic(refs: list[tuple[str, bool | None]], nics: Mapping[str, Nic]) -> str | None:
    flagged = [k for k, p in refs if p]
    if flagged:
        return flagged[0]
    if len(refs) == 1:
        return refs[0][0]
    by_nic = [k for k, _ in refs if k in nics and nics[k].primary]
    return by_nic[0] if by_nic else None
