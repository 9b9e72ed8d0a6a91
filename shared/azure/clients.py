"""Builds the Azure SDK clients every adapter uses, one way, for Azure and for the emulator.

`HAIRPIN_ARM_ENDPOINT` (or `arm_endpoint=`) points the clients at another ARM endpoint, such as
the local emulator; TLS trust then comes from REQUESTS_CA_BUNDLE as for any requests-based
client. Credentials are DefaultAzureCredential: the Function's managed identity in Azure,
the developer's login on a workstation, the emulator's token endpoint in tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient

from shared.azure.retry import BudgetedRetryPolicy

ARM_SCOPE = "https://management.azure.com/.default"


@dataclass
class AzureClients:
    """SDK clients for one subscription, created lazily and shared by the services."""

    subscription_id: str
    arm_endpoint: str | None = None
    credential: object | None = None
    polling_interval: float | None = None  # None: the server's Retry-After / SDK default
    deadline: float | None = None  # time.monotonic() value after which no retry sleeps
    max_retry_after: float = 45.0
    _extra: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, subscription_id: str, environ=os.environ, **kwargs) -> AzureClients:
        return cls(subscription_id, arm_endpoint=environ.get("HAIRPIN_ARM_ENDPOINT") or None,
                   **kwargs)

    def _kwargs(self) -> dict:
        kwargs: dict = {
            "retry_policy": BudgetedRetryPolicy(
                max_retry_after=self.max_retry_after, deadline=self.deadline
            ),
        }
        if self.arm_endpoint:
            kwargs["base_url"] = self.arm_endpoint
            kwargs["credential_scopes"] = [ARM_SCOPE]
        if self.polling_interval is not None:
            kwargs["polling_interval"] = self.polling_interval
        return kwargs

    @cached_property
    def _credential(self):
        return self.credential or DefaultAzureCredential(
            exclude_interactive_browser_credential=True)

    @cached_property
    def network(self) -> NetworkManagementClient:
        return NetworkManagementClient(self._credential, self.subscription_id, **self._kwargs())

    @cached_property
    def compute(self) -> ComputeManagementClient:
        return ComputeManagementClient(self._credential, self.subscription_id, **self._kwargs())

    @cached_property
    def resource_graph(self) -> ResourceGraphClient:
        kwargs = self._kwargs()
        kwargs.pop("polling_interval", None)
        return ResourceGraphClient(self._credential, **kwargs)
