"""A VM's power state (start, deallocate, power off, restart), its guest's boot and shutdown,
and the VM agent's readiness (Not Ready for `agent_ready_seconds` after a start)."""

from __future__ import annotations

import hashlib
import time

from emulator.errors import bad_request, conflict
from emulator.resources.vms import attached_nics, save_nic, set_agent_ready, settle_agent, view
from emulator.state import EmulatorHost, lower


# ---------------------------------------------------------------------------- power
def _mac(nic_id: str) -> str:
    h = hashlib.sha256(lower(nic_id).encode()).hexdigest().upper()
    return "00-0D-3A-" + "-".join(h[i : i + 2] for i in range(0, 6, 2))


def start(emu: EmulatorHost, vm_id: str) -> None:
    if emu.power_state(vm_id) == "running":
        return
    vm = emu.store.get(vm_id)
    nics = []
    for nic in attached_nics(emu, vm):
        if not nic["properties"].get("macAddress"):
            nic["properties"]["macAddress"] = _mac(nic["id"])  # Azure assigns the MAC at start
            save_nic(emu, nic)
        nics.append(nic)
    emu.power[lower(vm_id)] = "running"
    if emu.agent_ready_seconds > 0:
        # The agent reports in only once the guest has booted: Not Ready until then.
        set_agent_ready(emu, vm_id, False)
        emu.agent_ready_at[lower(vm_id)] = time.monotonic() + emu.agent_ready_seconds
    emu.guest.on_start(view(emu, vm, expand=True), nics)
    emu.mirrors.power_changed()


def stop(emu: EmulatorHost, vm_id: str, state: str) -> None:
    if emu.power_state(vm_id) == "running":
        emu.guest.on_deallocate(emu.store.get(vm_id))
    emu.power[lower(vm_id)] = state
    emu.mirrors.power_changed()


def power_action(emu: EmulatorHost, vm_id: str, action: str) -> None:
    a = action.lower()
    if a == "start":
        start(emu, vm_id)
    elif a == "deallocate":
        stop(emu, vm_id, "deallocated")
    elif a == "poweroff":
        stop(emu, vm_id, "stopped")
    elif a == "restart":
        if emu.power_state(vm_id) != "running":
            raise conflict(
                "OperationNotAllowed",
                "Operation 'restart' is not allowed on VM since the VM is not running.",
            )
        stop(emu, vm_id, "stopped")
        start(emu, vm_id)
    else:
        raise bad_request("InvalidRequestUri", f"Unknown virtual machine action '{action}'.")


def agent_ready(emu: EmulatorHost, vm_id: str) -> bool:
    """The VM agent is ready unless the scenario's vmAgent status says 'Not Ready'."""
    settle_agent(emu, vm_id)
    agent = emu.instance_extra.get(lower(vm_id), {}).get("vmAgent") or {}
    return not any(
        str(st.get("displayStatus", "")).lower() == "not ready"
        or str(st.get("code", "")).lower() == "provisioningstate/unavailable"
        for st in agent.get("statuses") or []
    )
