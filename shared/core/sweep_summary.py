"""Pure: the drift sweep's summary (counts, drift found, actions taken, pending plans, errors).

Saved in the sweep's checkpoint (so that a resumed sweep goes on counting), journalled (action
`sweep`, step `summary`) and written to Blob storage (`ReportStore.save_sweep`) by
`shared.services.sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SweepSummary:
    sweep_id: str
    started_at: str
    finished_at: str | None = None
    complete: bool = False
    stopped_reason: str | None = None
    resumed: bool = False
    runs: int = 1
    vms: int = 0
    findings: int = 0
    at_risk: int = 0
    managed_nics: int = 0
    vms_processed: int = 0
    vms_remaining: int = 0
    drift: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)  # "call:status" -> count
    pending: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    resumed_vms: list[dict] = field(default_factory=list)  # started after interrupted runs
    pruned_event_records: int = 0

    def count_drift(self, kind: str) -> None:
        self.drift[kind] = self.drift.get(kind, 0) + 1

    def count_action(self, key: str) -> None:
        """`call:status` (e.g. `apply:pending`) -> how often it happened."""
        self.actions[key] = self.actions.get(key, 0) + 1

    @property
    def drift_found(self) -> int:
        return sum(self.drift.values())

    @property
    def actions_taken(self) -> int:
        return sum(n for k, n in self.actions.items()
                   if k.split(":", 1)[-1] in ("applied", "repaired", "started"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id, "started_at": self.started_at,
            "finished_at": self.finished_at, "complete": self.complete,
            "stopped_reason": self.stopped_reason, "resumed": self.resumed, "runs": self.runs,
            "vms": self.vms, "findings": self.findings, "at_risk": self.at_risk,
            "managed_nics": self.managed_nics, "vms_processed": self.vms_processed,
            "vms_remaining": self.vms_remaining, "drift_found": self.drift_found,
            "drift": dict(self.drift), "actions_taken": self.actions_taken,
            "actions": dict(self.actions), "pending_plans": len(self.pending),
            "pending": list(self.pending), "errors_count": len(self.errors),
            "errors": list(self.errors), "resumed_vms": list(self.resumed_vms),
            "pruned_event_records": self.pruned_event_records,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSummary:
        s = cls(sweep_id=d["sweep_id"], started_at=d["started_at"])
        for name in ("resumed", "runs", "vms", "findings", "at_risk", "managed_nics",
                     "vms_processed", "pruned_event_records"):
            if name in d:
                setattr(s, name, d[name])
        s.drift = dict(d.get("drift") or {})
        s.actions = dict(d.get("actions") or {})
        s.pending = list(d.get("pending") or [])
        s.errors = list(d.get("errors") or [])
        s.resumed_vms = list(d.get("resumed_vms") or [])
        return s
