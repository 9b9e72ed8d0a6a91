"""Pure: `Microsoft.Compute/skus` list items -> `Sku`, rule health responses -> `RuleHealth`
(part of the topology build)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.topology.readers import as_bool, as_dict, as_int, as_list, as_str, canonical
from shared.core.topology.resources import BackendHealth, RuleHealth, Sku
from shared.core.topology.unknowns import Unknowns
from shared.core.vocab import HealthSource


def read_skus(skus: Iterable[Any]) -> dict[str, Sku]:
    """Lowercase VM size name -> Sku (NIC limit, accelerated networking, locations)."""
    out: dict[str, Sku] = {}
    for item in skus if skus is not None else ():
        item = as_dict(item)
        if (as_str(item.get("resourceType")) or "").lower() != "virtualmachines":
            continue
        name = as_str(item.get("name"))
        if name is None:
            continue
        caps = {}
        for cap in as_list(item.get("capabilities")):
            cap = as_dict(cap)
            if isinstance(cap.get("name"), str):
                caps[cap["name"].lower()] = cap.get("value")
        locations = tuple(sorted(str(x).lower() for x in as_list(item.get("locations"))))
        sku = Sku(name, as_int(caps.get("maxnetworkinterfaces")),
                  as_bool(caps.get("acceleratednetworkingenabled")), locations)
        previous = out.get(name.lower())
        if previous is None or (previous.max_nics is None and sku.max_nics is not None):
            out[name.lower()] = sku
        elif previous.max_nics is not None and sku.max_nics is not None:
            # One entry per region: the capability is the same everywhere in practice; keep
            # the smaller limit if two regions ever disagree (never over-promise).
            out[name.lower()] = Sku(previous.name, min(previous.max_nics, sku.max_nics),
                                    previous.accelerated_networking,
                                    tuple(sorted(set(previous.locations) | set(locations))))
    return out


def read_health(health: Iterable[Any], unknowns: Unknowns) -> dict[str, RuleHealth]:
    """Rule key -> RuleHealth, from `{"ruleId", "response", "source"?}` entries (`source` a
    `HealthSource` value: which API the response came from)."""
    entries: dict[str, tuple[str, Mapping[str, Any], HealthSource | None]] = {}
    for index, entry in enumerate(health if health is not None else ()):
        entry = as_dict(entry)
        rule_id = as_str(entry.get("ruleId"))
        response = entry.get("response")
        if rule_id is None or not isinstance(response, dict):
            unknowns.add(rule_id or f"health[{index}]", "health", "entry without ruleId/response")
            continue
        key = normalize(rule_id)
        if key in entries:
            # The same rule twice: keep one, chosen by content (input order must not matter).
            unknowns.add(rule_id, "health", "health listed more than once; one copy kept")
            if canonical(response) >= canonical(entries[key][1]):
                continue
        entries[key] = (rule_id, response, _source(entry.get("source")))
    return {key: _rule_health(key, response, source)
            for key, (_, response, source) in entries.items()}


def _source(value: Any) -> HealthSource | None:
    try:
        return HealthSource(value) if value is not None else None
    except ValueError:
        return None


def _rule_health(key: str, response: Mapping[str, Any], source: HealthSource | None) -> RuleHealth:
    backends = []
    for b in as_list(response.get("loadBalancerBackendAddresses")):
        b = as_dict(b)
        cfg = ipconfig_of(b.get("networkInterfaceIPConfigurationId"))
        backends.append(BackendHealth(as_str(b.get("ipAddress")), normalize(cfg) if cfg else None,
                                      as_str(b.get("state")), as_str(b.get("reason"))))
    backends.sort(key=lambda b: (b.ip_config_key or "", b.ip or "", b.state or "", b.reason or ""))
    return RuleHealth(key, as_int(response.get("up")), as_int(response.get("down")),
                      tuple(backends), source)


def ipconfig_of(value: Any) -> str | None:
    """A backend's `networkInterfaceIPConfigurationId`: an id string, as the service answers
    (spec example LoadBalancerHealth.json; azure-sdk-for-go armnetwork 7.0.0 changed the type
    to a string), or an object `{id}`, as the 2024-05-01 schema declared it."""
    if isinstance(value, dict):
        return as_str(value.get("id"))
    return as_str(value)
