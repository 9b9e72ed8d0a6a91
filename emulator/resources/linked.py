"""Linked access: the actions ARM checks on the resources a write *references*, each at the
referenced resource's own scope (not the written one's). A missing one is answered 403
`LinkedAuthorizationFailed` naming both scopes.

ARM checks what the request body carries: a VM PUT carries the whole VM, so every linked
resource is checked again (identities, gallery images, disks, availability set, proximity
group, NICs); a PATCH is checked only for what it sends. Sources: docs/azure-facts.md, "NIC
changes" (Azure/aad-pod-identity #339, #443, #613; Azure/AKS #2040). The action names for
disks, availability sets and proximity placement groups are not confirmed against live Azure
(emulator/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.resources.types import ref_id

__all__ = ["LinkedAccess", "vm_linked"]

NIC_JOIN = "Microsoft.Network/networkInterfaces/join/action"
IDENTITY_ASSIGN = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
GALLERY_IMAGE_READ = "Microsoft.Compute/galleries/images/versions/read"
DISK_WRITE = "Microsoft.Compute/disks/write"
AVAILABILITY_SET_WRITE = "Microsoft.Compute/availabilitySets/write"
PROXIMITY_GROUP_WRITE = "Microsoft.Compute/proximityPlacementGroups/write"


@dataclass(frozen=True, order=True)
class LinkedAccess:
    """One action ARM checks on a referenced resource, at that resource's scope."""

    action: str
    scope: str


def vm_linked(body: dict) -> list[LinkedAccess]:
    """The linked accesses a VM write needs for what its body carries."""
    props = body.get("properties") or {}
    out: set[LinkedAccess] = set()
    for ref in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
        if ref_id(ref):
            out.add(LinkedAccess(NIC_JOIN, ref_id(ref)))
    for identity_id in ((body.get("identity") or {}).get("userAssignedIdentities") or {}):
        out.add(LinkedAccess(IDENTITY_ASSIGN, identity_id))
    storage = props.get("storageProfile") or {}
    image = ref_id(storage.get("imageReference"))
    if image and "/galleries/" in image.lower():
        out.add(LinkedAccess(GALLERY_IMAGE_READ, image))
    disks = [storage.get("osDisk") or {}, *(storage.get("dataDisks") or [])]
    for disk in disks:
        disk_id = ref_id(disk.get("managedDisk"))
        if disk_id:
            out.add(LinkedAccess(DISK_WRITE, disk_id))
    for key, action in (("availabilitySet", AVAILABILITY_SET_WRITE),
                        ("proximityPlacementGroup", PROXIMITY_GROUP_WRITE)):
        if ref_id(props.get(key)):
            out.add(LinkedAccess(action, ref_id(props[key])))
    return sorted(out)
