"""The Azure RBAC actions this product performs: one source of truth for the custom role in
`infra/main.json` (checked by tests/unit/test_infra_template.py) and for the least-privilege proof
(tests/e2e/test_least_privilege.py runs every flow on the emulator and compares the actions its
request log recorded with these tuples: nothing missing, nothing extra).

Pure: no Azure SDK, no I/O. `rbac_action(method, path)` maps one ARM request to the action ARM
authorises it against, the same way ARM (and the emulator) derive it from the URL; the *linked*
access checks ARM makes on a write (joining a subnet, an NSG or a NIC) depend on the request
body and are listed in `LINKED_ACTIONS`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = [
    "METRICS_READ",
    "AUDIT_ACTIONS",
    "REMEDIATION_ACTIONS",
    "WRITE_ACTIONS",
    "SUBSCRIPTION_READ_ACTIONS",
    "LINKED_ACTIONS",
    "DATA_ROLES",
    "rbac_action",
    "actions_for_mode",
    "is_read_only",
]

METRICS_READ = "Microsoft.Insights/metrics/read"

# --------------------------------------------------------------------------- audit (read-only)
# Discovery over ARM (paged list_all per type, SKUs per location), Resource Graph, backend
# health from Azure Monitor's batch metrics API and, where it has no data, per rule, with the
# LRO status reads that the health action's poller makes.
AUDIT_ACTIONS: tuple[str, ...] = (
    "Microsoft.Compute/skus/read",
    "Microsoft.Compute/virtualMachines/read",
    METRICS_READ,
    "Microsoft.Network/loadBalancers/loadBalancingRules/health/action",
    "Microsoft.Network/loadBalancers/read",
    "Microsoft.Network/locations/operationResults/read",
    "Microsoft.Network/locations/operations/read",
    "Microsoft.Network/networkInterfaces/read",
    "Microsoft.Network/networkSecurityGroups/read",
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.ResourceGraph/resources/read",
)

# --------------------------------------------------------------------------- remediation writes
# Create/delete the managed secondary NIC (with the linked joins ARM checks on a NIC PUT),
# attach/detach it (VM PATCH of the NIC list: linked networkInterfaces/join), deallocate/start
# around the change, push/verify/clean guest routes with Run Command, and poll the Compute LROs.
WRITE_ACTIONS: tuple[str, ...] = (
    "Microsoft.Authorization/permissions/read",  # the preflight reads its own permissions
    "Microsoft.Compute/locations/operations/read",
    "Microsoft.Compute/virtualMachines/deallocate/action",
    "Microsoft.Compute/virtualMachines/runCommand/action",
    "Microsoft.Compute/virtualMachines/start/action",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
)

# The custom role of a remediating deployment: everything the audit reads plus the writes.
REMEDIATION_ACTIONS: tuple[str, ...] = tuple(sorted(set(AUDIT_ACTIONS) | set(WRITE_ACTIONS),
                                                    key=str.lower))

# Reads that ARM authorises at *subscription* scope whatever the resource's group: the
# subscription-wide listings (list_all, SKUs) and the status of long-running operations
# (`/subscriptions/{s}/providers/{ns}/locations/{l}/operations/{id}`). A deployment whose
# remediator role is assigned on resource groups only gets these at subscription scope
# (the "reader" role in infra/main.json).
SUBSCRIPTION_READ_ACTIONS: tuple[str, ...] = tuple(sorted(
    set(AUDIT_ACTIONS) | {"Microsoft.Compute/locations/operations/read"}, key=str.lower))

# Access checks ARM makes on a write besides the URL's own action (body-dependent).
LINKED_ACTIONS: dict[str, tuple[str, ...]] = {
    "Microsoft.Network/networkInterfaces/write": (
        "Microsoft.Network/virtualNetworks/subnets/join/action",   # ipConfigurations[].subnet
        "Microsoft.Network/networkSecurityGroups/join/action",     # networkSecurityGroup
    ),
    "Microsoft.Compute/virtualMachines/write": (
        "Microsoft.Network/networkInterfaces/join/action",         # networkProfile NICs
    ),
}

# Built-in data-plane roles the app's identity needs on its own storage account and topic
# (assigned in infra/main.json; role definition GUIDs are Azure's, the same in every tenant).
DATA_ROLES: dict[str, str] = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "EventGrid Data Sender": "d5a91429-5739-47e2-a06b-3470a27159e7",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}


def actions_for_mode(audit_only: bool) -> tuple[str, ...]:
    """The custom role's action list for an audit-only or a remediating deployment."""
    return AUDIT_ACTIONS if audit_only else REMEDIATION_ACTIONS


def is_read_only(action: str) -> bool:
    """Does this action change nothing? (reads, and POST actions that only read)"""
    low = action.lower()
    return low.endswith("/read") or low in {
        "microsoft.network/loadbalancers/loadbalancingrules/health/action",
        "microsoft.resourcegraph/resources/read",
    }


# --------------------------------------------------------------------------- request -> action

_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def rbac_action(method: str, url_or_path: str) -> str | None:
    """The RBAC action ARM checks for one request, e.g.

    `PUT  /subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/n`
        -> `Microsoft.Network/networkInterfaces/write`
    `POST .../Microsoft.Compute/virtualMachines/vm1/deallocate`
        -> `Microsoft.Compute/virtualMachines/deallocate/action`
    `GET  /subscriptions/s/providers/Microsoft.Network/locations/l/operations/id`
        -> `Microsoft.Network/locations/operations/read`

    Returns None for a URL that is not an ARM resource path. Type and child names keep the
    casing of the URL (ARM compares actions case-insensitively).
    """
    path = urlsplit(url_or_path).path
    seg = [unquote(p) for p in path.strip("/").split("/") if p]
    low = [p.lower() for p in seg]
    m = method.upper()
    if low[:3] == ["providers", "microsoft.resourcegraph", "resources"]:
        return "Microsoft.ResourceGraph/resources/read"
    if len(seg) >= 3 and low[-3] == "subscriptions" and low[-1] == "metrics:getbatch":
        # Azure Monitor's batch query (a POST that reads), on the regional endpoint's host
        # (the emulator puts the region in a path prefix instead)
        return METRICS_READ
    if "microsoft.insights" in low[4:] and low[-1] == "metrics":
        return METRICS_READ  # {resource}/providers/Microsoft.Insights/metrics
    if len(seg) < 2 or low[0] != "subscriptions":
        return None
    if low[-3:] == ["providers", "microsoft.authorization", "permissions"]:
        return "Microsoft.Authorization/permissions/read"  # the caller's own, at any scope
    if len(seg) >= 4 and low[2] == "resourcegroups":
        if len(seg) == 4:
            return f"Microsoft.Resources/subscriptions/resourceGroups/{_VERBS.get(m, 'read')}"
        if len(seg) < 7 or low[4] != "providers":
            return None
        rest = seg[5:]  # namespace, type, name, [child type, child name]..., [action]
    elif len(seg) >= 5 and low[2] == "providers":
        rest = seg[3:]  # namespace, type, [name...]
    else:
        return None
    namespace, tail = rest[0], rest[1:]
    # tail alternates type, name, type, name...; an odd length after the first pair ends in a
    # collection (GET = list) or, for POST, in an action name.
    types = tail[0::2]
    if m == "POST" and len(tail) % 2 == 1 and len(tail) > 1:
        action = types[-1]
        return "/".join([namespace, *types[:-1], action, "action"])
    if len(tail) >= 2 and tail[0].lower() == "locations" and len(tail) >= 3 \
            and tail[2].lower() in ("operations", "operationresults"):
        return f"{namespace}/locations/{tail[2]}/read"
    return "/".join([namespace, *types, _VERBS.get(m, "read")])
