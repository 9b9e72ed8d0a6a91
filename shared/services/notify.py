"""Outcome notifications: CloudEvents published to an Event Grid custom topic.

Operators subscribe to the topic and route the events (Teams, e-mail, ITSM). Types and the
`data` schema are documented in docs/notifications.md; `DATA_SCHEMA` below is the same JSON
Schema (tests validate every published event against it).

A notification is a side effect of a remediation, never a condition for it: `publish` never
raises. Failures are logged and counted (`Notifier.failed`), successes counted
(`Notifier.published`).

Authentication: `AzureKeyCredential` (the topic's access key, sent as the `aeg-sas-key`
header) when `HAIRPIN_NOTIFY_TOPIC_KEY` is set, otherwise the function's identity
(`DefaultAzureCredential`, needs the "EventGrid Data Sender" role on the topic).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared import __version__
from shared.core.arm_ids import name_of, try_parse
from shared.core.remediation.outcome import Outcome
from shared.core.vocab import Status

log = logging.getLogger("hairpin.notify")

SOURCE = "/azure-ilb-hairpin"
DEFAULT_SEND_KWARGS = {"retry_total": 2, "connection_timeout": 5, "read_timeout": 10}
SCHEMA_VERSION = 1

# type -> meaning (documented in docs/notifications.md)
FINDING_OPENED = "Hairpin.Finding.Opened"
PLAN_PENDING = "Hairpin.Plan.PendingApproval"
REMEDIATION_APPLIED = "Hairpin.Remediation.Applied"
REMEDIATION_FAILED = "Hairpin.Remediation.Failed"
REMEDIATION_VERIFIED = "Hairpin.Remediation.Verified"
DRIFT_REPAIRED = "Hairpin.Drift.Repaired"
SWEEP_COMPLETED = "Hairpin.Sweep.Completed"
EVENT_TYPES: dict[str, str] = {
    FINDING_OPENED: "a VM is newly found at risk of a hairpin failure (severity high or medium)",
    PLAN_PENDING: "a remediation plan is recorded and waits for an approval or a maintenance "
                  "window",
    REMEDIATION_APPLIED: "the fix was applied to a VM (managed NIC and/or guest routes)",
    REMEDIATION_FAILED: "a remediation step failed; the journal has the details",
    REMEDIATION_VERIFIED: "the guest's connections to the VIP were verified from inside the VM",
    DRIFT_REPAIRED: "drift (lost guest route, detached/deleted managed NIC, stale route) was "
                    "repaired by an event or a sweep",
    SWEEP_COMPLETED: "a fleet sweep has every work item's result in: its summary (counts, "
                     "drift, actions, pending plans, errors); one per sweep, CloudEvent id "
                     "`sweep-<sweep id>`",
}

DATA_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://github.com/azure-ilb-hairpin/schemas/notification-data-v1.json",
    "title": "azure-ilb-hairpin notification data",
    "type": "object",
    "required": ["schemaVersion", "vmId", "status", "trigger", "at", "productVersion"],
    "additionalProperties": False,
    "properties": {
        "schemaVersion": {"const": SCHEMA_VERSION},
        "productVersion": {"type": "string"},
        "vmId": {"type": ["string", "null"], "description": "ARM id of the VM (null: no VM)"},
        "vmName": {"type": ["string", "null"]},
        "subscriptionId": {"type": ["string", "null"]},
        "findingIds": {"type": "array", "items": {"type": "string"}},
        "frontendIps": {"type": "array", "items": {"type": "string"}},
        "severity": {"enum": ["high", "medium", "info", None]},
        "status": {"type": "string", "description": "applied, failed, pending, verified, "
                                                    "repaired, open, ..."},
        "summary": {"type": "string", "maxLength": 2000},
        "drift": {"type": "array", "items": {"type": "string"}},
        "operationId": {"type": ["string", "null"]},
        "planHash": {"type": ["string", "null"]},
        "trigger": {
            "type": "object", "additionalProperties": False, "required": ["kind"],
            "properties": {"kind": {"type": "string"}, "eventId": {"type": ["string", "null"]},
                           "principal": {"type": ["string", "null"]}},
        },
        "at": {"type": "string", "format": "date-time"},
    },
}


class _SendOptionsFilter(logging.Filter):
    """The basic-topic publisher also hands per-request options (retry_total, timeouts) to its
    CloudEvent model, which logs that it ignores them: drop exactly those lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("is not a known attribute of class" in msg
                    and msg.split(" ", 1)[0] in _SEND_OPTION_NAMES)


_SEND_OPTION_NAMES = frozenset({"retry_total", "connection_timeout", "read_timeout",
                                "retry_backoff_factor", "timeout"})
logging.getLogger("azure.eventgrid._legacy._generated._serialization").addFilter(
    _SendOptionsFilter())


def _trigger_json(trigger: Any) -> dict[str, Any]:
    if trigger is None:
        return {"kind": "unknown", "eventId": None, "principal": None}
    return {"kind": str(getattr(trigger, "kind", "unknown")),
            "eventId": getattr(trigger, "event_id", None),
            "principal": getattr(trigger, "principal", None)}


def build_data(*, vm_id: str | None, status: str, trigger: Any, summary: str = "",
               finding_ids=(), frontend_ips=(), severity: str | None = None, drift=(),
               operation_id: str | None = None, plan_hash: str | None = None,
               at: datetime | None = None) -> dict[str, Any]:
    """The `data` of one notification (matches DATA_SCHEMA)."""
    parsed = try_parse(vm_id) if vm_id else None
    data: dict[str, Any] = {
        "schemaVersion": SCHEMA_VERSION, "productVersion": __version__,
        "vmId": vm_id, "vmName": name_of(vm_id) if parsed else None,
        "subscriptionId": parsed.subscription if parsed else None,
        "findingIds": [str(f) for f in finding_ids], "frontendIps": [str(i) for i in frontend_ips],
        "severity": severity if severity in ("high", "medium", "info") else None,
        "status": status, "summary": (summary or "")[:2000], "drift": [str(d) for d in drift],
        "operationId": operation_id, "planHash": plan_hash, "trigger": _trigger_json(trigger),
        "at": (at or datetime.now(UTC)).astimezone(UTC).isoformat(),
    }
    return data


class Notifier:
    """`Notifier(endpoint, credential)`; `publish(type, subject, data)` never raises."""

    def __init__(self, endpoint: str | None, credential: Any = None, *, client: Any = None,
                 source: str = SOURCE, send_kwargs: Mapping[str, Any] | None = None,
                 **client_kwargs: Any) -> None:
        self.endpoint = endpoint
        self.source = source
        # Per-request options: a notification must not hold a remediation up for long.
        self.send_kwargs = dict(send_kwargs if send_kwargs is not None else DEFAULT_SEND_KWARGS)
        self._credential = credential
        self._client = client
        self._client_kwargs = client_kwargs
        self._lock = threading.Lock()
        self.published = 0
        self.failed = 0
        self.sent: list[tuple[str, str]] = []  # (type, subject), newest last, capped
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> Notifier | None:
        """None when no topic is configured (`HAIRPIN_NOTIFY_TOPIC_ENDPOINT`); the topic's
        access key when set (`HAIRPIN_NOTIFY_TOPIC_KEY`), else the managed identity."""
        endpoint = getattr(settings, "notify_topic_endpoint", None)
        if not endpoint:
            return None
        key = (getattr(settings, "notify_topic_key", None) or "").strip()
        if key:
            from azure.core.credentials import AzureKeyCredential

            return cls(endpoint, AzureKeyCredential(key), **kwargs)
        from azure.identity import DefaultAzureCredential

        return cls(endpoint, DefaultAzureCredential(exclude_interactive_browser_credential=True),
                   **kwargs)

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint or self._client)

    def _get_client(self):
        if self._client is None:
            from azure.eventgrid import EventGridPublisherClient

            self._client = EventGridPublisherClient(self.endpoint, self._credential,
                                                    **self._client_kwargs)
        return self._client

    def publish(self, event_type: str, subject: str | None, data: Mapping[str, Any], *,
                event_id: str | None = None) -> bool:
        """Send one CloudEvent; True when the topic accepted it. Never raises. `event_id`: a
        stable id for an event that may be sent again after a crash (subscribers deduplicate
        on source + id, as CloudEvents 1.0 defines), else a new one."""
        if not self.enabled:
            return False
        try:
            from azure.core.messaging import CloudEvent

            event = CloudEvent(source=self.source, type=event_type, data=dict(data),
                               subject=subject or None, id=event_id or str(uuid.uuid4()),
                               time=datetime.now(UTC), datacontenttype="application/json")
            self._get_client().send(event, **self.send_kwargs)
        except Exception as exc:  # noqa: BLE001 - a notification never fails the caller
            with self._lock:
                self.failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.warning("notification %s for %s not published (%s); failures so far: %d",
                        event_type, subject, self.last_error, self.failed)
            return False
        with self._lock:
            self.published += 1
            self.sent.append((event_type, subject or ""))
            del self.sent[:-1000]
        log.info("notification %s published for %s", event_type, subject)
        return True

    # ---------------------------------------------------------------- helpers per outcome

    def notify(self, event_type: str, *, vm_id: str | None, status: str, trigger: Any,
               **fields: Any) -> bool:
        if event_type not in EVENT_TYPES:
            log.warning("unknown notification type %s (not published)", event_type)
            return False
        return self.publish(event_type, vm_id, build_data(vm_id=vm_id, status=status,
                                                          trigger=trigger, **fields))

    def sweep_completed(self, summary: Mapping[str, Any], trigger: Any) -> bool:
        """A fleet sweep's one notification, from its merged summary."""
        sweep_id = str(summary["sweep_id"])
        text = (f"{summary.get('vms', 0)} VMs, {summary.get('findings', 0)} findings "
                f"({summary.get('at_risk', 0)} at risk), {summary.get('drift_found', 0)} drift, "
                f"{summary.get('actions_taken', 0)} actions, "
                f"{summary.get('pending_plans', 0)} pending plans, "
                f"{summary.get('errors_count', 0)} errors")
        if summary.get("stopped_reason"):
            text += f"; incomplete: {summary['stopped_reason']}"
        data = build_data(vm_id=None, trigger=trigger, summary=text, operation_id=sweep_id,
                          status="complete" if summary.get("complete") else "incomplete",
                          drift=sorted(summary.get("drift") or {}))
        return self.publish(SWEEP_COMPLETED, f"sweeps/{sweep_id}", data,
                            event_id=f"sweep-{sweep_id}")

    def finding_opened(self, finding: Any, trigger: Any) -> bool:
        return self.notify(
            FINDING_OPENED, vm_id=getattr(finding, "vm_id", None), status="open",
            trigger=trigger, finding_ids=[getattr(finding, "id", "")],
            frontend_ips=[i for i in [getattr(finding, "frontend_ip", None)] if i],
            severity=getattr(finding, "severity", None),
            summary=str(getattr(finding, "reason", ""))[:2000])

    def outcome(self, outcome: Outcome, trigger: Any, *, vm_id: str | None = None,
                drift: tuple[str, ...] | list[str] = ()) -> list[str]:
        """Publish what a remediation Outcome means; returns the types published.

        applied -> Remediation.Applied (Drift.Repaired when it repaired drift) and, when every
        verification connect succeeded, Remediation.Verified; failed -> Remediation.Failed;
        pending -> Plan.PendingApproval. unchanged/refused: none (refusals are in the journal
        and the sweep summary)."""
        vm_id = vm_id or (outcome.vms[0].vm_id if outcome.vms else None)
        verification = [n for v in outcome.vms for n in v.verification]
        common = dict(vm_id=vm_id, trigger=trigger, summary="; ".join(outcome.reasons),
                      operation_id=outcome.operation_id or None, plan_hash=outcome.plan_hash,
                      frontend_ips=[str(n.get("vip")) for n in verification
                                    if isinstance(n, Mapping) and n.get("vip")],
                      drift=list(drift))
        sent: list[str] = []

        def send(t: str, s: str) -> None:
            if self.notify(t, status=s, **common):
                sent.append(t)

        verified = outcome.verified
        if verified is None:
            verified = bool(verification) and all(
                isinstance(n, Mapping) and n.get("ok") == n.get("total") for n in verification)
        if outcome.status == Status.APPLIED:
            send(DRIFT_REPAIRED if drift else REMEDIATION_APPLIED,
                 "repaired" if drift else "applied")
            if verified:
                send(REMEDIATION_VERIFIED, "verified")
        elif outcome.status == Status.FAILED:
            send(REMEDIATION_FAILED, "failed")
        elif outcome.status == Status.PENDING:
            send(PLAN_PENDING, "pending")
        return sent
