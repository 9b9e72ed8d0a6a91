"""Builds the Azure SDK clients every adapter uses, one way, for Azure and for the emulator.

`HAIRPIN_ARM_ENDPOINT` (or `arm_endpoint=`) points the clients at another ARM endpoint, such as
the local emulator; TLS trust then comes from REQUESTS_CA_BUNDLE as for any requests-based
client. Credentials are DefaultAzureCredential: the Function's managed identity in Azure,
the developer's login on a workstation, the emulator's token endpoint in tests.

Every client carries `WriteCountingPolicy` (an azure-core per-call pipeline policy): each
request that changes state (any method but GET/HEAD, except the POST actions that only read)
is counted into the `WriteTally`s open in the calling context (`counting_writes()`), so a run
reports exactly the ARM writes it made, whatever adapter made them.

The management SDKs (about a second of imports) are imported when a client is first built, so
an offline audit and `import function_app` never load them.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from azure.core.pipeline.policies import SansIOHTTPPolicy

from shared.azure.retry import BudgetedRetryPolicy
from shared.core.permissions import is_read_only, rbac_action
from shared.setting_values import DEFAULT_METRICS_ENDPOINT

if TYPE_CHECKING:
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resourcegraph import ResourceGraphClient

__all__ = ["ARM_SCOPE", "AzureClients", "WriteTally", "WriteCountingPolicy", "counting_writes",
           "changes_state"]

ARM_SCOPE = "https://management.azure.com/.default"
_CLIENTS_LOCK = threading.Lock()


def changes_state(method: str, url: str) -> bool:
    """Does this ARM request change anything? (GETs and read-only POST actions do not.)"""
    if method.upper() in ("GET", "HEAD"):
        return False
    action = rbac_action(method, url)
    return action is None or not is_read_only(action)


class WriteTally:
    """The state-changing ARM requests made while it was open: (method, URL) in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []

    def add(self, method: str, url: str) -> None:
        with self._lock:
            self.requests.append((method, url))

    @property
    def count(self) -> int:
        return len(self.requests)


_open_tallies: contextvars.ContextVar[tuple[WriteTally, ...]] = contextvars.ContextVar(
    "hairpin_write_tallies", default=())


@contextmanager
def counting_writes(tally: WriteTally | None = None) -> Iterator[WriteTally]:
    """Count the ARM writes made in this context (nested tallies each count them)."""
    tally = tally if tally is not None else WriteTally()
    token = _open_tallies.set(_open_tallies.get() + (tally,))
    try:
        yield tally
    finally:
        _open_tallies.reset(token)


class WriteCountingPolicy(SansIOHTTPPolicy):
    """Per call (not per retry): a request retried after a 429 is one write."""

    def on_request(self, request) -> None:
        tallies = _open_tallies.get()
        if tallies:
            http = request.http_request
            if changes_state(http.method, http.url):
                for tally in tallies:
                    tally.add(http.method, http.url)


@dataclass
class AzureClients:
    """SDK clients for one subscription, created lazily and shared by the services."""

    subscription_id: str
    arm_endpoint: str | None = None
    credential: object | None = None
    polling_interval: float | None = None  # None: the server's Retry-After / SDK default
    deadline: float | None = None  # time.monotonic() value after which no retry sleeps
    max_retry_after: float = 45.0
    # Azure Monitor's regional metrics endpoint (`{region}`) and the Health Probe Status above
    # which a backend is Up: the Settings values, for discovery's health reads.
    metrics_endpoint: str = DEFAULT_METRICS_ENDPOINT
    health_metric_threshold: float = 50.0
    _extra: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, subscription_id: str, environ=os.environ, **kwargs) -> AzureClients:
        kwargs.setdefault("metrics_endpoint",
                          environ.get("HAIRPIN_METRICS_ENDPOINT") or DEFAULT_METRICS_ENDPOINT)
        return cls(subscription_id, arm_endpoint=environ.get("HAIRPIN_ARM_ENDPOINT") or None,
                   **kwargs)

    def _kwargs(self) -> dict:
        kwargs: dict = {
            "retry_policy": BudgetedRetryPolicy(
                max_retry_after=self.max_retry_after, deadline=self.deadline
            ),
            "per_call_policies": [WriteCountingPolicy()],
        }
        if self.arm_endpoint:
            kwargs["base_url"] = self.arm_endpoint
            kwargs["credential_scopes"] = [ARM_SCOPE]
        if self.polling_interval is not None:
            kwargs["polling_interval"] = self.polling_interval
        return kwargs

    @cached_property
    def _credential(self):
        if self.credential is not None:
            return self.credential
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(
            exclude_interactive_browser_credential=True)

    @cached_property
    def network(self) -> NetworkManagementClient:
        from azure.mgmt.network import NetworkManagementClient

        return NetworkManagementClient(self._credential, self.subscription_id, **self._kwargs())

    @cached_property
    def compute(self) -> ComputeManagementClient:
        from azure.mgmt.compute import ComputeManagementClient

        return ComputeManagementClient(self._credential, self.subscription_id, **self._kwargs())

    @cached_property
    def authorization(self):
        # Only the preflight reads permissions: imported on first use.
        from azure.mgmt.authorization import AuthorizationManagementClient

        kwargs = self._kwargs()
        kwargs.pop("polling_interval", None)
        return AuthorizationManagementClient(self._credential, self.subscription_id, **kwargs)

    @cached_property
    def resource_graph(self) -> ResourceGraphClient:
        from azure.mgmt.resourcegraph import ResourceGraphClient

        kwargs = self._kwargs()
        kwargs.pop("polling_interval", None)
        return ResourceGraphClient(self._credential, **kwargs)

    def metrics(self, region: str):
        """The `MetricsClient` of one region's Azure Monitor endpoint (one per region)."""
        key = ("metrics", region.lower())
        with _CLIENTS_LOCK:
            if key not in self._extra:
                from azure.monitor.querymetrics import MetricsClient

                kwargs = self._kwargs()
                # ARM's URL and scope are not this API's; it only reads, so no write counting.
                for arm_only in ("base_url", "credential_scopes", "polling_interval",
                                 "per_call_policies"):
                    kwargs.pop(arm_only, None)
                self._extra[key] = MetricsClient(
                    self.metrics_endpoint.replace("{region}", region.lower()), self._credential,
                    **kwargs)
            return self._extra[key]
