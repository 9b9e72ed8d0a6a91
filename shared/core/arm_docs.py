"""Pure: links read out of raw ARM documents (no Azure SDK, no I/O).

NIC -> its VM, NIC -> the backend pools of its IP configurations, LB -> the NICs of its pools'
members, pool -> its LB, and the managed-NIC tag. The event service resolves an event's scope
(`shared.services.events.scope`) from these, on documents it has just read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.core import arm_ids


def vm_of_nic(nic: dict | None) -> str | None:
    props = (nic or {}).get("properties") or {}
    ref = props.get("virtualMachine") or {}
    return ref.get("id") if isinstance(ref, dict) else None


def pool_ids_of_nic(nic: dict | None) -> list[str]:
    props = (nic or {}).get("properties") or {}
    out = []
    for cfg in props.get("ipConfigurations") or []:
        cp = cfg.get("properties") or {}
        for pool in cp.get("loadBalancerBackendAddressPools") or []:
            if isinstance(pool, dict) and pool.get("id"):
                out.append(pool["id"])
    return out


def member_nics_of_lb(lb: dict | None, pool_ids: Iterable[str] | None = None) -> list[str]:
    """NIC ids of the members of the LB's pools (all pools, or only `pool_ids`)."""
    wanted = {arm_ids.normalize(p) for p in pool_ids} if pool_ids is not None else None
    props = (lb or {}).get("properties") or {}
    out = []
    for pool in props.get("backendAddressPools") or []:
        if wanted is not None and arm_ids.normalize(pool.get("id", "")) not in wanted:
            continue
        pp = pool.get("properties") or {}
        for cfg in pp.get("backendIPConfigurations") or []:
            cid = cfg.get("id") if isinstance(cfg, dict) else None
            parent = arm_ids.try_parse(cid) if cid else None
            if parent is not None and parent.is_child:
                out.append(str(parent.top_level))
    return list(dict.fromkeys(out))


def lb_of_pool(pool_id: str) -> str | None:
    parsed = arm_ids.try_parse(pool_id)
    return str(parsed.top_level) if parsed is not None else None


def tags_mark_managed(tags: Mapping[str, object] | None, tag: str) -> bool:
    """Created by this project: `<tag>=true` (tag names are case-insensitive, the value must be
    `true`). The one rule, for raw documents (`is_managed`) and the model (`Nic.is_managed`)."""
    low = tag.lower()
    return any(k.lower() == low and str(v).strip().lower() == "true"
               for k, v in (tags or {}).items())


def is_managed(nic: dict | None, tag: str) -> bool:
    """The raw NIC document is tagged as ours: the test every write path makes before touching
    a NIC."""
    return tags_mark_managed((nic or {}).get("tags"), tag)
