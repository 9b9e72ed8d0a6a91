"""Discovery through Azure Resource Graph: many subscriptions, few requests.

One KQL query (`DISCOVERY_QUERY`) returns every VNet, NIC, load balancer, VM and NSG of the
given subscriptions, 1,000 rows a page with skip tokens, each row with only the properties the
topology reads (`TOPOLOGY_PROPERTIES`). Each page costs one query of the caller's quota (15 per
5 s); when `x-ms-user-quota-remaining` reaches 0 we sleep until `x-ms-user-quota-resets-after`
instead of running into 429s. A page may not exceed 16 MiB: on ARG's ResponsePayloadTooLarge
the same page is asked for again with half as many rows, and the rest goes on at that size.

ARG rows are turned back into the documents an ARM GET returns, cut to the same properties, so
the topology cannot tell the two discovery paths apart: ARG-only columns (tenantId,
resourceGroup, subscriptionId) are dropped, the resource type gets its ARM casing back from the
resource ID, and a VM's power state moves from `properties.extended.instanceView.powerState`
back to `properties.instanceView.statuses`, as in a VM listed with its instance view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError

if TYPE_CHECKING:  # the SDK is imported by the first query (offline audits never load it)
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest

DISCOVERY_TYPES = (
    "microsoft.network/virtualnetworks",
    "microsoft.network/networkinterfaces",
    "microsoft.network/loadbalancers",
    "microsoft.compute/virtualmachines",
    # Listed as the ARM path lists them (the topology counts them as ignored), but with none of
    # their properties: a NIC's NSG is its reference.
    "microsoft.network/networksecuritygroups",
)

# What the topology reads of `properties` (shared/core/topology: networks, interfaces,
# load_balancers, machines), for every type at once: nothing else is sent back.
TOPOLOGY_PROPERTIES = (
    # virtual networks
    "addressSpace", "subnets",
    # network interfaces
    "ipConfigurations", "virtualMachine", "primary", "macAddress", "networkSecurityGroup",
    "enableIPForwarding", "enableAcceleratedNetworking",
    # load balancers
    "frontendIPConfigurations", "backendAddressPools", "loadBalancingRules", "probes",
    "inboundNatRules",
    # virtual machines
    "hardwareProfile", "networkProfile", "storageProfile.osDisk.osType",
    "osProfile.windowsConfiguration", "osProfile.linuxConfiguration",
    "extended.instanceView.powerState",
)
TOP_LEVEL = ("id", "name", "type", "location", "sku", "tags")


def _bag(paths: Sequence[str], prefix: str = "properties") -> str:
    """bag_pack(...) of the given dotted paths under `prefix`, nested as in the document."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition(".")
        groups.setdefault(head, [])
        if rest:
            groups[head].append(rest)
    parts = []
    for head, rests in groups.items():
        value = _bag(rests, f"{prefix}.{head}") if rests else f"{prefix}.{head}"
        parts.append(f"'{head}', {value}")
    return "bag_pack(" + ", ".join(parts) + ")"


# The exact text sent to ARG (the emulator tests run this same constant). `order by id` keeps
# paging stable; `id` being a string column is what lets ARG page at all.
DISCOVERY_QUERY = (
    "Resources\n"
    "| where type in~ (" + ", ".join(f"'{t}'" for t in DISCOVERY_TYPES) + ")\n"
    "| project " + ", ".join(TOP_LEVEL) + ",\n"
    "          properties = " + _bag(TOPOLOGY_PROPERTIES) + "\n"
    "| order by id asc"
)

# The documented VM -> NIC join (docs/azure-facts.md, "Resource Graph"), for callers that want
# only the VM-to-NIC map without the full documents.
VM_NIC_QUERY = (
    "Resources\n"
    "| where type =~ 'microsoft.compute/virtualmachines'\n"
    "| mv-expand nic = properties.networkProfile.networkInterfaces\n"
    "| project vmId = id, vmName = name, nicId = tostring(nic.id),\n"
    "          primary = tobool(nic.properties.primary),\n"
    "          powerState = tostring(properties.extended.instanceView.powerState.code)\n"
    "| order by vmId asc, nicId asc"
)

PAGE_SIZE = 1000          # ARG's maximum rows per page
MAX_SUBSCRIPTIONS = 1000  # subscriptions per request, as the az CLI batches them
_ARG_ONLY = ("tenantId", "resourceGroup", "subscriptionId")
_OPTIONAL = ("kind", "managedBy", "sku", "plan", "zones", "identity", "extendedLocation", "tags")

OnPage = Callable[[int, int], None]  # (pages fetched so far, rows so far)


class ResourceGraphThrottled(Exception):
    """ARG kept answering 429 after the allowed number of waits."""


def _seconds(hhmmss: str | None) -> float | None:
    """'00:00:03' -> 3.0; None for a missing or malformed header."""
    if not hhmmss:
        return None
    try:
        h, m, s = hhmmss.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return None


def arm_type_from_id(resource_id: str, fallback: str) -> str:
    """`Microsoft.Network/networkInterfaces` from the ID when it matches ARG's lowercase type."""
    parts = resource_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        return fallback
    i = len(lowered) - 1 - lowered[::-1].index("providers")
    rest = parts[i + 1:]
    if len(rest) < 3:
        return fallback
    candidate = "/".join([rest[0]] + rest[1::2])
    return candidate if candidate.lower() == (fallback or "").lower() else fallback


def _without_nulls(bag: dict) -> dict:
    """A projected bag without the keys its resource does not have: null in the row, or a
    nested bag of nulls (`storageProfile.osDisk.osType` of a NIC). Other values, empty ones
    included, stay as the resource has them."""
    out: dict[str, Any] = {}
    for key, value in bag.items():
        if value is None:
            continue
        if isinstance(value, dict) and value:
            value = _without_nulls(value)
            if not value:
                continue
        out[key] = value
    return out


def from_arg_row(row: dict) -> dict:
    """An ARG `Resources` row as the raw ARM document of that resource."""
    doc: dict[str, Any] = {}
    for key, value in row.items():
        if key in _ARG_ONLY:
            continue
        if key in _OPTIONAL and value in (None, ""):
            continue  # ARG fills absent top-level fields with null or ""; ARM omits them
        doc[key] = value
    if "type" in doc and "id" in doc:
        doc["type"] = arm_type_from_id(doc["id"], doc["type"])
    props = doc.get("properties")
    if isinstance(props, dict):
        props = doc["properties"] = _without_nulls(props)
    if isinstance(props, dict) and (doc.get("type") or "").lower() == DISCOVERY_TYPES[3]:
        props = dict(props)
        extended = props.pop("extended", None) or {}
        power = (extended.get("instanceView") or {}).get("powerState")
        if isinstance(power, dict) and power.get("code"):
            props["instanceView"] = {"statuses": [dict(power)]}
        doc["properties"] = props
    return doc


def too_large(exc: HttpResponseError) -> bool:
    """ARG's answer to a page over 16 MiB: 400 BadRequest, detail ResponsePayloadTooLarge."""
    details = getattr(getattr(exc, "error", None), "details", None) or []
    return exc.status_code == 400 and any(
        getattr(d, "code", None) == "ResponsePayloadTooLarge" for d in details)


def query_pages(
    client: ResourceGraphClient,
    query: str,
    subscriptions: Sequence[str],
    *,
    page_size: int = PAGE_SIZE,
    sleep: Callable[[float], None] = time.sleep,
    max_throttle_waits: int = 5,
) -> Iterator[list[dict]]:
    """Yield the pages (lists of row dicts) of one query over `subscriptions`. A page ARG finds
    too large is asked for again with half the rows (down to one), and later pages keep that
    size."""
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    subscriptions = list(subscriptions)
    out_of_quota_for = 0.0
    for start in range(0, max(len(subscriptions), 1), MAX_SUBSCRIPTIONS):
        batch = subscriptions[start:start + MAX_SUBSCRIPTIONS]
        skip_token: str | None = None
        while True:
            if out_of_quota_for:
                # Out of quota: wait for the window to reset rather than earn a 429.
                sleep(out_of_quota_for)
            request = QueryRequest(
                subscriptions=batch or None,
                query=query,
                options=QueryRequestOptions(top=page_size, skip_token=skip_token,
                                            result_format="objectArray"),
            )
            try:
                response, headers = _send(client, request, sleep, max_throttle_waits)
            except HttpResponseError as exc:
                if not too_large(exc) or page_size <= 1:
                    raise
                page_size = max(1, page_size // 2)
                continue
            yield list(response.data or [])
            out_of_quota_for = 0.0
            if (headers.get("x-ms-user-quota-remaining") or "").strip() == "0":
                out_of_quota_for = _seconds(headers.get("x-ms-user-quota-resets-after")) or 1.0
            skip_token = response.skip_token
            if not skip_token:
                break


def _send(client: ResourceGraphClient, request: QueryRequest, sleep, max_waits: int):
    """One query; on a 429 that gets past the SDK's RetryPolicy (it honours Retry-After on its
    own), wait as the quota headers say and try again."""
    waits = 0
    while True:
        try:
            return client.resources(
                request,
                cls=lambda pipeline, deserialized, _: (deserialized,
                                                       pipeline.http_response.headers),
            )
        except HttpResponseError as exc:
            if exc.status_code != 429 or waits >= max_waits:
                if exc.status_code == 429:
                    raise ResourceGraphThrottled(str(exc)) from exc
                raise
            waits += 1
            h = exc.response.headers if exc.response is not None else {}
            wait = _seconds(h.get("x-ms-user-quota-resets-after"))
            if wait is None:
                try:
                    wait = float(h.get("Retry-After", ""))
                except ValueError:
                    wait = 1.0
            sleep(max(wait, 0.0))


def discover_resources(
    client: ResourceGraphClient,
    subscriptions: Sequence[str],
    *,
    on_page: OnPage | None = None,
    sleep: Callable[[float], None] = time.sleep,
    page_size: int = PAGE_SIZE,
    query: str = DISCOVERY_QUERY,
) -> list[dict]:
    """Raw ARM documents of the VNets, NICs, load balancers, VMs and NSGs in `subscriptions`."""
    docs: list[dict] = []
    pages = 0
    for page in query_pages(client, query, subscriptions, page_size=page_size, sleep=sleep):
        pages += 1
        docs.extend(from_arg_row(row) for row in page)
        if on_page:
            on_page(pages, len(docs))
    return docs


# How many VMs each subscription holds: how the fleet sweep sizes its work items.
VM_COUNT_QUERY = (
    "Resources\n"
    "| where type =~ 'microsoft.compute/virtualmachines'\n"
    "| summarize vms = count() by subscriptionId\n"
    "| order by subscriptionId asc"
)


def vm_counts(client: ResourceGraphClient, subscriptions: Sequence[str], *,
              sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Lowercase subscription ID -> VMs, for `subscriptions` (none: every one the caller can
    read); one query per 1,000 subscriptions."""
    counts: dict[str, int] = {}
    for page in query_pages(client, VM_COUNT_QUERY, subscriptions, sleep=sleep):
        for row in page:
            sub = str(row.get("subscriptionId") or "").lower()
            if sub:
                counts[sub] = counts.get(sub, 0) + int(row.get("vms") or 0)
    return counts
