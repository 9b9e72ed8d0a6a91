"""Adapter: rows to a Log Analytics table through the Logs Ingestion API, with
`azure-monitor-ingestion`'s LogsIngestionClient and the function's identity
(DefaultAzureCredential, token audience https://monitor.azure.com; the identity needs
Monitoring Metrics Publisher on the data collection rule). The client splits rows into
calls of at most 1 MB and gzips each one. TLS trust comes from REQUESTS_CA_BUNDLE as for the
other clients (the local emulator's throwaway CA)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["LogsUploader"]


class LogsUploader:
    """upload(rows) -> None, or the SDK's HttpResponseError of the first failed call."""

    def __init__(self, endpoint: str, rule_id: str, stream: str, credential: Any = None, *,
                 client: Any = None) -> None:
        self.endpoint, self.rule_id, self.stream = endpoint, rule_id, stream
        self._credential = credential
        self._client = client

    def _sdk(self):
        if self._client is None:
            from azure.monitor.ingestion import LogsIngestionClient

            credential = self._credential
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
            # few quick retries: rows are a side effect and must not hold up the run
            self._client = LogsIngestionClient(self.endpoint, credential, retry_total=2,
                                               connection_timeout=5, read_timeout=20)
        return self._client

    def upload(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._sdk().upload(rule_id=self.rule_id, stream_name=self.stream, logs=list(rows))
