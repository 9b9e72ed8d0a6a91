"""Pure: NIC documents -> `Nic` and `IpConfig` (part of the topology build).

The hot loop of large estates (20,000 NICs in bench/bench_evaluate.py): dictionary reads are
inlined for well-formed documents and fall back to the tolerant readers otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.topology.readers import (
    EMPTY,
    as_bool,
    as_ip,
    as_list,
    as_str,
    as_tags,
    name_or_last_segment,
    ref_id,
)
from shared.core.topology.resources import IpConfig, Nic
from shared.core.topology.unknowns import Unknowns

Docs = Mapping[str, tuple[str, Mapping[str, Any]]]


def read(nic_docs: Docs, unknowns: Unknowns) -> tuple[dict[str, Nic], dict[str, IpConfig]]:
    nics: dict[str, Nic] = {}
    ip_configs: dict[str, IpConfig] = {}
    for key, (rid, doc) in nic_docs.items():
        props = doc.get("properties")
        if type(props) is not dict:
            props = EMPTY
        configs = _ip_configs(key, rid, props, unknowns)
        for cfg in configs:
            ip_configs[cfg.key] = cfg
        name = doc.get("name")
        tags = doc.get("tags")
        nics[key] = Nic(
            rid,
            key,
            name if type(name) is str and name else name_or_last_segment(doc, rid),
            as_str(doc.get("location")),
            as_tags(tags) if tags else EMPTY,
            tuple(configs),
            as_bool(props.get("primary")),
            as_bool(props.get("enableAcceleratedNetworking")),
            as_bool(props.get("enableIPForwarding")),
            ref_id(props.get("networkSecurityGroup")),
            as_str(props.get("macAddress")),
            ref_id(props.get("virtualMachine")),
        )
    return nics, ip_configs


def _ip_configs(nic_key: str, rid: str, props: Mapping[str, Any],
                unknowns: Unknowns) -> list[IpConfig]:
    raw_configs = props.get("ipConfigurations")
    if type(raw_configs) is not list or not raw_configs:
        raw_configs = []
        unknowns.add(rid, "ipConfigurations", "missing: the NIC's addresses are unknown")
    configs = []
    for raw in raw_configs:
        if type(raw) is not dict:
            raw = EMPTY
        cid = raw.get("id")
        if type(cid) is not str or not cid:
            unknowns.add(rid, "ipConfigurations", "an ipConfiguration without an id; ignored")
            continue
        configs.append(_ip_config(nic_key, cid, raw, unknowns))
    if len(configs) == 1 and configs[0].primary is None:
        # ARM omits `primary` on single-config NICs in some API versions: it is primary.
        configs[0] = dataclasses.replace(configs[0], primary=True)
    return configs


def _ip_config(nic_key: str, cid: str, raw: Mapping[str, Any], unknowns: Unknowns) -> IpConfig:
    cprops = raw.get("properties")
    if type(cprops) is not dict:
        cprops = EMPTY
    ip_text = cprops.get("privateIPAddress")
    ip = as_ip(ip_text)
    if ip is None:
        unknowns.add(cid, "privateIPAddress",
                     "missing" if ip_text is None else f"not an address: {ip_text!r}")
    subnet_id = ref_id(cprops.get("subnet"))
    if subnet_id is None:
        unknowns.add(cid, "subnet", "missing: subnet and VNet unknown")
    pool_refs = cprops.get("loadBalancerBackendAddressPools")
    if pool_refs:
        pools = tuple(sorted({normalize(r) for r in (ref_id(p) for p in as_list(pool_refs))
                              if r}))
    else:
        pools = ()
    name = raw.get("name")
    return IpConfig(
        cid,
        normalize(cid),
        name if type(name) is str and name else name_or_last_segment(raw, cid),
        nic_key,
        ip,
        subnet_id,
        normalize(subnet_id) if subnet_id else None,
        as_bool(cprops.get("primary")),
        pools,
    )
