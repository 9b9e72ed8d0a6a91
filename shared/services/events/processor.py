"""Event-driven re-evaluation: one Event Grid event (or a batch) -> current state -> remediation.

Delivery is at least once and unordered (AZURE-FACTS section 4), so:

* **Never trust the payload.** The event only says which resource changed; the scope it maps to
  (`shared.core.events.parse.scope_of`) is expanded and evaluated from documents read *now*. An old event
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

Parts: `shared.services.events.claims` (duplicates, burst passes, subject memos on the state
table), `shared.services.events.scope` (reading state, scope, own writes),
`shared.services.events.evaluation` (evaluation and the remediation call); data in the pure
`shared.core.events.model`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from shared.core.events import (
    DeferredEvent,
    EventConfig,
    EventResult,
    Ignored,
    OwnIdentity,
    Rejected,
    ResourceEvent,
    is_own_write,
    merge_identities,
    own_identity_from_env,
    parse_event,
)
from shared.core.events.model import _one_line, _op_id
from shared.core.journal import RESULT_FAILED, RESULT_SKIPPED, TRIGGER_EVENT, JournalEntry, Trigger
from shared.services.events.claims import _EXHAUSTED, EventClaims, _PassClaim
from shared.services.events.evaluation import EventEvaluation
from shared.services.events.scope import EventScope, StateReader, is_transient

log = logging.getLogger("hairpin.events")


# --------------------------------------------------------------------------- the processor

class EventProcessor(EventClaims, EventScope, EventEvaluation):
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
        from shared.core.events import identity_from_jwt

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

    # -- rejected --------------------------------------------------------------------------
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
