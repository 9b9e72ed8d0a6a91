"""What every service needs, composed once per entry point: settings, Azure clients, storage,
notifications and the invocation's time budget.

`build_context(settings, budget_seconds=...)` is the one composition root: every trigger, the
CLI and the fix API's queue worker build their context through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.settings import Settings

if TYPE_CHECKING:  # adapters are imported when first used: an offline audit loads no SDK
    from azure.core.credentials import TokenCredential

    from shared.azure.clients import AzureClients
    from shared.services.log_analytics import LogSink
    from shared.services.notify import Notifier
    from shared.storage.clients import StorageClients
    from shared.storage.journal import Journal
    from shared.storage.locks import LockManager
    from shared.storage.reports import ReportStore
    from shared.storage.sweeps import SweepTable

__all__ = ["ServiceContext", "build_context", "DEADLINE_MARGIN_S"]

DEADLINE_MARGIN_S = 30.0  # stop before a step when less than this is left of the budget


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServiceContext:
    """Settings + adapters. Build it with `build_context`; tests may set its parts directly
    (the emulator's clients, Azurite storage under the test's own names)."""

    settings: Settings
    credential: TokenCredential | None = None
    deadline: float | None = None  # time.monotonic() after which no retry sleeps, no step starts
    polling_interval: float | None = None
    journal: Journal | None = None
    locks: LockManager | None = None
    reports: ReportStore | None = None
    sweeps: SweepTable | None = None  # fleet sweeps: plans, item results, summaries
    notifier: Notifier | None = None
    logs: LogSink | None = None  # Log Analytics rows (findings, outcomes, drift)
    storage: StorageClients | None = None
    clock: Callable[[], datetime] = _utc_now  # the guard's "now" (maintenance windows)
    run_command_backoff: float = 1.0  # first wait after "another Run Command is running" (409)
    agent_poll_interval: float = 10.0  # between reads of a started VM's agent status
    deadline_margin: float = DEADLINE_MARGIN_S
    _clients: dict[str, AzureClients] = field(default_factory=dict, repr=False)

    def attach_storage(self, storage: StorageClients | str) -> ServiceContext:
        """Journal, locks and reports on these StorageClients (or a connection string)."""
        from shared.storage.clients import StorageClients
        from shared.storage.journal import Journal
        from shared.storage.locks import LockManager
        from shared.storage.reports import ReportStore
        from shared.storage.sweeps import SweepTable

        if isinstance(storage, str):
            storage = StorageClients.from_connection_string(storage)
        s = self.settings.storage_names
        self.storage = storage
        self.journal = Journal(storage.table, table=s.journal_table,
                               state_table=s.state_table).ensure()
        self.locks = LockManager(storage.blob, container=s.lock_container,
                                 lease_seconds=self.settings.lock_lease_seconds).ensure()
        self.reports = ReportStore(storage.blob, container=s.report_container).ensure()
        self.sweeps = SweepTable(storage.table, table=s.sweep_table).ensure()
        return self

    def clients(self, subscription_id: str) -> AzureClients:
        key = subscription_id.lower()
        if key not in self._clients:
            from shared.azure.clients import AzureClients

            self._clients[key] = AzureClients(
                subscription_id, arm_endpoint=self.settings.arm_endpoint,
                credential=self.credential, polling_interval=self.polling_interval,
                deadline=self.deadline, metrics_endpoint=self.settings.metrics_endpoint,
                health_metric_threshold=self.settings.health_metric_threshold)
        return self._clients[key]

    @property
    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


def build_context(settings: Settings, *, budget_seconds: float | None = None,
                  environ: Mapping[str, str] | None = None, offline: bool = False,
                  credential: TokenCredential | None = None) -> ServiceContext:
    """The context of one invocation. Storage from the connection string in settings, else from
    the Functions identity-based setting (`AzureWebJobsStorage__accountName`, no keys), else
    none; notifications when a topic is configured; Log Analytics rows when a data collection
    endpoint and rule are; a deadline `budget_seconds` from now (None: no deadline, as on the
    command line). `offline` (a snapshot audit): no storage, no notifications, no rows."""
    ctx = ServiceContext(settings, credential=credential,
                         deadline=None if budget_seconds is None
                         else time.monotonic() + budget_seconds)
    if offline:
        return ctx
    from shared.services.log_analytics import LogSink
    from shared.services.notify import Notifier
    from shared.storage.clients import StorageClients

    if settings.storage_connection:
        ctx.attach_storage(StorageClients.from_connection_string(settings.storage_connection))
    elif StorageClients.configured_in(environ):
        ctx.attach_storage(StorageClients.from_env(environ))
    ctx.notifier = Notifier.from_settings(settings)
    ctx.logs = LogSink.from_settings(settings, credential)
    return ctx
