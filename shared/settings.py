"""Every setting the product reads, in one frozen dataclass (pure: parsing only, no I/O).

Each environment variable is named exactly once, in `_FIELDS` below; `Settings.ENV_VARS` lists
them all so the infrastructure template can be checked against it. Bad values raise
`SettingsError` naming the variable, the value and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

from shared import setting_values as parse
from shared.core import arm_ids
from shared.core.call_targets import CallTarget
from shared.core.schedule import MaintenanceWindow
from shared.core.storage_names import DEFAULT_PREFIX, StorageNames, validate_prefix
from shared.setting_values import MODES, SettingsError

__all__ = ["SettingsError", "Settings", "MODES", "FUNCTION_BUDGET_S"]

# host.json's functionTimeout is 10 minutes: an invocation stops starting work a minute before.
FUNCTION_BUDGET_S = 540.0


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    env: str
    parse: Callable[[str], Any]
    help: str


@dataclass(frozen=True)
class Settings:
    """Product settings. Construct with `Settings()` (defaults) or `Settings.from_env(environ)`."""

    # What the product may do: audit (never writes), plan (writes nothing, records plans), apply.
    mode: str = "audit"
    # Opt-in for unattended apply: VM tag name and the value that means "yes".
    opt_in_tag: str = "hairpin-remediation"
    opt_in_value: str = "auto"
    # When unattended runs may deallocate: global window, and the VM tag that overrides it.
    maintenance_window: MaintenanceWindow | None = None
    maintenance_window_tag: str = "hairpin-maintenance-window"
    # Declared callers: VM name or ID (normalised lowercase) -> VIP:port it calls; and the VM tag
    # that carries the same, e.g. `hairpin-calls: 10.0.1.100:1972,10.0.1.101:1972`.
    declared_callers: Mapping[str, tuple[CallTarget, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    declared_callers_tag: str = "hairpin-calls"
    # Subnet for managed secondary NICs (same VNet as the primary NIC); None = the primary's.
    secondary_subnet_id: str | None = None
    # HA-ports rules cannot be narrowed by port: allow the broad Linux policy rule anyway?
    allow_broad_ha_ports_rule: bool = False
    # TCP connects per VIP:port when verifying a fix from inside the guest.
    verify_connects: int = 20
    # Subscriptions to audit; empty = every subscription the identity can read.
    subscriptions: tuple[str, ...] = ()
    use_resource_graph: bool = False
    # Timer schedules (6-field NCRONTAB).
    audit_schedule: str = "0 0 */6 * * *"
    sweep_schedule: str = "0 */15 * * * *"
    # ARM base URL override (the local emulator); None = public Azure.
    arm_endpoint: str | None = None
    # Azure Monitor's regional metrics endpoint, `{region}` filled in per batch of load
    # balancers, and the Health Probe Status (0-100) above which a backend counts as Up.
    metrics_endpoint: str = parse.DEFAULT_METRICS_ENDPOINT
    health_metric_threshold: float = 50.0
    # Storage for journal, locks and reports: HAIRPIN_STORAGE_CONNECTION, else AzureWebJobsStorage.
    # A secret (its AccountKey): kept out of repr.
    storage_connection: str | None = field(default=None, repr=False)
    # Every table, container and queue name derives from this prefix (`storage_names`), so
    # deployments sharing a storage account never read each other's records.
    storage_prefix: str = DEFAULT_PREFIX
    # Blob lease length for pool/VM locks (Azure allows 15-60 s; renewed while working).
    lock_lease_seconds: int = 60
    # Run Command: how long one script may take before the step is left pending.
    run_command_timeout_seconds: int = 900
    # After a start, how long a run waits for the VM agent to report Ready before its guest
    # steps (Run Command needs the agent); then the outcome is pending and the VM runs.
    agent_ready_timeout_seconds: float = 300.0
    # p95 durations the preflight reserves before taking a VM down: the run deallocates only
    # when the time left covers deallocate + attach + start + agent ready (no published figures:
    # conservative values, docs/azure-facts.md "Timings").
    p95_deallocate_seconds: float = 120.0
    p95_attach_seconds: float = 60.0
    p95_start_seconds: float = 120.0
    p95_agent_ready_seconds: float = 120.0
    # Event Grid topic for notifications (pending plans, failures); None = no notifications.
    notify_topic_endpoint: str | None = None
    # Access key of that topic; None = the managed identity (the template's topic takes only
    # Entra ID). A secret: kept out of repr and error messages.
    notify_topic_key: str | None = field(default=None, repr=False)
    # Log Analytics (Logs Ingestion API): the data collection endpoint, the DCR's immutable ID
    # and its stream; endpoint and rule unset = no rows uploaded.
    logs_endpoint: str | None = None
    logs_rule_id: str | None = None
    logs_stream: str = "Custom-Hairpin_CL"
    # Tag put on NICs this project creates (value "true"); rollback touches nothing else.
    managed_tag: str = "hairpin-managed"
    # The function's own managed identity, to recognise its own writes in Event Grid events
    # (client id falls back to AZURE_CLIENT_ID, which a user-assigned identity sets).
    identity_principal_id: str | None = None
    identity_client_id: str | None = None
    identity_resource_id: str | None = None
    # Event bursts: one evaluation pass per VM per window; tolerated ARM-vs-local clock skew.
    event_burst_window_seconds: float = 60.0
    event_clock_skew_seconds: float = 5.0
    # A remediation an event hands to the queue worker is dropped (journalled "expired") if it
    # has not started within this time: the next event or sweep decides again from live state.
    event_handoff_ttl_seconds: float = 1800.0
    # Drift sweep: time budget per run (host.json allows 10 min), Run Commands in flight
    # (one per VM, never two VMs of a pool), seconds between two Run Command starts, and the
    # time a VM needs so that the sweep does not start it too close to the budget.
    sweep_budget_seconds: float = FUNCTION_BUDGET_S
    sweep_run_command_workers: int = 4
    sweep_run_command_interval_seconds: float = 1.0
    sweep_item_budget_seconds: float = 120.0
    # Fleet sweep: with Resource Graph, subscriptions are packed into work items of at most
    # this many VMs (ARM: one item per subscription); a sweep whose items are not all in after
    # this long is closed with the missing ones reported lost (its messages expire then too).
    sweep_item_vms: int = 500
    sweep_max_age_seconds: float = 86400.0
    # Set by the platform, never by the template: App Service Authentication is on, so the
    # x-ms-client-principal header comes from it (it strips the one a client sends).
    platform_auth_enabled: bool = False
    # Labs only: the function key alone may approve a plan (no verified principal needed).
    allow_key_only_approvals: bool = False

    @property
    def p95_seconds(self) -> dict[str, float]:
        """The preflight's reservation per step (shared.core.remediation.preflight)."""
        return {"deallocate": self.p95_deallocate_seconds, "attach": self.p95_attach_seconds,
                "start": self.p95_start_seconds, "agent_ready": self.p95_agent_ready_seconds}

    _FIELDS: ClassVar[tuple[_Field, ...]]
    ENV_VARS: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        # Direct construction gets the same checks as from_env for the values that matter.
        if self.mode not in MODES:
            raise SettingsError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if not 1 <= self.verify_connects <= 1000:
            raise SettingsError("verify_connects must be 1-1000")
        try:
            validate_prefix(self.storage_prefix)
        except ValueError as exc:
            raise SettingsError(f"storage_prefix {self.storage_prefix!r:.80}: {exc}",
                                "HAIRPIN_STORAGE_PREFIX") from None

    @property
    def storage_names(self) -> StorageNames:
        return StorageNames(self.storage_prefix)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `environ` (default: the process environment)."""
        if environ is None:
            import os

            environ = os.environ
        values: dict[str, Any] = {}
        for spec in cls._FIELDS:
            raw = environ.get(spec.env)
            if raw is None or (raw.strip() == "" and spec.parse is not parse.boolean):
                continue
            try:
                values[spec.name] = spec.parse(raw)
            except ValueError as exc:
                shown = raw if len(raw) <= 120 else raw[:117] + "..."
                raise SettingsError(f"{spec.env}={shown!r}: {exc} ({spec.help})",
                                    spec.env) from None
        if "storage_connection" not in values:
            fallback = environ.get("AzureWebJobsStorage", "").strip()
            if fallback:
                values["storage_connection"] = fallback
        if "identity_client_id" not in values and environ.get("AZURE_CLIENT_ID", "").strip():
            values["identity_client_id"] = environ["AZURE_CLIENT_ID"].strip()
        return cls(**values)

    def is_opted_in(self, tags: Mapping[str, str] | None) -> bool:
        """Does a VM's tag set opt it in to unattended apply? (tag names are case-insensitive)"""
        for name, value in (tags or {}).items():
            if name.lower() == self.opt_in_tag.lower():
                return str(value).strip().lower() == self.opt_in_value.lower()
        return False

    def callers_declared_for(self, vm_id: str, vm_name: str) -> tuple[CallTarget, ...]:
        """Targets declared in settings for this VM, by ID or by name."""
        by_id = self.declared_callers.get(arm_ids.normalize(vm_id), ())
        by_name = self.declared_callers.get(vm_name.lower(), ())
        return tuple(dict.fromkeys(by_id + by_name))


Settings._FIELDS = (
    _Field("mode", "HAIRPIN_MODE", parse.mode, "audit, plan or apply"),
    _Field("opt_in_tag", "HAIRPIN_OPT_IN_TAG", parse.tag_name, "VM tag name that opts in"),
    _Field("opt_in_value", "HAIRPIN_OPT_IN_VALUE", parse.text, "tag value that opts in"),
    _Field(
        "maintenance_window", "HAIRPIN_MAINTENANCE_WINDOW", parse.window,
        "e.g. 'Sat 01:00-05:00 UTC'"
    ),
    _Field("maintenance_window_tag", "HAIRPIN_MAINTENANCE_WINDOW_TAG", parse.tag_name,
           "VM tag with a per-VM window"),
    _Field("declared_callers", "HAIRPIN_DECLARED_CALLERS", parse.declared_callers,
           'JSON: {"vm name or id": ["VIP:port", ...]}'),
    _Field("declared_callers_tag", "HAIRPIN_DECLARED_CALLERS_TAG", parse.tag_name,
           "VM tag listing VIP:port the VM calls"),
    _Field("secondary_subnet_id", "HAIRPIN_SECONDARY_SUBNET_ID", parse.subnet_id,
           "subnet resource ID for managed secondary NICs"),
    _Field("allow_broad_ha_ports_rule", "HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE", parse.boolean,
           "true/false"),
    _Field(
        "verify_connects",
        "HAIRPIN_VERIFY_CONNECTS",
        parse.int_between(1, 1000),
        "connects per VIP:port when verifying",
    ),
    _Field("subscriptions", "HAIRPIN_SUBSCRIPTIONS", parse.subscriptions,
           "comma-separated subscription IDs"),
    _Field("use_resource_graph", "HAIRPIN_USE_RESOURCE_GRAPH", parse.boolean, "true/false"),
    _Field("audit_schedule", "HAIRPIN_AUDIT_SCHEDULE", parse.ncrontab, "6-field NCRONTAB"),
    _Field("sweep_schedule", "HAIRPIN_SWEEP_SCHEDULE", parse.ncrontab, "6-field NCRONTAB"),
    _Field("arm_endpoint", "HAIRPIN_ARM_ENDPOINT", parse.url, "ARM base URL"),
    _Field("metrics_endpoint", "HAIRPIN_METRICS_ENDPOINT", parse.region_url,
           "Azure Monitor metrics URL with {region}"),
    _Field("health_metric_threshold", "HAIRPIN_HEALTH_METRIC_THRESHOLD",
           parse.float_between(0, 100), "Health Probe Status above which a backend is Up, 0-100"),
    _Field(
        "storage_connection",
        "HAIRPIN_STORAGE_CONNECTION",
        parse.text,
        "storage connection string (default: AzureWebJobsStorage)",
    ),
    _Field("storage_prefix", "HAIRPIN_STORAGE_PREFIX", validate_prefix,
           "prefix of every table, container and queue name (lowercase letters and digits)"),
    _Field(
        "lock_lease_seconds",
        "HAIRPIN_LOCK_LEASE_SECONDS",
        parse.int_between(15, 60),
        "blob lease length, 15-60 s",
    ),
    _Field(
        "run_command_timeout_seconds",
        "HAIRPIN_RUN_COMMAND_TIMEOUT_SECONDS",
        parse.int_between(30, 5400),
        "seconds, 30-5400",
    ),
    _Field(
        "notify_topic_endpoint",
        "HAIRPIN_NOTIFY_TOPIC_ENDPOINT",
        parse.url,
        "Event Grid topic endpoint URL",
    ),
    _Field("notify_topic_key", "HAIRPIN_NOTIFY_TOPIC_KEY", parse.text,
           "access key of the notification topic (default: managed identity)"),
    _Field("logs_endpoint", "HAIRPIN_LOGS_ENDPOINT", parse.url,
           "data collection endpoint URL (Logs Ingestion API)"),
    _Field("logs_rule_id", "HAIRPIN_LOGS_RULE_ID", parse.text,
           "immutable ID of the data collection rule (dcr-...)"),
    _Field("logs_stream", "HAIRPIN_LOGS_STREAM", parse.text,
           "stream name of the data collection rule"),
    _Field("managed_tag", "HAIRPIN_MANAGED_TAG", parse.tag_name,
           "tag name on NICs this project creates"),
    _Field("identity_principal_id", "HAIRPIN_IDENTITY_PRINCIPAL_ID", parse.text,
           "object id of the function's managed identity"),
    _Field("identity_client_id", "HAIRPIN_IDENTITY_CLIENT_ID", parse.text,
           "client id of the function's managed identity (default: AZURE_CLIENT_ID)"),
    _Field("identity_resource_id", "HAIRPIN_IDENTITY_RESOURCE_ID", parse.text,
           "resource id of the user-assigned identity"),
    _Field("agent_ready_timeout_seconds", "HAIRPIN_AGENT_READY_TIMEOUT_SECONDS",
           parse.float_between(0, 1800), "seconds, 0-1800"),
    *(_Field(f"p95_{step}_seconds", f"HAIRPIN_P95_{step.upper()}_SECONDS",
             parse.float_between(0, 1800), "seconds, 0-1800")
      for step in ("deallocate", "attach", "start", "agent_ready")),
    _Field("event_burst_window_seconds", "HAIRPIN_EVENT_BURST_WINDOW_SECONDS",
           parse.float_between(1, 3600), "seconds, 1-3600"),
    _Field("event_clock_skew_seconds", "HAIRPIN_EVENT_CLOCK_SKEW_SECONDS",
           parse.float_between(0, 300), "seconds, 0-300"),
    _Field("event_handoff_ttl_seconds", "HAIRPIN_EVENT_HANDOFF_TTL_SECONDS",
           parse.float_between(60, 86400), "seconds, 60-86400"),
    _Field("sweep_budget_seconds", "HAIRPIN_SWEEP_BUDGET_SECONDS", parse.float_between(30, 3600),
           "seconds, 30-3600"),
    _Field("sweep_run_command_workers", "HAIRPIN_SWEEP_RUN_COMMAND_WORKERS",
           parse.int_between(1, 32), "1-32"),
    _Field("sweep_run_command_interval_seconds", "HAIRPIN_SWEEP_RUN_COMMAND_INTERVAL_SECONDS",
           parse.float_between(0, 60), "seconds, 0-60"),
    _Field("sweep_item_budget_seconds", "HAIRPIN_SWEEP_ITEM_BUDGET_SECONDS",
           parse.float_between(1, 3600), "seconds, 1-3600"),
    _Field("sweep_item_vms", "HAIRPIN_SWEEP_ITEM_VMS", parse.int_between(1, 100_000),
           "VMs per fleet-sweep work item (Resource Graph), 1-100000"),
    _Field("sweep_max_age_seconds", "HAIRPIN_SWEEP_MAX_AGE_SECONDS",
           parse.float_between(600, 604800), "seconds, 600-604800"),
    _Field("platform_auth_enabled", "WEBSITE_AUTH_ENABLED", parse.platform_flag,
           "set by App Service when its authentication is enabled"),
    _Field("allow_key_only_approvals", "HAIRPIN_ALLOW_KEY_ONLY_APPROVALS", parse.boolean,
           "true/false (labs: the function key alone approves)"),
)
# Read too: AzureWebJobsStorage (fallback for storage_connection) and AZURE_CLIENT_ID (fallback
# for identity_client_id).
Settings.ENV_VARS = tuple(f.env for f in Settings._FIELDS) + ("AzureWebJobsStorage",
                                                             "AZURE_CLIENT_ID")

assert {f.name for f in Settings._FIELDS} == {f.name for f in fields(Settings)}, (
    "every Settings field must have exactly one environment variable"
)
