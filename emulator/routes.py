"""ARM URL parsing and the RBAC action each request needs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from emulator.metrics import METRICS_READ
from emulator.resources.types import CHILDREN

KNOWN_TYPES = {
    t.lower(): t
    for t in (
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Network/networkSecurityGroups",
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Network/loadBalancers",
        "Microsoft.Network/publicIPAddresses",
        "Microsoft.Compute/virtualMachines",
        "Microsoft.Compute/disks",
        "Microsoft.Compute/availabilitySets",
        "Microsoft.Compute/skus",
    )
}
# Child segments as ARM spells them: the network children, and a VM's instanceView.
CHILD_NAMES = {c.lower(): c for children in CHILDREN.values() for c in children}
CHILD_NAMES["instanceview"] = "instanceView"
ACTION_NAMES = {
    a.lower(): a
    for a in (
        "deallocate",
        "start",
        "restart",
        "powerOff",
        "runCommand",
        "health",
        "redeploy",
        "reapply",
        "generalize",
        "simulateEviction",
    )
}


def canonical_type(ns: str, rtype: str) -> str:
    full = f"{ns}/{rtype}"
    return KNOWN_TYPES.get(full.lower(), full)


@dataclass
class Route:
    kind: str  # graph | operation | skus | list_sub | list_rg | resource_group |
    #                 resource | child_list | child | action | child_action | permissions |
    #                 metrics_batch | metrics (emulator.metrics)
    subscription: str | None = None
    resource_group: str | None = None
    namespace: str | None = None
    rtype: str | None = None  # canonical "Microsoft.X/type"
    name: str | None = None
    child: str | None = None  # child collection, e.g. "subnets"
    child_name: str | None = None
    action: str | None = None
    operation_id: str | None = None
    operation_kind: str | None = None  # "operations" | "operationResults"
    scope: str | None = None  # permissions: the resource (or group) they are asked for;
    #                           metrics_batch: the subscription its RBAC check is made at
    region: str | None = None  # metrics_batch: the regional endpoint's region
    path: str = ""  # the request path as sent (for nextLink)
    api_version: str = ""  # echoed in operation URLs

    @property
    def rg_id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    @property
    def resource_id(self) -> str:
        return f"{self.rg_id}/providers/{self.rtype}/{self.name}"

    @property
    def resource_type(self) -> str | None:
        """Type as the request log counts it (child types included)."""
        if self.kind in ("child", "child_list", "child_action") or (
            self.kind == "resource" and self.child
        ):
            return f"{self.rtype}/{self.child}"
        if self.kind == "operation":
            return f"{self.namespace}/locations/{self.operation_kind}"
        if self.kind == "graph":
            return "Microsoft.ResourceGraph/resources"
        if self.kind in ("metrics_batch", "metrics"):
            return "Microsoft.Insights/metrics"
        if self.kind == "permissions":
            return "Microsoft.Authorization/permissions"
        if self.kind == "resource_group":
            return "Microsoft.Resources/resourceGroups"
        return self.rtype

    def rbac_action(self, method: str) -> str | None:
        m = method.upper()
        if self.kind == "graph":
            return "Microsoft.ResourceGraph/resources/read"
        if self.kind in ("metrics_batch", "metrics"):
            return METRICS_READ
        if self.kind == "permissions":
            return "Microsoft.Authorization/permissions/read"
        if self.kind == "operation":
            return f"{self.namespace}/locations/{self.operation_kind}/read"
        if self.kind == "resource_group":
            return "Microsoft.Resources/subscriptions/resourceGroups/read"
        if self.kind == "action":
            return f"{self.rtype}/{self.action}/action"
        if self.kind == "child_action":
            return f"{self.rtype}/{self.child}/{self.action}/action"
        base = self.resource_type
        verb = {
            "GET": "read",
            "HEAD": "read",
            "PUT": "write",
            "PATCH": "write",
            "DELETE": "delete",
        }.get(m, "read")
        return f"{base}/{verb}"


def parse(path: str) -> Route | None:
    s = [unquote(p) for p in path.strip("/").split("/") if p != ""]
    low = [p.lower() for p in s]
    if low[:3] == ["providers", "microsoft.resourcegraph", "resources"] and len(s) == 3:
        return Route("graph", namespace="Microsoft.ResourceGraph")
    if len(s) == 5 and low[0] == "regions" and low[2] == "subscriptions" \
            and low[4] == "metrics:getbatch":  # {region}.metrics.monitor.azure.com in Azure
        return Route("metrics_batch", s[3], scope=f"/subscriptions/{s[3]}", region=s[1])
    if len(s) < 2 or low[0] != "subscriptions":
        return None
    sub = s[1]
    if len(s) >= 6 and low[-3:] == ["providers", "microsoft.authorization", "permissions"]:
        # "Permissions - List For Resource" / "For Resource Group" (authorization spec,
        # 2022-04-01): the caller's own effective actions at that scope.
        scope = "/" + "/".join(s[:-3])
        rg = s[3] if low[2] == "resourcegroups" else None
        return Route("permissions", sub, rg, namespace="Microsoft.Authorization", scope=scope)
    if len(s) >= 5 and low[2] == "providers":
        ns = s[3]
        if len(s) == 5:
            rtype = canonical_type(ns, s[4])
            if rtype.lower() == "microsoft.compute/skus":
                return Route("skus", sub, namespace=ns, rtype=rtype)
            return Route("list_sub", sub, namespace=ns, rtype=rtype)
        if len(s) == 8 and low[4] == "locations" and low[6] in ("operations", "operationresults"):
            kind = "operations" if low[6] == "operations" else "operationResults"
            return Route("operation", sub, namespace=ns, operation_id=s[7], operation_kind=kind)
        return None
    if len(s) >= 4 and low[2] == "resourcegroups":
        rg = s[3]
        if len(s) == 4:
            return Route("resource_group", sub, rg)
        if len(s) < 7 or low[4] != "providers":
            return None
        ns, rtype = s[5], canonical_type(s[5], s[6])
        base = dict(subscription=sub, resource_group=rg, namespace=ns, rtype=rtype)
        if len(s) == 7:
            return Route("list_rg", **base)
        name = s[7]
        if len(s) == 8:
            return Route("resource", name=name, **base)
        seg = CHILD_NAMES.get(low[8])
        if len(s) == 9:
            if seg is None or low[8] in ACTION_NAMES:
                return Route("action", name=name, action=ACTION_NAMES.get(low[8], s[8]), **base)
            if seg == "instanceView":
                return Route("resource", name=name, child=seg, **base)
            return Route("child_list", name=name, child=seg, **base)
        if len(s) == 10:
            return Route("child", name=name, child=seg or s[8], child_name=s[9], **base)
        if len(s) == 11 and low[8:] == ["providers", "microsoft.insights", "metrics"]:
            return Route("metrics", name=name, **base)
        if len(s) == 11:
            return Route("child_action", name=name, child=seg or s[8], child_name=s[9],
                         action=ACTION_NAMES.get(low[10], s[10]), **base)
    return None
