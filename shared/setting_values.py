"""Value parsers of the settings (pure): each takes the environment variable's text and gives
the typed value, or raises SettingsError saying what was expected. `shared.settings` names
which variable uses which."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from shared.core import arm_ids
from shared.core.call_targets import CallTarget, parse_call_targets
from shared.core.schedule import MaintenanceWindow, validate_ncrontab

__all__ = [
    "SettingsError", "text", "boolean", "platform_flag", "between", "int_between",
    "float_between", "mode", "tag_name", "subscriptions", "subnet_id", "url", "window",
    "declared_callers", "ncrontab", "MODES",
]

MODES = ("audit", "plan", "apply")


class SettingsError(ValueError):
    """A setting has a value the product cannot use; `variable` names it (its value is not
    repeated where callers show errors to clients: it may be a secret)."""

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable




def text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("empty")
    return value


def boolean(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false (also 1/0, yes/no, on/off)")


def platform_flag(value: str) -> bool:
    # As the Functions host reads WEBSITE_AUTH_ENABLED (.NET bool.TryParse: "True"/"false",
    # any case, else false): a platform value never stops the app.
    return value.strip().lower() == "true"


def between(kind: type, low: float, high: float) -> Callable[[str], Any]:
    what = "a whole number" if kind is int else "a number"

    def parse(value: str):
        try:
            number = kind(value.strip())
        except ValueError:
            raise ValueError(f"expected {what} {low:g}-{high:g}") from None
        if not low <= number <= high:
            raise ValueError(f"expected {what} {low:g}-{high:g}")
        return number

    return parse


def int_between(low: int, high: int) -> Callable[[str], int]:
    return between(int, low, high)


def float_between(low: float, high: float) -> Callable[[str], float]:
    return between(float, low, high)


def mode(value: str) -> str:
    low = value.strip().lower()
    if low not in MODES:
        raise ValueError(f"expected one of {', '.join(MODES)}")
    return low


def tag_name(value: str) -> str:
    return arm_ids.validate_name(value.strip(), "tag")


def subscriptions(value: str) -> tuple[str, ...]:
    items = [s for s in re.split(r"[,;\s]+", value.strip()) if s]
    bad = [s for s in items if not arm_ids.is_subscription_id(s)]
    if bad:
        raise ValueError(f"not subscription IDs (GUIDs): {', '.join(bad)}")
    return tuple(sorted({s.lower() for s in items}))


def subnet_id(value: str) -> str:
    parsed = arm_ids.try_parse(value)
    if parsed is None or not parsed.is_type("Microsoft.Network/virtualNetworks/subnets"):
        raise ValueError(
            "expected a subnet resource ID "
            "(/subscriptions/.../virtualNetworks/{vnet}/subnets/{subnet})"
        )
    return str(parsed)


def url(value: str) -> str:
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("https", "http") or not parsed.netloc:
        raise ValueError("expected an http(s) URL")
    return value.strip().rstrip("/")


# Azure Monitor's batch metrics API is regional (docs/azure-facts.md).
DEFAULT_METRICS_ENDPOINT = "https://{region}.metrics.monitor.azure.com"


def region_url(value: str) -> str:
    """An http(s) URL template with one `{region}` (in the host on Azure, anywhere locally)."""
    if value.count("{region}") != 1:
        raise ValueError("expected an http(s) URL with one {region}")
    url(value.replace("{region}", "region"))
    return value.strip().rstrip("/")


def window(value: str) -> MaintenanceWindow:
    return MaintenanceWindow.parse(value)


def declared_callers(value: str) -> Mapping[str, tuple[CallTarget, ...]]:
    """JSON object: VM name or VM resource ID -> list of "VIP:port" (or one comma string)."""
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise ValueError('expected a JSON object like {"hs-vm1": ["10.0.1.100:1972"]}')
    out: dict[str, tuple[CallTarget, ...]] = {}
    for vm, targets in raw.items():
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"{vm!r}: expected a list of 'VIP:port' strings")
        parsed = parse_call_targets(",".join(targets))
        key = arm_ids.normalize(vm)
        out[key] = tuple(
            sorted(
                set(out.get(key, ()) + parsed), key=lambda t: (t.ip.version, int(t.ip), t.port or 0)
            )
        )
    return MappingProxyType(out)


def ncrontab(value: str) -> str:
    return validate_ncrontab(value)
