"""Pure: what one journal record says (no Azure SDK, no I/O).

Services build `JournalEntry` values; `shared.storage.journal` stores them append-only. Kept
apart from the adapter so planning code and tests can build and compare entries without storage.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.vocab import JournalResult, RecordKind, TriggerKind

__all__ = ["MAX_JSON_BYTES", "MAX_ERROR_CHARS", "Trigger", "utc_now", "JournalEntry",
           "OpenRecord", "subject_key", "cap_json", "cap_text"]

# Before/after documents are capped so one entity stays far below Table storage's limits
# (64 KiB per string property, 1 MiB per entity).
MAX_JSON_BYTES = 16_000
MAX_ERROR_CHARS = 4_000


@dataclass(frozen=True)
class Trigger:
    """Who or what caused a write: entry point kind, event id (Event Grid), principal."""

    kind: TriggerKind
    event_id: str | None = None
    principal: str | None = None  # object id / UPN / "managed-identity"
    principal_name: str | None = None  # a verified principal's display name, beside its id


_clock_lock = threading.Lock()
_last_now: datetime | None = None


def utc_now() -> datetime:
    """UTC now, strictly increasing within this process, so entries written in one run keep
    their order even when two land in the same microsecond."""
    global _last_now
    with _clock_lock:
        now = datetime.now(UTC)
        if _last_now is not None and now <= _last_now:
            now = _last_now + timedelta(microseconds=1)
        _last_now = now
        return now


@dataclass(frozen=True)
class JournalEntry:
    """One append-only journal record.

    `vm_id` is None for records about no single VM (a sweep summary). `before`/`after` are
    JSON-able values (stored capped, see `cap_json`). `entry_id` is set by the store on append
    and read; it orders entries newest first.
    """

    action: str  # a StepKind or a JournalAction
    result: JournalResult
    trigger: Trigger
    operation_id: str  # correlation id shared by every entry of one run
    vm_id: str | None = None
    plan_hash: str | None = None
    step: str | None = None
    before: Any = None
    after: Any = None
    error: str | None = None
    timestamp: datetime = field(default_factory=utc_now)
    entry_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("action", "result", "operation_id"):
            if not getattr(self, name):
                raise ValueError(f"journal entry needs a non-empty {name}")
        if not self.trigger.kind:
            raise ValueError("journal entry needs a trigger kind")
        if self.timestamp.tzinfo is None:
            raise ValueError("journal entry timestamp must be timezone-aware (UTC)")

    def to_json(self) -> dict:
        """JSON-able form (e.g. `hairpin history --format json`)."""
        return {"entry_id": self.entry_id, "timestamp": self.timestamp.isoformat(),
                "vm_id": self.vm_id, "action": self.action, "step": self.step,
                "result": self.result, "plan_hash": self.plan_hash,
                "operation_id": self.operation_id, "trigger": {
                    "kind": self.trigger.kind, "event_id": self.trigger.event_id,
                    "principal": self.trigger.principal,
                    "principal_name": self.trigger.principal_name},
                "before": self.before, "after": self.after, "error": self.error}


@dataclass(frozen=True)
class OpenRecord:
    """A standing fact keyed by (kind, VM, key) that any trigger can list cheaply.

    `deallocated` is opened *before* the deallocation and closed only after the start
    succeeded, so a crash anywhere in between leaves it open; readers confirm it against live
    state (a VM that turns out to be running just gets its record closed). `verified-route` is
    opened after a verification passed and closed when the route is removed or found missing."""

    kind: RecordKind
    vm_id: str
    key: str
    operation_id: str
    since: datetime
    plan_hash: str | None = None
    data: Any = None


def subject_key(vm_id: str | None) -> str:
    """Partition key: ARM ids are long, case-insensitive and contain '/', which Table keys
    forbid, so the key is a hash of the lowercased id; entries without a VM share one."""
    if not vm_id:
        return "global"
    return "vm-" + hashlib.sha256(normalize(vm_id).encode()).hexdigest()[:40]


def cap_json(value: Any, max_bytes: int = MAX_JSON_BYTES) -> str:
    """Canonical JSON of `value`; when too large, a small valid JSON object that says so
    (size, sha256 and the beginning of the document) instead of silently cutting it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    head = data[: max_bytes // 3].decode(errors="ignore")  # escaping at most doubles it
    return json.dumps({"_truncated": True, "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest(), "head": head})


def cap_text(text: str | None, max_chars: int = MAX_ERROR_CHARS) -> str | None:
    if text is None or len(text) <= max_chars:
        return text
    return text[: max_chars - 15] + "... [truncated]"
