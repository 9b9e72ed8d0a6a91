"""The fleet sweep's three triggers, each one call from function_app.py: the timer, the
sweep queue and its poison queue. Settings, storage and notifications come from the
environment; each invocation has the sweep's own budget (`HAIRPIN_SWEEP_BUDGET_SECONDS`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from shared.core.fleet_sweep import SweepItem
from shared.core.vocab import ItemOutcome
from shared.services.context import ServiceContext, build_context
from shared.services.sweep import fleet
from shared.settings import Settings
from shared.storage.queues import queue_sender, queue_source
from shared.storage.sweeps import SweepRecord

__all__ = ["sweep_sender", "start_from_env", "item_from_env", "poisoned_from_env"]

log = logging.getLogger("hairpin.sweep")


def sweep_sender(ctx: ServiceContext, environ: Mapping[str, str] | None = None) -> fleet.Send:
    """Sends onto the sweep queue the queue trigger reads; its messages expire with the
    sweep's maximum age. The queue is created on first use."""
    source = queue_source(ctx.settings, ctx.storage, environ)
    if not source:
        raise RuntimeError("the fleet sweep puts its work items on a queue, and no storage is "
                           "configured (AzureWebJobsStorage or HAIRPIN_STORAGE_CONNECTION)")
    clients: list[fleet.Send] = []

    def send(message: dict, delay: int | None = None) -> None:
        if not clients:
            clients.append(queue_sender(source, ctx.settings.storage_names.sweep_queue,
                                        time_to_live=int(ctx.settings.sweep_max_age_seconds)))
        clients[0](message, delay)

    return send


def _context() -> ServiceContext:
    settings = Settings.from_env()
    return build_context(settings, budget_seconds=settings.sweep_budget_seconds)


def _item(body: bytes | str) -> SweepItem | None:
    try:
        return SweepItem.from_message(json.loads(body))
    except (ValueError, KeyError, TypeError) as exc:
        # Not ours (or damaged): acknowledged, never retried into the poison queue.
        log.error("sweep queue message ignored: %s", exc)
        return None


def start_from_env() -> SweepRecord | None:
    """The timer: a new sweep's items on the queue (None: the previous one still runs)."""
    ctx = _context()
    return fleet.start(ctx, sweep_sender(ctx))


def item_from_env(body: bytes | str) -> ItemOutcome | None:
    """The sweep queue trigger: one work item. Raises on failures worth retrying (the host
    delivers the message again after host.json's visibilityTimeout)."""
    item = _item(body)
    if item is None:
        return None
    ctx = _context()
    return fleet.run_item(ctx, item, sweep_sender(ctx))


def poisoned_from_env(body: bytes | str, dequeue_count: int | None) -> ItemOutcome | None:
    """The poison queue trigger: an item that failed on every delivery is recorded as an
    error, so that its sweep still completes (and says which item failed)."""
    item = _item(body)
    if item is None:
        return None
    return fleet.record_failed(_context(), item,
                               f"failed on each of {dequeue_count or 'its'} deliveries; "
                               "see the function log")
