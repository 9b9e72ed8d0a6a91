"""Pure: the shape of a remediation plan: the managed NIC as it must exist (`NicSpec`), the
VIPs to route (`RouteSpec`), the ordered idempotent steps (`Step`), one VM's part (`VmPlan`) and
the whole plan with its hash (`Plan`). `shared.core.remediation.plan` builds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core import arm_ids
from shared.core.arm_ids import normalize
from shared.core.vocab import PowerState, StepKind

__all__ = ["PLAN_VERSION", "NicSpec", "RouteSpec", "Step", "VmPlan", "Plan", "canonical_json",
           "nic_id_for"]

PLAN_VERSION = 1


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def nic_id_for(vm_id: str, nic_name: str) -> str:
    """The managed NIC lives in the VM's subscription and resource group."""
    parsed = arm_ids.parse(vm_id)
    return arm_ids.build(parsed.subscription, parsed.resource_group, "Microsoft.Network",
                         "networkInterfaces", nic_name)


@dataclass(frozen=True)
class NicSpec:
    """The managed secondary NIC as it must exist (ensure-nic creates exactly this)."""

    id: str
    name: str
    location: str | None
    subnet_id: str | None
    vnet_id: str | None
    private_ip: str | None
    gateway: str | None
    prefix_len: int | None
    nsg_id: str | None
    accelerated_networking: bool
    tags: Mapping[str, str]
    exists: bool  # already attached and tagged as ours

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "location": self.location,
                "subnet_id": self.subnet_id, "vnet_id": self.vnet_id,
                "private_ip": self.private_ip, "allocation": "Static",
                "gateway": self.gateway, "prefix_len": self.prefix_len, "nsg_id": self.nsg_id,
                "accelerated_networking": self.accelerated_networking,
                "public_ip": None, "ip_forwarding": False, "backend_pools": [],
                "primary": False, "tags": dict(self.tags), "exists": self.exists}

    def arm_body(self) -> dict[str, Any]:
        """The NIC document to PUT (no public IP, no forwarding, in no pool)."""
        body: dict[str, Any] = {
            "location": self.location,
            "tags": dict(self.tags),
            "properties": {
                "enableAcceleratedNetworking": self.accelerated_networking,
                "enableIPForwarding": False,
                "ipConfigurations": [{
                    "name": "ipconfig1",
                    "properties": {
                        "primary": True,
                        "privateIPAllocationMethod": "Static",
                        "privateIPAddress": self.private_ip,
                        "privateIPAddressVersion": "IPv4",
                        "subnet": {"id": self.subnet_id},
                    },
                }],
            },
        }
        if self.nsg_id:
            body["properties"]["networkSecurityGroup"] = {"id": self.nsg_id}
        return body


@dataclass(frozen=True)
class RouteSpec:
    """One VIP the guest must reach through the secondary NIC (one rule's ports)."""

    vip: str
    protocol: str  # Tcp | Udp | All
    frontend_port: int
    backend_port: int
    frontend_id: str
    rule_id: str

    @property
    def ha_ports(self) -> bool:
        return self.protocol.lower() == "all"

    def as_dict(self) -> dict[str, Any]:
        return {"vip": self.vip, "protocol": self.protocol, "frontend_port": self.frontend_port,
                "backend_port": self.backend_port, "frontend_id": self.frontend_id,
                "rule_id": self.rule_id, "ha_ports": self.ha_ports}


@dataclass(frozen=True)
class Step:
    kind: StepKind
    vm_id: str
    vm_name: str
    description: str
    precondition: str  # what the executor checks live before acting (skip when already true)
    changes: tuple[str, ...] = ()
    deallocates: bool = False
    fails_over: tuple[str, ...] = ()  # frontends that fail over while this step runs

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vm_id": self.vm_id, "vm_name": self.vm_name,
                "description": self.description, "precondition": self.precondition,
                "changes": list(self.changes), "deallocates": self.deallocates,
                "fails_over": list(self.fails_over)}


@dataclass(frozen=True)
class VmPlan:
    vm_id: str
    vm_name: str
    os_type: str | None
    power_state: PowerState | None
    likelihood: float
    serving: bool
    finding_ids: tuple[str, ...]
    routes: tuple[RouteSpec, ...]
    nic: NicSpec | None
    primary_ip: str | None
    primary_nic_id: str | None
    needs_deallocation: bool
    pool_ids: tuple[str, ...]
    takeover_peers: tuple[str, ...]
    fails_over: tuple[str, ...]
    steps: tuple[Step, ...]
    blockers: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def key(self) -> str:
        return normalize(self.vm_id)

    @property
    def vips(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.vip for r in self.routes))

    def as_dict(self) -> dict[str, Any]:
        return {"vm_id": self.vm_id, "vm_name": self.vm_name, "os_type": self.os_type,
                "power_state": self.power_state, "likelihood": self.likelihood,
                "serving": self.serving, "finding_ids": list(self.finding_ids),
                "routes": [r.as_dict() for r in self.routes],
                "nic": self.nic.as_dict() if self.nic else None,
                "primary_ip": self.primary_ip, "primary_nic_id": self.primary_nic_id,
                "needs_deallocation": self.needs_deallocation, "pool_ids": list(self.pool_ids),
                "takeover_peers": list(self.takeover_peers), "fails_over": list(self.fails_over),
                "steps": [s.as_dict() for s in self.steps], "blockers": list(self.blockers),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Plan:
    vms: tuple[VmPlan, ...]
    facts: Mapping[str, Any]
    hash: str
    target: Mapping[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for v in self.vms for s in v.steps)

    @property
    def empty(self) -> bool:
        return not self.vms

    @property
    def needs_deallocation(self) -> bool:
        return any(v.needs_deallocation for v in self.vms)

    @property
    def blockers(self) -> tuple[str, ...]:
        return tuple(f"{v.vm_name}: {b}" for v in self.vms for b in v.blockers)

    def vm(self, vm_id: str) -> VmPlan | None:
        key = normalize(vm_id)
        return next((v for v in self.vms if v.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION, "hash": self.hash, "target": dict(self.target),
            "deallocates": [v.vm_name for v in self.vms if v.needs_deallocation],
            "order": [v.vm_name for v in self.vms],
            "blockers": list(self.blockers),
            "vms": [v.as_dict() for v in self.vms],
            "steps": [dict(s.as_dict(), index=i + 1) for i, s in enumerate(self.steps)],
            "facts": dict(self.facts),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False, default=str)

    def to_text(self) -> str:
        if not self.vms:
            return "Nothing to do: no VM in scope has a high or medium finding.\n"
        lines = [f"Plan {self.hash}", f"Order: {' -> '.join(v.vm_name for v in self.vms)}"]
        dealloc = [v.vm_name for v in self.vms if v.needs_deallocation]
        lines.append("Deallocates: " + (", ".join(dealloc) if dealloc else "no VM"))
        n = 0
        for v in self.vms:
            role = ("serves frontends now" if v.serving
                    else "serves nothing now (likelihood 0)")
            lines.append("")
            power = v.power_state or "power state unknown"
            lines.append(f"== {v.vm_name} ({v.os_type or 'unknown OS'}, {power}; {role})")
            for b in v.blockers:
                lines.append(f"   BLOCKED: {b}")
            for note in v.notes:
                lines.append(f"   note: {note}")
            for s in v.steps:
                n += 1
                flag = "  [DEALLOCATES THE VM]" if s.deallocates else ""
                lines.append(f"{n:3d}. {s.kind}: {s.description}{flag}")
                for c in s.changes:
                    lines.append(f"       - {c}")
                for f in s.fails_over:
                    lines.append(f"       ! fails over: {f}")
                lines.append(f"       (skipped when: {s.precondition})")
        lines.append("")
        lines.append(f"Approve with: --approve {self.hash}")
        return "\n".join(lines) + "\n"
