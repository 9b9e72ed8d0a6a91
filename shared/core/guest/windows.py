"""Pure: validated values -> the Windows (PowerShell, RunPowerShellScript) apply, cleanup and
verify scripts, assembled from ``templates/*.ps1``. Host routes only: Windows uses the strong host
model, so no policy rules."""

from __future__ import annotations

from collections.abc import Iterable

from shared.core.guest.spec import (
    FORMAT_VERSION,
    GuestRouteSpec,
    VerifyTarget,
    check_count_timeout,
    verify_items,
)
from shared.core.guest.templates import template


def _ps_vars(spec: GuestRouteSpec) -> str:
    vips = ", ".join(f"'{v}'" for v in spec.vips)
    return "\n".join([
        f"$Format = {FORMAT_VERSION}",
        f"$Mac = '{spec.secondary_mac.windows}'",
        f"$SecondaryIp = '{spec.secondary_ip}'",
        f"$Gateway = '{spec.gateway}'",
        f"$Vips = @({vips})",
    ]) + "\n"


def _ps_header(title: str) -> str:
    return (f"# azure-ilb-hairpin {title} (format {FORMAT_VERSION}). Rendered from validated "
            "values.\n# Output ends with one JSON line (ConvertTo-Json -Compress).\n")


def render_windows_apply(spec: GuestRouteSpec) -> str:
    """RunPowerShellScript apply: host routes only (Windows uses the strong host model); routes
    to VIPs no longer wanted are removed from the managed adapter."""
    return (_ps_header("hairpin routes: apply") + _ps_vars(spec) + template("prelude.ps1")
            + template("apply.ps1"))


def render_windows_cleanup(spec: GuestRouteSpec) -> str:
    return (_ps_header("hairpin routes: cleanup") + _ps_vars(spec) + template("prelude.ps1")
            + template("cleanup.ps1"))


def render_windows_verify(targets: GuestRouteSpec | Iterable[VerifyTarget], *, count: int = 20,
                          timeout_s: int = 2) -> str:
    items = verify_items(targets)
    check_count_timeout(count, timeout_s)
    # `+= ,@(...)` keeps each pair an array (a one-element @(@(...)) would be flattened).
    pairs = "".join(f"$Targets += ,@('{t.vip}', {t.port})\n" for t in items)
    return (_ps_header("verification: N TCP connects per VIP:port")
            + f"$Count = {count}\n$TimeoutMs = {timeout_s * 1000}\n"
            + "$Targets = @()\n" + pairs + template("verify.ps1"))
