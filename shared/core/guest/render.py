"""Pure: one entry point over the renderers, by OS and mode, and the Run Command id per OS."""

from __future__ import annotations

from shared.core.guest.linux import render_linux_apply, render_linux_cleanup, render_linux_verify
from shared.core.guest.spec import GuestRouteSpec, GuestScriptError
from shared.core.guest.windows import (
    render_windows_apply,
    render_windows_cleanup,
    render_windows_verify,
)


def render(spec: GuestRouteSpec, os_type: str, mode: str = "apply") -> str:
    """``os_type`` linux|windows, ``mode`` apply|cleanup|verify."""
    table = {
        ("linux", "apply"): render_linux_apply, ("linux", "cleanup"): render_linux_cleanup,
        ("linux", "verify"): render_linux_verify,
        ("windows", "apply"): render_windows_apply, ("windows", "cleanup"): render_windows_cleanup,
        ("windows", "verify"): render_windows_verify,
    }
    key = (str(os_type).lower(), str(mode).lower())
    if key not in table:
        raise GuestScriptError(f"unknown os/mode {os_type!r:.20}/{mode!r:.20}")
    if type(spec) is not GuestRouteSpec and key[1] != "verify":  # verify checks its targets
        # Exactly the validated type: a subclass could override what the templates read.
        raise GuestScriptError(f"expected a GuestRouteSpec, got {type(spec).__name__}")
    return table[key](spec)


def command_id(os_type: str) -> str:
    return "RunPowerShellScript" if str(os_type).lower() == "windows" else "RunShellScript"
