"""Pure: an immutable model of an Azure estate, built from raw ARM documents.

Input is exactly what ARM (or Resource Graph) returns: VM, NIC, VNet, subnet and load balancer
documents, `Microsoft.Compute/skus` list items, and per-rule health responses. Nothing here
trusts a field to be present or well-typed: a missing or odd value becomes `None` plus an
`Unknown` fact (resource, field, what was wrong) that findings report, never an exception.

Every ID is compared through its normalised key (`arm_ids.normalize`: lowercase); objects keep
the ID as ARM spelled it in `id` and the comparison form in `key`.

Layout: this module holds `Topology` with its lookups; the resource types are in `resources`,
missing facts in `unknowns`; building from the
documents is `shared.core.topology.build` (`build_topology`, `topology_from_snapshot`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from shared.core.arm_ids import normalize
from shared.core.topology.resources import (
    BackendPool,
    Frontend,
    IpConfig,
    LbRule,
    LoadBalancer,
    Nic,
    PoolMember,
    Probe,
    RuleHealth,
    Sku,
    Subnet,
    Vm,
    VNet,
)
from shared.core.topology.unknowns import Unknown

__all__ = ["Topology", "gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small immutable objects.

    The model has no reference cycles; with tens of thousands of documents alive, automatic
    full collections otherwise cost as much as the work itself (measured: half the time of
    bench/bench_evaluate.py). Restores the previous state, also on error.

    What survives the pause is long-lived and acyclic (documents, topology, findings, report),
    so it is moved to the collector's permanent generation (`gc.freeze`) before collection
    resumes: else the first pass after the pause scans all of it, and frees nothing (measured:
    a third of a second after a 10k-VM audit). Refcounting still frees it when dropped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class Topology:
    """The estate. Mappings are keyed by normalised ID; build with `from_documents`."""

    vms: Mapping[str, Vm]
    nics: Mapping[str, Nic]
    ip_configs: Mapping[str, IpConfig]
    vnets: Mapping[str, VNet]
    subnets: Mapping[str, Subnet]
    load_balancers: Mapping[str, LoadBalancer]
    frontends: Mapping[str, Frontend]
    rules: Mapping[str, LbRule]
    pools: Mapping[str, BackendPool]
    probes: Mapping[str, Probe]
    skus: Mapping[str, Sku]  # lowercase size name
    health: Mapping[str, RuleHealth]  # rule key
    unknowns: tuple[Unknown, ...]
    # indices
    pool_members: Mapping[str, tuple[PoolMember, ...]] = field(repr=False)
    ip_config_pools: Mapping[str, tuple[str, ...]] = field(repr=False)
    pool_rules: Mapping[str, tuple[str, ...]] = field(repr=False)
    nic_vm: Mapping[str, str] = field(repr=False)
    vms_by_name: Mapping[str, tuple[str, ...]] = field(repr=False)
    unknowns_by_resource: Mapping[str, tuple[Unknown, ...]] = field(repr=False)
    ignored_resources: int = 0

    # ----------------------------------------------------------------- lookups
    def vm(self, id_or_name: str) -> Vm | None:
        """By resource ID, or by name when exactly one VM has that name."""
        found = self.vms.get(normalize(id_or_name))
        if found is not None:
            return found
        keys = self.vms_by_name.get(id_or_name.strip().lower(), ())
        return self.vms[keys[0]] if len(keys) == 1 else None

    def vms_named(self, name: str) -> tuple[Vm, ...]:
        return tuple(self.vms[k] for k in self.vms_by_name.get(name.strip().lower(), ()))

    def nic(self, nic_id: str) -> Nic | None:
        return self.nics.get(normalize(nic_id))

    def ip_config(self, ip_config_id: str) -> IpConfig | None:
        return self.ip_configs.get(normalize(ip_config_id))

    def subnet(self, subnet_id: str) -> Subnet | None:
        return self.subnets.get(normalize(subnet_id))

    def load_balancer(self, lb_id: str) -> LoadBalancer | None:
        return self.load_balancers.get(normalize(lb_id))

    def frontend(self, frontend_id: str) -> Frontend | None:
        return self.frontends.get(normalize(frontend_id))

    def rule(self, rule_id: str) -> LbRule | None:
        return self.rules.get(normalize(rule_id))

    def pool(self, pool_id: str) -> BackendPool | None:
        return self.pools.get(normalize(pool_id))

    def nics_of_vm(self, vm_id: str) -> tuple[Nic, ...]:
        vm = self.vms.get(normalize(vm_id))
        if vm is None:
            return ()
        return tuple(self.nics[k] for k in vm.nic_keys if k in self.nics)

    def managed_nics(self, vm: Vm, managed_tag: str) -> tuple[Nic, ...]:
        """The VM's NICs this project created (tagged `<managed_tag>=true`), never the primary."""
        return tuple(self.nics[k] for k in vm.nic_keys
                     if k != vm.primary_nic_key and k in self.nics
                     and self.nics[k].is_managed(managed_tag))

    def vm_of_nic(self, nic_id: str) -> Vm | None:
        key = self.nic_vm.get(normalize(nic_id))
        return self.vms.get(key) if key else None

    def vm_of_ip_config(self, ip_config_id: str) -> Vm | None:
        cfg = self.ip_configs.get(normalize(ip_config_id))
        return self.vm_of_nic(cfg.nic_key) if cfg else None

    def pool_keys_of_vm(self, vm: Vm) -> list[str]:
        """Keys of every backend pool any IP configuration of the VM is in, sorted."""
        keys: set[str] = set()
        for nk in vm.nic_keys:
            nic = self.nics.get(nk)
            for cfg in nic.ip_configs if nic else ():
                keys.update(self.ip_config_pools.get(cfg.key, ()))
        return sorted(keys)

    def ip_config_keys(self, vm: Vm) -> set[str]:
        """Keys of every IP configuration of the VM's NICs."""
        return {c.key for nk in vm.nic_keys if nk in self.nics for c in self.nics[nk].ip_configs}

    def pool_peers(self, vm: Vm) -> tuple[Vm, ...]:
        """The other VMs in any backend pool the VM is in (members that are known VMs)."""
        own = self.ip_config_keys(vm)
        peers: dict[str, Vm] = {}
        for pk in self.pool_keys_of_vm(vm):
            for m in self.members_of_pool(pk):
                if m.ip_config_key is None or m.ip_config_key in own:
                    continue
                peer = self.vm_of_ip_config(m.ip_config_key)
                if peer is not None and peer.key != vm.key:
                    peers[peer.key] = peer
        return tuple(peers[k] for k in sorted(peers))

    def pools_of_ip_config(self, ip_config_id: str) -> tuple[BackendPool, ...]:
        return tuple(
            self.pools[k]
            for k in self.ip_config_pools.get(normalize(ip_config_id), ())
            if k in self.pools
        )

    def members_of_pool(self, pool_id: str) -> tuple[PoolMember, ...]:
        return self.pool_members.get(normalize(pool_id), ())

    def rules_of_pool(self, pool_id: str) -> tuple[LbRule, ...]:
        return tuple(self.rules[k] for k in self.pool_rules.get(normalize(pool_id), ()))

    def health_of_rule(self, rule_id: str) -> RuleHealth | None:
        return self.health.get(normalize(rule_id))

    def sku(self, size: str | None) -> Sku | None:
        return self.skus.get(size.lower()) if size else None

    def unknowns_for(self, *resource_ids: str | None) -> tuple[Unknown, ...]:
        out: list[Unknown] = []
        for rid in resource_ids:
            if rid:
                out.extend(self.unknowns_by_resource.get(normalize(rid), ()))
        return tuple(out)

    def used_ips_in_subnet(self, subnet_id: str) -> frozenset[str]:
        """Addresses taken in a subnet: NIC ipConfigurations and load balancer frontends."""
        key = normalize(subnet_id)
        used = {
            c.private_ip
            for c in self.ip_configs.values()
            if c.subnet_key == key and c.private_ip is not None
        }
        used |= {
            f.private_ip
            for f in self.frontends.values()
            if f.subnet_key == key and f.private_ip is not None
        }
        return frozenset(used)
