"""Pure: what a remediation run returns: its `Outcome` (status from `vocab.Status`), with one
`VmOutcome` per VM, and the operation ID that ties its journal entries together."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from shared.core.arm_ids import normalize
from shared.core.vocab import Status

__all__ = ["VmOutcome", "Outcome", "new_operation_id"]


# --------------------------------------------------------------------------- results

@dataclass
class VmOutcome:
    vm_id: str
    vm_name: str
    status: Status = Status.UNCHANGED
    steps: list[dict] = field(default_factory=list)
    verification: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Outcome:
    status: Status
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
