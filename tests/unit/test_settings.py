import ipaddress
from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.core.call_targets import CallTarget, parse_call_targets
from shared.core.schedule import MaintenanceWindow, validate_ncrontab
from shared.settings import Settings, SettingsError

SUBNET = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
    "Microsoft.Network/virtualNetworks/v/subnets/hairpin"
)
UTC = UTC


def test_defaults():
    s = Settings.from_env({})
    assert s == Settings()
    assert s.mode == "audit"
    assert s.opt_in_tag == "hairpin-remediation" and s.opt_in_value == "auto"
    assert s.verify_connects == 20
    assert s.maintenance_window is None
    assert s.declared_callers_tag == "hairpin-calls"
    assert s.subscriptions == ()
    assert s.use_resource_graph is False and s.allow_broad_ha_ports_rule is False
    assert len(s.audit_schedule.split()) == 6 and len(s.sweep_schedule.split()) == 6


def test_frozen():
    with pytest.raises(FrozenInstanceError):
        Settings().mode = "apply"  # type: ignore[misc]


def test_every_field_has_one_env_var():
    names = Settings.ENV_VARS
    assert len(names) == len(set(names))
    # + the AzureWebJobsStorage and AZURE_CLIENT_ID fallbacks
    assert len([f for f in fields(Settings)]) == len(names) - 2
    assert "HAIRPIN_MODE" in names and "AzureWebJobsStorage" in names
    # the platform's own: WEBSITE_AUTH_ENABLED (App Service Authentication is on)
    assert all(n.startswith("HAIRPIN_") for n in names
               if n not in ("AzureWebJobsStorage", "AZURE_CLIENT_ID", "WEBSITE_AUTH_ENABLED"))


def test_full_environment():
    env = {
        "HAIRPIN_MODE": "Apply",
        "HAIRPIN_OPT_IN_TAG": "fix-me",
        "HAIRPIN_OPT_IN_VALUE": "yes",
        "HAIRPIN_MAINTENANCE_WINDOW": "Sat 01:00-05:00 UTC",
        "HAIRPIN_DECLARED_CALLERS": '{"hs-vm1": ["10.0.1.100:1972"], "HS-VM2": "10.0.1.101:1972"}',
        "HAIRPIN_SECONDARY_SUBNET_ID": SUBNET,
        "HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE": "true",
        "HAIRPIN_VERIFY_CONNECTS": "50",
        "HAIRPIN_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000002, "
        "00000000-0000-0000-0000-000000000001",
        "HAIRPIN_USE_RESOURCE_GRAPH": "1",
        "HAIRPIN_AUDIT_SCHEDULE": "0 30 2 * * *",
        "HAIRPIN_SWEEP_SCHEDULE": "0 */5 * * * *",
        "HAIRPIN_ARM_ENDPOINT": "https://127.0.0.1:8443/",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "HAIRPIN_NOTIFY_TOPIC_ENDPOINT": "https://topic.eastus-1.eventgrid.azure.net/api/events",
        "HAIRPIN_MANAGED_TAG": "hairpin-managed-by",
    }
    s = Settings.from_env(env)
    assert s.mode == "apply"
    assert s.opt_in_tag == "fix-me" and s.opt_in_value == "yes"
    assert str(s.maintenance_window) == "Sat 01:00-05:00 UTC"
    assert s.declared_callers["hs-vm1"] == (CallTarget(ipaddress.ip_address("10.0.1.100"), 1972),)
    assert "hs-vm2" in s.declared_callers
    assert s.secondary_subnet_id == SUBNET
    assert s.allow_broad_ha_ports_rule and s.use_resource_graph
    assert s.verify_connects == 50
    assert s.subscriptions == (
        "00000000-0000-0000-0000-000000000001",
        "00000000-0000-0000-0000-000000000002",
    )
    assert s.arm_endpoint == "https://127.0.0.1:8443"
    assert s.storage_connection == "UseDevelopmentStorage=true"
    assert s.managed_tag == "hairpin-managed-by"


def test_storage_connection_prefers_own_variable():
    s = Settings.from_env({"AzureWebJobsStorage": "a", "HAIRPIN_STORAGE_CONNECTION": "b"})
    assert s.storage_connection == "b"


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("HAIRPIN_MODE", "yolo", "audit, plan, apply"),
        ("HAIRPIN_VERIFY_CONNECTS", "0", "1-1000"),
        ("HAIRPIN_VERIFY_CONNECTS", "many", "whole number"),
        ("HAIRPIN_SUBSCRIPTIONS", "abc", "GUID"),
        ("HAIRPIN_AUDIT_SCHEDULE", "*/5 * * * *", "6"),
        ("HAIRPIN_SWEEP_SCHEDULE", "0 0 * * * * *", "6"),
        ("HAIRPIN_ARM_ENDPOINT", "ftp://x", "URL"),
        ("HAIRPIN_MAINTENANCE_WINDOW", "Caturday 01:00-02:00", "day"),
        ("HAIRPIN_MAINTENANCE_WINDOW", "Sat 25:00-26:00", "time of day"),
        ("HAIRPIN_MAINTENANCE_WINDOW", "Sat 01:00-05:00 Mars/Olympus", "time zone"),
        ("HAIRPIN_DECLARED_CALLERS", "{not json", "JSON"),
        ("HAIRPIN_DECLARED_CALLERS", '["10.0.1.100:1972"]', "object"),
        ("HAIRPIN_DECLARED_CALLERS", '{"vm": ["10.0.1.999:1972"]}', "IP"),
        ("HAIRPIN_DECLARED_CALLERS", '{"vm": ["10.0.1.1:70000"]}', "port"),
        ("HAIRPIN_SECONDARY_SUBNET_ID", "/subscriptions/x/resourceGroups/rg", "subnet"),
        ("HAIRPIN_ALLOW_BROAD_HA_PORTS_RULE", "maybe", "true/false"),
        ("HAIRPIN_OPT_IN_TAG", "has space", "tag"),
    ],
)
def test_bad_values_name_the_variable(name, value, fragment):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    assert name in str(err.value)
    assert fragment.lower() in str(err.value).lower()


def test_empty_values_mean_default():
    assert Settings.from_env({"HAIRPIN_MODE": "", "HAIRPIN_VERIFY_CONNECTS": " "}) == Settings()


def test_direct_construction_is_checked():
    with pytest.raises(SettingsError):
        Settings(mode="destroy")


def test_opt_in_and_declared_lookup():
    s = Settings.from_env(
        {
            "HAIRPIN_DECLARED_CALLERS": '{"/subscriptions/S/resourceGroups/RG/providers/'
            'Microsoft.Compute/virtualMachines/VM1": "10.0.1.100:1972",'
            ' "vm1": "10.0.1.101"}'
        }
    )
    targets = s.callers_declared_for(
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1", "VM1"
    )
    assert [str(t) for t in targets] == ["10.0.1.100:1972", "10.0.1.101"]
    assert s.is_opted_in({"Hairpin-Remediation": "AUTO"})
    assert not s.is_opted_in({"hairpin-remediation": "no"})
    assert not s.is_opted_in(None)


def test_call_targets():
    targets = parse_call_targets(
        "10.0.1.101:1972, 10.0.1.100:1972;10.0.1.100:1972 [fd00::5]:80 10.0.1.7"
    )
    assert [str(t) for t in targets] == [
        "10.0.1.7",
        "10.0.1.100:1972",
        "10.0.1.101:1972",
        "[fd00::5]:80",
    ]
    t = targets[1]
    assert t.matches("10.0.1.100", (1972,)) and not t.matches("10.0.1.100", (80,))
    assert t.matches("10.0.1.100", (0,))  # HA ports rule covers every port
    assert targets[0].matches("10.0.1.7", (1,))
    assert parse_call_targets("") == ()


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "window,now,open_",
    [
        ("Sat 01:00-05:00 UTC", "2026-11-28T01:00:00", True),  # Saturday
        ("Sat 01:00-05:00 UTC", "2026-11-28T04:59:59", True),
        ("Sat 01:00-05:00 UTC", "2026-11-28T05:00:00", False),
        ("Sat 01:00-05:00 UTC", "2026-11-28T00:59:00", False),
        ("Sat 01:00-05:00 UTC", "2026-11-27T02:00:00", False),  # Friday
        ("Fri 22:00-02:00", "2026-11-28T01:30:00", True),  # crosses midnight into Saturday
        ("Fri 22:00-02:00", "2026-11-28T02:30:00", False),
        ("Fri 22:00-02:00", "2026-11-27T01:30:00", False),  # Friday early morning: Thursday's? no
        ("Mon-Fri 12:00-13:00", "2026-11-26T12:30:00", True),  # Thursday
        ("Mon-Fri 12:00-13:00", "2026-11-29T12:30:00", False),  # Sunday
        ("Sat,Sun 00:00-24:00", "2026-11-29T23:59:00", True),
        ("daily 03:00-04:00", "2026-11-26T03:10:00", True),
        ("03:00-04:00", "2026-11-26T04:10:00", False),
        ("Sat 01:00-02:00; Sun 01:00-02:00", "2026-11-29T01:30:00", True),
    ],
)
def test_maintenance_window(window, now, open_):
    assert MaintenanceWindow.parse(window).is_open(at(now)) is open_


def test_maintenance_window_in_a_time_zone():
    w = MaintenanceWindow.parse("Sat 01:00-05:00 Europe/Berlin")
    assert w.is_open(at("2026-11-28T00:30:00"))  # 01:30 in Berlin (UTC+1 in November)
    assert not w.is_open(at("2026-11-28T04:30:00"))
    berlin = timezone(timedelta(hours=1))
    assert w.is_open(datetime(2026, 11, 28, 1, 30, tzinfo=berlin))


def test_maintenance_window_needs_aware_time_and_rejects_nonsense():
    with pytest.raises(ValueError):
        MaintenanceWindow.parse("Sat 01:00-05:00").is_open(datetime(2026, 11, 28, 2))
    for bad in ("", "  ;  ", "Sat 01:00-01:00", "whenever"):
        with pytest.raises(ValueError):
            MaintenanceWindow.parse(bad)


def test_ncrontab():
    assert validate_ncrontab("0 */5 * * * *") == "0 */5 * * * *"
    assert validate_ncrontab("0 0 9-17 * * Mon-Fri")
    with pytest.raises(ValueError):
        validate_ncrontab("0 0 * * *")
    with pytest.raises(ValueError):
        validate_ncrontab("0 0 * * * $(x)")


def test_event_sweep_and_identity_settings_have_one_home():
    s = Settings.from_env({"HAIRPIN_EVENT_BURST_WINDOW_SECONDS": "120",
                           "HAIRPIN_SWEEP_RUN_COMMAND_WORKERS": "2",
                           "HAIRPIN_SWEEP_BUDGET_SECONDS": "300",
                           "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
                           "HAIRPIN_NOTIFY_TOPIC_KEY": "k3y"})
    assert (s.event_burst_window_seconds, s.sweep_run_command_workers,
            s.sweep_budget_seconds) == (120.0, 2, 300.0)
    assert s.identity_client_id == "11111111-2222-3333-4444-555555555555"
    assert "k3y" not in repr(s)
    from shared.core.events import EventConfig
    from shared.services.sweep import SweepConfig

    assert EventConfig.from_settings(s).window_seconds == 120.0
    assert SweepConfig.from_settings(s).run_command_workers == 2
    with pytest.raises(SettingsError, match="HAIRPIN_SWEEP_RUN_COMMAND_WORKERS"):
        Settings.from_env({"HAIRPIN_SWEEP_RUN_COMMAND_WORKERS": "0"})
