"""Latency profiles: the emulator answering at the speed ARM answers in the field (off unless
asked for, so tests stay fast).

A profile sets, per request kind, how long the answer takes; per long-running operation kind,
the Retry-After the 201/202 and every InProgress answer carry and how long the operation runs;
and the throttling in force: ARM's subscription token buckets (`emulator.throttle`) and
Microsoft.Compute's own policies (`emulator.compute_limits`). Every number of `FIELD` and its
source is in docs/latency-profile.md.

    Emulator(scenario, profile="field")       # or profile=LatencyProfile(...) in tests
    python -m emulator --profile field
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import urlsplit

from emulator.compute_limits import FIELD_POLICIES, ComputeLimits, Policy, PolicyLimit, policy_of
from emulator.errors import ArmError
from emulator.routes import Route

__all__ = ["RequestKind", "OperationKind", "LroTiming", "LatencyProfile", "FIELD", "PROFILES",
           "profile_named", "request_kind", "operation_kind", "ProfileStage"]


class RequestKind(StrEnum):
    """What an answer's latency depends on."""

    GET = "get"  # one resource
    LIST = "list"  # one page of a list
    PUT = "put"  # PUT or PATCH: the synchronous part, before the operation runs
    POST = "post"  # an action: the synchronous part
    DELETE = "delete"
    POLL = "poll"  # a status read of a long-running operation
    QUERY = "query"  # Resource Graph (its own service behind ARM)
    METRICS = "metrics"  # Azure Monitor metrics (a batch of up to 50 resources, or one)


class OperationKind(StrEnum):
    """Long-running operations whose Retry-After and duration the profile sets."""

    VM_DEALLOCATE = "vm_deallocate"
    VM_START = "vm_start"
    VM_UPDATE = "vm_update"  # PUT/PATCH of a VM, e.g. attaching a NIC
    NIC_CREATE = "nic_create"  # PUT of a NIC
    RUN_COMMAND = "run_command"
    RULE_HEALTH = "rule_health"  # POST .../loadBalancingRules/{rule}/health
    OTHER = "other"  # any other PUT, DELETE or action


@dataclass(frozen=True)
class LroTiming:
    retry_after: int  # seconds, on the first answer and on every InProgress answer
    duration: float  # seconds from acceptance until the operation reports its end


@dataclass(frozen=True)
class LatencyProfile:
    name: str
    latency: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    lro: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    # ARM's subscription buckets {"reads"|"writes"|"deletes": (burst, refill per s)}; None: off
    arm_limits: dict | None = None
    # Microsoft.Compute's policies {Policy: PolicyLimit}; None: off
    compute_limits: dict[Policy, PolicyLimit] | None = None

    def delay(self, kind: RequestKind) -> float:
        return float(self.latency.get(kind, 0.0))

    def timing(self, kind: OperationKind) -> LroTiming | None:
        return self.lro.get(kind) or self.lro.get(OperationKind.OTHER)


FIELD = LatencyProfile(
    name="field",
    latency=MappingProxyType({
        RequestKind.GET: 0.15, RequestKind.LIST: 0.5, RequestKind.PUT: 0.5,
        RequestKind.POST: 0.3, RequestKind.DELETE: 0.3, RequestKind.POLL: 0.1,
        RequestKind.QUERY: 0.5, RequestKind.METRICS: 1.0,
    }),
    lro=MappingProxyType({
        OperationKind.VM_DEALLOCATE: LroTiming(10, 60.0),
        OperationKind.VM_START: LroTiming(10, 45.0),
        OperationKind.VM_UPDATE: LroTiming(10, 20.0),
        OperationKind.NIC_CREATE: LroTiming(10, 3.0),
        OperationKind.RUN_COMMAND: LroTiming(10, 20.0),
        OperationKind.RULE_HEALTH: LroTiming(10, 3.0),
        OperationKind.OTHER: LroTiming(10, 10.0),
    }),
    arm_limits={"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)},
    compute_limits=dict(FIELD_POLICIES),
)

PROFILES = {"field": FIELD}


def profile_named(name: str | LatencyProfile | None) -> LatencyProfile | None:
    """"off" / "" / None -> no profile; a known name -> that profile."""
    if name is None or isinstance(name, LatencyProfile):
        return name
    if name.lower() in ("", "off", "none"):
        return None
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown latency profile {name!r}; known: off, "
                         + ", ".join(PROFILES)) from None


def request_kind(method: str, route: Route) -> RequestKind:
    if route.kind == "graph":
        return RequestKind.QUERY
    if route.kind in ("metrics_batch", "metrics"):
        return RequestKind.METRICS
    if route.kind == "operation":
        return RequestKind.POLL
    if method == "GET":
        listing = route.kind in ("list_sub", "list_rg", "skus", "child_list")
        return RequestKind.LIST if listing else RequestKind.GET
    if method in ("PUT", "PATCH"):
        return RequestKind.PUT
    return RequestKind.DELETE if method == "DELETE" else RequestKind.POST


_ACTIONS = {"deallocate": OperationKind.VM_DEALLOCATE, "start": OperationKind.VM_START,
            "runcommand": OperationKind.RUN_COMMAND}


def operation_kind(method: str, route: Route) -> OperationKind:
    rtype = (route.rtype or "").lower()
    if route.kind == "child_action" and (route.action or "").lower() == "health":
        return OperationKind.RULE_HEALTH
    if route.kind == "action":
        return _ACTIONS.get((route.action or "").lower(), OperationKind.OTHER)
    if route.kind == "resource" and method in ("PUT", "PATCH"):
        if rtype == "microsoft.compute/virtualmachines":
            return OperationKind.VM_UPDATE
        if rtype == "microsoft.network/networkinterfaces":
            return OperationKind.NIC_CREATE
    return OperationKind.OTHER


class ProfileStage:
    """The profile's part of one request in the pipeline: Compute's policies after ARM's
    buckets, the answer's latency before the dispatch, the operation's timing after it."""

    def __init__(self, emu, profile: LatencyProfile):
        self.emu, self.profile = emu, profile
        self.compute = (ComputeLimits(profile.compute_limits)
                        if profile.compute_limits else None)
        self.sleep = time.sleep  # how latency is spent (a test may record it instead)

    def admit(self, method: str, route: Route) -> dict:
        """x-ms-ratelimit-remaining-resource headers, or ArmError 429 past a Compute policy."""
        if self.compute is None or not route.subscription:
            return {}
        policy = policy_of(method, route, lambda rid: self.emu.store.raw(rid) is not None)
        if policy is None:
            return {}
        resource = (route.operation_id if route.kind == "operation" else route.resource_id)
        ok, headers, body = self.compute.take(policy, route.subscription, resource)
        if not ok:
            raise ComputeThrottled(headers, body)
        return headers

    def wait(self, method: str, route: Route) -> None:
        self.pause(request_kind(method, route))

    def pause(self, kind: RequestKind) -> None:
        """Spend the profile's latency for one answer of this kind (other endpoints the
        emulator serves call this too)."""
        delay = self.profile.delay(kind)
        if delay > 0:
            self.sleep(delay)

    def time_operation(self, method: str, route: Route, headers: dict) -> dict:
        """A new long-running operation runs for the profile's duration and asks pollers to
        come back after its Retry-After."""
        url = headers.get("Azure-AsyncOperation")
        timing = self.profile.timing(operation_kind(method, route))
        if url is None or timing is None or route.kind == "operation":
            return headers
        op = self.emu.ops.get(urlsplit(url).path.rstrip("/").split("/")[-1])
        if op is None:
            return headers
        op.ready_at = time.monotonic() + timing.duration
        op.retry_after = timing.retry_after
        return {**headers, **self.emu.ops.retry_after_headers(op, status_answer=False)}


class ComputeThrottled(ArmError):
    """429 from a Microsoft.Compute policy, with its details (docs, *Troubleshooting API
    throttling errors*)."""

    def __init__(self, headers: dict, body: dict):
        super().__init__(429, body["error"]["code"], body["error"]["message"], headers)
        self._body = body

    def body(self) -> dict:
        return self._body
