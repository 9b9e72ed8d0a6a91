"""Pure: the preflight's read-only guest probe (a Run Command canary that changes nothing).

Before a VM is deallocated for the fix, the probe proves that Run Command answers on it and that
the guest has what the route script needs: on Linux iproute2 and a kernel with `ipproto`/`sport`
rule selectors (4.17 or later), which network stack manages it, and an interface with the
primary NIC's MAC; on Windows PowerShell 5.1 or later and `Get-NetAdapter`. Its one JSON line:
`{"probe": {...}, "problems": [...], "ok": true|false}`.
"""

from __future__ import annotations

from shared.core.guest.spec import GuestScriptError, MacAddress
from shared.core.guest.templates import fill

__all__ = ["PROBE_MARKER", "render_probe"]

PROBE_MARKER = "azure-ilb-hairpin preflight probe"


def render_probe(os_type: str, primary_mac: str | None) -> str:
    """The probe for ``os_type`` linux|windows; ``primary_mac`` as ARM gives it (or None when
    ARM has not assigned one yet)."""
    mac = MacAddress.parse(primary_mac) if primary_mac else None
    os_key = str(os_type).lower()
    if os_key == "linux":
        return (f"#!/bin/bash\n# {PROBE_MARKER}: read-only, changes nothing.\n"
                f"PRIMARY_MAC='{mac.linux if mac else ''}'\n" + fill("probe.sh"))
    if os_key == "windows":
        return (f"# {PROBE_MARKER}: read-only, changes nothing.\n"
                f"$PrimaryMac = '{mac.windows if mac else ''}'\n" + fill("probe.ps1"))
    raise GuestScriptError(f"unknown os {os_type!r:.20}")
