"""Microsoft.Compute: virtual machines (NIC list, power state, Run Command) and resource SKUs.

A VM's power state lives beside the document (emu.power); instanceView is built on read, as
ARM does, and only returned with $expand=instanceView, statusOnly=true or GET .../instanceView.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
import time
from typing import TYPE_CHECKING

from emulator.errors import ArmError, bad_request, conflict, not_found
from emulator.resources.network import NIC, find_subnet
from emulator.state import lower, new_etag, parent_id

if TYPE_CHECKING:
    from emulator.server import Emulator

VM = "Microsoft.Compute/virtualMachines"
OUTPUT_LIMIT = 4096  # Run Command returns only the last 4,096 bytes of each stream

DISPLAY = {
    "running": "VM running",
    "deallocated": "VM deallocated",
    "stopped": "VM stopped",
    "starting": "VM starting",
    "deallocating": "VM deallocating",
    "stopping": "VM stopping",
}
LINUX_COMMANDS = {"RunShellScript", "ifconfig"}
WINDOWS_COMMANDS = {
    "RunPowerShellScript",
    "ipconfig",
    "EnableRemotePS",
    "RDPSettings",
    "ResetRDPCert",
    "SetRDPPort",
    "DisableNLA",
    "EnableAdminAccount",
    "DisableWindowsUpdate",
    "EnableWindowsUpdate",
    "IMDSCertCheck",
}

# Error codes the checks below answer with. Those marked (?) are not confirmed against live
# Azure; see emulator/README.md.
E_RUNNING_NIC_CHANGE = "AddingOrDeletingNetworkInterfacesOnARunningVirtualMachineNotSupported"
E_TOO_MANY_NICS = "NetworkInterfaceCountExceeded"  # (?)
E_NICS_DIFFERENT_VNETS = "NetworkInterfacesInDifferentVirtualNetworks"  # (?)
E_PRIMARY = "VirtualMachineMustHaveOneNetworkInterfaceAsPrimary"  # (?)
E_NIC_IN_USE = "NicInUse"


def os_type(vm: dict) -> str:
    return (
        vm.get("properties", {}).get("storageProfile", {}).get("osDisk", {}).get("osType")
        or "Linux"
    )


def nic_refs(vm: dict) -> list[dict]:
    return vm.get("properties", {}).get("networkProfile", {}).get("networkInterfaces") or []


def max_nics(emu: Emulator, vm: dict) -> int | None:
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


def instance_view(emu: Emulator, vm_id: str) -> dict:
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


def view(emu: Emulator, doc: dict, expand: bool = False) -> dict:
    if expand:
        doc.setdefault("properties", {})["instanceView"] = instance_view(emu, doc["id"])
    return doc


# ---------------------------------------------------------------------------- PUT
def prepare_put(
    emu: Emulator, rid: str, body: dict, existing: dict | None
) -> tuple[dict, list[str]]:
    name = rid.rstrip("/").split("/")[-1]
    doc = {
        k: v
        for k, v in copy.deepcopy(body).items()
        if k not in ("etag", "id", "name", "type", "resources")
    }
    doc.update({"name": name, "id": rid, "type": VM, "etag": new_etag()})
    if "location" not in doc and existing:
        doc["location"] = existing.get("location")
    if existing and existing.get("resources"):
        doc["resources"] = copy.deepcopy(existing["resources"])  # extensions: read-only here
    props = doc.setdefault("properties", {})
    props.pop("instanceView", None)
    props["provisioningState"] = "Succeeded"
    props["vmId"] = (existing or {}).get("properties", {}).get("vmId") or emu.new_guid()
    refs = nic_refs(doc)
    if not refs:
        raise bad_request(
            "InvalidParameter", "Required parameter 'networkProfile' is missing (null)."
        )
    nics = []
    for ref in refs:
        nic = emu.store.get(ref.get("id", ""))
        if nic is None:
            raise bad_request(
                "InvalidParameter",
                f"Network interface {ref.get('id')} referenced by virtual machine "
                f"{rid} was not found.",
            )
        owner = (nic["properties"].get("virtualMachine") or {}).get("id")
        if owner and lower(owner) != lower(rid) and owner in emu.store:
            raise bad_request(
                E_NIC_IN_USE,
                f"Network Interface {nic['id']} is used by existing resource {owner}. "
                f"In order to use this network interface, first remove it from the "
                f"existing resource.",
            )
        nics.append(nic)
    if existing is not None:
        before = {lower(r["id"]) for r in nic_refs(existing)}
        after = {lower(r["id"]) for r in refs}
        if before != after and emu.power_state(rid) not in ("deallocated", "stopped"):
            raise conflict(
                E_RUNNING_NIC_CHANGE,
                "Adding or deleting network interfaces on a running virtual machine is "
                "not supported. Deallocate the virtual machine first.",
            )
    limit = max_nics(emu, doc)
    if limit is not None and len(refs) > limit:
        size = props.get("hardwareProfile", {}).get("vmSize")
        raise bad_request(
            E_TOO_MANY_NICS,
            f"The number of network interfaces ({len(refs)}) for virtual machine "
            f"{name} exceeds the maximum ({limit}) allowed for the size {size}.",
        )
    vnets = set()
    for nic in nics:
        for ipc in nic["properties"].get("ipConfigurations", []):
            sid = (ipc.get("properties", {}).get("subnet") or {}).get("id")
            if sid and find_subnet(emu, sid):
                vnets.add(lower(parent_id(sid)))
    if len(vnets) > 1:
        raise bad_request(
            E_NICS_DIFFERENT_VNETS,
            f"Virtual machine {name} cannot have network interfaces in different "
            f"virtual networks: {sorted(vnets)}.",
        )
    primaries = [r for r in refs if (r.get("properties") or {}).get("primary")]
    if len(refs) > 1 and len(primaries) != 1:
        raise bad_request(
            E_PRIMARY,
            f"Virtual machine {name} must have exactly one network interface "
            f"set as the primary (found {len(primaries)}).",
        )
    return doc, ["Microsoft.Network/networkInterfaces/join/action"]


def commit_put(emu: Emulator, doc: dict, existing: dict | None) -> None:
    """Store the VM and keep the NICs' virtualMachine/primary back-references in step."""
    emu.store.put(doc)
    refs = nic_refs(doc)
    wanted = {
        lower(r["id"]): (len(refs) == 1 or bool((r.get("properties") or {}).get("primary")))
        for r in refs
    }
    for ref in nic_refs(existing or {}):
        if lower(ref["id"]) not in wanted:
            nic = emu.store.get(ref["id"])
            if nic and lower(
                (nic["properties"].get("virtualMachine") or {}).get("id", "")
            ) == lower(doc["id"]):
                nic["properties"].pop("virtualMachine", None)
                nic["properties"].pop("primary", None)
                _save_nic(emu, nic)
    for nic_id, primary in wanted.items():
        nic = emu.store.get(nic_id)
        nic["properties"]["virtualMachine"] = {"id": doc["id"]}
        nic["properties"]["primary"] = primary
        _save_nic(emu, nic)
    if existing is None:
        emu.power[lower(doc["id"])] = "stopped"  # a new VM boots right away
        start(emu, doc["id"])


def _save_nic(emu: Emulator, nic: dict) -> None:
    nic["etag"] = new_etag()
    for ipc in nic["properties"].get("ipConfigurations", []):
        ipc["etag"] = nic["etag"]
    emu.store.put(nic)


def check_delete(emu: Emulator, doc: dict) -> None:
    """Deleting a VM detaches its NICs (they stay, as in Azure)."""
    for ref in nic_refs(doc):
        nic = emu.store.get(ref["id"])
        if nic:
            nic["properties"].pop("virtualMachine", None)
            _save_nic(emu, nic)
    if emu.power_state(doc["id"]) == "running":
        emu.guest.on_deallocate(doc)
    emu.power.pop(lower(doc["id"]), None)


# ---------------------------------------------------------------------------- power
def _mac(nic_id: str) -> str:
    h = hashlib.sha256(lower(nic_id).encode()).hexdigest().upper()
    return "00-0D-3A-" + "-".join(h[i : i + 2] for i in range(0, 6, 2))


def attached_nics(emu: Emulator, vm: dict) -> list[dict]:
    return [n for n in (emu.store.get(r["id"]) for r in nic_refs(vm)) if n]


def start(emu: Emulator, vm_id: str) -> None:
    if emu.power_state(vm_id) == "running":
        return
    vm = emu.store.get(vm_id)
    nics = []
    for nic in attached_nics(emu, vm):
        if not nic["properties"].get("macAddress"):
            nic["properties"]["macAddress"] = _mac(nic["id"])  # Azure assigns the MAC at start
            _save_nic(emu, nic)
        nics.append(nic)
    emu.power[lower(vm_id)] = "running"
    emu.guest.on_start(view(emu, vm, expand=True), nics)
    emu.power_changed()


def stop(emu: Emulator, vm_id: str, state: str) -> None:
    if emu.power_state(vm_id) == "running":
        emu.guest.on_deallocate(emu.store.get(vm_id))
    emu.power[lower(vm_id)] = state
    emu.power_changed()


def power_action(emu: Emulator, vm_id: str, action: str) -> None:
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


# ---------------------------------------------------------------------------- Run Command
def _tail(text: str) -> str:
    data = text.encode("utf-8", "replace")
    return data[-OUTPUT_LIMIT:].decode("utf-8", "ignore")


def run_command_result(os_name: str, code: int, out: str, err: str) -> dict:
    """The RunCommandResult body as the VM agent reports it."""
    out, err = _tail(out), _tail(err)
    if os_name.lower() == "windows":
        return {
            "value": [
                {
                    "code": "ComponentStatus/StdOut/succeeded",
                    "level": "Info",
                    "displayStatus": "Provisioning succeeded",
                    "message": out,
                },
                {
                    "code": "ComponentStatus/StdErr/succeeded",
                    "level": "Info",
                    "displayStatus": "Provisioning succeeded",
                    "message": err,
                },
            ]
        }
    if code == 0:
        return {
            "value": [
                {
                    "code": "ProvisioningState/succeeded",
                    "level": "Info",
                    "displayStatus": "Provisioning succeeded",
                    "message": f"Enable succeeded: \n[stdout]\n{out}\n[stderr]\n{err}",
                }
            ]
        }
    return {
        "value": [
            {
                "code": "ProvisioningState/failed",
                "level": "Error",
                "displayStatus": "Provisioning failed",
                "message": (
                    f"Enable failed: failed to execute command: command terminated "
                    f"with exit status={code}\n[stdout]\n{out}\n[stderr]\n{err}"
                ),
            }
        ]
    }


def start_run_command(emu: Emulator, vm_id: str, body: dict, op) -> None:
    """Validate, then run the script on a worker thread that fills op.result."""
    vm = emu.store.get(vm_id)
    if vm is None:
        raise not_found(vm_id)
    command_id = body.get("commandId") or ""
    osn = os_type(vm)
    allowed = WINDOWS_COMMANDS if osn.lower() == "windows" else LINUX_COMMANDS
    if command_id not in allowed:
        raise bad_request(
            "InvalidParameter",
            f"The command '{command_id}' is not available for {osn} virtual machines.",
        )
    if emu.power_state(vm_id) != "running":
        raise conflict(
            "OperationNotAllowed", "The operation requires the VM to be running (or set to run)."
        )
    key = lower(vm_id)
    with emu.busy_lock:
        if key in emu.run_busy:
            raise conflict(
                "Conflict",
                "Run command extension execution is in progress. Please wait for "
                "completion before invoking a run command.",
            )
        emu.run_busy.add(key)
    script = [str(s) for s in body.get("script") or []]
    params = list(body.get("parameters") or [])
    vm_view = view(emu, vm, expand=True)
    ready = agent_ready(emu, vm_id)

    def work():
        try:
            if emu.run_command_seconds:
                time.sleep(emu.run_command_seconds)  # Run Command is never instant
            if not ready:
                op.error = {
                    "code": "VMAgentStatusCommunicationError",
                    "message": f"VM '{vm['name']}' has not reported status for VM agent or "
                    "extensions. Please verify the VM has a running VM agent, and can establish "
                    "outbound connections to Azure storage.",
                }
                return
            code, out, err = emu.guest.run_command(vm_view, command_id, script, params)
            op.result = run_command_result(osn, int(code), out or "", err or "")
        except Exception as exc:  # the guest model broke: report like an agent failure
            op.error = {"code": "VMAgentStatusCommunicationError", "message": str(exc)}
        finally:
            with emu.busy_lock:
                emu.run_busy.discard(key)

    op.worker = threading.Thread(target=work, name=f"runcmd-{vm['name']}", daemon=True)
    op.worker.start()


def agent_ready(emu: Emulator, vm_id: str) -> bool:
    """The VM agent is ready unless the scenario's vmAgent status says 'Not Ready'."""
    agent = emu.instance_extra.get(lower(vm_id), {}).get("vmAgent") or {}
    return not any(
        str(st.get("displayStatus", "")).lower() == "not ready"
        or str(st.get("code", "")).lower() == "provisioningstate/unavailable"
        for st in agent.get("statuses") or []
    )


def set_agent_ready(emu: Emulator, vm_id: str, ready: bool) -> None:
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


# ---------------------------------------------------------------------------- SKUs
_LOC = re.compile(r"location\s+eq\s+'([^']*)'", re.IGNORECASE)


def list_skus(emu: Emulator, odata_filter: str | None) -> list[dict]:
    skus = copy.deepcopy(emu.skus)
    m = _LOC.search(odata_filter or "")
    if m:
        want = m.group(1).lower()
        skus = [
            s
            for s in skus
            if want in [x.lower() for x in s.get("locations", [])] or not s.get("locations")
        ]
    return skus


def check_exists(emu: Emulator, vm_id: str) -> dict:
    vm = emu.store.get(vm_id)
    if vm is None:
        raise not_found(vm_id)
    return vm


__all__ = ["ArmError", "NIC"]
