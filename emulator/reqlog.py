"""Request log: every ARM request with its resource type, RBAC action(s), status and caller."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

# POST actions that change nothing: excluded from writes().
READ_ONLY_ACTIONS = {
    "microsoft.network/loadbalancers/loadbalancingrules/health/action",
    "microsoft.resourcegraph/resources/read",
    "microsoft.insights/metrics/read",  # the batch metrics query is a POST
}


@dataclass
class RequestEntry:
    method: str
    path: str
    query: str
    resource_type: str | None
    action: str | None  # the primary RBAC action of the request
    linked_actions: list[str] = field(default_factory=list)  # e.g. subnets/join/action on NIC PUT
    status: int = 0
    principal: str | None = None  # principal (object) id of the token's identity
    client_id: str | None = None
    fault: bool = False
    time: float = field(default_factory=time.time)
    if_match: str | None = None  # the conditional header a write was sent with

    @property
    def actions(self) -> list[str]:
        return ([self.action] if self.action else []) + self.linked_actions

    @property
    def is_write(self) -> bool:
        if self.method in ("PUT", "PATCH", "DELETE"):
            return True
        return (
            self.method == "POST"
            and self.action is not None
            and self.action.lower() not in READ_ONLY_ACTIONS
        )


class RequestLog(list):
    """A list of RequestEntry with counting helpers (thread-safe append)."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def record(self, entry: RequestEntry) -> None:
        with self._lock:
            self.append(entry)

    def by_method(self) -> Counter:
        return Counter(e.method for e in self)

    def by_type(self) -> Counter:
        return Counter((e.resource_type or "").lower() for e in self)

    def count(
        self,
        method: str | None = None,
        resource_type: str | None = None,
        action: str | None = None,
        status: int | None = None,
    ) -> int:
        return sum(
            1
            for e in self
            if (method is None or e.method == method.upper())
            and (resource_type is None or (e.resource_type or "").lower() == resource_type.lower())
            and (action is None or (e.action or "").lower() == action.lower())
            and (status is None or e.status == status)
        )

    def writes(self) -> list[RequestEntry]:
        return [e for e in self if e.is_write]

    def actions_used(self, principal: str | None = None) -> set[str]:
        """Every RBAC action (primary and linked) requested, optionally for one principal."""
        return {a for e in self if principal is None or e.principal == principal for a in e.actions}

    def reset(self) -> None:
        with self._lock:
            self.clear()
