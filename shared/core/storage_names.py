"""Pure: every table, blob container and queue name of one deployment, from one prefix.

Two deployments that share a storage account must never read each other's records (the state
table says which VMs a deployment deallocated and will start again), so no name is fixed: all
derive from `HAIRPIN_STORAGE_PREFIX`. Storage naming rules (learn.microsoft.com, "Naming
Tables", "Naming and referencing containers", "Naming queues and metadata"): tables 3-63
alphanumerics starting with a letter; containers and queues 3-63 lowercase letters, digits and
single hyphens. A prefix of a lowercase letter and up to 49 lowercase letters or digits keeps
every derived name inside all three rules, the poison queue the Functions host derives from the
sweep queue included (`<queue>-poison`: 50 + len("-sweep-poison") = 63).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "StorageNames", "validate_prefix", "fix_queue_of", "sweep_queue_of",
           "poison_queue_of"]

DEFAULT_PREFIX = "hairpin"
_PREFIX = re.compile(r"[a-z][a-z0-9]{0,49}")  # 50 + len("-sweep-poison") = 63


def validate_prefix(text: object) -> str:
    if not isinstance(text, str) or _PREFIX.fullmatch(text) is None:
        raise ValueError("expected a lowercase letter followed by at most 49 lowercase "
                         "letters or digits")
    return text


@dataclass(frozen=True)
class StorageNames:
    """`StorageNames("hairpin").journal_table == "hairpinjournal"`."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    @property
    def journal_table(self) -> str:
        return f"{self.prefix}journal"

    @property
    def state_table(self) -> str:
        return f"{self.prefix}state"

    @property
    def report_container(self) -> str:
        return f"{self.prefix}-reports"

    @property
    def lock_container(self) -> str:
        return f"{self.prefix}-locks"

    @property
    def fix_queue(self) -> str:
        return fix_queue_of(self.prefix)

    @property
    def sweep_table(self) -> str:
        """Fleet sweeps: one entity per sweep (plan, state, summary), one per item result."""
        return f"{self.prefix}sweeps"

    @property
    def sweep_queue(self) -> str:
        return sweep_queue_of(self.prefix)


def fix_queue_of(prefix: str) -> str:
    """The work queue's name; also given the app-setting expression "%HAIRPIN_STORAGE_PREFIX%"
    for the queue trigger, which the Functions host resolves the same way."""
    return f"{prefix}-fix"


def sweep_queue_of(prefix: str) -> str:
    """The fleet sweep's work-item queue (resolved by the host like `fix_queue_of`)."""
    return f"{prefix}-sweep"


def poison_queue_of(queue: str) -> str:
    """Where the Functions host moves a message after maxDequeueCount failed deliveries."""
    return f"{queue}-poison"
