"""The drift sweep's checkpoint: resume where a stopped sweep left off.

One Blob document (`ReportStore.checkpoints`, ETag-conditional) holds the summary so far and the
VMs already done; it is saved after each VM and deleted when a sweep completes.
`SweepCheckpoint` is a part of `shared.services.sweep.Sweep` (a mixin): it uses the sweep's
`ctx`, `checkpoint_name`, `_lock`, `_etag` and `_done`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from shared.core.sweep_summary import SweepSummary

log = logging.getLogger("hairpin.sweep")


class SweepCheckpoint:
    """Load, save and clear the checkpoint (part of `Sweep`)."""

    # -- checkpoint -------------------------------------------------------------------------
    def _checkpoints(self):
        reports = getattr(self.ctx, "reports", None)
        return reports.checkpoints if reports is not None else None

    def _load(self) -> SweepSummary:
        store = self._checkpoints()
        found = store.get(self.checkpoint_name) if store is not None else None
        if found is not None and isinstance(found.value, dict) and "summary" in found.value:
            self._etag = found.etag
            self._done = set(found.value.get("done") or [])
            summary = SweepSummary.from_dict(found.value["summary"])
            summary.resumed = True
            summary.runs += 1
            summary.errors = summary.errors[-50:]
            log.info("sweep %s resumed: %d VMs already done", summary.sweep_id, len(self._done))
            return summary
        now = datetime.now(UTC)
        summary = SweepSummary(sweep_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
                               started_at=now.isoformat())
        return summary

    def _save(self, summary: SweepSummary, phase: str) -> None:
        store = self._checkpoints()
        if store is None:
            return
        with self._lock:
            value = {"summary": summary.as_dict(), "done": sorted(self._done), "phase": phase,
                     "saved_at": datetime.now(UTC).isoformat()}
            self._etag = store.put(self.checkpoint_name, value, etag=self._etag).etag

    def _clear(self) -> None:
        store = self._checkpoints()
        if store is not None and self._etag is not None:
            store.delete(self.checkpoint_name, etag=self._etag)
            self._etag = None
