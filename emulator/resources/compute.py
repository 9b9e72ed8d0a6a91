"""Microsoft.Compute: virtual machines (NIC list, power state, Run Command) and resource SKUs.

A VM's power state lives beside the document (emu.power); instanceView is built on read, as
ARM does, and only returned with $expand=instanceView, statusOnly=true or GET .../instanceView.
"""

from __future__ import annotations

import copy
import re

from emulator.errors import ArmError, bad_request, not_found
from emulator.resources.addresses import find_subnet
from emulator.resources.linked import LinkedAccess, vm_linked
from emulator.resources.power import start
from emulator.resources.types import NIC, VM
from emulator.resources.vms import max_nics, nic_refs, save_nic
from emulator.state import EmulatorHost, lower, new_etag, parent_id

# Error codes the checks below answer with. Those marked (?) are not confirmed against live
# Azure; see emulator/README.md.
E_RUNNING_NIC_CHANGE = "AddingOrDeletingNetworkInterfacesOnARunningVirtualMachineNotSupported"
E_TOO_MANY_NICS = "NetworkInterfaceCountExceeded"  # (?)
E_NICS_DIFFERENT_VNETS = "NetworkInterfacesInDifferentVirtualNetworks"  # (?)
E_PRIMARY = "VirtualMachineMustHaveOneNetworkInterfaceAsPrimary"  # (?) two set primary
# Several NICs and one without `primary` (ansible/ansible#40648: "Network interface myvm02-nic-fe
# must have Primary property set."; fixed there by sending primary on every NIC, #38994).
E_PRIMARY_UNSET = "NetworkInterfaceMustHavePrimaryPropertySet"
E_NIC_IN_USE = "NicInUse"


# ---------------------------------------------------------------------------- PUT
def prepare_put(
    emu: EmulatorHost, rid: str, body: dict, existing: dict | None, *, sent: dict | None = None
) -> tuple[dict, list[LinkedAccess]]:
    """The VM document a PUT (or PATCH, `body` already merged) would store, checked as ARM
    checks it, and the linked accesses for what the request `sent` (the whole body of a PUT,
    only the patch of a PATCH)."""
    doc = _vm_document(emu, rid, body, existing)
    refs = nic_refs(doc)
    if not refs:
        raise bad_request(
            "InvalidParameter", "Required parameter 'networkProfile' is missing (null)."
        )
    nics = _referenced_nics(emu, rid, refs)
    _check_nic_change(emu, rid, refs, existing)
    _check_nic_set(emu, doc, refs, nics)
    return doc, vm_linked(body if sent is None else sent)


def _vm_document(emu: EmulatorHost, rid: str, body: dict, existing: dict | None) -> dict:
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
    return doc


def _referenced_nics(emu: EmulatorHost, rid: str, refs: list[dict]) -> list[dict]:
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
    return nics


def _check_nic_change(emu: EmulatorHost, rid: str, refs: list[dict], existing: dict | None):
    """NICs are attached and detached only while the VM is stop-DEALLOCATED: running or merely
    stopped (still allocated) is refused with 400 (docs/azure-facts.md, "NIC changes")."""
    if existing is None:
        return
    before = {lower(r["id"]) for r in nic_refs(existing)}
    after = {lower(r["id"]) for r in refs}
    if before != after and emu.power_state(rid) != "deallocated":
        raise bad_request(
            E_RUNNING_NIC_CHANGE,
            "Adding or deleting network interfaces on a running virtual machine is "
            "not supported. Deallocate the virtual machine first.",
        )


def _check_nic_set(emu: EmulatorHost, doc: dict, refs: list[dict], nics: list[dict]) -> None:
    """Size limit on NICs, one VNet, exactly one primary."""
    name, props = doc["name"], doc["properties"]
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
    unset = [r for r in refs if (r.get("properties") or {}).get("primary") is None]
    if len(refs) > 1 and unset:
        raise bad_request(
            E_PRIMARY_UNSET,
            f"Network interface {unset[0]['id'].rstrip('/').rsplit('/', 1)[-1]} must have "
            "Primary property set.",
        )
    primaries = [r for r in refs if (r.get("properties") or {}).get("primary")]
    if len(refs) > 1 and len(primaries) != 1:
        raise bad_request(
            E_PRIMARY,
            f"Virtual machine {name} must have exactly one network interface "
            f"set as the primary (found {len(primaries)}).",
        )


def commit_put(emu: EmulatorHost, doc: dict, existing: dict | None) -> None:
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
                save_nic(emu, nic)
    for nic_id, primary in wanted.items():
        nic = emu.store.get(nic_id)
        nic["properties"]["virtualMachine"] = {"id": doc["id"]}
        nic["properties"]["primary"] = primary
        save_nic(emu, nic)
    if existing is None:
        emu.power[lower(doc["id"])] = "stopped"  # a new VM boots right away
        start(emu, doc["id"])


def check_delete(emu: EmulatorHost, doc: dict) -> None:
    """Deleting a VM detaches its NICs; those referenced with `deleteOption: Delete` are
    deleted with it, the others stay (the default, `Detach`)."""
    for ref in nic_refs(doc):
        nic = emu.store.get(ref["id"])
        if not nic:
            continue
        if str((ref.get("properties") or {}).get("deleteOption", "")).lower() == "delete":
            emu.store.delete(ref["id"])
            continue
        nic["properties"].pop("virtualMachine", None)
        save_nic(emu, nic)
    if emu.power_state(doc["id"]) == "running":
        emu.guest.on_deallocate(doc)
    emu.power.pop(lower(doc["id"]), None)


# ---------------------------------------------------------------------------- SKUs
_LOC = re.compile(r"location\s+eq\s+'([^']*)'", re.IGNORECASE)


def list_skus(emu: EmulatorHost, odata_filter: str | None) -> list[dict]:
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


def check_exists(emu: EmulatorHost, vm_id: str) -> dict:
    vm = emu.store.get(vm_id)
    if vm is None:
        raise not_found(vm_id)
    return vm


__all__ = ["ArmError", "NIC"]
