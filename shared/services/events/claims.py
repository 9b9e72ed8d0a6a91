"""The event service's records in the journal's state table: duplicates, bursts, subjects.

* **Event claims** (kind `event`): first wins per event id, so a re-delivered event is
  recognised as a duplicate (or as in progress elsewhere); a claim never finished is taken over
  after `stale_claim_seconds`.
* **Pass claims** (kind `event-eval`, burst coalescing): one evaluation pass per VM per window
  (first wins, plus one follow-up pass for changes made after it read state); an event whose
  change a pass has read is covered by it.
* **Subject memos** (kind `event-subject`): which VMs a subject resolved to, as read at a time,
  so that events covered by that read skip the resolution reads.

`EventMemo` keeps the same facts in memory for one host process (in front of the table, and
instead of it when there is no storage); `ClaimStore` is built per invocation over it. The memo
never runs ahead of storage: a claim that failed to be written is forgotten (the redelivery is
processed), and another instance's unfinished claim is not remembered (it may go stale).
"""

from __future__ import annotations

import enum
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.core import arm_ids
from shared.core.events import T_VM, EventConfig, EventResult, ResourceEvent
from shared.core.events.model import parse_time
from shared.core.vocab import EventStatus, RecordKind
from shared.storage.journal import Journal

__all__ = ["EventMemo", "ClaimStore", "PassClaim", "PassRefused"]

log = logging.getLogger("hairpin.events")


def _op_id() -> str:
    return uuid.uuid4().hex


@dataclass
class EventMemo:
    """What one host process remembers between events (duplicates, passes, subjects)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    seen: dict[str, str] = field(default_factory=dict)  # event id -> state
    passes: dict[str, datetime] = field(default_factory=dict)  # vm key -> read_at, finished
    subjects: dict[str, tuple[datetime, list[str]]] = field(default_factory=dict)
    inflight: dict[str, datetime] = field(default_factory=dict)  # vm key -> read_at (no storage)


@dataclass(frozen=True)
class PassClaim:
    vm_id: str
    key: str
    bucket: str | None  # None: no storage (in-memory only)
    read_at: datetime


class PassRefused(enum.Enum):
    """Why an event gets no pass for a VM."""

    COVERED = "a pass that read state after the change covers it"
    EXHAUSTED = "no pass covers the change and none may start in this window"


class ClaimStore:
    """Claims and memos on the journal's state table, with the process memo in front."""

    def __init__(self, journal: Journal | None, config: EventConfig, memo: EventMemo,
                 now: Callable[[], datetime], stats: dict[str, int]) -> None:
        self.journal = journal
        self.config = config
        self.memo = memo
        self.now = now
        self.stats = stats

    # -- duplicates ------------------------------------------------------------------------
    def claim_event(self, ev: ResourceEvent) -> EventResult | None:
        """None = ours to process; else the result for a duplicate."""
        with self.memo.lock:
            known = self.memo.seen.get(ev.event_id)
            if known is not None:
                self.stats["duplicate"] += 1
                return EventResult(ev.event_id, EventStatus.DUPLICATE, f"event already {known}",
                                   operation=ev.operation, resource_id=ev.resource_id)
            self.memo.seen[ev.event_id] = "processing"
        if self.journal is None:
            return None
        try:
            return self.claim_stored(ev)
        except BaseException:
            # The process memo says what storage agreed to, never more: a redelivery after a
            # failed claim (a storage blip) must be processed, on this instance too.
            with self.memo.lock:
                self.memo.seen.pop(ev.event_id, None)
            raise

    def claim_stored(self, ev: ResourceEvent) -> EventResult | None:
        j = self.journal
        data = {"state": "processing", "operation": ev.operation}
        if j.open_record(RecordKind.EVENT, ev.resource_id, ev.event_id, operation_id=ev.event_id,
                         data=data, exclusive=True):
            return None
        existing = next((r for r in j.open_records(RecordKind.EVENT, ev.resource_id)
                         if r.key == ev.event_id), None)
        state = ((existing.data or {}) if existing else {}).get("state")
        age = (self.now() - existing.since).total_seconds() if existing else 0.0
        if state == "processing" and age > self.config.stale_claim_seconds:
            log.warning("event %s: a claim from %.0f s ago never finished; processing it again",
                        ev.event_id, age)
            j.open_record(RecordKind.EVENT, ev.resource_id, ev.event_id,
                          operation_id=ev.event_id, data=data)
            return None
        with self.memo.lock:  # remembered only once done: another instance's claim may go stale
            if state == "processing":
                self.memo.seen.pop(ev.event_id, None)
            else:
                self.memo.seen[ev.event_id] = state or "done"
        self.stats["duplicate"] += 1
        if state == "processing":
            return EventResult(ev.event_id, EventStatus.IN_PROGRESS,
                               "another instance is handling it", operation=ev.operation,
                               resource_id=ev.resource_id)
        return EventResult(ev.event_id, EventStatus.DUPLICATE, "event already handled",
                           operation=ev.operation, resource_id=ev.resource_id)

    def release_event(self, ev: ResourceEvent) -> None:
        with self.memo.lock:
            self.memo.seen.pop(ev.event_id, None)
        if self.journal is not None:
            try:
                self.journal.close_record(RecordKind.EVENT, ev.resource_id, ev.event_id)
            except Exception as exc:  # noqa: BLE001 - the stale-claim rule recovers it
                log.warning("event %s: claim not released: %s", ev.event_id, exc)

    def finish_event(self, ev: ResourceEvent, result: EventResult) -> None:
        if self.journal is not None:  # storage first: the memo never runs ahead of it
            self.journal.open_record(RecordKind.EVENT, ev.resource_id, ev.event_id,
                                     operation_id=ev.event_id,
                                     data={"state": "done", "status": result.status})
        with self.memo.lock:
            self.memo.seen[ev.event_id] = "done"

    # -- subject memos (scope resolution) ---------------------------------------------------
    def subject_memo(self, ev: ResourceEvent, event_time: datetime) -> list[str] | None:
        """VMs a resolution of this subject found, if it read state after this change."""
        if ev.resource_type == T_VM:
            return None  # nothing to read
        limit = event_time + timedelta(seconds=self.config.clock_skew_seconds)
        with self.memo.lock:
            found = self.memo.subjects.get(ev.key)
        if found and found[0] >= limit:
            return found[1]
        if self.journal is not None:
            for r in self.journal.open_records(RecordKind.EVENT_SUBJECT, ev.key):
                read_at = parse_time((r.data or {}).get("read_at"))
                if read_at and read_at >= limit:
                    return list((r.data or {}).get("vms") or [])
        return None

    def remember_subject(self, ev: ResourceEvent, read_at: datetime, vms: list[str]) -> None:
        if ev.resource_type == T_VM:
            return
        with self.memo.lock:
            self.memo.subjects[ev.key] = (read_at, vms)
        if self.journal is not None:
            self.journal.open_record(RecordKind.EVENT_SUBJECT, ev.key, "",
                                     operation_id=ev.event_id,
                                     data={"read_at": read_at.isoformat(), "vms": vms[:200]})

    # -- passes (burst coalescing) ---------------------------------------------------------
    def _bucket(self, at: datetime) -> str:
        return f"w{int(at.timestamp() // self.config.window_seconds)}"

    def claim_pass(self, vm_id: str, event_time: datetime) -> PassClaim | PassRefused:
        """A claim when this event must evaluate the VM; COVERED when a pass that read state
        after the change (finished, or running elsewhere) covers it; EXHAUSTED when neither."""
        key = arm_ids.normalize(vm_id)
        limit = event_time + timedelta(seconds=self.config.clock_skew_seconds)
        with self.memo.lock:
            last = self.memo.passes.get(key)
        if last is not None and last >= limit:
            return PassRefused.COVERED
        now = self.now()
        j = self.journal
        if j is None:  # no storage: this process is the only one that can know
            with self.memo.lock:
                running = self.memo.inflight.get(key)
                if running is not None and running >= limit:
                    return PassRefused.COVERED
                self.memo.inflight[key] = now
            return PassClaim(vm_id, key, None, now)
        if self._covered(j.open_records(RecordKind.EVENT_PASS, vm_id), limit, now):
            return PassRefused.COVERED
        # First wins per window; one follow-up pass per window for changes made after it read.
        for bucket in (self._bucket(now), self._bucket(now) + "-2"):
            read_at = self.now()
            if j.open_record(RecordKind.EVENT_PASS, vm_id, bucket, operation_id=_op_id(),
                             data={"state": "running", "read_at": read_at.isoformat()},
                             exclusive=True):
                return PassClaim(vm_id, key, bucket, read_at)
            # Lost the race for this bucket: the winner's pass may cover this change.
            records = [r for r in j.open_records(RecordKind.EVENT_PASS, vm_id)
                       if r.key == bucket]
            if self._covered(records, limit, self.now()):
                return PassRefused.COVERED
        return PassRefused.EXHAUSTED  # two passes in this window already: a later window

    def _covered(self, records, limit: datetime, now: datetime) -> bool:
        """Does a pass that read state at or after `limit` (finished, or running and not
        abandoned) exist among these records?"""
        for r in records:
            d = r.data or {}
            read_at = parse_time(d.get("read_at"))
            if read_at is None or read_at < limit:
                continue
            if d.get("state") == "done" or \
                    (now - read_at).total_seconds() < self.config.stale_claim_seconds:
                return True
        return False

    def finish_pass(self, claim: PassClaim) -> None:
        with self.memo.lock:
            self.memo.inflight.pop(claim.key, None)
            last = self.memo.passes.get(claim.key)
            if last is None or last < claim.read_at:
                self.memo.passes[claim.key] = claim.read_at
        if self.journal is not None and claim.bucket:
            self.journal.open_record(RecordKind.EVENT_PASS, claim.vm_id, claim.bucket,
                                     operation_id=_op_id(),
                                     data={"state": "done",
                                           "read_at": claim.read_at.isoformat()})

    def release_pass(self, claim: PassClaim) -> None:
        with self.memo.lock:
            self.memo.inflight.pop(claim.key, None)
        if self.journal is not None and claim.bucket:
            try:
                self.journal.close_record(RecordKind.EVENT_PASS, claim.vm_id, claim.bucket)
            except Exception as exc:  # noqa: BLE001 - becomes stale and is ignored later
                log.warning("pass claim for %s not released: %s", claim.vm_id, exc)
