"""The drift sweep's checkpoint: resume where a stopped sweep left off.

One Blob document (`ReportStore.checkpoints`, ETag-conditional) holds the summary so far and
the VMs already done; it is saved after each VM and deleted when a sweep completes.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime

from shared.core.sweep_summary import SweepSummary
from shared.storage.reports import ReportStore

__all__ = ["SweepCheckpoint", "new_sweep_id"]

log = logging.getLogger("hairpin.sweep")


def new_sweep_id(now: datetime | None = None) -> str:
    """Sortable by start time: `20261202T151800Z-3f9a1c`."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


class SweepCheckpoint:
    """The summary so far and the VMs done (`done`: drift keys), kept in Blob storage when
    there is storage (in memory otherwise)."""

    def __init__(self, reports: ReportStore | None, name: str = "sweep") -> None:
        self._store = reports.checkpoints if reports is not None else None
        self.name = name
        self.done: set[str] = set()
        self.lock = threading.Lock()  # the reconcile's workers save through one checkpoint
        self._etag: str | None = None

    def load(self, sweep_id: str | None = None) -> SweepSummary:
        """The stopped sweep's summary (resumed), or a new sweep's (`sweep_id`: a fleet
        sweep's, whose work item this is; None: a new ID)."""
        found = self._store.get(self.name) if self._store is not None else None
        if found is not None and isinstance(found.value, dict) and "summary" in found.value:
            self._etag = found.etag
            self.done = set(found.value.get("done") or [])
            summary = SweepSummary.from_dict(found.value["summary"])
            summary.resumed = True
            summary.runs += 1
            summary.errors = summary.errors[-50:]
            log.info("sweep %s resumed: %d VMs already done", summary.sweep_id, len(self.done))
            return summary
        now = datetime.now(UTC)
        return SweepSummary(sweep_id=sweep_id or new_sweep_id(now), started_at=now.isoformat())

    def save(self, summary: SweepSummary, phase: str) -> None:
        if self._store is None:
            return
        with self.lock:
            value = {"summary": summary.as_dict(), "done": sorted(self.done), "phase": phase,
                     "saved_at": datetime.now(UTC).isoformat()}
            self._etag = self._store.put(self.name, value, etag=self._etag).etag

    def clear(self) -> None:
        if self._store is not None and self._etag is not None:
            self._store.delete(self.name, etag=self._etag)
            self._etag = None
