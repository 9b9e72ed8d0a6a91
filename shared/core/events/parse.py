"""Pure: Event Grid subscription events -> what to re-evaluate (no Azure SDK, no I/O).

Input: one event of an Azure subscription or resource-group *system topic*
(`Microsoft.Resources.Resource*`), in the Event Grid schema (`id`, `subject`, `eventType`,
`eventTime`, `data`) or as a CloudEvent 1.0 (`specversion`, `id`, `source`, `subject`, `type`,
`time`, `data`), as a dict, a JSON string/bytes, or the object `azure.functions` decodes it
into: an `EventGridEvent` (`id`, `subject`, `event_type`, `event_time`, `get_json()`) or a
`CloudEvent` (`specversion`, `type`, `time`, ..., the data only through `get_json()`: it has
no `.data`).

`parse_event()` never raises. It returns one of:

* `ResourceEvent`: an event we handle (its type and `data.operationName` are listed in
  `shared.core.events.types.HANDLED_OPERATIONS`, the one source of truth), with the initial
  scope (`scope_of`: the resource itself, or for a child resource such as a backend pool or a
  subnet its parent load balancer or virtual network) and the caller (`identity.Caller`);
* `Ignored`: well-formed but not ours to handle (other operation, Failure/Cancel events, other
  resource types): acknowledged cheaply;
* `Rejected`: malformed (missing/odd fields, resource id that is not an ARM id, operation and
  resource that disagree): logged with the reason and acknowledged, never retried.

The payload says *which* resource changed and *who* changed it; it never says what the resource
looks like now, and it may arrive late, twice or out of order. Services therefore re-read the
current state of the scope this module returns; nothing here trusts the payload's view of state.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.core import arm_ids
from shared.core.events.identity import Caller, OwnIdentity, caller_of
from shared.core.events.readers import MAX_EVENT_BYTES, mapping_of, short, text_of, time_of
from shared.core.events.types import ACTION_SUCCESS, DELETE_SUCCESS, HANDLED_OPERATIONS
from shared.core.vocab import EventSchema, ScopeKind

__all__ = ["T_VM", "T_NIC", "T_LB", "T_VNET", "Scope", "ResourceEvent", "Ignored", "Rejected",
           "ParseResult", "parse_event", "scope_of", "is_own_write"]

T_VM = "Microsoft.Compute/virtualMachines"
T_NIC = "Microsoft.Network/networkInterfaces"
T_LB = "Microsoft.Network/loadBalancers"
T_VNET = "Microsoft.Network/virtualNetworks"
_TYPES = {t.lower(): t for t in (T_VM, T_NIC, T_LB, T_VNET)}
_KINDS = {T_VM: ScopeKind.VM, T_NIC: ScopeKind.NIC, T_LB: ScopeKind.LB, T_VNET: ScopeKind.VNET}
_MAX_ID = 256

# operation (lowercase) -> (event type, canonical operation name)
_OPS: dict[str, tuple[str, str]] = {
    op.lower(): (etype, op) for etype, ops in HANDLED_OPERATIONS.items() for op in ops
}
_EVENT_TYPES = {t.lower(): t for t in HANDLED_OPERATIONS}
_RESOURCE_EVENT = re.compile(r"Microsoft\.Resources\.Resource(Write|Action|Delete)"
                             r"(Success|Failure|Cancel)", re.IGNORECASE)  # fullmatch


# --------------------------------------------------------------------------- results

@dataclass(frozen=True, slots=True)
class Scope:
    """The smallest set of resources to re-evaluate, before reading current state.

    The service expands it with the *current* documents: an LB -> the VMs in its pools; a NIC ->
    its VM and the other members of the pools it is in; a VNet -> the VMs with a NIC in the
    written subnet; a VM -> itself."""

    vm_ids: frozenset[str] = frozenset()  # normalised ids
    nic_ids: frozenset[str] = frozenset()
    lb_ids: frozenset[str] = frozenset()
    vnet_ids: frozenset[str] = frozenset()
    deleted: bool = False  # the scope's resource no longer exists (not a child's delete)

    def as_dict(self) -> dict[str, Any]:
        return {"vm_ids": sorted(self.vm_ids), "nic_ids": sorted(self.nic_ids),
                "lb_ids": sorted(self.lb_ids), "vnet_ids": sorted(self.vnet_ids),
                "deleted": self.deleted}

    @property
    def kind(self) -> ScopeKind | None:
        """The kind of the one resource an event's scope names (None when empty)."""
        for kind, ids in ((ScopeKind.VM, self.vm_ids), (ScopeKind.NIC, self.nic_ids),
                          (ScopeKind.LB, self.lb_ids), (ScopeKind.VNET, self.vnet_ids)):
            if ids:
                return kind
        return None


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    event_id: str
    event_type: str  # canonical, e.g. Microsoft.Resources.ResourceWriteSuccess
    operation: str  # canonical operationName, e.g. Microsoft.Network/loadBalancers/write
    resource_id: str  # as the event spelled it (data.resourceUri, else subject)
    resource_type: str  # of target_id: T_VM | T_NIC | T_LB | T_VNET
    target_id: str  # whose state is re-read: resource_id, or a child's parent LB / VNet
    subscription_id: str
    event_time: datetime | None
    status: str | None
    caller: Caller
    correlation_id: str | None = None
    schema: EventSchema = EventSchema.EVENT_GRID
    scope: Scope = field(default_factory=Scope)

    @property
    def key(self) -> str:
        """What one resolution of this event covers (its subject memo), normalised: the load
        balancer for it and its children (the whole LB is re-read), the subnet for a subnet
        write (only its NICs are), else the resource."""
        return arm_ids.normalize(self.resource_id if self.resource_type == T_VNET
                                 else self.target_id)

    @property
    def is_delete(self) -> bool:
        return self.event_type == DELETE_SUCCESS

    @property
    def is_child(self) -> bool:
        """The subject is a child resource (a pool, a rule, a subnet) of `target_id`."""
        return not arm_ids.same(self.resource_id, self.target_id)

    @property
    def target_deleted(self) -> bool:
        """The scope's resource itself was deleted (a child's delete leaves its parent)."""
        return self.is_delete and not self.is_child

    @property
    def is_action(self) -> bool:
        return self.event_type == ACTION_SUCCESS

    def summary(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "event_type": self.event_type,
                "operation": self.operation, "resource_id": self.resource_id,
                "target_id": self.target_id,
                "event_time": self.event_time.isoformat() if self.event_time else None,
                "status": self.status, "caller": self.caller.as_dict(),
                "correlation_id": self.correlation_id, "schema": self.schema}


@dataclass(frozen=True, slots=True)
class Ignored:
    event_id: str | None
    reason: str
    event_type: str | None = None
    operation: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    event_id: str | None
    reason: str


ParseResult = ResourceEvent | Ignored | Rejected


class _Verdict(Exception):
    """Stops the parse with its result (an Ignored or a Rejected)."""

    def __init__(self, result: Ignored | Rejected) -> None:
        super().__init__(result.reason)
        self.result = result


# --------------------------------------------------------------------------- input shapes

def _as_dict(raw: Any) -> tuple[Mapping[str, Any] | None, str | None]:
    """Normalise the input to an event dict (or a reason why not)."""
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_EVENT_BYTES:
            return None, "event larger than 1 MB"
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "event is not UTF-8"
    if isinstance(raw, str):
        if len(raw) > MAX_EVENT_BYTES:
            return None, "event larger than 1 MB"
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            return None, f"event is not JSON ({short(str(exc), 60)})"
        if isinstance(raw, list) and len(raw) == 1:
            raw = raw[0]
    if isinstance(raw, Mapping):
        return raw, None
    if hasattr(raw, "specversion") and hasattr(raw, "type"):
        return _from_cloud_event(raw)
    if hasattr(raw, "get_json") and hasattr(raw, "event_type"):
        return _from_functions_event(raw)
    return None, f"event must be a JSON object, got {type(raw).__name__}"


def _from_cloud_event(raw: Any) -> tuple[Mapping[str, Any] | None, str | None]:
    """A CloudEvent object: `azure.functions.CloudEvent` (data only through `get_json()`, no
    `.data`) or `azure.core.messaging.CloudEvent` (`.data`)."""
    if callable(getattr(raw, "get_json", None)):
        try:
            data = raw.get_json()
        except Exception as exc:  # noqa: BLE001 - a broken body is a malformed event
            return None, f"event data is not JSON ({short(str(exc), 60)})"
    else:
        data = getattr(raw, "data", None)
    t = getattr(raw, "time", None)
    return {"id": getattr(raw, "id", None), "source": getattr(raw, "source", None),
            "subject": getattr(raw, "subject", None), "type": getattr(raw, "type", None),
            "time": t.isoformat() if isinstance(t, datetime) else t,
            "specversion": getattr(raw, "specversion", None), "data": data}, None


def _from_functions_event(raw: Any) -> tuple[Mapping[str, Any] | None, str | None]:
    """azure.functions.EventGridEvent (and look-alikes): id, subject, event_type, get_json()."""
    try:
        data = raw.get_json()
    except Exception as exc:  # noqa: BLE001 - a broken body is a malformed event
        return None, f"event data is not JSON ({short(str(exc), 60)})"
    event_time = getattr(raw, "event_time", None)
    return {"id": getattr(raw, "id", None), "subject": getattr(raw, "subject", None),
            "eventType": getattr(raw, "event_type", None),
            "eventTime": event_time.isoformat() if isinstance(event_time, datetime)
            else event_time,
            "topic": getattr(raw, "topic", None), "data": data,
            "dataVersion": getattr(raw, "data_version", None)}, None


# --------------------------------------------------------------------------- parsing

def parse_event(raw: Any) -> ParseResult:
    """Classify one event. Never raises (a bug here would make Event Grid retry for 24 h)."""
    try:
        return _parse(raw)
    except _Verdict as verdict:
        return verdict.result
    except Exception as exc:  # noqa: BLE001 - defensive: malformed input must never crash
        return Rejected(None, f"unparseable event ({type(exc).__name__}: {short(str(exc))})")


def _parse(raw: Any) -> ResourceEvent:
    doc, why = _as_dict(raw)
    if doc is None:
        raise _Verdict(Rejected(None, why or "not an event"))
    event_id = text_of(doc.get("id"), _MAX_ID)
    if event_id is None:
        raise _Verdict(Rejected(short(doc.get("id")) if doc.get("id") is not None else None,
                                "missing or invalid event id"))
    is_cloud = "specversion" in doc or ("type" in doc and "eventType" not in doc)
    event_type = _event_type(event_id, doc.get("type") if is_cloud else doc.get("eventType"))
    data = mapping_of(doc.get("data"))
    if data is None:
        raise _Verdict(Rejected(event_id, "data is missing or not a JSON object"))
    operation = _operation(event_id, event_type, data)
    parsed, rtype = _resource(event_id, event_type, operation, doc, data)
    event_time = time_of(doc.get("time") if is_cloud else doc.get("eventTime"))
    if event_time is False:
        raise _Verdict(Rejected(event_id, "event time is not an ISO 8601 time"))
    status = text_of(data.get("status"), 64)
    if status and status.lower() not in ("succeeded", "success", "accepted", "ok"):
        raise _Verdict(Ignored(event_id, f"operation status {short(status)}", event_type,
                               operation))
    data_sub = text_of(data.get("subscriptionId"), 64)
    if data_sub and data_sub.lower() != parsed.subscription.lower():
        raise _Verdict(Rejected(event_id,
                                "data.subscriptionId differs from the resource's subscription"))
    target = parsed.top_level
    event = ResourceEvent(
        event_id=event_id, event_type=event_type, operation=operation,
        resource_id=str(parsed), resource_type=_TYPES[rtype.lower()], target_id=str(target),
        subscription_id=parsed.subscription.lower(), event_time=event_time or None,
        status=status, caller=caller_of(data),
        correlation_id=text_of(data.get("correlationId"), 128),
        schema=EventSchema.CLOUD_EVENTS if is_cloud else EventSchema.EVENT_GRID)
    return dataclasses.replace(event, scope=scope_of(event))


def _event_type(event_id: str, raw_type: Any) -> str:
    """The canonical handled event type, or a verdict."""
    etype = text_of(raw_type, 256)
    if etype is None:
        raise _Verdict(Rejected(event_id, "missing event type (eventType / type)"))
    if etype.lower() == "microsoft.eventgrid.subscriptionvalidationevent":
        raise _Verdict(Ignored(event_id, "subscription validation handshake (answered by the "
                                         "host)", etype))
    if not _RESOURCE_EVENT.fullmatch(etype):
        raise _Verdict(Ignored(event_id, f"event type {short(etype)} is not a resource event",
                               etype))
    canonical = _EVENT_TYPES.get(etype.lower())
    if canonical is None:
        raise _Verdict(Ignored(event_id, f"{short(etype)}: failed or cancelled operations "
                                         "change nothing", etype))
    return canonical


def _operation(event_id: str, event_type: str, data: Mapping[str, Any]) -> str:
    """The canonical handled operation (it must come with its own event type)."""
    op_text = text_of(data.get("operationName"), 512)
    if op_text is None:
        raise _Verdict(Rejected(event_id, "data.operationName is missing"))
    handled = _OPS.get(op_text.lower())
    if handled is None:
        raise _Verdict(Ignored(event_id, f"operation {short(op_text)} is not handled",
                               event_type, op_text))
    op_type, operation = handled
    if op_type != event_type:
        raise _Verdict(Rejected(event_id, f"operation {operation} cannot come with event type "
                                          f"{event_type}"))
    return operation


def _resource(event_id: str, event_type: str, operation: str, doc: Mapping[str, Any],
              data: Mapping[str, Any]) -> tuple[arm_ids.ResourceId, str]:
    """The resource the event names (subject and data.resourceUri agree) and its type."""
    subject = text_of(doc.get("subject"), 2048)
    uri = text_of(data.get("resourceUri"), 2048)
    resource_text = uri or subject
    if resource_text is None:
        raise _Verdict(Rejected(event_id, "neither data.resourceUri nor subject names the "
                                          "resource"))
    parsed = arm_ids.try_parse(resource_text)
    if parsed is None or parsed.resource_group is None or not parsed.names:
        raise _Verdict(Rejected(event_id, f"resource id {short(resource_text)} is not an ARM "
                                          "resource id"))
    if subject and uri and not arm_ids.same(subject, uri):
        raise _Verdict(Rejected(event_id, "subject and data.resourceUri name different "
                                          "resources"))
    if not arm_ids.is_subscription_id(parsed.subscription):
        raise _Verdict(Rejected(event_id, f"subscription {short(parsed.subscription)} is not "
                                          "a GUID"))
    # The operation names the subject's full type: a child's own (".../backendAddressPools/
    # write") for a child subject; what is read again is the top-level resource holding it.
    expected = operation.rsplit("/", 2)[0] if operation.endswith("/action") else \
        operation.rsplit("/", 1)[0]
    if (parsed.type or "").lower() != expected.lower():
        raise _Verdict(Rejected(event_id, f"operation {operation} on a "
                                          f"{short(parsed.type or '')} resource"))
    return parsed, parsed.top_level.type or ""


def scope_of(event: ResourceEvent) -> Scope:
    """The initial scope: the subject itself, or a child's parent, by type. Expanded against
    current state later."""
    key = frozenset({arm_ids.normalize(event.target_id)})
    deleted = event.target_deleted
    kind = _KINDS[event.resource_type]
    if kind is ScopeKind.VM:
        return Scope(vm_ids=key)
    if kind is ScopeKind.NIC:
        return Scope(nic_ids=key, deleted=deleted)
    if kind is ScopeKind.VNET:
        return Scope(vnet_ids=key, deleted=deleted)
    return Scope(lb_ids=key, deleted=deleted)


def is_own_write(event: ResourceEvent, identity: OwnIdentity) -> bool:
    """Did the function's managed identity make this change (by the event's claims)?"""
    return bool(identity) and identity.matches(event.caller)
