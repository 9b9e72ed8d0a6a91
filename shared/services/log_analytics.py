"""Findings, remediation outcomes and drift as rows in Log Analytics (table Hairpin_CL), where
the workbook and the alert on new high findings read them (infra/main.json).

Uploading is a side effect of a run, never a condition for it: `LogSink` never raises; it
logs a failure and counts it (`failed`), and counts the rows sent (`sent`). Configured by
HAIRPIN_LOGS_ENDPOINT (the data collection endpoint) and HAIRPIN_LOGS_RULE_ID (the DCR's
immutable ID); without them there is no sink.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.azure.logs_ingestion import LogsUploader
from shared.core import log_rows
from shared.core.journal import Trigger
from shared.core.remediation.outcome import Outcome

log = logging.getLogger("hairpin.logs")

__all__ = ["LogSink"]


class LogSink:
    def __init__(self, uploader: LogsUploader, clock=lambda: datetime.now(UTC)) -> None:
        self.uploader = uploader
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, credential: Any = None) -> LogSink | None:
        if not (settings.logs_endpoint and settings.logs_rule_id):
            return None
        return cls(LogsUploader(settings.logs_endpoint, settings.logs_rule_id,
                                settings.logs_stream, credential))

    def send(self, rows: Sequence[Mapping[str, Any]], what: str) -> bool:
        try:
            self.uploader.upload(rows)
        except Exception as exc:  # noqa: BLE001 - a side effect: logged and counted, never raised
            with self._lock:
                self.failed += 1
            log.warning("Log Analytics: %d %s rows not uploaded: %s", len(rows), what,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return False
        with self._lock:
            self.sent += len(rows)
        return True

    def findings(self, report: Mapping[str, Any], trigger: Trigger,
                 run_id: str | None) -> bool:
        """The findings of an audit (one row each)."""
        return self.send(log_rows.finding_rows(report, self.clock(), run_id, trigger.kind),
                         "finding")

    def outcome(self, outcome: Outcome, trigger: Trigger) -> bool:
        """A remediation run's result, one row per VM."""
        return self.send(log_rows.outcome_rows(outcome.as_dict(), self.clock(), trigger.kind),
                         "outcome")

    def drift(self, vm_id: str | None, drift: Iterable[str], trigger: Trigger,
              run_id: str | None, status: str | None = None) -> bool:
        rows = log_rows.drift_rows(vm_id, list(drift), self.clock(), run_id, trigger.kind,
                                   status)
        return self.send(rows, "drift") if rows else True
