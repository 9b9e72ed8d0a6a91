"""Pure: VNet and subnet documents -> `VNet` and `Subnet` (part of the topology build)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.topology.readers import (
    as_dict,
    as_list,
    as_str,
    name_or_last_segment,
    ref_id,
    vnet_of_subnet,
)
from shared.core.topology.resources import Subnet, VNet
from shared.core.topology.unknowns import Unknowns

Docs = Mapping[str, tuple[str, Mapping[str, Any]]]


def read(vnet_docs: Docs, subnet_docs: Docs,
         unknowns: Unknowns) -> tuple[dict[str, VNet], dict[str, Subnet]]:
    vnets: dict[str, VNet] = {}
    subnets: dict[str, Subnet] = {}
    for key, (rid, doc) in vnet_docs.items():
        props = as_dict(doc.get("properties"))
        subnet_keys = []
        for sub in as_list(props.get("subnets")):
            sid = as_str(as_dict(sub).get("id"))
            if sid is None:
                unknowns.add(rid, "subnets", "a subnet without an id; ignored")
                continue
            subnet = _subnet(sid, as_dict(sub), key, unknowns)
            subnets[subnet.key] = subnet
            subnet_keys.append(subnet.key)
        prefixes = tuple(p for p in as_list(as_dict(props.get("addressSpace")).get(
            "addressPrefixes")) if isinstance(p, str))
        vnets[key] = VNet(rid, key, name_or_last_segment(doc, rid), as_str(doc.get("location")),
                          prefixes, tuple(sorted(subnet_keys)))
    # Standalone subnet documents (GET .../subnets/{name}) complete or override.
    for key, (rid, doc) in subnet_docs.items():
        subnets[key] = _subnet(rid, doc, vnet_of_subnet(key) or key, unknowns)
    return vnets, subnets


def _subnet(rid: str, doc: Mapping[str, Any], vnet_key: str, unknowns: Unknowns) -> Subnet:
    props = as_dict(doc.get("properties"))
    prefix_text = as_str(props.get("addressPrefix"))
    if prefix_text is None:
        prefixes = [p for p in as_list(props.get("addressPrefixes")) if isinstance(p, str)]
        prefix_text = prefixes[0] if prefixes else None
    prefix = None
    if prefix_text is None:
        unknowns.add(rid, "addressPrefix", "missing: gateway and free addresses unknown")
    else:
        try:
            prefix = ipaddress.ip_network(prefix_text, strict=False)
        except ValueError:
            unknowns.add(rid, "addressPrefix", f"not a prefix: {prefix_text!r}")
    refs = tuple(r for r in (ref_id(x) for x in as_list(props.get("ipConfigurations"))) if r)
    return Subnet(rid, normalize(rid), name_or_last_segment(doc, rid), vnet_key, prefix, refs)
