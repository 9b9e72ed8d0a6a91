"""Pure: the event processor's data: `EventConfig` (burst window, clock skew, thresholds),
`EventResult` (what happened to one event), and the exceptions that make Event Grid deliver an
event again (`TransientEventError`, `DeferredEvent`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.core.vocab import EventStatus
from shared.settings import Settings

__all__ = ["EventConfig", "EventResult", "TransientEventError", "DeferredEvent", "one_line",
           "parse_time"]


@dataclass(frozen=True)
class EventConfig:
    window_seconds: float = 60.0  # burst window: one claimed pass per VM per window
    clock_skew_seconds: float = 5.0  # ARM event time vs our clock
    stale_claim_seconds: float = 600.0  # a claim older than this, never finished, is abandoned
    own_write_journal_seconds: float = 1800.0  # journal entries this close to an event = ours
    bulk_read_threshold: int = 20  # more VMs than this in one pass: list the subscription

    @classmethod
    def from_settings(cls, settings: Settings) -> EventConfig:
        return cls(window_seconds=settings.event_burst_window_seconds,
                   clock_skew_seconds=settings.event_clock_skew_seconds)


@dataclass
class EventResult:
    """What happened to one event (also the function's log line)."""

    event_id: str | None
    status: EventStatus
    reason: str = ""
    own_write: bool = False
    operation: str | None = None
    resource_id: str | None = None
    vm_ids: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)  # VMs evaluated by this event's pass
    findings: list[str] = field(default_factory=list)
    remediations: list[dict] = field(default_factory=list)
    drift: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "status": self.status, "reason": self.reason,
                "own_write": self.own_write, "operation": self.operation,
                "resource_id": self.resource_id, "vm_ids": self.vm_ids,
                "evaluated": self.evaluated, "findings": self.findings,
                "remediations": self.remediations, "drift": self.drift}


class TransientEventError(Exception):
    """Raised to the trigger so that Event Grid delivers the event again."""


class DeferredEvent(TransientEventError):
    """The change is not covered by a pass and the VM's passes for this window are used up:
    Event Grid's retry brings it back in a later window (bounded work per VM per window)."""


# --------------------------------------------------------------------------- helpers

def one_line(exc: BaseException) -> str:
    """`Type: message`, first line, bounded (for logs and journal entries)."""
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0][:500] if text else type(exc).__name__


def parse_time(value: Any) -> datetime | None:
    """An ISO time we wrote ourselves (claim records), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
