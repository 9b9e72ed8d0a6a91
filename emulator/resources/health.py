"""Per-rule backend health (`POST .../loadBalancingRules/{rule}/health`): the scenario's
health, mirror rules following power state."""

from __future__ import annotations

import copy

from emulator.errors import not_found
from emulator.resources.addresses import pool_members
from emulator.resources.network import child_view
from emulator.resources.types import ref_id
from emulator.state import EmulatorHost, lower, parent_id

# ---------------------------------------------------------------------------- rule health
HEALTH_FIELDS = ("up", "down", "loadBalancerBackendAddresses")  # LoadBalancerHealthPerRule

def _ipconfig_vm_running(emu: EmulatorHost, ipconfig_id: str | None) -> bool | None:
    if not ipconfig_id:
        return None
    nic = emu.store.raw(parent_id(ipconfig_id))
    vm = ref_id((nic or {}).get("properties", {}).get("virtualMachine"))
    if not vm:
        return None
    return emu.power_state(vm) == "running"


def _ip_of(emu: EmulatorHost, ipconfig_id: str) -> str | None:
    nic = emu.store.raw(parent_id(ipconfig_id))
    for ipc in (nic or {}).get("properties", {}).get("ipConfigurations", []):
        if lower(ipc["id"]) == lower(ipconfig_id):
            return ipc["properties"].get("privateIPAddress")
    return None


def _ip_based(lb: dict, pool_id: str) -> list[dict]:
    """The IP-based entries of a pool (`loadBalancerBackendAddresses` with an `ipAddress`),
    which the health lists by address (spec example LoadBalancerHealth.json lists addresses)."""
    out = []
    for pool in lb.get("properties", {}).get("backendAddressPools") or []:
        if lower(pool.get("id", "")) != pool_id:
            continue
        for address in (pool.get("properties") or {}).get("loadBalancerBackendAddresses") or []:
            ip = (address.get("properties") or {}).get("ipAddress")
            if ip:
                out.append({"ipAddress": ip, "state": "Up", "reason": "Up_Probe_Success"})
    return out


def rule_health(emu: EmulatorHost, lb_id: str, rule_name: str) -> dict:
    """Body of POST .../loadBalancingRules/{rule}/health.

    Base: the scenario's `health` entry for the rule, else every pool member Up. Then power state
    wins: a member whose VM is not running is Down; for rules in `emulator.mirrors` only the
    current primary is Up (failover moves the primary, with no fail-back).
    """
    lb = emu.store.raw(lb_id)  # read only (the answer is built from copies)
    if lb is None:
        raise not_found(lb_id)
    rule = child_view(lb, "loadBalancingRules", rule_name)
    rule_id = rule["id"]
    entry = emu.health.get(lower(rule_id))
    if entry is not None:
        # Only the fields the service answers with (a scenario may carry more).
        body = {k: copy.deepcopy(v) for k, v in entry.items() if k in HEALTH_FIELDS}
        addrs = body.setdefault("loadBalancerBackendAddresses", [])
    else:
        pool = lower(ref_id(rule["properties"].get("backendAddressPool")) or "")
        addrs = [
            {
                "ipAddress": _ip_of(emu, i),
                "networkInterfaceIPConfigurationId": i,
                "state": "Up",
                "reason": "Up_Probe_Success",
            }
            for i in pool_members(emu).get(pool, [])
        ] + _ip_based(lb, pool)
        # LoadBalancerHealthPerRule is up, down and loadBalancerBackendAddresses only (spec
        # 2024-05-01 example LoadBalancerHealth.json), each address's
        # networkInterfaceIPConfigurationId a plain id string there.
        body = {"loadBalancerBackendAddresses": addrs}
    primary = emu.mirrors.primary_for(rule_id)
    for a in addrs:
        ipc = a.get("networkInterfaceIPConfigurationId")
        if primary is not None and ipc:
            up = lower(ipc) == lower(primary) and _ipconfig_vm_running(emu, ipc) is not False
        else:
            up = a.get("state", "Up") == "Up" and _ipconfig_vm_running(emu, ipc) is not False
        state = "Up" if up else "Down"
        if a.get("state") != state or not a.get("reason"):
            a["reason"] = "Up_Probe_Success" if up else "Down_Probe_Failure"
        a["state"] = state
    body["up"] = sum(1 for a in addrs if a["state"] == "Up")
    body["down"] = len(addrs) - body["up"]
    return body
