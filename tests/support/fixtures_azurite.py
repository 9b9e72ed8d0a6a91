"""Azurite fixtures: start the storage emulator once per test session.

`azurite` (session): one Azurite process (Blob, Queue, Table; in memory; random loopback ports), its
connection string with the well-known development account key. Product code never knows it is
talking to Azurite: it only gets the connection string.

`storage_ns` (function): a fresh, unique name prefix per test, so tests never see each other's
containers or tables; whatever a test created under the prefix is deleted afterwards.

    @pytest.mark.azurite
    def test_something(storage_ns):
        blobs = storage_ns.blob_service()
        container = storage_ns.container("reports")   # "<prefix>-reports"
        table = storage_ns.table("journal")           # "<prefix>journal"

Set AZURITE_CONNECTION_STRING to use an Azurite you started yourself instead.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass

import pytest

from emulator import azurite as launcher
from emulator.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite  # noqa: F401 - for tests


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Azurite:
    external = os.environ.get("AZURITE_CONNECTION_STRING")
    if external:
        yield Azurite.from_connection_string(external)
        return
    try:
        proc, instance = launcher.start(tmp_path_factory.mktemp("azurite"))
    except launcher.AzuriteError as exc:
        pytest.fail(f"{exc} (`make test` installs Azurite)", pytrace=False)
    try:
        yield instance
    finally:
        launcher.stop(proc)


@dataclass(frozen=True)
class StorageNamespace:
    """A unique prefix valid for both container names (lowercase, '-') and table names (alnum)."""

    azurite: Azurite
    prefix: str

    @property
    def connection_string(self) -> str:
        return self.azurite.connection_string

    def container(self, name: str = "data") -> str:
        return f"{self.prefix}-{name}"

    def table(self, name: str = "data") -> str:
        return self.prefix + re.sub(r"[^A-Za-z0-9]", "", name)

    def blob_service(self):
        return self.azurite.blob_service()

    def table_service(self):
        return self.azurite.table_service()


@pytest.fixture
def storage_ns(azurite) -> StorageNamespace:
    ns = StorageNamespace(azurite, "t" + uuid.uuid4().hex[:12])
    yield ns
    # Keep the in-memory Azurite small over a long session.
    blobs, tables = azurite.blob_service(), azurite.table_service()
    for c in blobs.list_containers(name_starts_with=ns.prefix):
        blobs.delete_container(c.name)
    for t in tables.list_tables():
        if t.name.startswith(ns.prefix):
            tables.delete_table(t.name)
