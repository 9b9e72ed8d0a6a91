"""Remediation outcomes: the statuses a run ends in and what it returns (`Outcome`, one
`VmOutcome` per VM). Part of `shared.services.remediation`, which re-exports every name."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from shared.core.arm_ids import normalize

APPLIED, UNCHANGED, PENDING, REFUSED, FAILED = (
    "applied", "unchanged", "pending", "refused", "failed")


# --------------------------------------------------------------------------- results

@dataclass
class VmOutcome:
    vm_id: str
    vm_name: str
    status: str = UNCHANGED
    steps: list[dict] = field(default_factory=list)
    verification: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Outcome:
    status: str
    reasons: list[str] = field(default_factory=list)
    operation_id: str = ""
    plan_hash: str | None = None
    vms: list[VmOutcome] = field(default_factory=list)
    arm_writes: int = 0
    resumable: bool = False
    plan: dict | None = None
    resumed: list[dict] = field(default_factory=list)
    # True: every verification run passed; False: one failed; None: none ran.
    verified: bool | None = None

    def as_dict(self) -> dict:
        return {"status": self.status, "verified": self.verified,
                "reasons": list(self.reasons),
                "operation_id": self.operation_id, "plan_hash": self.plan_hash,
                "vms": [v.as_dict() for v in self.vms], "arm_writes": self.arm_writes,
                "resumable": self.resumable, "plan": self.plan, "resumed": self.resumed}

    def vm(self, name_or_id: str) -> VmOutcome | None:
        key = name_or_id.lower()
        return next((v for v in self.vms if v.vm_name.lower() == key
                     or normalize(v.vm_id) == normalize(name_or_id)), None)


def new_operation_id() -> str:
    return uuid.uuid4().hex
