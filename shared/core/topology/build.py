"""Pure: build a `Topology` from raw ARM documents (+ SKU list items and rule health).

`build_topology(resources, skus, health)` and `topology_from_snapshot(doc)` are the entry
points. Every reader is tolerant (shared.core.topology.readers): a missing or odd field becomes
an `Unknown` fact in the `Unknowns` collector of the build, never an exception. IDs are
compared through their normalised key (`arm_ids.normalize`).

The readers per document type: `networks` (VNets, subnets), `interfaces` (NICs), `machines`
(VMs), `load_balancers`, `membership` (pools and their members), `catalog` (SKUs, health).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.topology import catalog, interfaces, load_balancers, machines, membership, networks
from shared.core.topology.model import Topology, gc_paused
from shared.core.topology.readers import as_list, as_str, canonical
from shared.core.topology.unknowns import Unknowns

__all__ = ["Documents", "build_topology", "topology_from_snapshot"]

T_VM = "microsoft.compute/virtualmachines"
T_NIC = "microsoft.network/networkinterfaces"
T_VNET = "microsoft.network/virtualnetworks"
T_SUBNET = "microsoft.network/virtualnetworks/subnets"
T_LB = "microsoft.network/loadbalancers"


class Documents:
    """The input documents of the types the model reads, by type: key -> (id as spelled, doc)."""

    def __init__(self, resources: Iterable[Any], unknowns: Unknowns) -> None:
        self.by_type: dict[str, dict[str, tuple[str, Mapping[str, Any]]]] = {
            T_VM: {}, T_NIC: {}, T_VNET: {}, T_SUBNET: {}, T_LB: {}}
        self.ignored = 0  # NSGs, public IPs, disks...: not needed by the model
        for index, doc in enumerate(resources if resources is not None else ()):
            self._add(index, doc, unknowns)

    def _add(self, index: int, doc: Any, unknowns: Unknowns) -> None:
        if not isinstance(doc, dict):
            unknowns.add(f"resources[{index}]", "document", "not a JSON object; ignored")
            return
        rid = as_str(doc.get("id"))
        rtype = as_str(doc.get("type"))
        if rid is None or rtype is None:
            unknowns.add(rid or f"resources[{index}]", "id/type", "missing; document ignored")
            return
        bucket = self.by_type.get(rtype.lower())
        if bucket is None:
            self.ignored += 1
            return
        key = normalize(rid)
        if key in bucket:
            # Same resource twice (overlapping pages, two discovery paths): keep one, chosen
            # by content so the result does not depend on input order.
            if canonical(doc) < canonical(bucket[key][1]):
                bucket[key] = (rid, doc)
            unknowns.add(key, "id", "resource listed more than once; one copy kept")
            return
        bucket[key] = (rid, doc)

    def of(self, rtype: str) -> dict[str, tuple[str, Mapping[str, Any]]]:
        return self.by_type[rtype]


def build_topology(resources: Iterable[Any], skus: Iterable[Any] = (),
                   health: Iterable[Any] = ()) -> Topology:
    """The estate from raw ARM documents, SKU list items and per-rule health responses."""
    with gc_paused():
        return _build(resources, skus, health)


def topology_from_snapshot(doc: Mapping[str, Any]) -> Topology:
    """A snapshot or scenario document: `{"resources", "skus", "health"}` (+ `emulator`)."""
    if not isinstance(doc, dict):
        raise ValueError("snapshot must be a JSON object")
    resources = doc.get("resources")
    if not isinstance(resources, list):
        raise ValueError("snapshot needs a 'resources' list")
    return build_topology(resources, as_list(doc.get("skus")), as_list(doc.get("health")))


def _build(resources: Iterable[Any], skus: Iterable[Any], health: Iterable[Any]) -> Topology:
    unknowns = Unknowns()
    docs = Documents(resources, unknowns)
    vnets, subnets = networks.read(docs.of(T_VNET), docs.of(T_SUBNET), unknowns)
    nics, ip_configs = interfaces.read(docs.of(T_NIC), unknowns)
    vms, nic_vm = machines.read(docs.of(T_VM), nics, unknowns)
    lbs = load_balancers.read(docs.of(T_LB), unknowns)
    pool_members, ip_config_pools = membership.link(ip_configs, lbs.pools, lbs.pool_refs,
                                                    unknowns)
    pool_rules: dict[str, list[str]] = {}
    for rule in lbs.rules.values():
        for pk in rule.pool_keys:
            pool_rules.setdefault(pk, []).append(rule.key)
    sku_map = catalog.read_skus(skus)
    health_map = catalog.read_health(health, unknowns)
    by_name: dict[str, list[str]] = {}
    for vm in vms.values():
        by_name.setdefault(vm.name.lower(), []).append(vm.key)

    frozen = MappingProxyType
    return Topology(
        vms=frozen(vms),
        nics=frozen(nics),
        ip_configs=frozen(ip_configs),
        vnets=frozen(vnets),
        subnets=frozen(subnets),
        load_balancers=frozen(lbs.load_balancers),
        frontends=frozen(lbs.frontends),
        rules=frozen(lbs.rules),
        pools=frozen(lbs.pools),
        probes=frozen(lbs.probes),
        skus=frozen(sku_map),
        health=frozen(health_map),
        unknowns=unknowns.ordered(),
        pool_members=frozen(pool_members),
        ip_config_pools=frozen({k: tuple(sorted(v)) for k, v in ip_config_pools.items()}),
        pool_rules=frozen({k: tuple(sorted(v)) for k, v in pool_rules.items()}),
        nic_vm=frozen(nic_vm),
        vms_by_name=frozen({k: tuple(sorted(v)) for k, v in by_name.items()}),
        unknowns_by_resource=frozen(unknowns.by_resource()),
        ignored_resources=docs.ignored,
    )
