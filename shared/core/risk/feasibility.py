"""Pure: can the secondary-NIC fix be applied to a VM for a frontend, and what would it need.

The remediation part of the evaluation (docs/risk-model.md): guest OS, NIC limit of the size,
subnet, gateway and a candidate address for the new NIC, deallocation, and the pool peers that
take over while the VM is down. `_Feasibility` is a mixin of `shared.core.risk.evaluate._Evaluator`, which
owns the state it reads and the caches it fills (`t`, `s`, `_used_ips`, `_allocators`,
`_vm_remediation`, `_remediations`, `_gateways`, `_full_subnets`, `_member_vms`) and provides
`vm_member_keys`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from shared.core import ipam
from shared.core.arm_ids import normalize
from shared.core.risk.model import Issue, Port, Remediation
from shared.core.topology import PoolMember, Vm

__all__ = ["SUPPORTED_OS", "UNKNOWN", "secondary_nic_name"]

SUPPORTED_OS = ("Windows", "Linux")
UNKNOWN = "unknown"


def secondary_nic_name(vm_name: str) -> str:
    """Deterministic name of the managed secondary NIC (ARM network names: at most 80 chars)."""
    suffix = "-hairpin-nic"
    return vm_name[: 80 - len(suffix)] + suffix


class _Feasibility:
    """Remediation feasibility per VM (cached) and per (VM, HA-ports rule or not)."""

    # ----------------------------------------------------------------- remediation
    def used_ips(self, subnet_key: str) -> set:
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

    def vm_remediation(self, vm: Vm) -> tuple:
        """VM-level part of the feasibility (same for every frontend of the VM); cached."""
        cached = self._vm_remediation.get(vm.key)
        if cached is not None:
            return cached
        t, s = self.t, self.s
        blockers: list[Issue] = []
        unknowns: list[Issue] = []
        notes: list[str] = []
        hints: dict[str, Any] = {"os_type": vm.os_type}

        nics = [t.nics[k] for k in vm.nic_keys if k in t.nics]
        primary = t.nics.get(vm.primary_nic_key) if vm.primary_nic_key else None
        managed = [n for n in nics if n.key != vm.primary_nic_key and n.is_managed(s.managed_tag)]
        needs_new_nic = not managed
        primary_cfg = primary.primary_ip_config if primary else None
        if primary_cfg is None:
            unknowns.append(
                Issue(
                    "primary_nic_unknown",
                    "the VM's primary NIC or its primary IP configuration is not known",
                )
            )
        else:
            hints["primary_ip"] = primary_cfg.private_ip

        # Guest OS: both supported (Linux needs the policy routing of AZURE-FACTS section 3).
        if vm.os_type is None:
            unknowns.append(Issue("os_type_unknown", "the guest OS type is not known"))
        elif vm.os_type not in SUPPORTED_OS:
            blockers.append(Issue("os_unsupported", f"guest OS {vm.os_type!r} is not supported"))
        if vm.agent_ready is False:
            notes.append("the VM agent is not ready: guest routes wait until it reports Ready")

        if managed:
            nic = sorted(managed, key=lambda n: n.key)[0]
            cfg = nic.primary_ip_config
            hints.update(
                {
                    "existing_nic_id": nic.id,
                    "name": nic.name,
                    "subnet_id": cfg.subnet_id if cfg else None,
                    "candidate_ip": cfg.private_ip if cfg else None,
                    "nsg_id": nic.nsg_id,
                    "accelerated_networking": nic.accelerated_networking,
                }
            )
            subnet = t.subnets.get(cfg.subnet_key) if cfg and cfg.subnet_key else None
            if subnet is not None and subnet.gateway is not None:
                hints["gateway"] = subnet.gateway
                hints["vnet_id"] = (
                    t.vnets[subnet.vnet_key].id if subnet.vnet_key in t.vnets else None
                )
            notes.append(
                f"managed secondary NIC {nic.name} is already attached: only guest routes change"
            )
        else:
            self._plan_new_nic(vm, nics, primary, primary_cfg, blockers, unknowns, notes, hints)

        # Deallocation: attaching a NIC needs the VM deallocated (AZURE-FACTS section 2).
        if not needs_new_nic:
            needs_deallocation: bool | None = False
        elif vm.power_state == "deallocated":
            needs_deallocation = False
            notes.append("the VM is already deallocated: the NIC can be attached before it starts")
        elif vm.power_state is None:
            needs_deallocation = True
            unknowns.append(Issue("power_state_unknown", "the VM's power state is not known"))
        else:
            needs_deallocation = True

        takeover, not_running = self._pool_peers(vm, needs_deallocation, blockers, unknowns)
        result = (
            tuple(blockers),
            tuple(unknowns),
            needs_new_nic,
            needs_deallocation,
            tuple(notes),
            hints,
            takeover,
            not_running,
        )
        self._vm_remediation[vm.key] = result
        return result

    def _plan_new_nic(self, vm, nics, primary, primary_cfg, blockers, unknowns, notes, hints):
        t, s = self.t, self.s
        hints["name"] = secondary_nic_name(vm.name)
        # NIC limit of the size (Microsoft.Compute/skus MaxNetworkInterfaces); never assumed.
        if vm.size is None:
            unknowns.append(
                Issue("vm_size_unknown", "the VM size is not known, so its NIC limit is not")
            )
        else:
            sku = t.sku(vm.size)
            if sku is None or sku.max_nics is None:
                unknowns.append(
                    Issue(
                        "nic_limit_unknown",
                        f"size {vm.size} has no MaxNetworkInterfaces in the SKU list",
                    )
                )
            elif len(vm.nic_keys) >= sku.max_nics:
                blockers.append(
                    Issue(
                        "nic_limit_reached",
                        f"size {vm.size} allows {sku.max_nics} NICs and the VM has "
                        f"{len(vm.nic_keys)}; resizing is outside this fix",
                    )
                )
            # Accelerated networking only where the size allows it; match the primary NIC.
            if sku is not None and sku.accelerated_networking is not None:
                hints["accelerated_networking"] = bool(
                    sku.accelerated_networking
                    and primary is not None
                    and primary.accelerated_networking
                )
            else:
                hints["accelerated_networking"] = False
                notes.append(
                    "accelerated networking support of the size is unknown: "
                    "the secondary NIC is planned without it"
                )
        if "accelerated_networking" not in hints:
            hints["accelerated_networking"] = False
        if primary is not None:
            hints["nsg_id"] = primary.nsg_id  # same posture as the primary NIC, never weaker

        # Subnet: settings override, else the primary NIC's; it must be in the same VNet.
        subnet_key = (
            normalize(s.secondary_subnet_id)
            if s.secondary_subnet_id
            else (primary_cfg.subnet_key if primary_cfg else None)
        )
        if subnet_key is None:
            unknowns.append(
                Issue("subnet_unknown", "no subnet for the secondary NIC could be found")
            )
            return
        subnet = t.subnets.get(subnet_key)
        primary_vnet = primary_cfg.vnet_key if primary_cfg else None
        target_vnet = subnet.vnet_key if subnet else subnet_key.rpartition("/subnets/")[0]
        if primary_vnet is not None and target_vnet != primary_vnet:
            blockers.append(
                Issue(
                    "different_vnet",
                    "the secondary subnet is in another virtual network than the "
                    "primary NIC; all NICs of a VM must share one VNet",
                )
            )
        if subnet is None:
            hints["subnet_id"] = s.secondary_subnet_id or (
                primary_cfg.subnet_id if primary_cfg else None
            )
            unknowns.append(Issue("subnet_unknown", f"subnet {subnet_key} is not in the documents"))
            return
        hints["subnet_id"] = subnet.id
        hints["vnet_id"] = t.vnets[subnet.vnet_key].id if subnet.vnet_key in t.vnets else None
        if subnet.prefix is None:
            unknowns.append(
                Issue("subnet_prefix_unknown", f"subnet {subnet.name} has no address prefix")
            )
            return
        allocator = self._allocators.get(subnet.key)
        if allocator is None:
            try:
                allocator = ipam.AddressAllocator(subnet.prefix, self.used_ips(subnet.key))
            except ValueError as exc:
                blockers.append(Issue("subnet_too_small", str(exc)))
                return
            self._allocators[subnet.key] = allocator
        gateway = self._gateways.get(subnet.key)
        if gateway is None:
            gateway = self._gateways[subnet.key] = subnet.gateway
        hints["gateway"] = gateway
        prefer = []
        if primary_cfg is not None and primary_cfg.private_ip is not None:
            # the seed article's .10 -> .11
            primary_value = ipam.address_value(primary_cfg.private_ip)
            if primary_value is not None:
                prefer.append(primary_value + 1)
        # Each VM gets its own candidate (handed out in VM-ID order, so deterministic).
        candidate = allocator.take(prefer)
        if candidate is None:
            blockers.append(self._subnet_full(subnet))
            return
        hints["candidate_ip"] = str(candidate)

    def _subnet_full(self, subnet) -> Issue:
        """One immutable blocker per full subnet, shared by its VMs (formatting it is not free)."""
        issue = self._full_subnets.get(subnet.key)
        if issue is None:
            issue = Issue(
                "subnet_full", f"subnet {subnet.name} ({subnet.prefix}) has no free address"
            )
            self._full_subnets[subnet.key] = issue
        return issue

    def _pool_peers(
        self, vm: Vm, needs_deallocation: bool | None, blockers: list[Issue], unknowns: list[Issue]
    ):
        """Running peers take over while the VM is down; a non-running peer forbids it."""
        t = self.t
        own = self.vm_member_keys(vm)
        pool_keys = sorted({pk for ck in own for pk in t.ip_config_pools.get(ck, ())})
        takeover: set[str] = set()
        not_running: set[str] = set()
        will_go_down = needs_deallocation is not False and vm.power_state != "stopped"
        for pk in pool_keys:
            running, stopped, unsure = set(), set(), set()
            for m, peer in self._pool_member_vms(pk):
                if m.ip_config_key in own:
                    continue
                if peer is None:
                    unsure.add(m.ip if m.ip is not None else "an unknown member")
                elif peer.key == vm.key:
                    continue
                elif peer.power_state == "running":
                    running.add(peer.name)
                elif peer.power_state is None:
                    unsure.add(peer.name)
                else:
                    stopped.add(peer.name)
            pool = t.pools.get(pk)
            pool_name = pool.name if pool else pk.rsplit("/", 1)[-1]
            takeover |= running
            not_running |= stopped
            if not will_go_down:
                continue
            if stopped:
                blockers.append(
                    Issue(
                        "pool_peer_not_running",
                        f"pool {pool_name}: {', '.join(sorted(stopped))} not running; "
                        "deallocating this VM could leave the pool without backends",
                    )
                )
            elif not running and unsure:
                unknowns.append(
                    Issue(
                        "pool_peer_state_unknown",
                        f"pool {pool_name}: power state of {', '.join(sorted(unsure))} "
                        "unknown, so it is not known whether another member stays up",
                    )
                )
            elif not running:
                blockers.append(
                    Issue(
                        "last_running_member",
                        f"pool {pool_name}: this VM is the only running member; "
                        "deallocating it would take the service down",
                    )
                )
        return tuple(sorted(takeover)), tuple(sorted(not_running))

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

    def remediation(self, vm: Vm, ports: tuple[Port, ...]) -> Remediation:
        """Cached per (VM, HA-ports or not): immutable, so findings of one VM share it."""
        ha_ports = any(p.ha_ports for p in ports)
        cached = self._remediations.get((vm.key, ha_ports))
        if cached is None:
            cached = self._remediations[(vm.key, ha_ports)] = self._remediation(vm, ha_ports)
        return cached

    def _remediation(self, vm: Vm, ha_ports: bool) -> Remediation:
        (
            blockers,
            unknowns,
            needs_new_nic,
            needs_deallocation,
            notes,
            hints,
            takeover,
            not_running,
        ) = self.vm_remediation(vm)
        if ha_ports:
            if vm.os_type == "Linux" and not self.s.allow_broad_ha_ports_rule:
                blockers += (
                    Issue(
                        "ha_ports_needs_broad_rule",
                        "HA-ports rule: the Linux policy rule cannot be narrowed by "
                        "port; set HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE to accept the "
                        "broad rule (it also reroutes local traffic between the VM's "
                        "two addresses)",
                    ),
                )
            elif vm.os_type == "Linux":
                notes += ("HA-ports rule: the broad Linux policy rule is allowed by settings",)
        if blockers:
            feasible: bool | str = False
        elif unknowns:
            feasible = UNKNOWN
        else:
            feasible = True
        return Remediation(
            feasible,
            blockers,
            unknowns,
            needs_new_nic,
            needs_deallocation,
            notes,
            MappingProxyType(dict(hints)),
            takeover,
            not_running,
        )
