"""Event-driven re-evaluation: one Event Grid event (or a batch) -> current state -> remediation.

Delivery is at least once and unordered (docs/azure-facts.md), so:

* **Never trust the payload.** The event only says which resource changed; the scope it maps
  to (`shared.core.events.scope_of`) is expanded and evaluated from documents read *now*. An
  old event arriving after a newer change therefore evaluates the newer state.
* **Duplicates** (same event id) are recognised by a first-wins claim in the journal's state
  table (`ClaimStore`, kind `event`).
* **Bursts** (many writes to one VM) give one evaluation pass per VM: a pass claims the VM for
  the current window (kind `event-eval`, first wins) and records when it read state; an event
  whose change happened before that read (`event_time + clock_skew <= read_at`) is covered by
  it and is acknowledged as `coalesced`. A change after the read gets one more pass. At most
  one remediation per VM follows from one pass.
* **Transient failures** (throttling, 5xx, timeouts, storage unreachable, a busy lock) release
  the claims and raise, so Event Grid delivers the event again (10 s, 30 s, 1 m, ...).
  **Permanent** ones (resource gone, malformed payload, no permission) are journalled and
  acknowledged.
* **Remediation is handed off**: an event decides, puts the work on the queue worker's queue
  (`shared.services.remediation.work`) and is answered in seconds; Event Grid would deliver it
  again after 30 s without an answer, and a fix takes minutes.
* **Our own writes** (the caller is the function's managed identity, or, when the claims do not
  say, the journal shows our remediation writing to that VM at that time) are still evaluated
  (read-only), but never start a remediation: no loop. Drift they reveal is journalled and left
  to the sweep, which runs under the same guard.

`EventProcessor` composes the parts per invocation: `ClaimStore` (over the process's
`EventMemo`), `ScopeResolver` and `EventEvaluator`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential

from shared.core.events import (
    DeferredEvent,
    EventConfig,
    EventResult,
    Ignored,
    OwnIdentity,
    Rejected,
    ResourceEvent,
    identity_from_jwt,
    identity_from_settings,
    is_own_write,
    merge_identities,
    parse_event,
)
from shared.core.events.model import one_line
from shared.core.journal import JournalEntry, Trigger
from shared.core.scope import in_scope
from shared.core.vocab import EventStatus, JournalAction, JournalResult, TriggerKind
from shared.services import remediation as remediation_service
from shared.services.context import ServiceContext, build_context
from shared.services.events.claims import ClaimStore, EventMemo, PassClaim, PassRefused
from shared.services.events.evaluation import EventEvaluator
from shared.services.events.scope import ScopeResolver, StateReader, is_transient
from shared.services.remediation.work import Handoff, queue_handoff
from shared.settings import FUNCTION_BUDGET_S, Settings

__all__ = ["EventProcessor", "EventHost", "handle_event", "install_host", "default_host"]

log = logging.getLogger("hairpin.events")

STAT_NAMES = ("events", "rejected", "ignored", "duplicate", "coalesced", "deferred", "passes",
              "remediations", "own_writes", "transient", "gone", "resolution_reads")


class EventProcessor:
    """Handle events against one ServiceContext. The memo (duplicate ids, recent passes) in
    front of the journal's state table is the host process's: share one `EventMemo`."""

    def __init__(self, ctx: ServiceContext, *, remediation: Any = remediation_service,
                 identity: OwnIdentity | None = None, config: EventConfig | None = None,
                 memo: EventMemo | None = None, handoff: Handoff | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.ctx = ctx
        self.identity = identity if identity is not None else identity_from_settings(
            ctx.settings)
        self.config = config or EventConfig.from_settings(ctx.settings)
        # Wall-clock time, compared with ARM's event times (not ctx.clock, which the guard uses
        # for maintenance windows and tests may set to another day).
        self.now = now or (lambda: datetime.now(UTC))
        self.stats = dict.fromkeys(STAT_NAMES, 0)
        self.claims = ClaimStore(ctx.journal, self.config, memo or EventMemo(), self.now,
                                 self.stats)
        self.scope = ScopeResolver(ctx, self.config, self.claims, self.identity, self.now)
        # handoff None: remediations run inline, through `remediation` (the CLI, tests); the
        # Functions host hands them to the queue worker (EventHost.processor).
        self.evaluator = EventEvaluator(ctx, self.config, remediation, self.stats, self._journal,
                                        handoff)

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
            return EventResult(parsed.event_id, EventStatus.IGNORED, parsed.reason,
                               operation=parsed.operation)
        ev = parsed
        if not in_scope(ev.subscription_id, self.ctx.settings.subscriptions):
            self.stats["ignored"] += 1
            return EventResult(ev.event_id, EventStatus.IGNORED, "subscription outside "
                               "HAIRPIN_SUBSCRIPTIONS", operation=ev.operation)
        claim = self.claims.claim_event(ev)
        if claim is not None:
            return claim
        try:
            result = self._process(ev)
        except Exception as exc:
            if is_transient(exc):
                self._transient(ev, exc)
                raise
            # Permanent: journal, acknowledge.
            log.error("event %s (%s %s) failed permanently: %s", ev.event_id, ev.operation,
                      ev.resource_id, one_line(exc))
            result = EventResult(ev.event_id, EventStatus.FAILED, one_line(exc),
                                 operation=ev.operation, resource_id=ev.resource_id)
            self._journal(ev, None, JournalResult.FAILED, result, error=one_line(exc))
        self.claims.finish_event(ev, result)
        log.info("event %s %s %s: %s%s", ev.event_id, ev.operation, ev.resource_id,
                 result.status, f" ({result.reason})" if result.reason else "")
        return result

    def _transient(self, ev: ResourceEvent, exc: Exception) -> None:
        self.stats["transient"] += 1
        self.claims.release_event(ev)
        if isinstance(exc, DeferredEvent):
            log.info("event %s (%s %s) deferred: %s", ev.event_id, ev.operation,
                     ev.resource_id, exc)
        else:
            log.warning("event %s (%s %s): transient failure, Event Grid will retry: %s",
                        ev.event_id, ev.operation, ev.resource_id, one_line(exc))

    def _trigger(self, ev: ResourceEvent) -> Trigger:
        return Trigger(TriggerKind.EVENT, ev.event_id, ev.caller.label)

    def _rejected(self, rej: Rejected, raw: Any) -> EventResult:
        self.stats["rejected"] += 1
        log.warning("event %s rejected: %s", rej.event_id or "(no id)", rej.reason)
        if self.ctx.journal is not None:
            excerpt = raw if isinstance(raw, dict | list | str | int | float) else repr(raw)
            try:
                self.ctx.journal.append(JournalEntry(
                    action=JournalAction.EVENT_REJECTED, result=JournalResult.SKIPPED,
                    trigger=Trigger(TriggerKind.EVENT, rej.event_id),
                    operation_id=uuid.uuid4().hex, before={"event": excerpt},
                    error=rej.reason))
            except Exception as exc:  # noqa: BLE001 - a bad event is acknowledged regardless
                log.warning("rejected event %s not journalled: %s", rej.event_id, exc)
        return EventResult(rej.event_id, EventStatus.REJECTED, rej.reason)

    # -- the work --------------------------------------------------------------------------
    def _process(self, ev: ResourceEvent) -> EventResult:
        # A change cannot happen after now: a later time (up to year 9999) would also leave no
        # room for the skew and window arithmetic. None or later: evaluate as of now.
        now = self.now()
        event_time = min(ev.event_time or now, now)
        reader = StateReader(self.ctx)
        try:
            vm_ids, gone_reason = self.scope.resolve(ev, reader, event_time)
            own = is_own_write(ev, self.identity) or self.scope.own_by_journal(
                ev, vm_ids, event_time)
            if own:
                self.stats["own_writes"] += 1
            result = EventResult(ev.event_id, EventStatus.EVALUATED, own_write=own,
                                 operation=ev.operation, resource_id=ev.resource_id,
                                 vm_ids=sorted(vm_ids))
            if not vm_ids:
                result.status = EventStatus.GONE if gone_reason else EventStatus.EVALUATED
                result.reason = gone_reason or "no VM in scope"
                if gone_reason:
                    self.stats["gone"] += 1
                    self._journal(ev, None, JournalResult.SKIPPED, result)
                return result
            return self._passes(ev, vm_ids, event_time, own, result)
        finally:
            self.stats["resolution_reads"] += reader.reads

    def _passes(self, ev: ResourceEvent, vm_ids: set[str], event_time: datetime, own: bool,
                result: EventResult) -> EventResult:
        found = [self.claims.claim_pass(v, event_time) for v in sorted(vm_ids)]
        claims = [c for c in found if isinstance(c, PassClaim)]
        exhausted = sum(c is PassRefused.EXHAUSTED for c in found)
        if not claims and exhausted:
            # Not covered by any pass, and this window's passes are used up: let Event Grid
            # deliver it again later (10 s, 30 s, 1 min, ...), in a later window.
            self.stats["deferred"] += 1
            raise DeferredEvent(f"{exhausted} VM(s) had their passes for this "
                                f"{self.config.window_seconds:.0f} s window; retry later")
        if not claims:
            self.stats["coalesced"] += 1
            result.status = EventStatus.COALESCED
            result.reason = PassRefused.COVERED.value
            return result
        try:
            self.evaluator.evaluate(ev, [c.vm_id for c in claims], own, self._trigger(ev),
                                    result)
        except BaseException:
            for c in claims:
                self.claims.release_pass(c)
            raise
        for c in claims:
            self.claims.finish_pass(c)
        if len(claims) < len(vm_ids):
            result.reason = f"{len(vm_ids) - len(claims)} VM(s) covered by another pass"
        return result

    def _journal(self, ev: ResourceEvent, vm_id: str | None, result_code: JournalResult,
                 result: EventResult, *, note: str = "", error: str | None = None,
                 **after: Any) -> None:
        if self.ctx.journal is None:
            return
        self.ctx.journal.append(JournalEntry(
            action=JournalAction.EVENT, result=result_code, trigger=self._trigger(ev),
            operation_id=ev.event_id, vm_id=vm_id, step=ev.operation, before=ev.summary(),
            after={"status": result.status, "own_write": result.own_write, "note": note,
                   **after},
            error=error))


# --------------------------------------------------------------------------- the host process

@dataclass
class EventHost:
    """What one Functions host process keeps between events: the memo, its own identity and
    credential. Each event gets a processor on a context of its own (its own deadline)."""

    settings: Settings
    identity: OwnIdentity
    credential: TokenCredential | None = None
    memo: EventMemo = field(default_factory=EventMemo)
    budget_seconds: float = FUNCTION_BUDGET_S

    @classmethod
    def from_env(cls) -> EventHost:
        from azure.identity import DefaultAzureCredential

        settings = Settings.from_env()
        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        identity = identity_from_settings(settings)
        if not identity.principal_id:
            # Settings do not name our identity: read it from our own ARM token.
            identity = merge_identities(identity, _identity_of(credential))
        return cls(settings, identity, credential)

    def processor(self) -> EventProcessor:
        ctx = build_context(self.settings, budget_seconds=self.budget_seconds,
                            credential=self.credential)
        return EventProcessor(ctx, identity=self.identity, memo=self.memo,
                              handoff=queue_handoff(ctx))


def _identity_of(credential: TokenCredential) -> OwnIdentity:
    try:
        token = credential.get_token("https://management.azure.com/.default").token
    except Exception as exc:  # noqa: BLE001 - recognition then relies on settings/journal
        log.warning("could not read our own identity from a token: %s", exc)
        return OwnIdentity()
    return identity_from_jwt(token)


_host: EventHost | EventProcessor | None = None
_host_lock = threading.Lock()


def install_host(host: EventHost | EventProcessor | None) -> None:
    """Use this host (or one fixed processor, in tests) for the trigger's events; None: build
    one from the environment at the next event."""
    global _host
    with _host_lock:
        _host = host


def default_host() -> EventHost | EventProcessor:
    global _host
    with _host_lock:
        if _host is None:
            _host = EventHost.from_env()
        return _host


def handle_event(raw: Any, processor: EventProcessor | None = None) -> EventResult:
    """The Event Grid trigger's one call."""
    if processor is None:
        host = default_host()
        processor = host if isinstance(host, EventProcessor) else host.processor()
    return processor.handle(raw)
