"""Pure: a fleet sweep split into work items, and its summary merged from the items' results.

The timer plans the items (`plan_items`): one per subscription, or, with Resource Graph, the
subscriptions packed in order into items of at most `max_vms` VMs (a larger subscription is an
item of its own: a backend pool never spans subscriptions, so a subscription is the smallest
scope whose drift can be judged alone). Each item travels as one queue message
(`SweepItem.as_message`); each item's result is one `SweepSummary` document, and the sweep's
summary is their sum (`merge_summaries`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.core.sweep_summary import SweepSummary

__all__ = ["ITEM_KIND", "MAX_SUBSCRIPTIONS_PER_ITEM", "LIST_CAP", "SweepItem", "plan_items",
           "item_id", "merge_summaries", "capped"]

ITEM_KIND = "sweep-item"
# A queue message holds 64 KiB (base64 adds a third): 500 subscription IDs stay far below.
MAX_SUBSCRIPTIONS_PER_ITEM = 500
LIST_CAP = 200  # pending plans / errors kept per item result (a Table entity holds 1 MiB)


@dataclass(frozen=True)
class SweepItem:
    """One work item: which subscriptions of which sweep, discovered how. `run` counts the
    invocations the item has had (a continuation after its budget ran out is run + 1)."""

    sweep_id: str
    item_id: str
    subscriptions: tuple[str, ...]
    resource_graph: bool = False
    run: int = 1

    def as_message(self) -> dict[str, Any]:
        return {"kind": ITEM_KIND, "sweep_id": self.sweep_id, "item_id": self.item_id,
                "subscriptions": list(self.subscriptions),
                "resource_graph": self.resource_graph, "run": self.run}

    @classmethod
    def from_message(cls, doc: Mapping[str, Any]) -> SweepItem:
        """Raises ValueError/KeyError/TypeError for a message that is not a sweep item."""
        if doc.get("kind") != ITEM_KIND:
            raise ValueError(f"not a sweep item: kind {doc.get('kind')!r}")
        subs = doc["subscriptions"]
        if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
            raise TypeError("subscriptions must be a list of strings")
        return cls(sweep_id=str(doc["sweep_id"]), item_id=str(doc["item_id"]),
                   subscriptions=tuple(subs), resource_graph=bool(doc.get("resource_graph")),
                   run=int(doc.get("run") or 1))

    def continued(self) -> SweepItem:
        return replace(self, run=self.run + 1)


def item_id(index: int) -> str:
    """Zero-padded, so that the Table's RowKey order is the plan's order."""
    return f"{index:05d}"


def plan_items(subscriptions: Sequence[str], vm_counts: Mapping[str, int] | None = None,
               max_vms: int = 500) -> list[tuple[str, ...]]:
    """The subscriptions of each work item. Without `vm_counts` (the ARM path): one item per
    subscription. With them (Resource Graph, lowercase subscription -> VMs): subscriptions
    without VMs make no item (nothing to reconcile), the rest are packed in order into items
    of at most `max_vms` VMs and MAX_SUBSCRIPTIONS_PER_ITEM subscriptions."""
    subs = sorted({s.lower() for s in subscriptions})
    if vm_counts is None:
        return [(s,) for s in subs]
    counts = {k.lower(): int(v) for k, v in vm_counts.items()}
    if not subs:  # no subscription configured: every one Resource Graph counted
        subs = sorted(counts)
    items: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for s in subs:
        n = counts.get(s, 0)
        if n <= 0:
            continue
        if current and (size + n > max_vms or len(current) >= MAX_SUBSCRIPTIONS_PER_ITEM):
            items.append(tuple(current))
            current, size = [], 0
        current.append(s)
        size += n
    if current:
        items.append(tuple(current))
    return items


def capped(summary: Mapping[str, Any], cap: int = LIST_CAP) -> dict[str, Any]:
    """An item's summary document with its long lists cut to `cap` entries (counts stay)."""
    doc = dict(summary)
    for key in ("pending", "errors", "resumed_vms"):
        values = list(doc.get(key) or [])
        if len(values) > cap:
            doc[key] = values[:cap]
            doc[f"{key}_cut"] = len(values) - cap
    return doc


_SUMMED = ("vms", "findings", "at_risk", "managed_nics", "vms_processed", "vms_remaining",
           "pruned_event_records")


def merge_summaries(sweep_id: str, started_at: str,
                    parts: Iterable[Mapping[str, Any]]) -> SweepSummary:
    """The sweep's summary: counts and dictionaries summed, lists joined, complete when every
    part is complete. `parts`: the timer's own part and one document per item."""
    total = SweepSummary(sweep_id=sweep_id, started_at=started_at, complete=True)
    reasons: list[str] = []
    for part in parts:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + int(part.get(name) or 0))
        for kind, n in (part.get("drift") or {}).items():
            total.drift[kind] = total.drift.get(kind, 0) + int(n)
        for key, n in (part.get("actions") or {}).items():
            total.actions[key] = total.actions.get(key, 0) + int(n)
        total.pending += list(part.get("pending") or [])
        total.errors += list(part.get("errors") or [])
        total.resumed_vms += list(part.get("resumed_vms") or [])
        total.runs = max(total.runs, int(part.get("runs") or 1))
        total.resumed = total.resumed or bool(part.get("resumed"))
        if not part.get("complete", True):
            total.complete = False
        if part.get("stopped_reason"):
            reasons.append(str(part["stopped_reason"]))
    total.stopped_reason = "; ".join(sorted(set(reasons)))[:500] or None
    return total
