"""Blob, Table and Queue service clients from a connection string or from an identity.

The same adapters run on Azure (managed identity + account URLs) and on Azurite (the development
connection string); nothing here knows which one it is talking to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a client is built: `import function_app` stays fast
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient


@dataclass(frozen=True)
class StorageClients:
    blob: BlobServiceClient
    table: TableServiceClient
    queue: QueueServiceClient | None = None  # the fix API's work queue

    @classmethod
    def from_connection_string(cls, connection_string: str) -> StorageClients:
        from azure.data.tables import TableServiceClient
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueServiceClient

        return cls(BlobServiceClient.from_connection_string(connection_string),
                   TableServiceClient.from_connection_string(connection_string),
                   QueueServiceClient.from_connection_string(connection_string))

    @classmethod
    def from_account(cls, blob_url: str, table_url: str, credential,
                     queue_url: str | None = None) -> StorageClients:
        from azure.data.tables import TableServiceClient
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueServiceClient

        return cls(BlobServiceClient(blob_url, credential=credential),
                   TableServiceClient(endpoint=table_url, credential=credential),
                   QueueServiceClient(queue_url, credential=credential) if queue_url else None)

    @staticmethod
    def configured_in(environ: Mapping[str, str] | None = None, *,
                      name: str = "AzureWebJobsStorage") -> bool:
        """Is `<name>` set, as a connection string or in its identity-based form?"""
        env = os.environ if environ is None else environ
        return bool(env.get(name) or env.get(f"{name}__accountName")
                    or env.get(f"{name}__blobServiceUri"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 name: str = "AzureWebJobsStorage", credential=None) -> StorageClients:
        """Read a Functions-style connection setting: `<name>` holding a connection string, or
        the identity-based form `<name>__accountName` / `<name>__blobServiceUri` +
        `<name>__tableServiceUri` (+ `<name>__clientId` for a user-assigned identity)."""
        environ = os.environ if environ is None else environ
        if environ.get(name):
            return cls.from_connection_string(environ[name])
        account = environ.get(f"{name}__accountName")
        blob_url = environ.get(f"{name}__blobServiceUri") or (
            account and f"https://{account}.blob.core.windows.net")
        table_url = environ.get(f"{name}__tableServiceUri") or (
            account and f"https://{account}.table.core.windows.net")
        queue_url = environ.get(f"{name}__queueServiceUri") or (
            account and f"https://{account}.queue.core.windows.net")
        if not (blob_url and table_url):
            raise ValueError(f"storage is not configured: set {name} (connection string) or "
                             f"{name}__accountName (managed identity)")
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(
                managed_identity_client_id=environ.get(f"{name}__clientId"),
                exclude_interactive_browser_credential=True)
        return cls.from_account(blob_url, table_url, credential, queue_url)
