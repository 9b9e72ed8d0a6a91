"""Discovery through ARM: the estate of one subscription as raw ARM documents.

The cost is O(pages), never one GET per resource: one paged `list_all` per resource type
(VNets, NSGs, NICs, load balancers, VMs with their power state), one SKU listing per location, plus
one health call per load-balancing rule that can hairpin (internal, not floating IP, with
members), since ARM has no bulk health read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import HttpResponseError

from shared.azure.clients import AzureClients

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (resource kind, pages so far, items so far)


def _collect(kind: str, paged, on_progress: Progress | None) -> list[dict]:
    items: list[dict] = []
    pages = 0
    for page in paged.by_page():
        pages += 1
        items.extend(item.as_dict() for item in page)
        if on_progress:
            on_progress(kind, pages, len(items))
    return items


def discover_subscription(
    clients: AzureClients,
    *,
    include_health: bool = True,
    on_progress: Progress | None = None,
) -> dict:
    """Return `{"resources", "skus", "health"}` for one subscription (the snapshot format)."""
    listings = {
        "virtualNetworks": lambda: clients.network.virtual_networks.list_all(),
        "networkSecurityGroups": lambda: clients.network.network_security_groups.list_all(),
        "networkInterfaces": lambda: clients.network.network_interfaces.list_all(),
        "loadBalancers": lambda: clients.network.load_balancers.list_all(),
        "virtualMachines": lambda: clients.compute.virtual_machines.list_all(status_only="true"),
    }
    with ThreadPoolExecutor(max_workers=len(listings)) as pool:
        futures = {k: pool.submit(_collect, k, make(), on_progress) for k, make in listings.items()}
        results = {k: f.result() for k, f in futures.items()}
    vms = results["virtualMachines"]
    resources = [doc for kind in listings for doc in results[kind]]
    skus = discover_skus(clients, vms, on_progress)
    health = discover_health(clients, results["loadBalancers"]) if include_health else []
    return {"resources": resources, "skus": skus, "health": health}


def discover_skus(clients: AzureClients, vms: Iterable[dict], on_progress=None) -> list[dict]:
    """The VM-size SKUs in use, one SKU listing per location (the full list is large)."""
    wanted: dict[str, set[str]] = {}
    for vm in vms:
        size = (vm.get("properties") or {}).get("hardwareProfile", {}).get("vmSize")
        if size and vm.get("location"):
            wanted.setdefault(vm["location"].lower(), set()).add(size.lower())
    skus: list[dict] = []
    for location, sizes in sorted(wanted.items()):
        paged = clients.compute.resource_skus.list(filter=f"location eq '{location}'")
        for sku in _collect("skus", paged, on_progress):
            if sku.get("resourceType") == "virtualMachines" and sku.get("name", "").lower() in sizes:
                skus.append(sku)
    return skus


def hairpin_capable_rules(load_balancer: dict) -> list[dict]:
    """Rules on internal frontends without floating IP whose pool has members."""
    props = load_balancer.get("properties") or {}
    internal = {
        fe.get("id", "").lower()
        for fe in props.get("frontendIPConfigurations") or []
        if (fe.get("properties") or {}).get("privateIPAddress")
    }
    rules = []
    for rule in props.get("loadBalancingRules") or []:
        rp = rule.get("properties") or {}
        fe_id = ((rp.get("frontendIPConfiguration") or {}).get("id") or "").lower()
        if fe_id in internal and not rp.get("enableFloatingIP"):
            rules.append(rule)
    return rules


def discover_health(clients: AzureClients, load_balancers: Iterable[dict]) -> list[dict]:
    """Per-rule backend health; a rule whose health cannot be read is left out (unknown)."""
    health = []
    for lb in load_balancers:
        parts = lb["id"].split("/")
        group, lb_name = parts[4], parts[8]
        for rule in hairpin_capable_rules(lb):
            try:
                poller = clients.network.load_balancer_load_balancing_rules.begin_health(
                    group, lb_name, rule["name"]
                )
                health.append({"ruleId": rule["id"], "response": poller.result().as_dict()})
            except HttpResponseError as exc:
                log.warning("health of rule %s unreadable: %s", rule["id"], exc.message)
    return health
