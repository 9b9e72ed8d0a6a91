"""Long-running operations as ARM does them.

The change itself is applied when the request arrives (or by a worker thread, for Run Command);
the operation resource then reports InProgress for `polls` status reads and while its worker is
busy, then Succeeded or Failed. Header shapes:
  Microsoft.Network: Azure-AsyncOperation
                       .../providers/Microsoft.Network/locations/{loc}/operations/{id}
                     and, for DELETE and POST, Location
                       .../providers/Microsoft.Network/locations/{loc}/operationResults/{id}
  Microsoft.Compute: Azure-AsyncOperation
                       .../providers/Microsoft.Compute/locations/{loc}/operations/{id}
                     and Location = the same URL with monitor=true
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from dataclasses import dataclass, field


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Operation:
    id: str
    namespace: str  # "Microsoft.Network" | "Microsoft.Compute"
    location: str
    subscription: str
    api_version: str
    polls: int  # InProgress answers still owed
    result: dict | None = None  # body of the final Location GET (POST actions)
    error: dict | None = None  # {"code", "message"} when Failed
    error_status: int = 400  # Location GET of a failed op; 4xx so no client retry loop
    worker: threading.Thread | None = None
    start_time: str = field(default_factory=_now)
    end_time: str | None = None
    ready_at: float = 0.0  # time.monotonic() before which it runs (latency profile)
    retry_after: int | None = None  # this operation's own Retry-After (latency profile)
    next_poll_at: float = 0.0  # when the last Retry-After it gave expires
    early_polls: int = 0  # status reads that came before that

    def status(self) -> str:
        """Advance one poll and return InProgress / Succeeded / Failed."""
        now = time.monotonic()
        if now < self.next_poll_at:
            self.early_polls += 1
        running = self.worker is not None and self.worker.is_alive()
        if self.polls > 0 or running or now < self.ready_at:
            self.polls = max(0, self.polls - 1)
            return "InProgress"
        if self.end_time is None:
            self.end_time = _now()
        return "Failed" if self.error else "Succeeded"


class Operations:
    def __init__(self, base_url: str, polls: int = 1, retry_after: int | None = None):
        self.base_url = base_url
        self.polls = polls
        self.retry_after = retry_after  # None: no Retry-After, so the client's interval rules
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}

    def create(
        self, namespace: str, location: str, subscription: str, api_version: str, **kw
    ) -> Operation:
        op = Operation(
            str(uuid.uuid4()),
            namespace,
            (location or "westus").replace(" ", "").lower(),
            subscription,
            api_version,
            self.polls,
            **kw,
        )
        with self._lock:
            self._ops[op.id.lower()] = op
        return op

    def get(self, op_id: str) -> Operation | None:
        with self._lock:
            return self._ops.get(op_id.lower())

    @property
    def early_polls(self) -> int:
        """Status reads, over all operations, sent before the Retry-After they were given
        expired: 0 for a client that honours Retry-After."""
        with self._lock:
            return sum(op.early_polls for op in self._ops.values())

    def retry_after_headers(self, op: Operation, status_answer: bool = True) -> dict:
        """Retry-After for an answer saying the operation runs (none unless configured). A
        poll before it expires counts as early, except the first one after the operation's
        first answer: azure-core reads the status once at once, then honours Retry-After
        (azure-core 1.41 `polling/base_polling.py` `_poll`)."""
        seconds = op.retry_after if op.retry_after is not None else self.retry_after
        if seconds is None:
            return {}
        if status_answer:
            op.next_poll_at = time.monotonic() + seconds
        return {"Retry-After": str(seconds)}

    # --- URLs and headers -------------------------------------------------------------------
    def _base(self, op: Operation) -> str:
        return (
            f"{self.base_url}/subscriptions/{op.subscription}/providers/{op.namespace}"
            f"/locations/{op.location}"
        )

    def async_url(self, op: Operation) -> str:
        if op.namespace.lower() == "microsoft.compute":
            return (
                f"{self._base(op)}/operations/{op.id}?p={uuid.uuid4()}&api-version={op.api_version}"
            )
        return f"{self._base(op)}/operations/{op.id}?api-version={op.api_version}"

    def location_url(self, op: Operation) -> str:
        if op.namespace.lower() == "microsoft.compute":
            return (
                f"{self._base(op)}/operations/{op.id}?p={uuid.uuid4()}&monitor=true"
                f"&api-version={op.api_version}"
            )
        return f"{self._base(op)}/operationResults/{op.id}?api-version={op.api_version}"

    def headers(self, op: Operation, location: bool) -> dict:
        h = {"Azure-AsyncOperation": self.async_url(op)}
        if location:
            h["Location"] = self.location_url(op)
        return {**h, **self.retry_after_headers(op, status_answer=False)}

    # --- status endpoints ---------------------------------------------------------------------
    def status_body(self, op: Operation) -> dict:
        """GET on the Azure-AsyncOperation URL (always 200)."""
        status = op.status()
        if op.namespace.lower() == "microsoft.compute":
            body = {"startTime": op.start_time, "status": status, "name": op.id}
            if status != "InProgress":
                body["endTime"] = op.end_time
                if status == "Succeeded" and op.result is not None:
                    body["properties"] = {"output": op.result}
        else:
            body = {"status": status}
        if status == "Failed":
            body["error"] = dict(op.error)
        return body

    def result_response(self, op: Operation) -> tuple[int, dict, dict | None]:
        """GET on the Location URL: 202 while running, then the final result or the error."""
        status = op.status()
        if status == "InProgress":
            return 202, {"Location": self.location_url(op), **self.retry_after_headers(op)}, None
        if status == "Failed":
            return op.error_status, {}, {"error": dict(op.error)}
        return 200, {}, op.result
