"""Event-driven re-evaluation: one Event Grid event (or a batch) -> current state -> remediation.

Delivery is at least once and unordered (AZURE-FACTS section 4), so:

* **Never trust the payload.** The event only says which resource changed; the scope it maps to
  (`shared.events.scope_of`) is expanded and evaluated from documents read *now*. An old event
  arriving after a newer change therefore evaluates the newer state.
* **Duplicates** (same event id) are recognised by a first-wins claim in the journal's state
  table (`open_record(..., exclusive=True)`, kind `event`).
* **Bursts** (many writes to one VM) give one evaluation pass per VM: a pass claims the VM for
  the current window (kind `event-eval`, first wins) and records when it read state; an event
  whose change happened before that read (`event_time + clock_skew <= read_at`) is covered by it
  and is acknowledged as `coalesced`. A change after the read gets one more pass. At most one
  remediation per VM follows from one pass.
* **Transient failures** (throttling, 5xx, timeouts, storage unreachable, a busy lock) release the
  claims and raise, so Event Grid delivers the event again (10 s, 30 s, 1 m, ...).
  **Permanent** ones (resource gone, malformed payload, no permission) are journalled and
  acknowledged.
* **Our own writes** (the caller is the function's managed identity, or, when the claims do not
  say, the journal shows our remediation writing to that VM at that time) are still evaluated
  (read-only), but never start a remediation: no loop. Drift they reveal is journalled and left
  to the sweep, which runs under the same guard.

At-risk findings go to `shared.services.remediation` (`apply`, or `ensure_guest_routes` for a
VM that already carries the managed NIC): the guard (opt-in tag, maintenance window, pool
peers, locks, mode) lives there, as for every other entry point.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import arm_ids
from shared.events import (
    T_LB,
    T_NIC,
    T_VM,
    Ignored,
    OwnIdentity,
    Rejected,
    ResourceEvent,
    is_own_write,
    merge_identities,
    own_identity_from_env,
    parse_event,
)
from shared.journal_model import (
    OPEN_VERIFIED_ROUTE,
    RESULT_FAILED,
    RESULT_SKIPPED,
    RESULT_SUCCEEDED,
    TRIGGER_EVENT,
    JournalEntry,
    Trigger,
)
from shared.services.notify import outcome_field

log = logging.getLogger("hairpin.events")

K_EVENT = "event"  # state record: event id seen (subject = resource id, key = event id)
K_EVAL = "event-eval"  # state record: an evaluation pass of a VM (key = window bucket)
K_SUBJECT = "event-subject"  # state record: subject -> VMs, as resolved at read_at

ENV_WINDOW = "HAIRPIN_EVENT_BURST_WINDOW_SECONDS"
ENV_SKEW = "HAIRPIN_EVENT_CLOCK_SKEW_SECONDS"

GUEST_ACTIONS = ("start/action", "restart/action", "redeploy/action", "reapply/action")
ACTIONABLE = ("high", "medium")
OWN_JOURNAL_ACTIONS_EXCLUDED = ("event", "event-rejected", "sweep")


def _env_float(name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(os.environ.get(name, "").strip() or default)
    except ValueError:
        log.warning("%s is not a number; using %s", name, default)
        return default
    return min(max(value, low), high)


@dataclass(frozen=True)
class EventConfig:
    window_seconds: float = 60.0  # burst window: one claimed pass per VM per window
    clock_skew_seconds: float = 5.0  # ARM event time vs our clock
    stale_claim_seconds: float = 600.0  # a claim older than this, never finished, is abandoned
    own_write_journal_seconds: float = 1800.0  # journal entries this close to an event = ours
    bulk_read_threshold: int = 20  # more VMs than this in one pass: list the subscription

    @classmethod
    def from_env(cls) -> EventConfig:
        return cls(window_seconds=_env_float(ENV_WINDOW, 60.0, 1.0, 3600.0),
                   clock_skew_seconds=_env_float(ENV_SKEW, 5.0, 0.0, 300.0))


@dataclass
class EventResult:
    """What happened to one event (also the function's log line)."""

    event_id: str | None
    status: str  # rejected|ignored|duplicate|in-progress|coalesced|evaluated|gone|failed
    reason: str = ""
    own_write: bool = False
    operation: str | None = None
    resource_id: str | None = None
    vm_ids: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)  # VMs evaluated by this event's pass
    findings: list[str] = field(default_factory=list)
    remediations: list[dict] = field(default_factory=list)
    drift: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "status": self.status, "reason": self.reason,
                "own_write": self.own_write, "operation": self.operation,
                "resource_id": self.resource_id, "vm_ids": self.vm_ids,
                "evaluated": self.evaluated, "findings": self.findings,
                "remediations": self.remediations, "drift": self.drift}


@dataclass(frozen=True)
class _PassClaim:
    vm_id: str
    key: str
    bucket: str | None  # None: no storage (in-memory only)
    read_at: datetime


class TransientEventError(Exception):
    """Raised to the trigger so that Event Grid delivers the event again."""


class DeferredEvent(TransientEventError):
    """The change is not covered by a pass and the VM's passes for this window are used up:
    Event Grid's retry brings it back in a later window (bounded work per VM per window)."""


_EXHAUSTED = object()  # _claim_pass: no pass covers the change and none may start now


# --------------------------------------------------------------------------- error classes

def is_transient(exc: BaseException) -> bool:
    """Would the same call probably work later? (throttling, 5xx, network, busy lock)"""
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    from shared.azure.retry import RetryBudgetExceeded

    if isinstance(exc, TransientEventError | RetryBudgetExceeded | ServiceRequestError
                  | ServiceResponseError | TimeoutError | ConnectionError):
        return True
    if type(exc).__name__ in ("LockBusy", "LockLost", "CheckpointConflict"):
        return True
    if isinstance(exc, ResourceNotFoundError):
        return False
    if isinstance(exc, HttpResponseError):
        status = getattr(exc, "status_code", None) or 0
        code = str(getattr(getattr(exc, "error", None), "code", "") or "")
        return status in (408, 409, 429) or status >= 500 or "Retryable" in code
    return False


def is_gone(exc: BaseException) -> bool:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    return isinstance(exc, ResourceNotFoundError) or (
        isinstance(exc, HttpResponseError) and getattr(exc, "status_code", None) == 404)


# --------------------------------------------------------------------------- reading state

class StateReader:
    """Current ARM documents, each read at most once per pass (a small per-pass cache)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._docs: dict[str, dict | None] = {}
        self.reads = 0

    def _clients(self, resource_id: str):
        sub = arm_ids.parse(resource_id).subscription
        return self.ctx.clients(sub)

    def get(self, resource_id: str) -> dict | None:
        """The document, or None when it does not exist (404). Other errors raise."""
        key = arm_ids.normalize(resource_id)
        if key in self._docs:
            return self._docs[key]
        rid = arm_ids.parse(resource_id)
        rtype = (rid.type or "").lower()
        c = self._clients(resource_id)
        try:
            self.reads += 1
            if rtype == T_VM.lower():
                doc = c.compute.virtual_machines.get(rid.resource_group, rid.names[0],
                                                     expand="instanceView").as_dict()
            elif rtype == T_NIC.lower():
                doc = c.network.network_interfaces.get(rid.resource_group, rid.names[0]).as_dict()
            elif rtype == T_LB.lower():
                doc = c.network.load_balancers.get(rid.resource_group, rid.names[0]).as_dict()
            else:
                raise ValueError(f"cannot read {rid.type}")
        except Exception as exc:
            if is_gone(exc):
                doc = None
            else:
                raise
        self._docs[key] = doc
        return doc

    def known(self, resource_id: str) -> bool:
        return arm_ids.normalize(resource_id) in self._docs

    def bulk(self, subscription_id: str) -> None:
        """Every NIC, LB and VM of a subscription in a few paged calls (for large passes)."""
        from shared.azure.discovery import discover_subscription

        found = discover_subscription(self.ctx.clients(subscription_id), include_health=False,
                                      include_skus=False)
        self.reads += 1
        for doc in found["resources"]:
            self._docs[arm_ids.normalize(doc["id"])] = doc


def _nic_vm(nic: dict | None) -> str | None:
    props = (nic or {}).get("properties") or {}
    ref = props.get("virtualMachine") or {}
    return ref.get("id") if isinstance(ref, dict) else None


def _nic_pool_ids(nic: dict | None) -> list[str]:
    props = (nic or {}).get("properties") or {}
    out = []
    for cfg in props.get("ipConfigurations") or []:
        cp = cfg.get("properties") or {}
        for pool in cp.get("loadBalancerBackendAddressPools") or []:
            if isinstance(pool, dict) and pool.get("id"):
                out.append(pool["id"])
    return out


def _lb_member_nics(lb: dict | None, pool_ids: Iterable[str] | None = None) -> list[str]:
    """NIC ids of the members of the LB's pools (all pools, or only `pool_ids`)."""
    wanted = {arm_ids.normalize(p) for p in pool_ids} if pool_ids is not None else None
    props = (lb or {}).get("properties") or {}
    out = []
    for pool in props.get("backendAddressPools") or []:
        if wanted is not None and arm_ids.normalize(pool.get("id", "")) not in wanted:
            continue
        pp = pool.get("properties") or {}
        for cfg in pp.get("backendIPConfigurations") or []:
            cid = cfg.get("id") if isinstance(cfg, dict) else None
            parent = arm_ids.try_parse(cid) if cid else None
            if parent is not None and parent.is_child:
                out.append(str(parent.top_level))
    return list(dict.fromkeys(out))


def _lb_of_pool(pool_id: str) -> str | None:
    parsed = arm_ids.try_parse(pool_id)
    return str(parsed.top_level) if parsed is not None else None


def _is_managed(nic: dict | None, tag: str) -> bool:
    tags = (nic or {}).get("tags") or {}
    return any(k.lower() == tag.lower() and str(v).lower() in ("true", "1", "yes")
               for k, v in tags.items())


# --------------------------------------------------------------------------- the processor

class EventProcessor:
    """Handle events against one ServiceContext. Reuse one per host process: it keeps a small
    in-memory memo (duplicate ids, recent passes) in front of the journal's state table."""

    def __init__(self, ctx: Any, *, remediation: Any = None, identity: OwnIdentity | None = None,
                 config: EventConfig | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.ctx = ctx
        self._remediation = remediation
        self.identity = identity if identity is not None else own_identity_from_env()
        self.config = config or EventConfig.from_env()
        # Wall-clock time, compared with ARM's event times (not ctx.clock, which the guard uses
        # for maintenance windows and tests may set to another day).
        self._now = now or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._seen: dict[str, str] = {}  # event id -> status (no storage configured)
        self._passes: dict[str, datetime] = {}  # vm key -> read_at of the last finished pass
        self._subjects: dict[str, tuple[datetime, list[str]]] = {}
        self._inflight: dict[str, datetime] = {}  # vm key -> read_at (no storage configured)
        self.stats = {"events": 0, "rejected": 0, "ignored": 0, "duplicate": 0,
                      "coalesced": 0, "deferred": 0, "passes": 0, "remediations": 0,
                      "own_writes": 0,
                      "transient": 0, "gone": 0, "resolution_reads": 0}

    # -- collaborators ---------------------------------------------------------------------
    @property
    def remediation(self):
        if self._remediation is None:
            from shared.services import remediation  # written in parallel; imported late

            self._remediation = remediation
        return self._remediation

    def learn_identity_from_credential(self, credential: Any) -> OwnIdentity:
        """Fill in what settings did not say about our identity from our own ARM token."""
        from shared.events import identity_from_jwt

        try:
            token = credential.get_token("https://management.azure.com/.default").token
        except Exception as exc:  # noqa: BLE001 - recognition then relies on settings/journal
            log.warning("could not read our own identity from a token: %s", exc)
            return self.identity
        self.identity = merge_identities(self.identity, identity_from_jwt(token))
        return self.identity

    @property
    def journal(self):
        return getattr(self.ctx, "journal", None)

    def _trigger(self, ev: ResourceEvent | None, event_id: str | None = None) -> Trigger:
        if ev is None:
            return Trigger(TRIGGER_EVENT, event_id)
        return Trigger(TRIGGER_EVENT, ev.event_id, ev.caller.label)

    # -- entry points ----------------------------------------------------------------------
    def handle_batch(self, raws: Iterable[Any]) -> list[EventResult]:
        """Each event in turn (the same path as one trigger invocation per event). A transient
        failure of one event raises only after the others were handled."""
        results, first_error = [], None
        for raw in raws:
            try:
                results.append(self.handle(raw))
            except Exception as exc:  # noqa: BLE001
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error
        return results

    def handle(self, raw: Any) -> EventResult:
        """Handle one event. Raises only for transient failures (so Event Grid retries)."""
        self.stats["events"] += 1
        parsed = parse_event(raw)
        if isinstance(parsed, Rejected):
            return self._rejected(parsed, raw)
        if isinstance(parsed, Ignored):
            self.stats["ignored"] += 1
            log.debug("event %s ignored: %s", parsed.event_id, parsed.reason)
            return EventResult(parsed.event_id, "ignored", parsed.reason,
                               operation=parsed.operation)
        ev = parsed
        claim = self._claim_event(ev)
        if claim is not None:
            return claim
        try:
            result = self._process(ev)
        except Exception as exc:
            if is_transient(exc):
                self.stats["transient"] += 1
                self._release_event(ev)
                if isinstance(exc, DeferredEvent):
                    log.info("event %s (%s %s) deferred: %s", ev.event_id, ev.operation,
                             ev.resource_id, exc)
                    raise
                log.warning("event %s (%s %s): transient failure, Event Grid will retry: %s",
                            ev.event_id, ev.operation, ev.resource_id, _one_line(exc))
                raise
            # Permanent: journal, acknowledge.
            log.error("event %s (%s %s) failed permanently: %s", ev.event_id, ev.operation,
                      ev.resource_id, _one_line(exc))
            result = EventResult(ev.event_id, "failed", _one_line(exc),
                                 operation=ev.operation, resource_id=ev.resource_id)
            self._journal(ev, None, RESULT_FAILED, result, error=_one_line(exc))
        self._finish_event(ev, result)
        log.info("event %s %s %s: %s%s", ev.event_id, ev.operation, ev.resource_id,
                 result.status, f" ({result.reason})" if result.reason else "")
        return result

    # -- rejected / duplicates -------------------------------------------------------------
    def _rejected(self, rej: Rejected, raw: Any) -> EventResult:
        self.stats["rejected"] += 1
        log.warning("event %s rejected: %s", rej.event_id or "(no id)", rej.reason)
        if self.journal is not None:
            excerpt = raw if isinstance(raw, dict | list | str | int | float) else repr(raw)
            try:
                self.journal.append(JournalEntry(
                    action="event-rejected", result=RESULT_SKIPPED,
                    trigger=Trigger(TRIGGER_EVENT, rej.event_id), operation_id=_op_id(),
                    before={"event": excerpt}, error=rej.reason))
            except Exception as exc:  # noqa: BLE001 - a bad event is acknowledged regardless
                log.warning("rejected event %s not journalled: %s", rej.event_id, exc)
        return EventResult(rej.event_id, "rejected", rej.reason)

    def _claim_event(self, ev: ResourceEvent) -> EventResult | None:
        """None = ours to process; else the result for a duplicate."""
        with self._lock:
            memo = self._seen.get(ev.event_id)
            if memo is not None:
                self.stats["duplicate"] += 1
                return EventResult(ev.event_id, "duplicate", f"event already {memo}",
                                   operation=ev.operation, resource_id=ev.resource_id)
            self._seen[ev.event_id] = "processing"
        j = self.journal
        if j is None:
            return None
        data = {"state": "processing", "operation": ev.operation}
        if j.open_record(K_EVENT, ev.resource_id, ev.event_id, operation_id=ev.event_id,
                         data=data, exclusive=True):
            return None
        existing = next((r for r in j.open_records(K_EVENT, ev.resource_id)
                         if r.key == ev.event_id), None)
        state = ((existing.data or {}) if existing else {}).get("state")
        age = (self._now() - existing.since).total_seconds() if existing else 0.0
        if state == "processing" and age > self.config.stale_claim_seconds:
            log.warning("event %s: a claim from %.0f s ago never finished; processing it again",
                        ev.event_id, age)
            j.open_record(K_EVENT, ev.resource_id, ev.event_id, operation_id=ev.event_id,
                          data=data)
            return None
        with self._lock:
            self._seen[ev.event_id] = state or "done"
        self.stats["duplicate"] += 1
        if state == "processing":
            return EventResult(ev.event_id, "in-progress", "another instance is handling it",
                               operation=ev.operation, resource_id=ev.resource_id)
        return EventResult(ev.event_id, "duplicate", "event already handled",
                           operation=ev.operation, resource_id=ev.resource_id)

    def _release_event(self, ev: ResourceEvent) -> None:
        with self._lock:
            self._seen.pop(ev.event_id, None)
        if self.journal is not None:
            try:
                self.journal.close_record(K_EVENT, ev.resource_id, ev.event_id)
            except Exception as exc:  # noqa: BLE001 - the stale-claim rule recovers it
                log.warning("event %s: claim not released: %s", ev.event_id, exc)

    def _finish_event(self, ev: ResourceEvent, result: EventResult) -> None:
        with self._lock:
            self._seen[ev.event_id] = "done"
        if self.journal is not None:
            self.journal.open_record(K_EVENT, ev.resource_id, ev.event_id,
                                     operation_id=ev.event_id,
                                     data={"state": "done", "status": result.status})

    # -- the work --------------------------------------------------------------------------
    def _process(self, ev: ResourceEvent) -> EventResult:
        now = self._now()
        event_time = ev.event_time or now
        own = is_own_write(ev, self.identity)
        reader = StateReader(self.ctx)
        vm_ids, gone_reason = self._resolve(ev, reader, event_time)
        own = own or self._own_by_journal(ev, vm_ids, event_time)
        if own:
            self.stats["own_writes"] += 1
        result = EventResult(ev.event_id, "evaluated", own_write=own, operation=ev.operation,
                             resource_id=ev.resource_id, vm_ids=sorted(vm_ids))
        if not vm_ids:
            self.stats["resolution_reads"] += reader.reads
            result.status = "gone" if gone_reason else "evaluated"
            result.reason = gone_reason or "no VM in scope"
            if gone_reason:
                self.stats["gone"] += 1
                self._journal(ev, None, RESULT_SKIPPED, result)
            return result
        found = [self._claim_pass(v, event_time) for v in sorted(vm_ids)]
        claims = [c for c in found if isinstance(c, _PassClaim)]
        if not claims and any(c is _EXHAUSTED for c in found):
            # Not covered by any pass, and this window's passes are used up: let Event Grid
            # deliver it again later (10 s, 30 s, 1 min, ...), in a later window.
            self.stats["deferred"] += 1
            raise DeferredEvent(f"{sum(c is _EXHAUSTED for c in found)} VM(s) had their passes "
                                f"for this {self.config.window_seconds:.0f} s window; retry later")
        if not claims:
            self.stats["coalesced"] += 1
            self.stats["resolution_reads"] += reader.reads
            result.status = "coalesced"
            result.reason = "a pass that read state after this change covers it"
            return result
        try:
            self._evaluate(ev, reader, [c.vm_id for c in claims], own, result)
        except BaseException:
            for c in claims:
                self._release_pass(c)
            raise
        finally:
            self.stats["resolution_reads"] += reader.reads
        for c in claims:
            self._finish_pass(c)
        if len(claims) < len(vm_ids):
            result.reason = f"{len(vm_ids) - len(claims)} VM(s) covered by another pass"
        return result

    # -- scope ------------------------------------------------------------------------------
    def _resolve(self, ev: ResourceEvent, reader: StateReader,
                 event_time: datetime) -> tuple[set[str], str | None]:
        """Scope -> VM ids, from current state. (vms, reason-when-the-subject-is-gone)"""
        memo = self._subject_memo(ev, event_time)
        if memo is not None:
            return set(memo), None
        read_at = self._now()
        vms: set[str] = set()
        gone: str | None = None
        if ev.resource_type == T_VM:
            vms.add(ev.resource_id)
        elif ev.resource_type == T_NIC:
            nic = None if ev.is_delete else reader.get(ev.resource_id)
            if nic is None:
                gone = "network interface no longer exists"
                vms |= self._vms_for_missing_nic(ev, reader)
            else:
                vm = _nic_vm(nic)
                if vm:
                    vms.add(vm)
                elif _is_managed(nic, self.ctx.settings.managed_tag):
                    vms |= self._vms_for_missing_nic(ev, reader)  # a detached managed NIC
                for lb_id in {_lb_of_pool(p) for p in _nic_pool_ids(nic)} - {None}:
                    lb = reader.get(lb_id)
                    pools = [p for p in _nic_pool_ids(nic) if arm_ids.same(_lb_of_pool(p), lb_id)]
                    vms |= self._vms_of_nics(_lb_member_nics(lb, pools), reader)
        elif ev.resource_type == T_LB:
            lb = None if ev.is_delete else reader.get(ev.resource_id)
            if lb is None:
                gone = "load balancer no longer exists"
            else:
                vms |= self._vms_of_nics(_lb_member_nics(lb), reader)
            # VMs holding verified routes may have routes to this LB's (removed) frontends.
            vms |= self._verified_vms(ev.subscription_id)
        if gone and vms:
            gone = None  # the subject is gone, but VMs it affected are evaluated
        self._remember_subject(ev, read_at, sorted(vms))
        return vms, gone

    def _vms_of_nics(self, nic_ids: list[str], reader: StateReader) -> set[str]:
        if len(nic_ids) > self.config.bulk_read_threshold and not all(
                reader.known(n) for n in nic_ids):
            reader.bulk(arm_ids.parse(nic_ids[0]).subscription)
        out = set()
        for nic_id in nic_ids:
            vm = _nic_vm(reader.get(nic_id))
            if vm:
                out.add(vm)
        return out

    def _vms_for_missing_nic(self, ev: ResourceEvent, reader: StateReader) -> set[str]:
        """A managed NIC deleted or detached: its VM by the naming convention, else the VMs the
        journal says hold verified routes in that resource group."""
        from shared.risk import secondary_nic_name

        rid = arm_ids.parse(ev.resource_id)
        nic_name = rid.names[0]
        suffix = secondary_nic_name("")
        out: set[str] = set()
        if nic_name.lower().endswith(suffix.lower()) and len(nic_name) > len(suffix):
            vm_id = arm_ids.build(rid.subscription, rid.resource_group, "Microsoft.Compute",
                                  "virtualMachines", nic_name[: -len(suffix)])
            if reader.get(vm_id) is not None:
                out.add(vm_id)
        if not out:
            rg = f"/subscriptions/{rid.subscription}/resourcegroups/{rid.resource_group}/".lower()
            out |= {v for v in self._verified_vms(ev.subscription_id)
                    if arm_ids.normalize(v).startswith(rg)}
        return out

    def _verified_vms(self, subscription_id: str) -> set[str]:
        if self.journal is None:
            return set()
        prefix = f"/subscriptions/{subscription_id}/".lower()
        return {r.vm_id for r in self.journal.open_records(OPEN_VERIFIED_ROUTE)
                if arm_ids.normalize(r.vm_id).startswith(prefix)}

    def _subject_memo(self, ev: ResourceEvent, event_time: datetime) -> list[str] | None:
        """VMs a resolution of this subject found, if it read state after this change."""
        if ev.resource_type == T_VM:
            return None  # nothing to read
        limit = event_time + timedelta(seconds=self.config.clock_skew_seconds)
        with self._lock:
            found = self._subjects.get(ev.key)
        if found and found[0] >= limit:
            return found[1]
        if self.journal is not None:
            for r in self.journal.open_records(K_SUBJECT, ev.resource_id):
                read_at = _parse_time((r.data or {}).get("read_at"))
                if read_at and read_at >= limit:
                    return list((r.data or {}).get("vms") or [])
        return None

    def _remember_subject(self, ev: ResourceEvent, read_at: datetime, vms: list[str]) -> None:
        if ev.resource_type == T_VM:
            return
        with self._lock:
            self._subjects[ev.key] = (read_at, vms)
        if self.journal is not None:
            self.journal.open_record(K_SUBJECT, ev.resource_id, "", operation_id=ev.event_id,
                                     data={"read_at": read_at.isoformat(), "vms": vms[:200]})

    # -- passes (burst coalescing) ---------------------------------------------------------
    def _bucket(self, at: datetime) -> str:
        return f"w{int(at.timestamp() // self.config.window_seconds)}"

    def _claim_pass(self, vm_id: str, event_time: datetime) -> _PassClaim | object | None:
        """A claim when this event must evaluate the VM; None when a pass that read state after
        the change (finished, or running elsewhere) covers it; _EXHAUSTED when neither."""
        key = arm_ids.normalize(vm_id)
        limit = event_time + timedelta(seconds=self.config.clock_skew_seconds)
        with self._lock:
            last = self._passes.get(key)
        if last is not None and last >= limit:
            return None
        now = self._now()
        j = self.journal
        if j is None:  # no storage: this process is the only one that can know
            with self._lock:
                running = self._inflight.get(key)
                if running is not None and running >= limit:
                    return None
                self._inflight[key] = now
            return _PassClaim(vm_id, key, None, now)
        if self._covered(j.open_records(K_EVAL, vm_id), limit, now):
            return None
        # First wins per window; one follow-up pass per window for changes made after it read.
        for bucket in (self._bucket(now), self._bucket(now) + "-2"):
            read_at = self._now()
            if j.open_record(K_EVAL, vm_id, bucket, operation_id=_op_id(),
                             data={"state": "running", "read_at": read_at.isoformat()},
                             exclusive=True):
                return _PassClaim(vm_id, key, bucket, read_at)
            # Lost the race for this bucket: the winner's pass may cover this change.
            if self._covered([r for r in j.open_records(K_EVAL, vm_id) if r.key == bucket],
                             limit, self._now()):
                return None
        return _EXHAUSTED  # two passes in this window already: defer to a later window

    def _covered(self, records, limit: datetime, now: datetime) -> bool:
        """Does a pass that read state at or after `limit` (finished, or running and not
        abandoned) exist among these records?"""
        for r in records:
            d = r.data or {}
            read_at = _parse_time(d.get("read_at"))
            if read_at is None or read_at < limit:
                continue
            if d.get("state") == "done" or \
                    (now - read_at).total_seconds() < self.config.stale_claim_seconds:
                return True
        return False

    def _finish_pass(self, claim: _PassClaim) -> None:
        with self._lock:
            self._inflight.pop(claim.key, None)
            last = self._passes.get(claim.key)
            if last is None or last < claim.read_at:
                self._passes[claim.key] = claim.read_at
        if self.journal is not None and claim.bucket:
            self.journal.open_record(K_EVAL, claim.vm_id, claim.bucket, operation_id=_op_id(),
                                     data={"state": "done",
                                           "read_at": claim.read_at.isoformat()})

    def _release_pass(self, claim: _PassClaim) -> None:
        with self._lock:
            self._inflight.pop(claim.key, None)
        if self.journal is not None and claim.bucket:
            try:
                self.journal.close_record(K_EVAL, claim.vm_id, claim.bucket)
            except Exception as exc:  # noqa: BLE001 - becomes stale and is ignored later
                log.warning("pass claim for %s not released: %s", claim.vm_id, exc)

    # -- own writes --------------------------------------------------------------------------
    def _own_by_journal(self, ev: ResourceEvent, vm_ids: set[str], event_time: datetime) -> bool:
        """When the claims do not name the caller (or we do not know who we are): did our
        remediation write to one of these VMs around the event's time?"""
        caller_known = bool(ev.caller.object_id or ev.caller.app_id or ev.caller.mi_resource_id)
        if self.identity and caller_known:
            return False  # the claims decide: someone else did it
        if self.journal is None:
            return False
        window = timedelta(seconds=self.config.own_write_journal_seconds)
        skew = timedelta(seconds=self.config.clock_skew_seconds)
        for vm in sorted(vm_ids)[:10]:
            for entry in self.journal.history(vm, 20):
                if entry.action in OWN_JOURNAL_ACTIONS_EXCLUDED:
                    continue
                if entry.result not in ("started", "succeeded"):
                    continue
                if event_time - window <= entry.timestamp <= event_time + skew:
                    return True
        return False

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, ev: ResourceEvent, reader: StateReader, vm_ids: list[str], own: bool,
                  result: EventResult) -> None:
        from shared.azure.discovery import discover_scope, discover_subscription
        from shared.risk import evaluate
        from shared.topology import Topology

        self.stats["passes"] += len(vm_ids)
        settings = self.ctx.settings
        if len(vm_ids) > self.config.bulk_read_threshold:
            # Many VMs: a few paged listings cost less than one GET per resource.
            subs = sorted({arm_ids.parse(v).subscription.lower() for v in vm_ids})
            resources: list[dict] = []
            for sub in subs:
                resources += discover_subscription(self.ctx.clients(sub), include_health=False,
                                                   include_skus=False)["resources"]
        else:
            snapshot = discover_scope(self.ctx.clients, vm_ids=vm_ids, include_health=False)
            resources = snapshot["resources"]
        topology = Topology.from_documents(resources)
        present = [v for v in vm_ids if topology.vm(v) is not None]
        for vm_id in sorted(set(vm_ids) - set(present)):
            self.stats["gone"] += 1
            result.drift.setdefault(vm_id, []).append("vm_gone")
            self._journal(ev, vm_id, RESULT_SKIPPED, result, note="VM no longer exists")
        if not present:
            result.status = "gone"
            result.reason = "no VM in scope exists any more"
            return
        result.evaluated = sorted(present)
        verified = self.journal.verified_routes() if self.journal is not None else frozenset()
        evaluation = evaluate(topology, settings, verified)
        trigger = self._trigger(ev)
        for vm_id in present:
            self._evaluate_vm(ev, vm_id, topology, evaluation, verified, own, trigger, result)

    def _evaluate_vm(self, ev, vm_id, topology, evaluation, verified, own, trigger,
                     result: EventResult) -> None:
        settings = self.ctx.settings
        vm = topology.vm(vm_id)
        if vm is None:
            return
        findings = [f for f in evaluation.for_vm(vm_id) if f.severity in ACTIONABLE]
        result.findings += [f.id for f in findings]
        managed = [n for n in topology.nics_of_vm(vm.id)
                   if n.key != vm.primary_nic_key and n.has_tag(settings.managed_tag)]
        vm_key = arm_ids.normalize(vm.id)
        verified_ips = {ip for (v, ip) in verified if v == vm_key}
        current_ips = {f.frontend_ip for f in evaluation.for_vm(vm_id) if f.frontend_ip}
        current_ips |= {n.frontend_ip for n in evaluation.not_affected
                        if arm_ids.same(n.vm_id, vm_id) and n.frontend_ip}
        drift: list[str] = []
        if verified_ips and not managed:
            drift.append("managed_nic_missing")
        if managed and any(cfg.pool_keys for n in managed for cfg in n.ip_configs):
            drift.append("managed_nic_in_pool")
        stale = sorted(verified_ips - current_ips)
        if stale:
            drift.append("stale_routes:" + ",".join(stale))
        new_vips = sorted({f.frontend_ip for f in findings if f.frontend_ip} - verified_ips)
        if managed and new_vips:
            drift.append("routes_missing:" + ",".join(new_vips))
        guest_check = (managed and vm.is_running and ev.is_action
                       and ev.operation.lower().endswith(GUEST_ACTIONS))
        if guest_check:
            drift.append("guest_routes_unverified_after_" + ev.operation.rsplit("/", 2)[-2])
        if drift:
            result.drift[vm.id] = drift

        if own:
            note = ("own write: state evaluated, no remediation started"
                    + (f"; drift left to the sweep: {', '.join(drift)}" if drift else ""))
            self._journal(ev, vm.id, RESULT_SUCCEEDED, result, note=note, drift=drift,
                          findings=[f.id for f in findings])
            return
        notifier = getattr(self.ctx, "notifier", None)
        if notifier is not None:
            for f in findings:
                if f.frontend_ip not in verified_ips and self._first_notice(f):
                    notifier.finding_opened(f, trigger)
        action = None
        if settings.mode == "audit":
            action = None
        elif managed and "managed_nic_in_pool" in drift:
            action = "apply"  # the NIC side needs work (the plan takes it out of the pool)
        elif managed and (new_vips or stale or guest_check):
            action = "ensure_guest_routes"
        elif findings:
            action = "apply"
        outcome = None
        if action is not None:
            self.stats["remediations"] += 1
            if action == "apply":
                outcome = self.remediation.apply(self.ctx, vm.id, trigger)
            else:
                from shared.services.sweep import close_stale_routes

                outcome = self.remediation.ensure_guest_routes(self.ctx, vm.id, trigger)
                cleaned = close_stale_routes(self.ctx, vm.id, stale, vm.os_type, outcome)
                if cleaned:
                    drift.append("stale_routes_cleaned:" + ",".join(cleaned))
            status = str(outcome_field(outcome, "status") or "unknown")
            result.remediations.append({"vm_id": vm.id, "call": action, "status": status})
            if notifier is not None:
                notifier.outcome(outcome, trigger, vm_id=vm.id,
                                 drift=drift if action == "ensure_guest_routes" else ())
        note = (f"{action}: {outcome_field(outcome, 'status')}" if action else
                ("audit mode: no remediation" if settings.mode == "audit" and findings
                 else "nothing to do"))
        self._journal(ev, vm.id, RESULT_SUCCEEDED, result, note=note, drift=drift,
                      findings=[f.id for f in findings])

    def _first_notice(self, finding) -> bool:
        """Publish 'finding opened' once per finding (state record, first wins)."""
        if self.journal is None:
            return True
        return self.journal.open_record("finding-notified", finding.vm_id, finding.id,
                                        operation_id=_op_id(), exclusive=True)

    # -- journal -----------------------------------------------------------------------------
    def _journal(self, ev: ResourceEvent, vm_id: str | None, result_code: str,
                 result: EventResult, *, note: str = "", error: str | None = None,
                 **after: Any) -> None:
        if self.journal is None:
            return
        self.journal.append(JournalEntry(
            action="event", result=result_code, trigger=self._trigger(ev),
            operation_id=ev.event_id, vm_id=vm_id, step=ev.operation,
            before=ev.summary(),
            after={"status": result.status, "own_write": result.own_write, "note": note,
                   **after},
            error=error))


# --------------------------------------------------------------------------- helpers

def _op_id() -> str:
    return uuid.uuid4().hex


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- module API

_default: EventProcessor | None = None
_default_lock = threading.Lock()


def processor_from_env() -> EventProcessor:
    """One processor per host process (settings, storage and identity from the environment)."""
    global _default
    with _default_lock:
        if _default is None:
            from shared.services.context import ServiceContext
            from shared.services.notify import Notifier
            from shared.settings import Settings

            settings = Settings.from_env()
            ctx = ServiceContext.from_settings(settings)
            ctx.notifier = ctx.notifier or Notifier.from_settings(settings)
            _default = EventProcessor(ctx)
            if not _default.identity.principal_id:
                # Settings do not name our identity: read it from our own ARM token.
                from azure.identity import DefaultAzureCredential

                _default.learn_identity_from_credential(
                    ctx.credential or DefaultAzureCredential(
                        exclude_interactive_browser_credential=True))
        return _default


def handle_event(raw: Any, processor: EventProcessor | None = None) -> EventResult:
    """The Event Grid trigger's one call."""
    return (processor or processor_from_env()).handle(raw)


def prune_state(ctx: Any, *, older_than: timedelta = timedelta(hours=25)) -> int:
    """Close event/pass/subject records older than Event Grid's retry period (24 h): called by
    the sweep. Returns how many were closed."""
    j = getattr(ctx, "journal", None)
    if j is None:
        return 0
    cutoff = datetime.now(UTC) - older_than
    closed = 0
    for kind in (K_EVENT, K_EVAL, K_SUBJECT):
        for r in j.open_records(kind):
            if r.since < cutoff:
                j.close_record(kind, r.vm_id, r.key)
                closed += 1
    return closed
