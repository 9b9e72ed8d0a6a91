"""In-memory resource store: raw ARM documents keyed by case-insensitive resource ID; and the
`EmulatorHost` the resource handlers work on."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any, Protocol


def new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def lower(rid: str) -> str:
    return rid.rstrip("/").lower()


def rg_key(rid: str) -> str | None:
    """'/subscriptions/s/resourceGroups/rg/...' -> '/subscriptions/s/resourcegroups/rg'."""
    parts = rid.strip("/").split("/")
    if (
        len(parts) >= 4
        and parts[0].lower() == "subscriptions"
        and parts[2].lower() == "resourcegroups"
    ):
        return "/" + "/".join(parts[:4]).lower()
    return None


def parent_id(child_id: str) -> str:
    """ID of the top-level resource owning a child ID (e.g. a NIC's ipConfiguration)."""
    parts = child_id.strip("/").split("/")
    return "/" + "/".join(parts[:8])


class Store:
    """Documents as ARM returns them. Everything is copied in and out so callers never alias."""

    def __init__(self):
        self.lock = threading.RLock()
        self._docs: dict[str, dict] = {}
        self.resource_groups: dict[str, str] = {}  # lower rg id -> rg name as written
        self.version = 0  # bumped on every change: derived indexes cache on it

    def add_resource_group(self, rid: str) -> None:
        key = rg_key(rid)
        if key:
            self.resource_groups.setdefault(key, rid.strip("/").split("/")[3])

    def has_resource_group(self, rid: str) -> bool:
        key = rg_key(rid)
        return key is not None and key in self.resource_groups

    def get(self, rid: str) -> dict | None:
        with self.lock:
            doc = self._docs.get(lower(rid))
            return copy.deepcopy(doc) if doc is not None else None

    def raw(self, rid: str) -> dict | None:
        """The stored object itself (no copy): for the emulator's own bookkeeping only."""
        return self._docs.get(lower(rid))

    def put(self, doc: dict) -> None:
        with self.lock:
            self._docs[lower(doc["id"])] = copy.deepcopy(doc)
            self.add_resource_group(doc["id"])
            self.version += 1

    def delete(self, rid: str) -> bool:
        with self.lock:
            self.version += 1
            return self._docs.pop(lower(rid), None) is not None

    def all(self) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(d) for d in self._docs.values()]

    def of_type(self, rtype: str, scope: str | None = None) -> list[dict]:
        """Documents of one type, optionally under an ID prefix (subscription or resource group)."""
        with self.lock:
            return [copy.deepcopy(d) for d in self.raw_of_type(rtype, scope)]

    def raw_of_type(self, rtype: str, scope: str | None = None) -> list[dict]:
        """Like of_type but the stored objects themselves, sorted by ID: read-only use."""
        t = rtype.lower()
        prefix = lower(scope) + "/" if scope else None
        with self.lock:
            out = [
                (k, d)
                for k, d in self._docs.items()
                if d.get("type", "").lower() == t and (prefix is None or k.startswith(prefix))
            ]
        return [d for _, d in sorted(out, key=lambda kd: kd[0])]

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, rid: str) -> bool:
        return lower(rid) in self._docs


class EmulatorHost(Protocol):
    """What the resource handlers (`emulator.resources`) use of the emulator: its store, the
    VMs' power states and instance-view extras, the guest model and Run Command bookkeeping,
    the scenario's SKUs and rule health. `emulator.server.Emulator` is the one implementation."""

    store: Store
    power: dict[str, str]  # lower VM id -> running | deallocated | stopped | ...
    instance_extra: dict[str, dict]
    guest: Any  # emulator.guests.GuestModel
    skus: list[dict]
    health: dict[str, dict]
    run_busy: set[str]
    busy_lock: threading.Lock
    run_command_seconds: float
    agent_ready_seconds: float
    agent_ready_at: dict[str, float]
    net_index: tuple[int, dict] | None  # (store version, derived address/pool lookups)
    mirrors: Any  # emulator.mirrors.Mirrors

    def power_state(self, vm_id: str) -> str: ...

    def new_guid(self) -> str: ...

