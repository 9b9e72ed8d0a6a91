"""Pure: can the secondary-NIC fix be applied to a VM for a frontend, and what would it need.

The remediation part of the evaluation (docs/risk-model.md): guest OS, NIC limit of the size,
subnet, gateway and a candidate address for the new NIC, deallocation, and the pool peers that
take over while the VM is down. `Feasibility` is built once per evaluation and caches what every
VM of a subnet or pool shares (used addresses, allocators, gateways, pool members).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from shared.core import ipam
from shared.core.arm_ids import normalize
from shared.core.risk.model import Issue, Port, Remediation
from shared.core.topology import IpConfig, Nic, PoolMember, Subnet, Topology, Vm
from shared.core.vocab import PowerState
from shared.settings import Settings

__all__ = ["SUPPORTED_OS", "UNKNOWN", "Feasibility", "secondary_nic_name"]

SUPPORTED_OS = ("Windows", "Linux")
UNKNOWN = "unknown"


def secondary_nic_name(vm_name: str) -> str:
    """Deterministic name of the managed secondary NIC (ARM network names: at most 80 chars)."""
    suffix = "-hairpin-nic"
    return vm_name[: 80 - len(suffix)] + suffix


@dataclass
class _Draft:
    """What one VM's feasibility collects while it is worked out."""

    blockers: list[Issue] = field(default_factory=list)
    unknowns: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _VmPart:
    """The VM-level part of the feasibility, the same for every frontend of the VM."""

    blockers: tuple[Issue, ...]
    unknowns: tuple[Issue, ...]
    needs_new_nic: bool
    needs_deallocation: bool | None
    notes: tuple[str, ...]
    hints: dict[str, Any]
    takeover: tuple[str, ...]
    not_running: tuple[str, ...]


class Feasibility:
    """Remediation feasibility per VM (cached) and per (VM, HA-ports rule or not).

    `member_keys(vm)` gives the VM's ipConfiguration keys (the evaluation's own cache)."""

    def __init__(self, topology: Topology, settings: Settings,
                 member_keys: Callable[[Vm], set[str]]) -> None:
        self.t = topology
        self.s = settings
        self._member_keys = member_keys
        self._used_ips: dict[str, set] | None = None
        self._allocators: dict[str, ipam.AddressAllocator] = {}
        self._vm_parts: dict[str, _VmPart] = {}
        self._remediations: dict[tuple[str, bool], Remediation] = {}
        self._gateways: dict[str, str | None] = {}
        self._full_subnets: dict[str, Issue] = {}
        self._member_vms: dict[str, list[tuple[PoolMember, Vm | None]]] = {}

    # ----------------------------------------------------------------- entry point
    def remediation(self, vm: Vm, ports: tuple[Port, ...]) -> Remediation:
        """Cached per (VM, HA-ports or not): immutable, so findings of one VM share it."""
        ha_ports = any(p.ha_ports for p in ports)
        cached = self._remediations.get((vm.key, ha_ports))
        if cached is None:
            cached = self._remediations[(vm.key, ha_ports)] = self._remediation(vm, ha_ports)
        return cached

    def _remediation(self, vm: Vm, ha_ports: bool) -> Remediation:
        part = self.vm_part(vm)
        blockers, notes = part.blockers, part.notes
        if ha_ports:
            if vm.os_type == "Linux" and not self.s.allow_broad_ha_ports_rule:
                blockers += (Issue(
                    "ha_ports_needs_broad_rule",
                    "HA-ports rule: the Linux policy rule cannot be narrowed by port; set "
                    "HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE to accept the broad rule (it also "
                    "reroutes local traffic between the VM's two addresses)"),)
            elif vm.os_type == "Linux":
                notes += ("HA-ports rule: the broad Linux policy rule is allowed by settings",)
        if blockers:
            feasible: bool | str = False
        elif part.unknowns:
            feasible = UNKNOWN
        else:
            feasible = True
        return Remediation(feasible, blockers, part.unknowns, part.needs_new_nic,
                           part.needs_deallocation, notes, MappingProxyType(dict(part.hints)),
                           part.takeover, part.not_running)

    # ----------------------------------------------------------------- the VM part
    def vm_part(self, vm: Vm) -> _VmPart:
        cached = self._vm_parts.get(vm.key)
        if cached is not None:
            return cached
        t = self.t
        d = _Draft(hints={"os_type": vm.os_type})
        primary = t.nics.get(vm.primary_nic_key) if vm.primary_nic_key else None
        managed = t.managed_nics(vm, self.s.managed_tag)
        primary_cfg = primary.primary_ip_config if primary else None
        if primary_cfg is None:
            d.unknowns.append(Issue("primary_nic_unknown", "the VM's primary NIC or its primary "
                                                           "IP configuration is not known"))
        else:
            d.hints["primary_ip"] = primary_cfg.private_ip
        # Guest OS: both supported (Linux needs policy routing: docs/azure-facts.md).
        if vm.os_type is None:
            d.unknowns.append(Issue("os_type_unknown", "the guest OS type is not known"))
        elif vm.os_type not in SUPPORTED_OS:
            d.blockers.append(Issue("os_unsupported", f"guest OS {vm.os_type!r} is not supported"))
        if vm.agent_ready is False:
            d.notes.append("the VM agent is not ready: guest routes wait until it reports Ready")
        if managed:
            self._existing_nic(min(managed, key=lambda n: n.key), d)
        else:
            self._new_nic(vm, primary, primary_cfg, d)
        needs_new_nic = not managed
        needs_deallocation = self._deallocation(vm, needs_new_nic, d)
        takeover, not_running = self._pool_peers(vm, needs_deallocation, d)
        part = _VmPart(tuple(d.blockers), tuple(d.unknowns), needs_new_nic, needs_deallocation,
                       tuple(d.notes), d.hints, takeover, not_running)
        self._vm_parts[vm.key] = part
        return part

    def _existing_nic(self, nic: Nic, d: _Draft) -> None:
        t = self.t
        cfg = nic.primary_ip_config
        d.hints.update({
            "existing_nic_id": nic.id,
            "name": nic.name,
            "subnet_id": cfg.subnet_id if cfg else None,
            "candidate_ip": cfg.private_ip if cfg else None,
            "nsg_id": nic.nsg_id,
            "accelerated_networking": nic.accelerated_networking,
        })
        subnet = t.subnets.get(cfg.subnet_key) if cfg and cfg.subnet_key else None
        if subnet is not None and subnet.gateway is not None:
            d.hints["gateway"] = subnet.gateway
            d.hints["vnet_id"] = t.vnets[subnet.vnet_key].id if subnet.vnet_key in t.vnets else None
        d.notes.append(f"managed secondary NIC {nic.name} is already attached: only guest routes "
                       "change")

    @staticmethod
    def _deallocation(vm: Vm, needs_new_nic: bool, d: _Draft) -> bool | None:
        """Attaching a NIC needs the VM deallocated (docs/azure-facts.md)."""
        if not needs_new_nic:
            return False
        if vm.power_state == PowerState.DEALLOCATED:
            d.notes.append("the VM is already deallocated: the NIC can be attached before it "
                           "starts")
            return False
        if vm.power_state is None:
            d.unknowns.append(Issue("power_state_unknown", "the VM's power state is not known"))
        return True

    # ----------------------------------------------------------------- a new NIC
    def _new_nic(self, vm: Vm, primary: Nic | None, primary_cfg: IpConfig | None,
                 d: _Draft) -> None:
        d.hints["name"] = secondary_nic_name(vm.name)
        self._nic_limit(vm, primary, d)
        if primary is not None:
            d.hints["nsg_id"] = primary.nsg_id  # same posture as the primary NIC, never weaker
        subnet = self._subnet(primary_cfg, d)
        if subnet is not None:
            self._candidate(subnet, primary_cfg, d)

    def _nic_limit(self, vm: Vm, primary: Nic | None, d: _Draft) -> None:
        """NIC limit of the size (Microsoft.Compute/skus MaxNetworkInterfaces): never assumed;
        accelerated networking only where the size allows it, matching the primary NIC."""
        if vm.size is None:
            d.unknowns.append(Issue("vm_size_unknown",
                                    "the VM size is not known, so its NIC limit is not"))
        else:
            sku = self.t.sku(vm.size)
            if sku is None or sku.max_nics is None:
                d.unknowns.append(Issue(
                    "nic_limit_unknown", f"size {vm.size} has no MaxNetworkInterfaces in the "
                                         "SKU list"))
            elif len(vm.nic_keys) >= sku.max_nics:
                d.blockers.append(Issue(
                    "nic_limit_reached", f"size {vm.size} allows {sku.max_nics} NICs and the VM "
                                         f"has {len(vm.nic_keys)}; resizing is outside this fix"))
            if sku is not None and sku.accelerated_networking is not None:
                d.hints["accelerated_networking"] = bool(
                    sku.accelerated_networking and primary is not None
                    and primary.accelerated_networking)
            else:
                d.hints["accelerated_networking"] = False
                d.notes.append("accelerated networking support of the size is unknown: the "
                               "secondary NIC is planned without it")
        if "accelerated_networking" not in d.hints:
            d.hints["accelerated_networking"] = False

    def _subnet(self, primary_cfg: IpConfig | None, d: _Draft) -> Subnet | None:
        """Settings override, else the primary NIC's subnet; it must be in the same VNet."""
        s, t = self.s, self.t
        subnet_key = (normalize(s.secondary_subnet_id) if s.secondary_subnet_id
                      else (primary_cfg.subnet_key if primary_cfg else None))
        if subnet_key is None:
            d.unknowns.append(Issue("subnet_unknown",
                                    "no subnet for the secondary NIC could be found"))
            return None
        subnet = t.subnets.get(subnet_key)
        primary_vnet = primary_cfg.vnet_key if primary_cfg else None
        target_vnet = subnet.vnet_key if subnet else subnet_key.rpartition("/subnets/")[0]
        if primary_vnet is not None and target_vnet != primary_vnet:
            d.blockers.append(Issue("different_vnet", "the secondary subnet is in another "
                                    "virtual network than the primary NIC; all NICs of a VM "
                                    "must share one VNet"))
        if subnet is None:
            d.hints["subnet_id"] = s.secondary_subnet_id or (
                primary_cfg.subnet_id if primary_cfg else None)
            d.unknowns.append(Issue("subnet_unknown",
                                    f"subnet {subnet_key} is not in the documents"))
            return None
        d.hints["subnet_id"] = subnet.id
        d.hints["vnet_id"] = t.vnets[subnet.vnet_key].id if subnet.vnet_key in t.vnets else None
        if subnet.prefix is None:
            d.unknowns.append(Issue("subnet_prefix_unknown",
                                    f"subnet {subnet.name} has no address prefix"))
            return None
        return subnet

    def _candidate(self, subnet: Subnet, primary_cfg: IpConfig | None, d: _Draft) -> None:
        """The gateway and a free address (each VM its own, handed out in VM-ID order)."""
        allocator = self._allocators.get(subnet.key)
        if allocator is None:
            try:
                allocator = ipam.AddressAllocator(subnet.prefix, self._used(subnet.key))
            except ValueError as exc:
                d.blockers.append(Issue("subnet_too_small", str(exc)))
                return
            self._allocators[subnet.key] = allocator
        gateway = self._gateways.get(subnet.key)
        if gateway is None:
            gateway = self._gateways[subnet.key] = subnet.gateway
        d.hints["gateway"] = gateway
        prefer = []
        if primary_cfg is not None and primary_cfg.private_ip is not None:
            primary_value = ipam.address_value(primary_cfg.private_ip)  # the article's .10 -> .11
            if primary_value is not None:
                prefer.append(primary_value + 1)
        candidate = allocator.take(prefer)
        if candidate is None:
            d.blockers.append(self._subnet_full(subnet))
            return
        d.hints["candidate_ip"] = str(candidate)

    def _used(self, subnet_key: str) -> set:
        """Addresses taken in a subnet (NIC ipConfigurations and frontends), indexed once."""
        if self._used_ips is None:
            used: dict[str, set] = {}
            for c in self.t.ip_configs.values():
                if c.subnet_key is not None and c.private_ip is not None:
                    used.setdefault(c.subnet_key, set()).add(c.private_ip)
            for f in self.t.frontends.values():
                if f.subnet_key is not None and f.private_ip is not None:
                    used.setdefault(f.subnet_key, set()).add(f.private_ip)
            self._used_ips = used
        return self._used_ips.get(subnet_key, set())

    def _subnet_full(self, subnet: Subnet) -> Issue:
        """One immutable blocker per full subnet, shared by its VMs (formatting it is not free)."""
        issue = self._full_subnets.get(subnet.key)
        if issue is None:
            issue = self._full_subnets[subnet.key] = Issue(
                "subnet_full", f"subnet {subnet.name} ({subnet.prefix}) has no free address")
        return issue

    # ----------------------------------------------------------------- pool peers
    def _pool_peers(self, vm: Vm, needs_deallocation: bool | None,
                    d: _Draft) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Running peers take over while the VM is down; a non-running peer forbids it."""
        t = self.t
        own = self._member_keys(vm)
        pool_keys = sorted({pk for ck in own for pk in t.ip_config_pools.get(ck, ())})
        takeover: set[str] = set()
        not_running: set[str] = set()
        will_go_down = needs_deallocation is not False and vm.power_state != PowerState.STOPPED
        for pk in pool_keys:
            running, stopped, unsure = self._peer_states(vm, own, pk)
            takeover |= running
            not_running |= stopped
            if will_go_down:
                pool = t.pools.get(pk)
                self._pool_issue(pool.name if pool else pk.rsplit("/", 1)[-1],
                                 running, stopped, unsure, d)
        return tuple(sorted(takeover)), tuple(sorted(not_running))

    def _peer_states(self, vm: Vm, own: set[str],
                     pool_key: str) -> tuple[set[str], set[str], set[str]]:
        running, stopped, unsure = set(), set(), set()
        for m, peer in self._pool_member_vms(pool_key):
            if m.ip_config_key in own:
                continue
            if peer is None:
                unsure.add(m.ip if m.ip is not None else "an unknown member")
            elif peer.key == vm.key:
                continue
            elif peer.power_state == PowerState.RUNNING:
                running.add(peer.name)
            elif peer.power_state is None:
                unsure.add(peer.name)
            else:
                stopped.add(peer.name)
        return running, stopped, unsure

    @staticmethod
    def _pool_issue(pool_name: str, running: set[str], stopped: set[str], unsure: set[str],
                    d: _Draft) -> None:
        if stopped:
            d.blockers.append(Issue(
                "pool_peer_not_running", f"pool {pool_name}: {', '.join(sorted(stopped))} not "
                "running; deallocating this VM could leave the pool without backends"))
        elif not running and unsure:
            d.unknowns.append(Issue(
                "pool_peer_state_unknown", f"pool {pool_name}: power state of "
                f"{', '.join(sorted(unsure))} unknown, so it is not known whether another "
                "member stays up"))
        elif not running:
            d.blockers.append(Issue(
                "last_running_member", f"pool {pool_name}: this VM is the only running member; "
                "deallocating it would take the service down"))

    def _pool_member_vms(self, pool_key: str) -> list[tuple[PoolMember, Vm | None]]:
        """A pool's members with their VMs (cached: every VM of the pool looks at its peers)."""
        rows = self._member_vms.get(pool_key)
        if rows is None:
            t = self.t
            rows = []
            for m in t.pool_members.get(pool_key, ()):
                cfg = t.ip_configs.get(m.ip_config_key) if m.ip_config_key else None
                vm_key = t.nic_vm.get(cfg.nic_key) if cfg else None
                rows.append((m, t.vms.get(vm_key) if vm_key else None))
            self._member_vms[pool_key] = rows
        return rows
