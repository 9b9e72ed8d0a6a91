"""What every service needs, built once per entry point: settings, Azure clients, storage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.azure.clients import AzureClients
from shared.settings import Settings


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServiceContext:
    """Settings + adapters. Tests build it from the emulator and Azurite; triggers and the CLI
    from the environment (`from_settings`). Storage parts are None when no storage is set."""

    settings: Settings
    credential: object | None = None
    deadline: float | None = None  # time.monotonic() after which no retry may sleep
    polling_interval: float | None = None
    journal: object | None = None  # shared.storage.journal.Journal
    locks: object | None = None  # shared.storage.locks.LockManager
    reports: object | None = None  # shared.storage.reports.ReportStore
    notifier: object | None = None  # shared.services.notify.Notifier
    storage: object | None = None  # shared.storage.clients.StorageClients (blob, table, queue)
    clock: Callable[[], datetime] = _utc_now
    _clients: dict[str, AzureClients] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, environ=None, **kwargs) -> ServiceContext:
        """Storage from the connection string in settings, else from the Functions
        identity-based setting (`AzureWebJobsStorage__accountName`, no keys), else none."""
        from shared.storage.clients import StorageClients

        ctx = cls(settings, **kwargs)
        if ctx.journal is None:
            if settings.storage_connection:
                ctx.attach_storage(StorageClients.from_connection_string(
                    settings.storage_connection))
            elif StorageClients.configured_in(environ):
                ctx.attach_storage(StorageClients.from_env(environ))
        return ctx

    def attach_storage(self, storage) -> ServiceContext:
        """Journal, locks and reports on these StorageClients (or a connection string)."""
        from shared.storage.clients import StorageClients
        from shared.storage.journal import Journal
        from shared.storage.locks import LockManager
        from shared.storage.reports import ReportStore

        if isinstance(storage, str):
            storage = StorageClients.from_connection_string(storage)
        s = self.settings
        self.storage = storage
        self.journal = Journal(storage.table, table=s.journal_table).ensure()
        self.locks = LockManager(storage.blob, container=s.lock_container,
                                 lease_seconds=s.lock_lease_seconds).ensure()
        self.reports = ReportStore(storage.blob, container=s.report_container).ensure()
        return self

    def clients(self, subscription_id: str) -> AzureClients:
        key = subscription_id.lower()
        if key not in self._clients:
            self._clients[key] = AzureClients(
                subscription_id, arm_endpoint=self.settings.arm_endpoint,
                credential=self.credential, polling_interval=self.polling_interval,
                deadline=self.deadline)
        return self._clients[key]
