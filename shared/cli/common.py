"""What every `hairpin` command shares: the usage error, settings and the service context from
the environment, the CLI trigger, and writing output files.

Service and SDK modules are imported inside the functions, so `hairpin --help` and the offline
commands start without loading the Azure SDKs.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.core.journal import Trigger
from shared.core.vocab import TriggerKind

if TYPE_CHECKING:
    from shared.services.context import ServiceContext
    from shared.settings import Settings

__all__ = ["UsageError", "settings_from_env", "context_from_env", "cli_trigger", "write_file"]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""

    exit_code = 2


def settings_from_env() -> Settings:
    from shared.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def context_from_env(*, offline: bool = False) -> ServiceContext:
    """Settings from the environment, storage and notifications when configured; `offline`
    (a snapshot audit): neither, and no network. No deadline: a person is watching."""
    from shared.services.context import build_context

    return build_context(settings_from_env(), offline=offline)


def cli_trigger() -> Trigger:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers): the journal says "cli"
        user = None
    return Trigger(TriggerKind.CLI, principal=user)


def write_file(path: str, text: str) -> None:
    target = Path(path)
    try:
        if target.parent and not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
