"""Virtual machine documents: OS type, NIC references, the size's NIC limit, the instance view
built on read (power state beside the document, in emu.power), and NIC back-reference saves."""

from __future__ import annotations

import copy
import time

from emulator.state import EmulatorHost, lower, new_etag


def os_type(vm: dict) -> str:
    return (
        vm.get("properties", {}).get("storageProfile", {}).get("osDisk", {}).get("osType")
        or "Linux"
    )


def nic_refs(vm: dict) -> list[dict]:
    return vm.get("properties", {}).get("networkProfile", {}).get("networkInterfaces") or []


def max_nics(emu: EmulatorHost, vm: dict) -> int | None:
    size = vm.get("properties", {}).get("hardwareProfile", {}).get("vmSize", "")
    for sku in emu.skus:
        if (
            sku.get("resourceType", "virtualMachines").lower() == "virtualmachines"
            and sku.get("name", "").lower() == size.lower()
        ):
            for cap in sku.get("capabilities", []):
                if cap.get("name") == "MaxNetworkInterfaces":
                    return int(cap["value"])
    return None


def instance_view(emu: EmulatorHost, vm_id: str) -> dict:
    settle_agent(emu, vm_id)
    iv = copy.deepcopy(emu.instance_extra.get(lower(vm_id), {}))
    state = emu.power_state(vm_id)
    iv["statuses"] = [
        {
            "code": "ProvisioningState/succeeded",
            "level": "Info",
            "displayStatus": "Provisioning succeeded",
        },
        {
            "code": f"PowerState/{state}",
            "level": "Info",
            "displayStatus": DISPLAY.get(state, state),
        },
    ]
    return iv


def view(emu: EmulatorHost, doc: dict, expand: bool = False) -> dict:
    if expand:
        doc.setdefault("properties", {})["instanceView"] = instance_view(emu, doc["id"])
    return doc


def save_nic(emu: EmulatorHost, nic: dict) -> None:
    nic["etag"] = new_etag()
    for ipc in nic["properties"].get("ipConfigurations", []):
        ipc["etag"] = nic["etag"]
    emu.store.put(nic)


DISPLAY = {
    "running": "VM running",
    "deallocated": "VM deallocated",
    "stopped": "VM stopped",
    "starting": "VM starting",
    "deallocating": "VM deallocating",
    "stopping": "VM stopping",
}


def attached_nics(emu: EmulatorHost, vm: dict) -> list[dict]:
    return [n for n in (emu.store.get(r["id"]) for r in nic_refs(vm)) if n]


def settle_agent(emu: EmulatorHost, vm_id: str) -> None:
    """A started VM's agent turns Ready once its boot time has passed."""
    due = emu.agent_ready_at.get(lower(vm_id))
    if due is not None and time.monotonic() >= due:
        del emu.agent_ready_at[lower(vm_id)]
        set_agent_ready(emu, vm_id, True)


def set_agent_ready(emu: EmulatorHost, vm_id: str, ready: bool) -> None:
    extra = emu.instance_extra.setdefault(lower(vm_id), {})
    agent = extra.setdefault("vmAgent", {"vmAgentVersion": "2.7.41491.1102"})
    agent["statuses"] = [
        {
            "code": "ProvisioningState/succeeded",
            "level": "Info",
            "displayStatus": "Ready",
            "message": "GuestAgent is running and processing the extensions.",
        }
        if ready
        else {
            "code": "ProvisioningState/Unavailable",
            "level": "Warning",
            "displayStatus": "Not Ready",
            "message": "VM status blob not found.",
        }
    ]
