"""Microsoft.Compute's own call-rate policies (behind ARM's subscription buckets).

Docs, *Compute throttling limits* (2024): per region, a token bucket per policy for each
resource (VM) and one for the subscription; each request takes a token from both; an empty
bucket answers 429. Every answer carries `x-ms-ratelimit-remaining-resource`
(`<RP>/<policy>;<count>`, docs *Troubleshooting API throttling errors*); a 429's body is
`OperationNotAllowed` with a `TooManyRequests` detail naming the policy. Numbers and the
parts that are not confirmed: docs/latency-profile.md.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from dataclasses import dataclass
from enum import StrEnum

from emulator.routes import Route
from emulator.throttle import Bucket

__all__ = ["Policy", "PolicyLimit", "FIELD_POLICIES", "ComputeLimits", "policy_of"]

NAMESPACE = "Microsoft.Compute"
THROTTLED = ("The server rejected the request because too many requests have been received "
             "for this subscription.")


class Policy(StrEnum):
    PUT_VM = "PutVM"  # create a VM
    UPDATE_VM = "UpdateVM"  # update, start, restart, powerOff, runCommand, ...
    DELETE_VM = "DeleteVM"  # delete, deallocate
    LOW_COST_GET_VM = "LowCostGetVM"  # GET one VM, its instance view
    HIGH_COST_GET_VM = "HighCostGetVM"  # list, list all
    GET_OPERATION = "GetOperation"  # status of a Compute long-running operation


@dataclass(frozen=True)
class PolicyLimit:
    """(maximum capacity, refill per minute) per resource (None: subscription only) and for
    the subscription."""

    resource: tuple[int, float] | None
    subscription: tuple[int, float]


FIELD_POLICIES = {
    Policy.PUT_VM: PolicyLimit((12, 4), (1500, 500)),
    Policy.UPDATE_VM: PolicyLimit((12, 4), (1500, 500)),
    Policy.DELETE_VM: PolicyLimit((12, 4), (1500, 500)),
    Policy.LOW_COST_GET_VM: PolicyLimit((36, 12), (24000, 8000)),
    Policy.HIGH_COST_GET_VM: PolicyLimit(None, (900, 300)),
    Policy.GET_OPERATION: PolicyLimit((45, 15), (15000, 5000)),
}

_UPDATE_ACTIONS = {"start", "restart", "poweroff", "runcommand", "redeploy", "reapply",
                   "generalize"}
_DELETE_ACTIONS = {"deallocate", "simulateeviction"}


def policy_of(method: str, route: Route, exists) -> Policy | None:
    """The policy a request falls under; None outside Microsoft.Compute's VM APIs.
    `exists(resource_id)` tells a VM create from an update."""
    if (route.namespace or "").lower() != NAMESPACE.lower():
        return None
    if route.kind == "operation":
        return Policy.GET_OPERATION
    if (route.rtype or "").lower() != "microsoft.compute/virtualmachines":
        return None
    if route.kind in ("list_sub", "list_rg"):
        return Policy.HIGH_COST_GET_VM
    if route.kind == "action":
        action = (route.action or "").lower()
        return Policy.DELETE_VM if action in _DELETE_ACTIONS else (
            Policy.UPDATE_VM if action in _UPDATE_ACTIONS else None)
    if route.kind != "resource":
        return None
    if method == "GET":
        return Policy.LOW_COST_GET_VM
    if method == "DELETE":
        return Policy.DELETE_VM
    return Policy.UPDATE_VM if exists(route.resource_id) else Policy.PUT_VM


class ComputeLimits:
    def __init__(self, limits: dict[Policy, PolicyLimit]):
        self.limits = dict(limits)
        self._lock = threading.Lock()
        self._buckets: dict[tuple, Bucket] = {}

    def _bucket(self, key: tuple, capacity_refill: tuple[int, float]) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity, per_minute = capacity_refill
            bucket = self._buckets[key] = Bucket(capacity, per_minute / 60.0)
        return bucket

    def take(self, policy: Policy, subscription: str, resource: str) -> tuple[bool, dict, dict]:
        """-> (allowed, headers, 429 body or {}). A token is taken from the resource's and the
        subscription's bucket only when both have one."""
        limit = self.limits.get(policy)
        if limit is None:
            return True, {}, {}
        scopes = [("Subscription", (policy, subscription.lower()), limit.subscription)]
        if limit.resource is not None:
            scopes.insert(0, ("Resource", (policy, resource.lower()), limit.resource))
        with self._lock:
            buckets = [(name, self._bucket(key, cap)) for name, key, cap in scopes]
            empty = [(name, b) for name, b in buckets if b.available() < 1]
            if not empty:
                for _, b in buckets:
                    b.take()
            remaining = ",".join(f"{NAMESPACE}/{policy}{name};{int(b.available())}"
                                 for name, b in buckets)
        headers = {"x-ms-ratelimit-remaining-resource": remaining}
        if not empty:
            return True, headers, {}
        wait = max(b.wait() for _, b in empty)
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return False, headers, _throttled_body(policy, [(n, b) for n, b in empty])


def _throttled_body(policy: Policy, empty: list[tuple[str, Bucket]]) -> dict:
    now = dt.datetime.now(dt.UTC)
    details = []
    for name, bucket in empty:
        group = f"{policy}{name}"
        details.append({"code": "TooManyRequests", "target": group, "message": json.dumps({
            "operationGroup": group,
            "startTime": now.isoformat(),
            "endTime": (now + dt.timedelta(seconds=bucket.wait())).isoformat(),
            "allowedRequestCount": bucket.burst,
            "measuredRequestCount": bucket.burst + 1})})
    return {"error": {"code": "OperationNotAllowed", "message": THROTTLED, "details": details,
                      "innererror": {"internalErrorCode": "TooManyRequestsReceived"}}}
