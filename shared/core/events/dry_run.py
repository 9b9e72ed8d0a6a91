"""Pure: how the app would handle an Event Grid payload, for `hairpin event FILE` (no Azure, no
writes). Operators use it to check an event subscription's filters against real payloads.

A payload is what Event Grid posts: one event or an array of them, in the Event Grid schema or
as CloudEvents 1.0. Each event goes through `parse_event`, the trigger's own first step; what
this says past that (which resources are read, which VMs evaluated) is what the event service
does with the scope, read from current state when the event really arrives.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.core import arm_ids
from shared.core.events.identity import OwnIdentity
from shared.core.events.parse import Ignored, Rejected, ResourceEvent, is_own_write, parse_event
from shared.core.events.readers import MAX_EVENT_BYTES, mapping_of, short, text_of
from shared.core.vocab import ScopeKind

__all__ = ["EventVerdict", "events_of", "explain", "explain_payload", "verdicts_json",
           "verdicts_table", "PayloadError"]

# Event Grid posts at most 1 MB per event and batches of at most 5,000 events.
MAX_EVENTS = 5000


class PayloadError(ValueError):
    """The file is not an Event Grid payload at all (not JSON, not an object or array)."""


@dataclass(frozen=True, slots=True)
class EventVerdict:
    """One event, as `hairpin event` reports it."""

    id: str | None
    type: str | None
    operation: str | None
    subject: str | None
    handled: bool
    reason: str
    scope_kind: ScopeKind | None = None
    scope_id: str | None = None
    own_write: bool | None = None  # None: not handled, or our own identity is unknown

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "operation": self.operation,
                "subject": self.subject, "handled": self.handled, "reason": self.reason,
                "scope": {"kind": self.scope_kind.value if self.scope_kind else None,
                          "id": self.scope_id},
                "own_write": self.own_write}


def events_of(text: str | bytes) -> list[Any]:
    """The events of a payload: an object is one event, an array its elements."""
    if len(text) > MAX_EVENT_BYTES * 64:
        raise PayloadError("payload larger than 64 MB")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"not JSON: {short(str(exc), 80)}") from None
    if isinstance(doc, Mapping):
        return [doc]
    if isinstance(doc, list):
        if len(doc) > MAX_EVENTS:
            raise PayloadError(f"{len(doc)} events; Event Grid posts at most {MAX_EVENTS}")
        return doc
    raise PayloadError(f"expected an event object or an array of events, got "
                       f"{type(doc).__name__}")


def explain_payload(text: str | bytes, identity: OwnIdentity) -> list[EventVerdict]:
    """Each event of the payload; a handled event whose id came earlier is a duplicate, as the
    event service's first-wins claim on the id makes it."""
    out: list[EventVerdict] = []
    seen: set[str] = set()
    for raw in events_of(text):
        verdict = explain(raw, identity)
        if verdict.handled and verdict.id in seen:
            verdict = dataclasses.replace(
                verdict, handled=False,
                reason="duplicate of an earlier event with this id: acknowledged, no work")
        elif verdict.handled and verdict.id:
            seen.add(verdict.id)
        out.append(verdict)
    return out


def explain(raw: Any, identity: OwnIdentity) -> EventVerdict:
    """One event: what the trigger's parse decides, and what the service would read."""
    parsed = parse_event(raw)
    if isinstance(parsed, ResourceEvent):
        own = is_own_write(parsed, identity) if identity else None
        kind = parsed.scope.kind
        return EventVerdict(parsed.event_id, parsed.event_type, parsed.operation,
                            parsed.resource_id, True, _handled_reason(parsed, kind, own), kind,
                            parsed.target_id, own)
    doc = mapping_of(raw) or {}
    data = mapping_of(doc.get("data")) or {}
    event_type = text_of(doc.get("eventType"), 256) or text_of(doc.get("type"), 256)
    operation = text_of(data.get("operationName"), 512)
    if isinstance(parsed, Ignored):
        event_type = parsed.event_type or event_type
        operation = parsed.operation or operation
    prefix = "rejected: " if isinstance(parsed, Rejected) else ""
    return EventVerdict(parsed.event_id, event_type, operation,
                        text_of(doc.get("subject"), 2048), False, prefix + parsed.reason)


def _handled_reason(ev: ResourceEvent, kind: ScopeKind | None, own: bool | None) -> str:
    name = arm_ids.name_of(ev.target_id)
    child = ""
    if ev.is_child:
        parsed = arm_ids.parse(ev.resource_id)
        verb = "deleted" if ev.is_delete else "written"
        child = f"{parsed.types[-1]} {parsed.names[-1]} {verb}: "
    if kind is ScopeKind.VM:
        what = (f"re-read VM {name}, evaluate it and check its guest routes" if ev.is_action
                else f"re-read VM {name} and evaluate it")
    elif kind is ScopeKind.NIC:
        what = (f"network interface {name} deleted: evaluate the VM it belonged to"
                if ev.target_deleted else
                f"re-read network interface {name}; evaluate its VM and the VMs sharing its "
                "backend pools")
    elif kind is ScopeKind.VNET:
        subnet = arm_ids.name_of(ev.resource_id)
        what = f"re-read virtual network {name}; evaluate the VMs with a NIC in subnet {subnet}"
        child = ""
    elif ev.target_deleted:
        what = f"load balancer {name} deleted: evaluate the VMs holding verified routes"
    else:
        what = (f"re-read load balancer {name}; evaluate the VMs in its backend pools and "
                "those holding verified routes")
    if own:
        what += "; our own write: evaluated, no remediation started"
    return child + what


def verdicts_json(verdicts: list[EventVerdict]) -> dict[str, Any]:
    return {"events": [v.as_dict() for v in verdicts]}


def verdicts_table(verdicts: list[EventVerdict]) -> str:
    """One line per event: id, handled, operation, scope, own write; the reason below it."""
    rows = [("ID", "HANDLED", "OPERATION", "SCOPE", "OWN")]
    for v in verdicts:
        scope = f"{v.scope_kind.value} {arm_ids.name_of(v.scope_id)}" if v.scope_kind and \
            v.scope_id else "-"
        own = "-" if v.own_write is None else ("yes" if v.own_write else "no")
        rows.append((short(v.id or "-", 40), "yes" if v.handled else "no",
                     short(v.operation or "-", 70), short(scope, 50), own))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)).rstrip()]
    for row, v in zip(rows[1:], verdicts, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        lines.append(f"    {v.reason}")
    handled = sum(v.handled for v in verdicts)
    lines.append(f"{len(verdicts)} event(s): {handled} handled, {len(verdicts) - handled} not")
    return "\n".join(lines) + "\n"
