"""Pure: Event Grid subscription events -> what to re-evaluate (no Azure SDK, no I/O).

Input: one event of an Azure subscription *system topic* (`Microsoft.Resources.Resource*`), in
the Event Grid schema (`id`, `subject`, `eventType`, `eventTime`, `data`) or as a CloudEvent
(`id`, `source`, `subject`, `type`, `time`, `data`), as a dict, a JSON string/bytes, or an
object shaped like `azure.functions.EventGridEvent` (duck-typed: `id`, `subject`,
`event_type`, `event_time`, `get_json()`).

`parse_event()` never raises. It returns one of:

* `ResourceEvent`: an event we handle (its type and `data.operationName` are listed in
  `shared.core.events.types.HANDLED_OPERATIONS`, the one source of truth), with the initial scope
  (`scope_of`) and the caller identity (`Caller`);
* `Ignored`: well-formed but not ours to handle (other operation, Failure/Cancel events, other
  resource types): acknowledged cheaply;
* `Rejected`: malformed (missing/odd fields, resource id that is not an ARM id, operation and
  resource that disagree): logged with the reason and acknowledged, never retried.

The payload says *which* resource changed and *who* changed it; it never says what the resource
looks like now, and it may arrive late, twice or out of order. Services therefore re-read the
current state of the scope this module returns; nothing here trusts the payload's view of state.

Recognising our own writes: the caller's `oid` / `appid` / `xms_mirid` claims (and
`data.authorization.evidence.principalId`) compared with the function's managed identity
(`OwnIdentity`, from settings/env or decoded from our own ARM token). A match does not mean
"skip": the service still evaluates current state, it only never starts a new remediation from
it (no loop).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.core import arm_ids
from shared.core.events.types import ACTION_SUCCESS, DELETE_SUCCESS, HANDLED_OPERATIONS

__all__ = [
    "T_VM", "T_NIC", "T_LB", "Caller", "OwnIdentity", "Scope", "ResourceEvent", "Ignored",
    "Rejected", "parse_event", "scope_of", "is_own_write", "own_identity_from_env",
    "identity_from_jwt", "ENV_PRINCIPAL_ID", "ENV_CLIENT_ID", "ENV_IDENTITY_RESOURCE_ID",
    "MAX_EVENT_BYTES",
]

T_VM = "Microsoft.Compute/virtualMachines"
T_NIC = "Microsoft.Network/networkInterfaces"
T_LB = "Microsoft.Network/loadBalancers"
_TYPES = {t.lower(): t for t in (T_VM, T_NIC, T_LB)}

# Environment variables naming the function's own identity (until Settings carries them).
ENV_PRINCIPAL_ID = "HAIRPIN_IDENTITY_PRINCIPAL_ID"  # object id (claim oid / evidence.principalId)
ENV_CLIENT_ID = "HAIRPIN_IDENTITY_CLIENT_ID"  # application (client) id (claim appid / azp)
ENV_IDENTITY_RESOURCE_ID = "HAIRPIN_IDENTITY_RESOURCE_ID"  # claim xms_mirid

MAX_EVENT_BYTES = 1_048_576  # Event Grid's own limit for one event (1 MB)
_MAX_ID = 256

_OID_CLAIMS = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")
_APPID_CLAIMS = ("appid", "azp")
_MIRID_CLAIMS = ("xms_mirid",)
_NAME_CLAIMS = ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "name", "upn")

# operation (lowercase) -> (event type, canonical operation name)
_OPS: dict[str, tuple[str, str]] = {
    op.lower(): (etype, op) for etype, ops in HANDLED_OPERATIONS.items() for op in ops
}
_EVENT_TYPES = {t.lower(): t for t in HANDLED_OPERATIONS}
_RESOURCE_EVENT = re.compile(r"^Microsoft\.Resources\.Resource(Write|Action|Delete)"
                             r"(Success|Failure|Cancel)$", re.IGNORECASE)


# --------------------------------------------------------------------------- results

@dataclass(frozen=True, slots=True)
class Caller:
    """Who made the change, as the event tells it (any field may be None)."""

    object_id: str | None = None  # oid claim / authorization.evidence.principalId
    app_id: str | None = None  # appid / azp claim
    mi_resource_id: str | None = None  # xms_mirid: the managed identity's resource id
    principal_type: str | None = None  # authorization.evidence.principalType
    name: str | None = None  # UPN or display name (users)

    @property
    def label(self) -> str | None:
        """A short principal for the journal's Trigger (object id first)."""
        return self.object_id or self.app_id or self.mi_resource_id or self.name

    def as_dict(self) -> dict[str, str | None]:
        return {"object_id": self.object_id, "app_id": self.app_id,
                "mi_resource_id": self.mi_resource_id, "principal_type": self.principal_type,
                "name": self.name}


@dataclass(frozen=True, slots=True)
class OwnIdentity:
    """The function's managed identity. Empty = unknown (nothing is recognised as ours)."""

    principal_id: str | None = None
    client_id: str | None = None
    resource_id: str | None = None

    def __bool__(self) -> bool:
        return bool(self.principal_id or self.client_id or self.resource_id)

    def matches(self, caller: Caller) -> bool:
        def eq(a: str | None, b: str | None) -> bool:
            return bool(a and b) and a.strip().lower() == b.strip().lower()

        return (eq(self.principal_id, caller.object_id) or eq(self.client_id, caller.app_id)
                or (eq(self.resource_id, caller.mi_resource_id)))


@dataclass(frozen=True, slots=True)
class Scope:
    """The smallest set of resources to re-evaluate, before reading current state.

    The service expands it with the *current* documents: an LB -> the VMs in its pools; a NIC ->
    its VM and the other members of the pools it is in; a VM -> itself."""

    vm_ids: frozenset[str] = frozenset()  # normalised ids
    nic_ids: frozenset[str] = frozenset()
    lb_ids: frozenset[str] = frozenset()
    deleted: bool = False  # the subject no longer exists (delete event)

    def as_dict(self) -> dict[str, Any]:
        return {"vm_ids": sorted(self.vm_ids), "nic_ids": sorted(self.nic_ids),
                "lb_ids": sorted(self.lb_ids), "deleted": self.deleted}


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    event_id: str
    event_type: str  # canonical, e.g. Microsoft.Resources.ResourceWriteSuccess
    operation: str  # canonical operationName, e.g. Microsoft.Network/loadBalancers/write
    resource_id: str  # as the event spelled it (data.resourceUri, else subject)
    resource_type: str  # T_VM | T_NIC | T_LB
    subscription_id: str
    event_time: datetime | None
    status: str | None
    caller: Caller
    correlation_id: str | None = None
    schema: str = "eventgrid"  # "eventgrid" | "cloudevents"
    scope: Scope = field(default_factory=Scope)

    @property
    def key(self) -> str:
        return arm_ids.normalize(self.resource_id)

    @property
    def is_delete(self) -> bool:
        return self.event_type == DELETE_SUCCESS

    @property
    def is_action(self) -> bool:
        return self.event_type == ACTION_SUCCESS

    def summary(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "event_type": self.event_type,
                "operation": self.operation, "resource_id": self.resource_id,
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


# --------------------------------------------------------------------------- helpers

def _text(value: Any, limit: int = 4096) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= limit:
        return value.strip()
    return None


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time(value: Any) -> datetime | None | bool:
    """datetime, None when absent, False when present but not a time."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or len(value) > 64:
        return False
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Event Grid sends up to 7 fractional digits; fromisoformat takes at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    """A JSON object given as a dict or as a JSON string (Event Grid sends both shapes)."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.strip().startswith("{") and len(value) < MAX_EVENT_BYTES:
        try:
            loaded = json.loads(value)
        except ValueError:
            return None
        return loaded if isinstance(loaded, Mapping) else None
    return None


def _claim(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    lowered = {str(k).lower(): v for k, v in claims.items()}
    for name in names:
        value = _text(lowered.get(name.lower()), 512)
        if value:
            return value
    return None


def caller_of(data: Mapping[str, Any]) -> Caller:
    claims = _mapping(data.get("claims")) or {}
    auth = _mapping(data.get("authorization")) or {}
    evidence = _mapping(auth.get("evidence")) or {}
    object_id = _claim(claims, _OID_CLAIMS) or _text(evidence.get("principalId"), 512)
    return Caller(object_id=object_id, app_id=_claim(claims, _APPID_CLAIMS),
                  mi_resource_id=_claim(claims, _MIRID_CLAIMS),
                  principal_type=_text(evidence.get("principalType"), 64),
                  name=_claim(claims, _NAME_CLAIMS))


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
            return None, f"event is not JSON ({_short(str(exc), 60)})"
        if isinstance(raw, list) and len(raw) == 1:
            raw = raw[0]
    if isinstance(raw, Mapping):
        return raw, None
    # azure.functions.EventGridEvent (and look-alikes): id, subject, event_type, get_json()
    if hasattr(raw, "get_json") and hasattr(raw, "event_type"):
        try:
            data = raw.get_json()
        except Exception as exc:  # noqa: BLE001 - a broken body is a malformed event
            return None, f"event data is not JSON ({_short(str(exc), 60)})"
        event_time = getattr(raw, "event_time", None)
        return {"id": getattr(raw, "id", None), "subject": getattr(raw, "subject", None),
                "eventType": getattr(raw, "event_type", None),
                "eventTime": event_time.isoformat() if isinstance(event_time, datetime)
                else event_time,
                "topic": getattr(raw, "topic", None), "data": data,
                "dataVersion": getattr(raw, "data_version", None)}, None
    # azure.core.messaging.CloudEvent look-alike: id, source, type, data
    if hasattr(raw, "specversion") and hasattr(raw, "type"):
        t = getattr(raw, "time", None)
        return {"id": getattr(raw, "id", None), "source": getattr(raw, "source", None),
                "subject": getattr(raw, "subject", None), "type": getattr(raw, "type", None),
                "time": t.isoformat() if isinstance(t, datetime) else t,
                "specversion": getattr(raw, "specversion", None),
                "data": getattr(raw, "data", None)}, None
    return None, f"event must be a JSON object, got {type(raw).__name__}"


# --------------------------------------------------------------------------- parsing

def parse_event(raw: Any) -> ParseResult:
    """Classify one event. Never raises (a bug here would make Event Grid retry for 24 h)."""
    try:
        return _parse(raw)
    except Exception as exc:  # noqa: BLE001 - defensive: malformed input must never crash
        return Rejected(None, f"unparseable event ({type(exc).__name__}: {_short(str(exc))})")


def _parse(raw: Any) -> ParseResult:
    doc, why = _as_dict(raw)
    if doc is None:
        return Rejected(None, why or "not an event")
    event_id = _text(doc.get("id"), _MAX_ID)
    if event_id is None:
        return Rejected(_short(doc.get("id")) if doc.get("id") is not None else None,
                        "missing or invalid event id")
    is_cloud = "specversion" in doc or ("type" in doc and "eventType" not in doc)
    etype_raw = doc.get("type") if is_cloud else doc.get("eventType")
    etype = _text(etype_raw, 256)
    if etype is None:
        return Rejected(event_id, "missing event type (eventType / type)")
    if etype.lower() == "microsoft.eventgrid.subscriptionvalidationevent":
        return Ignored(event_id, "subscription validation handshake (answered by the host)", etype)
    if not _RESOURCE_EVENT.match(etype):
        return Ignored(event_id, f"event type {_short(etype)} is not a resource event", etype)
    canonical_type = _EVENT_TYPES.get(etype.lower())
    if canonical_type is None:
        return Ignored(event_id, f"{_short(etype)}: failed or cancelled operations change "
                                 "nothing", etype)

    data = _mapping(doc.get("data"))
    if data is None:
        return Rejected(event_id, "data is missing or not a JSON object")
    op_text = _text(data.get("operationName"), 512)
    if op_text is None:
        return Rejected(event_id, "data.operationName is missing")
    handled = _OPS.get(op_text.lower())
    if handled is None:
        return Ignored(event_id, f"operation {_short(op_text)} is not handled", canonical_type,
                       op_text)
    op_type, operation = handled
    if op_type != canonical_type:
        return Rejected(event_id, f"operation {operation} cannot come with event type "
                                  f"{canonical_type}")

    subject = _text(doc.get("subject"), 2048)
    uri = _text(data.get("resourceUri"), 2048)
    resource_text = uri or subject
    if resource_text is None:
        return Rejected(event_id, "neither data.resourceUri nor subject names the resource")
    parsed = arm_ids.try_parse(resource_text)
    if parsed is None or parsed.resource_group is None or not parsed.names:
        return Rejected(event_id, f"resource id {_short(resource_text)} is not an ARM "
                                  "resource id")
    if subject and uri and not arm_ids.same(subject, uri):
        return Rejected(event_id, "subject and data.resourceUri name different resources")
    if not arm_ids.is_subscription_id(parsed.subscription):
        return Rejected(event_id, f"subscription {_short(parsed.subscription)} is not a GUID")
    rtype = parsed.top_level.type or ""
    expected = operation.rsplit("/", 2)[0] if operation.endswith("/action") else \
        operation.rsplit("/", 1)[0]
    if rtype.lower() != expected.lower():
        return Rejected(event_id, f"operation {operation} on a {_short(rtype)} resource")
    if parsed.is_child:
        return Ignored(event_id, "child resource event (its parent's write is handled)",
                       canonical_type, operation)

    event_time = _time(doc.get("time") if is_cloud else doc.get("eventTime"))
    if event_time is False:
        return Rejected(event_id, "event time is not an ISO 8601 time")
    status = _text(data.get("status"), 64)
    if status and status.lower() not in ("succeeded", "success", "accepted", "ok"):
        return Ignored(event_id, f"operation status {_short(status)}", canonical_type, operation)
    data_sub = _text(data.get("subscriptionId"), 64)
    if data_sub and data_sub.lower() != parsed.subscription.lower():
        return Rejected(event_id, "data.subscriptionId differs from the resource's subscription")

    event = ResourceEvent(
        event_id=event_id, event_type=canonical_type, operation=operation,
        resource_id=str(parsed), resource_type=_TYPES[rtype.lower()],
        subscription_id=parsed.subscription.lower(), event_time=event_time or None,
        status=status, caller=caller_of(data),
        correlation_id=_text(data.get("correlationId"), 128),
        schema="cloudevents" if is_cloud else "eventgrid")
    return _with_scope(event)


def _with_scope(event: ResourceEvent) -> ResourceEvent:
    from dataclasses import replace

    return replace(event, scope=scope_of(event))


def scope_of(event: ResourceEvent) -> Scope:
    """The initial scope: the subject itself, by type. Expanded against current state later."""
    key = event.key
    deleted = event.is_delete
    if event.resource_type == T_VM:
        return Scope(vm_ids=frozenset({key}))
    if event.resource_type == T_NIC:
        return Scope(nic_ids=frozenset({key}), deleted=deleted)
    return Scope(lb_ids=frozenset({key}), deleted=deleted)


def is_own_write(event: ResourceEvent, identity: OwnIdentity) -> bool:
    """Did the function's managed identity make this change (by the event's claims)?"""
    return bool(identity) and identity.matches(event.caller)


# --------------------------------------------------------------------------- own identity

def own_identity_from_env(environ: Mapping[str, str] | None = None) -> OwnIdentity:
    """The function's identity from settings: `HAIRPIN_IDENTITY_PRINCIPAL_ID`,
    `HAIRPIN_IDENTITY_CLIENT_ID` (else `AZURE_CLIENT_ID`, set for a user-assigned identity),
    `HAIRPIN_IDENTITY_RESOURCE_ID`."""
    from shared.settings import Settings

    s = Settings.from_env(environ)
    return OwnIdentity(principal_id=_text(s.identity_principal_id, 512),
                       client_id=_text(s.identity_client_id, 512),
                       resource_id=_text(s.identity_resource_id, 512))


def identity_from_jwt(token: str) -> OwnIdentity:
    """The oid/appid/xms_mirid of an access token we were issued (no signature check: it is our
    own token, read only to learn who we are). Empty identity when it cannot be read."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, AttributeError):
        return OwnIdentity()
    if not isinstance(claims, dict):
        return OwnIdentity()
    return OwnIdentity(principal_id=_text(claims.get("oid"), 512),
                       client_id=_text(claims.get("appid") or claims.get("azp"), 512),
                       resource_id=_text(claims.get("xms_mirid"), 1024))


def merge_identities(*identities: OwnIdentity) -> OwnIdentity:
    """First non-empty value of each field."""
    def first(attr: str) -> str | None:
        return next((getattr(i, attr) for i in identities if getattr(i, attr)), None)

    return OwnIdentity(first("principal_id"), first("client_id"), first("resource_id"))
