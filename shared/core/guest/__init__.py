"""Pure: typed, validated values -> guest route scripts (Linux bash, Windows PowerShell)."""

from shared.core.guest.linux import (
    render_linux_apply,
    render_linux_body,
    render_linux_cleanup,
    render_linux_unit,
    render_linux_verify,
    render_linux_watch_unit,
)
from shared.core.guest.output import (
    RunCommandOutputError,
    parse_run_command_output,
    script_lines,
)
from shared.core.guest.render import (
    command_id,
    render,
)
from shared.core.guest.spec import (
    ADDRESS_MARKER,
    BODY_PATH,
    FORMAT_VERSION,
    HA_PORTS_SIDE_EFFECT,
    HEREDOC_END,
    LOCAL_RULE_PREF,
    MANIFEST,
    MAX_ROUTES,
    MECHANISM_FILE,
    POLICY_TABLE,
    ROUTE_PROTO,
    RULE_PREF,
    STATE_DIR,
    UNIT_LINK,
    UNIT_NAME,
    UNIT_PATH,
    WATCH_UNIT_NAME,
    WATCH_UNIT_PATH,
    GuestRouteSpec,
    GuestScriptError,
    MacAddress,
    Mechanism,
    Protocol,
    VerifyTarget,
    VipRoute,
    describe,
)
from shared.core.guest.windows import (
    render_windows_apply,
    render_windows_cleanup,
    render_windows_verify,
)

__all__ = [
    "FORMAT_VERSION", "MAX_ROUTES", "POLICY_TABLE", "RULE_PREF", "LOCAL_RULE_PREF",
    "ROUTE_PROTO", "STATE_DIR", "BODY_PATH", "ADDRESS_MARKER", "UNIT_NAME", "UNIT_PATH",
    "UNIT_LINK", "WATCH_UNIT_NAME", "WATCH_UNIT_PATH", "MANIFEST", "MECHANISM_FILE", "Mechanism",
    "render_linux_watch_unit", "HEREDOC_END", "HA_PORTS_SIDE_EFFECT", "GuestScriptError",
    "RunCommandOutputError", "MacAddress", "Protocol", "VipRoute", "VerifyTarget",
    "GuestRouteSpec", "describe", "render_linux_body", "render_linux_unit",
    "render_linux_apply", "render_linux_cleanup", "render_linux_verify", "render_windows_apply",
    "render_windows_cleanup", "render_windows_verify", "render", "command_id", "script_lines",
    "parse_run_command_output",
]
