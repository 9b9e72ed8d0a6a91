"""The fleet sweep's table: one entity per sweep, one per work item result.

PartitionKey `sweeps`, RowKey = sweep ID: the sweep's plan (its items), state
(`SweepState`), timer part and, once done, its summary. PartitionKey = sweep ID, RowKey = item
ID: that item's result, inserted once (`create_entity` fails when the row exists: the first
result wins, so an item redelivered or run twice is counted once). The sweep's state moves only
by ETag-conditional updates, so exactly one invocation finishes a sweep.

Documents larger than a Table property (64 KiB, 32K UTF-16 characters) are cut into several
`doc_N` string properties; an entity holds 1 MiB in all, which the callers stay under by
capping their lists (`shared.core.fleet_sweep.capped`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared.core.storage_names import StorageNames
from shared.core.vocab import SweepState

if TYPE_CHECKING:  # imported where used: `import function_app` stays fast
    from azure.data.tables import TableClient, TableServiceClient

__all__ = ["SweepRecord", "SweepTable"]

SWEEPS = "sweeps"
CHUNK = 30_000  # characters per property: under 32K UTF-16 units
_DOCS = ("plan", "timer", "summary")  # the JSON documents a sweep entity carries


def _split(name: str, doc: Any) -> dict[str, str]:
    text = json.dumps(doc, separators=(",", ":"), default=str)
    parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    return {f"{name}_{i}": p for i, p in enumerate(parts)}


def _joined(entity: Mapping[str, Any], name: str) -> Any:
    parts, i = [], 0
    while f"{name}_{i}" in entity:
        parts.append(entity[f"{name}_{i}"])
        i += 1
    return json.loads("".join(parts)) if parts else None


@dataclass(frozen=True)
class SweepRecord:
    """One sweep as stored: `plan` is {item ID: [subscriptions]}; `timer` the timer's own
    part of the summary (VMs started again before the sweep); `summary` once done."""

    sweep_id: str
    state: SweepState
    started_at: str
    resource_graph: bool
    plan: dict[str, list[str]]
    timer: dict[str, Any]
    summary: dict[str, Any] | None
    changed_at: str
    etag: str

    @property
    def items(self) -> int:
        return len(self.plan)


class SweepTable:
    def __init__(self, tables: TableServiceClient, *,
                 table: str = StorageNames().sweep_table) -> None:
        self._service = tables
        self._table: TableClient = tables.get_table_client(table)
        self.name = table

    def ensure(self) -> SweepTable:
        self._service.create_table_if_not_exists(self.name)
        return self

    # ---------------------------------------------------------------- sweeps
    def create(self, sweep_id: str, *, started_at: str, resource_graph: bool,
               plan: Mapping[str, list[str]], timer: Mapping[str, Any]) -> SweepRecord:
        entity = {"PartitionKey": SWEEPS, "RowKey": sweep_id, "state": str(SweepState.PLANNING),
                  "started_at": started_at, "changed_at": started_at,
                  "resource_graph": resource_graph, "items": len(plan),
                  **_split("plan", dict(plan)), **_split("timer", dict(timer))}
        self._table.create_entity(entity)
        found = self.get(sweep_id)
        assert found is not None
        return found

    def get(self, sweep_id: str) -> SweepRecord | None:
        try:
            entity = self._table.get_entity(SWEEPS, sweep_id)
        except ResourceNotFoundError:
            return None
        return _record(entity)

    def unfinished(self) -> list[SweepRecord]:
        """Every sweep not done, oldest first (normally none or one)."""
        found = self._table.query_entities(
            "PartitionKey eq @pk and state ne @done",
            parameters={"pk": SWEEPS, "done": str(SweepState.DONE)})
        return sorted((_record(e) for e in found), key=lambda r: r.sweep_id)

    def move(self, record: SweepRecord, state: SweepState, *, at: str,
             summary: Mapping[str, Any] | None = None) -> SweepRecord | None:
        """`record` to `state` if nobody changed it since it was read (its ETag); None when
        someone did (another invocation moved it first)."""
        entity: dict[str, Any] = {"PartitionKey": SWEEPS, "RowKey": record.sweep_id,
                                  "state": str(state), "changed_at": at}
        if summary is not None:
            entity.update(_split("summary", dict(summary)))
            entity.update({k: v for k, v in summary.items()
                           if isinstance(v, bool | int | float) and k != "items"})
        from azure.data.tables import UpdateMode

        try:
            self._table.update_entity(entity, mode=UpdateMode.MERGE, etag=record.etag,
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return self.get(record.sweep_id)

    # ---------------------------------------------------------------- item results
    def record_result(self, sweep_id: str, item_id: str, doc: Mapping[str, Any]) -> bool:
        """Insert the item's result; False when one is already recorded (first wins)."""
        entity = {"PartitionKey": sweep_id, "RowKey": item_id,
                  "complete": bool(doc.get("complete", True)), **_split("doc", dict(doc))}
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    def result(self, sweep_id: str, item_id: str) -> dict[str, Any] | None:
        try:
            return _joined(self._table.get_entity(sweep_id, item_id), "doc")
        except ResourceNotFoundError:
            return None

    def results(self, sweep_id: str) -> dict[str, dict[str, Any]]:
        """Item ID -> result document, for every result recorded."""
        found = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": sweep_id})
        return {e["RowKey"]: _joined(e, "doc") for e in found}


def _record(entity: Mapping[str, Any]) -> SweepRecord:
    docs = {name: _joined(entity, name) for name in _DOCS}
    return SweepRecord(sweep_id=entity["RowKey"], state=SweepState(entity["state"]),
                       started_at=entity.get("started_at", ""),
                       resource_graph=bool(entity.get("resource_graph")),
                       plan=docs["plan"] or {}, timer=docs["timer"] or {},
                       summary=docs["summary"], changed_at=entity.get("changed_at", ""),
                       etag=entity.metadata["etag"])
