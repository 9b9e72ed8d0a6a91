"""Discovery through ARM: the estate of one subscription as raw ARM documents.

The cost is O(pages), never one GET per resource: one paged `list_all` per resource type
(VNets, NSGs, NICs, load balancers, VMs with their power state), one SKU listing per location, plus
backend health: one Azure Monitor batch call per 50 Standard load balancers of a region, and one
rule health call only for each rule that can hairpin (internal, not floating IP) the metric does
not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.azure.clients import AzureClients
from shared.core import arm_ids
from shared.core.vocab import HealthSource

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
    include_skus: bool = True,
    on_progress: Progress | None = None,
) -> dict:
    """Return `{"resources", "skus", "health"}` for one subscription (the snapshot format).

    `include_skus=False` / `include_health=False` leave those lists empty, for callers that read
    them once across many subscriptions (`shared.services.audit`)."""
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
    skus = discover_skus(clients, vms, on_progress) if include_skus else []
    health = discover_health(clients, results["loadBalancers"],
                             resources=results["networkInterfaces"]) if include_health else []
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
            name = sku.get("name", "").lower()
            if sku.get("resourceType") == "virtualMachines" and name in sizes:
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


HEALTH_WORKERS = 8  # rule health reads in flight: each is an LRO that mostly waits


def discover_health(clients: AzureClients, load_balancers: Iterable[dict], *,
                    resources: Iterable[dict] = (), max_workers: int = HEALTH_WORKERS,
                    on_read: Callable[[], None] | None = None,
                    now: datetime | None = None) -> list[dict]:
    """Backend health of every rule that can hairpin, each entry saying its `source`.

    First Azure Monitor: one batch call per 50 Standard load balancers of a region
    (`shared.azure.monitor`), mapped to rules and members by `shared.core.metric_health` with
    the member IPs of `resources` (the NICs). Then, only for the rules the metric does not
    answer (a new or Basic load balancer, no permission, an error), the per-rule health action:
    a long-running operation each, `max_workers` at a time, their pollers waiting as ARM's
    Retry-After says. A rule whose health cannot be read either way is left out (unknown)."""
    from shared.azure import monitor
    from shared.core import metric_health
    from shared.core.topology import build_topology

    lbs = list(load_balancers)
    targets = {rule["id"]: (lb, rule) for lb in lbs for rule in hairpin_capable_rules(lb)}
    standard = [lb for lb in lbs if _is_standard(lb) and hairpin_capable_rules(lb)]
    docs = {arm_ids.normalize(d["id"]): d for d in [*resources, *lbs] if d.get("id")}
    topology = build_topology(docs.values())
    # The metric has a series per member of *every* rule (floating IP, public frontends too):
    # the batch's `top` covers them all, with room for series the topology cannot predict.
    rule_ids_of = {lb["id"]: [r["id"] for r in (lb.get("properties") or {}).get(
        "loadBalancingRules") or []] for lb in standard}
    end = now or datetime.now(UTC)
    series = monitor.read_series(
        clients, standard, end=end, on_batch=on_read,
        top_for=lambda batch: 2 * metric_health.expected_series(
            topology, [r for lb in batch for r in rule_ids_of[lb["id"]]]) + 10)
    mapped = metric_health.health_from_metrics(topology, list(targets), series,
                                               threshold=clients.health_metric_threshold, end=end)
    fallback = [targets[rule_id] for rule_id in mapped.without_data]
    return list(mapped.entries) + _rule_api_health(clients, fallback, max_workers, on_read)


def _is_standard(lb: dict) -> bool:
    return str((lb.get("sku") or {}).get("name") or "").lower() == "standard"


def _rule_api_health(clients: AzureClients, targets: list[tuple[dict, dict]], max_workers: int,
                     on_read: Callable[[], None] | None) -> list[dict]:
    """The health action per rule, `max_workers` in flight; results in target order."""
    def read(target) -> dict | None:
        lb, rule = target
        parts = lb["id"].split("/")
        try:
            poller = clients.network.load_balancer_load_balancing_rules.begin_health(
                parts[4], parts[8], rule["name"])
            return {"ruleId": rule["id"], "source": HealthSource.RULE_API.value,
                    "response": poller.result().as_dict()}
        except HttpResponseError as exc:
            log.warning("health of rule %s unreadable: %s", rule["id"], exc.message)
            return None
        finally:
            if on_read:
                on_read()

    if max_workers > 1 and len(targets) > 1:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
            results = list(pool.map(read, targets))
    else:
        results = [read(t) for t in targets]
    return [h for h in results if h is not None]


# --------------------------------------------------------------------------- narrow scopes

_VM = "microsoft.compute/virtualmachines"
_NIC = "microsoft.network/networkinterfaces"
_LB = "microsoft.network/loadbalancers"
_VNET = "microsoft.network/virtualnetworks"


def _top(resource_id: str | None) -> tuple[str, str] | None:
    """(normalised key, ID) of the top-level resource holding `resource_id`, None if unparsable."""
    parsed = arm_ids.try_parse(resource_id) if resource_id else None
    if parsed is None or not parsed.types:
        return None
    top = parsed.top_level
    return top.key, str(top)


def _refs(doc: dict) -> dict[str, set[str]]:
    """Top-level IDs one document points at, by type: a VM's NICs; a NIC's VM, load balancers
    (through its pools) and VNets; a load balancer's member NICs and VNets."""
    out: dict[str, set[str]] = {_VM: set(), _NIC: set(), _LB: set(), _VNET: set()}

    def add(resource_id: str | None) -> None:
        found = _top(resource_id)
        if found is not None:
            rtype = (arm_ids.try_parse(found[1]).type or "").lower()
            if rtype in out:
                out[rtype].add(found[1])

    props = doc.get("properties") or {}
    kind = (doc.get("type") or "").lower()
    if kind == _VM:
        for ref in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
            add(ref.get("id"))
    elif kind == _NIC:
        add((props.get("virtualMachine") or {}).get("id"))
        for cfg in props.get("ipConfigurations") or []:
            cp = cfg.get("properties") or {}
            add((cp.get("subnet") or {}).get("id"))
            for pool in cp.get("loadBalancerBackendAddressPools") or []:
                add(pool.get("id"))
    elif kind == _LB:
        for fe in props.get("frontendIPConfigurations") or []:
            add(((fe.get("properties") or {}).get("subnet") or {}).get("id"))
        for pool in props.get("backendAddressPools") or []:
            pp = pool.get("properties") or {}
            for cfg in pp.get("backendIPConfigurations") or []:
                add(cfg.get("id"))
            for address in pp.get("loadBalancerBackendAddresses") or []:
                ap = address.get("properties") or {}
                add((ap.get("virtualNetwork") or {}).get("id"))
                add((ap.get("networkInterfaceIPConfiguration") or {}).get("id"))
    return out


def _get_one(clients_for: Callable[[str], AzureClients], resource_id: str) -> dict | None:
    """One GET (VMs with their instance view); None when the resource is gone."""
    parsed = arm_ids.parse(resource_id)
    clients = clients_for(parsed.subscription)
    group, name = parsed.resource_group, parsed.name
    kind = (parsed.type or "").lower()
    try:
        if kind == _VM:
            found = clients.compute.virtual_machines.get(group, name, expand="instanceView")
        elif kind == _NIC:
            found = clients.network.network_interfaces.get(group, name)
        elif kind == _LB:
            found = clients.network.load_balancers.get(group, name)
        elif kind == _VNET:
            found = clients.network.virtual_networks.get(group, name)
        else:
            raise ValueError(f"narrow discovery cannot read {parsed.type}")
    except ResourceNotFoundError:
        return None
    return found.as_dict()


class _ScopeReader:
    """Reads each top-level resource once (by one GET; one round's GETs in parallel)."""

    def __init__(self, clients_for: Callable[[str], AzureClients], pool: ThreadPoolExecutor):
        self.clients_for = clients_for
        self.pool = pool
        self.docs: dict[str, dict] = {}
        self.missing: set[str] = set()

    def fetch(self, ids: Iterable[str]) -> list[dict]:
        """GET the top-level resources of `ids` not read yet; return all of them that exist."""
        tops = [t for t in (_top(r) for r in ids) if t is not None]
        new = {key: rid for key, rid in tops if key not in self.docs and key not in self.missing}
        found = self.pool.map(lambda r: _get_one(self.clients_for, r), new.values())
        for key, doc in zip(new, found, strict=True):
            if doc is None:
                self.missing.add(key)
            else:
                self.docs[key] = doc
        return [self.docs[key] for key in dict.fromkeys(k for k, _ in tops) if key in self.docs]


def _refs_of(found: Iterable[dict], kind: str) -> set[str]:
    return {rid for doc in found for rid in _refs(doc)[kind]}


def _skus_and_health(clients_for: Callable[[str], AzureClients], resources: list[dict],
                     include_health: bool, max_workers: int) -> tuple[list[dict], list[dict]]:
    """SKUs of the sizes in use and the rules' health, read per subscription."""
    skus: list[dict] = []
    health: list[dict] = []
    by_sub: dict[str, dict[str, list[dict]]] = {}
    for doc in resources:
        kind = (doc.get("type") or "").lower()
        if kind in (_VM, _LB):
            sub = arm_ids.parse(doc["id"]).subscription.lower()
            by_sub.setdefault(sub, {_VM: [], _LB: []})[kind].append(doc)
    for sub, found in sorted(by_sub.items()):
        clients = clients_for(sub)
        skus += discover_skus(clients, found[_VM])
        if include_health:
            health += discover_health(clients, found[_LB], resources=resources,
                                      max_workers=max_workers)
    return skus, health


def discover_scope(
    clients_for: Callable[[str], AzureClients],
    *,
    vm_ids: Iterable[str] = (),
    nic_ids: Iterable[str] = (),
    lb_ids: Iterable[str] = (),
    include_health: bool = True,
    max_workers: int = 8,
) -> dict:
    """A snapshot of what the given VMs, NICs and load balancers touch, for event handling.

    Subjects are the given VMs, the VMs of the given NICs and the members of the given load
    balancers. The snapshot holds each subject with its NICs, every load balancer those NICs
    are pool members of, every member (NIC and VM, for power state) of those load balancers'
    pools, the VNets involved, the SKUs of the sizes in use and the rules' health: exactly what
    the risk evaluation of the subjects reads. Every resource is read once, by one GET; the
    GETs of one round run in parallel. Limits, by design: members' *other* load balancers are
    not followed, so findings for peers may lack inferred-caller evidence; IP-based pool
    memberships are found only from the load balancer side; free-IP candidates only know the
    NICs read here (check availability before using one).
    `clients_for(subscription_id)` gives the clients of a subscription (`ServiceContext.clients`).
    """
    pool = ThreadPoolExecutor(max_workers=max_workers)
    reader = _ScopeReader(clients_for, pool)
    try:
        seeds_vm = reader.fetch(list(vm_ids))
        seeds_nic = reader.fetch(list(nic_ids))
        seeds_lb = reader.fetch(list(lb_ids))
        # Subjects: given VMs, VMs of given NICs, members of given load balancers.
        member_nics = reader.fetch(sorted(_refs_of(seeds_lb, _NIC)))
        subjects = seeds_vm + reader.fetch(sorted(_refs_of(seeds_nic + member_nics, _VM)))
        subject_nics = reader.fetch(sorted(_refs_of(subjects, _NIC) | _refs_of(seeds_nic, _NIC)))
        lbs = reader.fetch(sorted(_refs_of(subject_nics, _LB) | {d["id"] for d in seeds_lb}))
        peer_nics = reader.fetch(sorted(_refs_of(lbs, _NIC)))
        reader.fetch(sorted(_refs_of(peer_nics, _VM)))
        reader.fetch(sorted(_refs_of(subject_nics + peer_nics + lbs, _VNET)))
    finally:
        pool.shutdown(wait=True)
    resources = list(reader.docs.values())
    skus, health = _skus_and_health(clients_for, resources, include_health, max_workers)
    return {"resources": resources, "skus": skus, "health": health}
