"""Pure: the checks made before a VM's first deallocation, so that a VM is never taken down
unless every later step can succeed (docs/operations.md, "Preflight").

The service (`shared.services.remediation.preflight`) reads what these judge: the identity's
effective permissions (`Microsoft.Authorization/permissions` at the VM's and the NIC's scope),
the live VM and NIC, the time left, and the read-only guest probe's answer. Each check gives a
reason or None; the first failure stops the run before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from shared.core import arm_ids
from shared.core.topology import Topology
from shared.core.vocab import PreflightCheck

__all__ = ["Preflight", "needed_actions", "missing_actions", "size_problem", "nic_problem",
           "budget_needed", "budget_problem", "probe_problem"]

COMPUTE = "Microsoft.Compute/virtualMachines"


def needed_actions(vm_id: str, nic_id: str, *, starts: bool) -> dict[str, tuple[str, ...]]:
    """RBAC actions the steps after the preflight need, by the scope ARM checks them at: the
    VM (deallocate, PATCH of its NIC list, start, Run Command, reads) and the NIC (linked
    join on the PATCH)."""
    vm = [f"{COMPUTE}/read", f"{COMPUTE}/write", f"{COMPUTE}/deallocate/action",
          f"{COMPUTE}/runCommand/action"]
    if starts:
        vm.append(f"{COMPUTE}/start/action")
    return {vm_id: tuple(vm), nic_id: ("Microsoft.Network/networkInterfaces/join/action",)}


@cache
def _pattern(action: str) -> re.Pattern[str]:
    # ARM action patterns: '*' is the only wildcard; matching ignores case.
    return re.compile(".*".join(re.escape(p) for p in action.split("*")), re.IGNORECASE)


def _allows(permission: Mapping, action: str) -> bool:
    def hit(patterns) -> bool:
        return any(_pattern(str(p)).fullmatch(action) for p in patterns or ())

    return hit(permission.get("actions")) and not hit(permission.get("notActions"))


def missing_actions(permissions: Sequence[Mapping], needed: Iterable[str]) -> list[str]:
    """The needed actions that no permission entry allows (an entry allows its `actions`
    except its `notActions`; the effective set is the union of the entries)."""
    return [a for a in needed if not any(_allows(p, a) for p in permissions)]


def size_problem(live_vm: Mapping, topology: Topology) -> str | None:
    """Does the VM's live size take one more NIC (SKU MaxNetworkInterfaces, never assumed)?"""
    props = live_vm.get("properties") or {}
    size = (props.get("hardwareProfile") or {}).get("vmSize")
    nics = len((props.get("networkProfile") or {}).get("networkInterfaces") or [])
    sku = topology.sku(size)
    if sku is None or sku.max_nics is None:
        return f"size {size} has no known NIC limit (Microsoft.Compute/skus)"
    if nics >= sku.max_nics:
        return f"size {size} allows {sku.max_nics} NICs and the VM has {nics}"
    return None


def nic_problem(nic: Mapping | None, *, vnet_id: str | None) -> str | None:
    """Is the managed NIC ready to attach: Succeeded, with an address, in the VM's VNet, and
    attached to no VM? (An earlier run may have created it with another free address than
    this plan proposes; ensure-nic keeps it.)"""
    if nic is None:
        return "the managed NIC does not exist"
    props = nic.get("properties") or {}
    state = props.get("provisioningState")
    if state != "Succeeded":
        return f"the managed NIC is {state or 'in an unknown state'}, not Succeeded"
    if (props.get("virtualMachine") or {}).get("id"):
        return f"the managed NIC is attached to {props['virtualMachine']['id']}"
    configs = props.get("ipConfigurations") or []
    first = (configs[0].get("properties") or {}) if configs else {}
    if not first.get("privateIPAddress"):
        return "the managed NIC has no private address"
    subnet = (first.get("subnet") or {}).get("id")
    vnet = arm_ids.parent_id(subnet) if subnet else None
    if vnet_id and not (vnet and arm_ids.same(vnet, vnet_id)):
        return f"the managed NIC's subnet {subnet} is not in the VM's VNet {vnet_id}"
    return None


def budget_needed(p95_seconds: Mapping[str, float], *, starts: bool) -> float:
    """Seconds the VM may be down for: deallocate + attach (+ start + agent ready)."""
    steps = ("deallocate", "attach") + (("start", "agent_ready") if starts else ())
    return sum(p95_seconds[s] for s in steps)


def budget_problem(remaining: float | None, needed: float, margin: float) -> str | None:
    if remaining is None or remaining >= needed + margin:
        return None
    return (f"{remaining:.0f} s are left of this run's budget; taking the VM down and up again "
            f"needs {needed:.0f} s (p95) plus {margin:.0f} s: the next run does it")


def probe_problem(result: Mapping | None) -> str | None:
    """The guest probe's JSON result: None when it found everything the fix needs."""
    if not isinstance(result, Mapping):
        return "the guest probe gave no result"
    problems = [str(p)[:200] for p in result.get("problems") or []]
    if result.get("ok") is True and not problems:
        return None
    return "guest: " + ("; ".join(problems[:5]) or "the probe did not report ok")


@dataclass
class Preflight:
    """The checks made so far, in order, and the first that failed."""

    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok" or the reason
    failed: PreflightCheck | None = None

    def record(self, check: PreflightCheck, problem: str | None) -> bool:
        """Record one check; True when it passed."""
        self.checks[str(check)] = problem or "ok"
        if problem is not None and self.failed is None:
            self.failed = check
        return problem is None

    @property
    def ok(self) -> bool:
        return self.failed is None

    @property
    def reason(self) -> str:
        if self.failed is None:
            return ""
        return f"preflight {self.failed} failed: {self.checks[str(self.failed)]}"
