"""Pure: VM documents -> `Vm`, and which VM each NIC belongs to (part of the topology build)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.topology.readers import (
    EMPTY,
    as_bool,
    as_dict,
    as_list,
    as_str,
    as_tags,
    name_or_last_segment,
    ref_id,
)
from shared.core.topology.resources import Nic, Vm
from shared.core.topology.unknowns import Unknowns
from shared.core.vocab import PowerState

Docs = Mapping[str, tuple[str, Mapping[str, Any]]]
NETWORK_INTERFACES = "networkProfile.networkInterfaces"


def read(vm_docs: Docs, nics: Mapping[str, Nic],
         unknowns: Unknowns) -> tuple[dict[str, Vm], dict[str, str]]:
    """The VMs, and NIC key -> VM key (from the VMs' NIC lists, else the NIC's back-reference)."""
    vms: dict[str, Vm] = {}
    claims: dict[str, list[tuple[str, str]]] = {}
    for key, (rid, doc) in vm_docs.items():
        vm = _vm(key, rid, doc, nics, unknowns)
        for nk in vm.nic_keys:
            if nk not in nics:
                unknowns.add(rid, NETWORK_INTERFACES, f"NIC {nk} is not in the documents")
            claims.setdefault(nk, []).append((key, rid))
        vms[key] = vm
    nic_vm: dict[str, str] = {}
    for nk, owners in claims.items():
        if len(owners) > 1:
            for _, owner_id in owners:
                unknowns.add(owner_id, NETWORK_INTERFACES,
                             f"NIC {nk} is listed by more than one VM")
        # deterministic whatever the order
        nic_vm[nk] = owners[0][0] if len(owners) == 1 else min(k for k, _ in owners)
    # NICs whose VM lists nothing (partial documents) still point at their VM.
    for nk, nic in nics.items():
        if nk not in nic_vm and nic.vm_id and normalize(nic.vm_id) in vms:
            nic_vm[nk] = normalize(nic.vm_id)
    return vms, nic_vm


def _vm(key: str, rid: str, doc: Mapping[str, Any], nics: Mapping[str, Nic],
        unknowns: Unknowns) -> Vm:
    props = as_dict(doc.get("properties"))
    size = as_str(as_dict(props.get("hardwareProfile")).get("vmSize"))
    if size is None:
        unknowns.add(rid, "hardwareProfile.vmSize", "missing: NIC limit unknown")
    os_type = os_type_of(props)
    if os_type is None:
        unknowns.add(rid, "storageProfile.osDisk.osType", "missing: guest OS unknown")
    power, agent = instance_view_of(props)
    if power is None:
        unknowns.add(rid, "instanceView.statuses", "no PowerState: power state unknown")
    refs = _nic_refs(props)
    if not refs:
        unknowns.add(rid, NETWORK_INTERFACES, "missing: NICs unknown")
    primary_key = _primary_nic(refs, nics)
    if refs and primary_key is None:
        unknowns.add(rid, NETWORK_INTERFACES, "no NIC marked primary")
    if len(refs) == 1 and refs[0][0] == primary_key:
        ordered: tuple[str, ...] = (primary_key,)
    else:
        ordered = tuple(dict.fromkeys(([primary_key] if primary_key else [])
                                      + [k for k, _ in refs]))
    return Vm(rid, key, name_or_last_segment(doc, rid), as_str(doc.get("location")), size,
              os_type, power, agent, as_tags(doc.get("tags")) if doc.get("tags") else EMPTY,
              ordered, primary_key)


def _nic_refs(props: Mapping[str, Any]) -> list[tuple[str, bool | None]]:
    refs: list[tuple[str, bool | None]] = []
    for item in as_list(as_dict(props.get("networkProfile")).get("networkInterfaces")):
        nid = ref_id(item)
        if nid:
            primary = as_bool(as_dict(as_dict(item).get("properties")).get("primary"))
            if primary is None:
                primary = as_bool(as_dict(item).get("primary"))
            refs.append((normalize(nid), primary))
    return refs


def os_type_of(props: Mapping[str, Any]) -> str | None:
    """"Windows", "Linux", another value ARM gave, or None."""
    value = as_str(as_dict(as_dict(props.get("storageProfile")).get("osDisk")).get("osType"))
    if value:
        low = value.lower()
        return "Windows" if low == "windows" else "Linux" if low == "linux" else value
    os_profile = as_dict(props.get("osProfile"))
    if os_profile.get("windowsConfiguration") is not None:
        return "Windows"
    if os_profile.get("linuxConfiguration") is not None:
        return "Linux"
    return None


def instance_view_of(props: Mapping[str, Any]) -> tuple[PowerState | None, bool | None]:
    """Power state and agent readiness, from ARM's instanceView or Resource Graph's `extended`."""
    view = as_dict(props.get("instanceView"))
    power = None
    for status in as_list(view.get("statuses")):
        code = as_str(as_dict(status).get("code"))
        if code and code.lower().startswith("powerstate/"):
            power = PowerState.from_code(code)
    if power is None:
        extended = as_dict(as_dict(as_dict(props.get("extended")).get("instanceView")).get(
            "powerState"))
        code = as_str(extended.get("code"))
        if code and code.lower().startswith("powerstate/"):
            power = PowerState.from_code(code)
    agent = None
    agent_statuses = as_list(as_dict(view.get("vmAgent")).get("statuses"))
    if agent_statuses:
        display = as_str(as_dict(agent_statuses[0]).get("displayStatus"))
        agent = None if display is None else display.lower() == "ready"
    return power, agent


def _primary_nic(refs: list[tuple[str, bool | None]], nics: Mapping[str, Nic]) -> str | None:
    flagged = [k for k, p in refs if p]
    if flagged:
        return flagged[0]
    if len(refs) == 1:
        return refs[0][0]
    by_nic = [k for k, _ in refs if k in nics and nics[k].primary]
    return by_nic[0] if by_nic else None
