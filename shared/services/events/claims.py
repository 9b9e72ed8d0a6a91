"""The event service's records in the journal's state table: duplicates, bursts, subjects.

* **Event claims** (kind `event`): first wins per event id, so a re-delivered event is
  recognised as a duplicate (or as in progress elsewhere); a claim never finished is taken over
  after `stale_claim_seconds`.
* **Pass claims** (kind `event-eval`, burst coalescing): one evaluation pass per VM per window
  (first wins, plus one follow-up pass for changes made after it read state); an event whose
  change a pass has read is covered by it.
* **Subject memos** (kind `event-subject`): which VMs a subject resolved to, as read at a time,
  so that events covered by that read skip the resolution reads.

`EventClaims` is a part of `shared.services.events.EventProcessor` (a mixin): it uses the
processor's `config`, `journal`, `stats`, `_lock`, `_now`, `_seen`, `_passes`, `_subjects` and
`_inflight`. `prune_state` closes these records once Event Grid can no longer re-deliver.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core import arm_ids
from shared.core.events import T_VM, EventResult, ResourceEvent
from shared.core.events.model import _op_id, _parse_time

log = logging.getLogger("hairpin.events")

K_EVENT = "event"  # state record: event id seen (subject = resource id, key = event id)
K_EVAL = "event-eval"  # state record: an evaluation pass of a VM (key = window bucket)
K_SUBJECT = "event-subject"  # state record: subject -> VMs, as resolved at read_at


@dataclass(frozen=True)
class _PassClaim:
    vm_id: str
    key: str
    bucket: str | None  # None: no storage (in-memory only)
    read_at: datetime


_EXHAUSTED = object()  # _claim_pass: no pass covers the change and none may start now


class EventClaims:
    """Claims and memos on the journal's state table, with an in-memory memo in front (part of
    `EventProcessor`)."""

    # -- duplicates ------------------------------------------------------------------------
    def _claim_event(self, ev: ResourceEvent) -> EventResult | None:
        """None = ours to process; else the result for a duplicate."""
        with self._lock:
            memo = self._seen.get(ev.event_id)
            if memo is not None:
                self.stats["duplicate"] += 1
                return EventResult(ev.event_id, "duplicate", f"event already {memo}",
                                   operation=ev.operation, resource_id=ev.resource_id)
            self._seen[ev.event_id] = "processing"
        j = self.journal
        if j is None:
            return None
        data = {"state": "processing", "operation": ev.operation}
        if j.open_record(K_EVENT, ev.resource_id, ev.event_id, operation_id=ev.event_id,
                         data=data, exclusive=True):
            return None
        existing = next((r for r in j.open_records(K_EVENT, ev.resource_id)
                         if r.key == ev.event_id), None)
        state = ((existing.data or {}) if existing else {}).get("state")
        age = (self._now() - existing.since).total_seconds() if existing else 0.0
        if state == "processing" and age > self.config.stale_claim_seconds:
            log.warning("event %s: a claim from %.0f s ago never finished; processing it again",
                        ev.event_id, age)
            j.open_record(K_EVENT, ev.resource_id, ev.event_id, operation_id=ev.event_id,
                          data=data)
            return None
        with self._lock:
            self._seen[ev.event_id] = state or "done"
        self.stats["duplicate"] += 1
        if state == "processing":
            return EventResult(ev.event_id, "in-progress", "another instance is handling it",
                               operation=ev.operation, resource_id=ev.resource_id)
        return EventResult(ev.event_id, "duplicate", "event already handled",
                           operation=ev.operation, resource_id=ev.resource_id)

    def _release_event(self, ev: ResourceEvent) -> None:
        with self._lock:
            self._seen.pop(ev.event_id, None)
        if self.journal is not None:
            try:
                self.journal.close_record(K_EVENT, ev.resource_id, ev.event_id)
            except Exception as exc:  # noqa: BLE001 - the stale-claim rule recovers it
                log.warning("event %s: claim not released: %s", ev.event_id, exc)

    def _finish_event(self, ev: ResourceEvent, result: EventResult) -> None:
        with self._lock:
            self._seen[ev.event_id] = "done"
        if self.journal is not None:
            self.journal.open_record(K_EVENT, ev.resource_id, ev.event_id,
                                     operation_id=ev.event_id,
                                     data={"state": "done", "status": result.status})

    # -- subject memos (scope resolution) ---------------------------------------------------
    def _subject_memo(self, ev: ResourceEvent, event_time: datetime) -> list[str] | None:
        """VMs a resolution of this subject found, if it read state after this change."""
        if ev.resource_type == T_VM:
            return None  # nothing to read
        limit = event_time + timedelta(seconds=self.config.clock_skew_seconds)
        with self._lock:
            found = self._subjects.get(ev.key)
        if found and found[0] >= limit:
            return found[1]
        if self.journal is not None:
            for r in self.journal.open_records(K_SUBJECT, ev.resource_id):
                read_at = _parse_time((r.data or {}).get("read_at"))
                if read_at and read_at >= limit:
                    return list((r.data or {}).get("vms") or [])
        return None

    def _remember_subject(self, ev: ResourceEvent, read_at: datetime, vms: list[str]) -> None:
        if ev.resource_type == T_VM:
            return
        with self._lock:
            self._subjects[ev.key] = (read_at, vms)
        if self.journal is not None:
            self.journal.open_record(K_SUBJECT, ev.resource_id, "", operation_id=ev.event_id,
                                     data={"read_at": read_at.isoformat(), "vms": vms[:200]})

    # -- passes (burst coalescing) ---------------------------------------------------------
    def _bucket(self, at: datetime) -> str:
        return f"w{int(at.timestamp() // self.config.window_seconds)}"

    def _claim_pass(self, vm_id: str, event_time: datetime) -> _PassClaim | object | None:
        """A claim when this event must evaluate the VM; None when a pass that read state after
        the change (finished, or running elsewhere) covers it; _EXHAUSTED when neither."""
        key = arm_ids.normalize(vm_id)
        limit = event_time + timedelta(seconds=self.config.clock_skew_seconds)
        with self._lock:
            last = self._passes.get(key)
        if last is not None and last >= limit:
            return None
        now = self._now()
        j = self.journal
        if j is None:  # no storage: this process is the only one that can know
            with self._lock:
                running = self._inflight.get(key)
                if running is not None and running >= limit:
                    return None
                self._inflight[key] = now
            return _PassClaim(vm_id, key, None, now)
        if self._covered(j.open_records(K_EVAL, vm_id), limit, now):
            return None
        # First wins per window; one follow-up pass per window for changes made after it read.
        for bucket in (self._bucket(now), self._bucket(now) + "-2"):
            read_at = self._now()
            if j.open_record(K_EVAL, vm_id, bucket, operation_id=_op_id(),
                             data={"state": "running", "read_at": read_at.isoformat()},
                             exclusive=True):
                return _PassClaim(vm_id, key, bucket, read_at)
            # Lost the race for this bucket: the winner's pass may cover this change.
            if self._covered([r for r in j.open_records(K_EVAL, vm_id) if r.key == bucket],
                             limit, self._now()):
                return None
        return _EXHAUSTED  # two passes in this window already: defer to a later window

    def _covered(self, records, limit: datetime, now: datetime) -> bool:
        """Does a pass that read state at or after `limit` (finished, or running and not
        abandoned) exist among these records?"""
        for r in records:
            d = r.data or {}
            read_at = _parse_time(d.get("read_at"))
            if read_at is None or read_at < limit:
                continue
            if d.get("state") == "done" or \
                    (now - read_at).total_seconds() < self.config.stale_claim_seconds:
                return True
        return False

    def _finish_pass(self, claim: _PassClaim) -> None:
        with self._lock:
            self._inflight.pop(claim.key, None)
            last = self._passes.get(claim.key)
            if last is None or last < claim.read_at:
                self._passes[claim.key] = claim.read_at
        if self.journal is not None and claim.bucket:
            self.journal.open_record(K_EVAL, claim.vm_id, claim.bucket, operation_id=_op_id(),
                                     data={"state": "done",
                                           "read_at": claim.read_at.isoformat()})

    def _release_pass(self, claim: _PassClaim) -> None:
        with self._lock:
            self._inflight.pop(claim.key, None)
        if self.journal is not None and claim.bucket:
            try:
                self.journal.close_record(K_EVAL, claim.vm_id, claim.bucket)
            except Exception as exc:  # noqa: BLE001 - becomes stale and is ignored later
                log.warning("pass claim for %s not released: %s", claim.vm_id, exc)


def prune_state(ctx: Any, *, older_than: timedelta = timedelta(hours=25)) -> int:
    """Close event/pass/subject records older than Event Grid's retry period (24 h): called by
    the sweep. Returns how many were closed."""
    j = getattr(ctx, "journal", None)
    if j is None:
        return 0
    cutoff = datetime.now(UTC) - older_than
    closed = 0
    for kind in (K_EVENT, K_EVAL, K_SUBJECT):
        for r in j.open_records(kind):
            if r.since < cutoff:
                j.close_record(kind, r.vm_id, r.key)
                closed += 1
    return closed
