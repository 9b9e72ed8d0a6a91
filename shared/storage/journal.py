"""Append-only journal on Azure Table storage, plus the open records every trigger reads.

Journal table: PartitionKey = `subject_key(vm_id)` (hash of the lowercased ARM id: ids contain
'/', which keys forbid), RowKey = inverted microsecond timestamp + random suffix, so a
partition lists newest first (Table storage returns rows in RowKey order) and two writers can
never hit the same key. Entries are only ever inserted (`create_entity`): nothing here updates
or deletes a journal row.

State table (mutable on purpose, unlike the journal): PartitionKey = record kind, RowKey =
subject + key, so "every VM we left deallocated" or "every verified route" is one partition
read, whatever the size of the journal.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.core.arm_ids import normalize
from shared.core.journal import (
    JournalEntry,
    OpenRecord,
    Trigger,
    cap_json,
    cap_text,
    subject_key,
    utc_now,
)
from shared.core.storage_names import StorageNames
from shared.core.vocab import RecordKind

if TYPE_CHECKING:  # imported where used: `import function_app` stays fast
    from azure.data.tables import TableClient, TableServiceClient

MAX_WHO_CHARS = 1024
_DEFAULT = StorageNames()  # names of the default prefix (settings pass the configured ones)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INVERT = 10**17 - 1  # microseconds: good until the year 5138, fixed width (17 digits)
# Table keys forbid '/', '\\', '#', '?' and U+0000-U+001F, U+007F-U+009F ("Understanding the
# Table service data model"); a lone surrogate cannot be sent at all. A key made only of these
# printable ASCII characters is used as it is (the form earlier versions wrote); any other key
# becomes '~' + the SHA-256 of its UTF-8 bytes ('~' is not in the set: the forms never meet).
_KEY_PLAIN = re.compile(r"[ !\"$%&'()*+,\-.0-9:;<=>@A-Z\[\]^_`a-z{|}]{0,256}")


def _micros(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _row_key(ts: datetime) -> str:
    return f"{_INVERT - _micros(ts):017d}-{secrets.token_hex(4)}"


def _plain(ts: datetime) -> datetime:
    # The SDK returns a datetime subclass; hand callers an ordinary aware datetime.
    return datetime.fromisoformat(ts.isoformat()).astimezone(UTC)


def _loads(text: str | None):
    return None if text is None else json.loads(text)


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class Journal:
    """`Journal(table_service).ensure()`; then `append`, `history`, `latest`, open records."""

    def __init__(self, tables: TableServiceClient, *, table: str = _DEFAULT.journal_table,
                 state_table: str = _DEFAULT.state_table) -> None:
        self._service = tables
        self._entries: TableClient = tables.get_table_client(table)
        self._state: TableClient = tables.get_table_client(state_table)

    @classmethod
    def from_connection_string(cls, connection_string: str, **names) -> Journal:
        from azure.data.tables import TableServiceClient

        return cls(TableServiceClient.from_connection_string(connection_string), **names)

    def ensure(self) -> Journal:
        """Create the tables if missing (idempotent; call once at start-up)."""
        for client in (self._entries, self._state):
            self._service.create_table_if_not_exists(client.table_name)
        return self

    # -- the journal (append-only) ---------------------------------------------------------

    def append(self, entry: JournalEntry) -> JournalEntry:
        """Insert the entry; returns it with `entry_id` set. Never overwrites anything."""
        for _ in range(3):
            key = _row_key(entry.timestamp)
            entity = self._to_entity(entry, key)
            try:
                self._entries.create_entity(entity)
                break
            except ResourceExistsError:
                if self._is_same(entity):
                    break  # the SDK retried our own insert after a lost response: done once
                # else 32 random bits collided within one microsecond: take another key
        else:
            raise RuntimeError("could not find a free journal key")
        return replace(entry, entry_id=key)

    def _is_same(self, entity: dict) -> bool:
        try:
            found = self._entries.get_entity(entity["PartitionKey"], entity["RowKey"])
        except ResourceNotFoundError:
            return False
        return all(found.get(k) == entity[k] for k in ("operation_id", "action", "result"))

    def history(self, vm_id: str | None, limit: int = 50, *, action: str | None = None,
                result: str | None = None, plan_hash: str | None = None,
                operation_id: str | None = None) -> list[JournalEntry]:
        """Entries for one VM (None: entries about no VM), newest first, optionally filtered."""
        out: list[JournalEntry] = []
        if limit <= 0:
            return out
        for entity in self._query(vm_id, action=action, result=result, plan_hash=plan_hash,
                                  operation_id=operation_id, page=min(limit, 1000)):
            out.append(self._from_entity(entity))
            if len(out) >= limit:
                break
        return out

    def latest(self, vm_id: str | None, **filters) -> JournalEntry | None:
        """The newest entry for the VM matching the filters of `history`, or None."""
        found = self.history(vm_id, 1, **filters)
        return found[0] if found else None

    def _query(self, vm_id, *, page: int, **filters) -> Iterator[dict]:
        clauses, params = ["PartitionKey eq @pk"], {"pk": subject_key(vm_id)}
        for name, value in filters.items():
            if value is not None:
                clauses.append(f"{name} eq @{name}")
                params[name] = value
        return self._entries.query_entities(" and ".join(clauses), parameters=params,
                                            results_per_page=page)

    @staticmethod
    def _to_entity(e: JournalEntry, key: str) -> dict:
        return _drop_none({
            "PartitionKey": subject_key(e.vm_id), "RowKey": key,
            "vm_id": e.vm_id, "action": e.action, "result": e.result,
            "plan_hash": e.plan_hash, "operation_id": e.operation_id,
            "trigger_kind": e.trigger.kind, "trigger_event_id": e.trigger.event_id,
            # Who asked may come from outside (claims, headers): bounded, as Table storage
            # refuses a string property over 32 K characters (PropertyValueTooLarge).
            "trigger_principal": cap_text(e.trigger.principal, MAX_WHO_CHARS),
            "trigger_principal_name": cap_text(e.trigger.principal_name, MAX_WHO_CHARS),
            "step": cap_text(e.step, MAX_WHO_CHARS),
            "before": None if e.before is None else cap_json(e.before),
            "after": None if e.after is None else cap_json(e.after),
            "error": cap_text(e.error), "at": e.timestamp.astimezone(UTC),
        })

    @staticmethod
    def _from_entity(d: dict) -> JournalEntry:
        return JournalEntry(
            action=d["action"], result=d["result"], operation_id=d["operation_id"],
            trigger=Trigger(d["trigger_kind"], d.get("trigger_event_id"),
                            d.get("trigger_principal"), d.get("trigger_principal_name")),
            vm_id=d.get("vm_id"), plan_hash=d.get("plan_hash"), step=d.get("step"),
            before=_loads(d.get("before")), after=_loads(d.get("after")), error=d.get("error"),
            timestamp=_plain(d["at"]), entry_id=d["RowKey"])

    # -- open records (mutable state next to the journal) ----------------------------------

    @staticmethod
    def _state_key(vm_id: str, key: str) -> str:
        """`<subject>_<key>`, valid for any string key; UnicodeEncodeError for a lone
        surrogate (not text: callers reject it as bad input)."""
        text = key.strip().lower()
        if _KEY_PLAIN.fullmatch(text) is None:
            text = "~" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"{subject_key(vm_id)}_{text}"

    def open_record(self, kind: str, vm_id: str, key: str = "", *, operation_id: str,
                    plan_hash: str | None = None, data=None, exclusive: bool = False) -> bool:
        """Open (or refresh) a record. `exclusive=True` opens it only if it is not open yet and
        returns False otherwise: a cheap "first one wins" claim (e.g. one remediation per VM)."""
        entity = _drop_none({
            "PartitionKey": kind, "RowKey": self._state_key(vm_id, key), "vm_id": vm_id,
            "key": key, "operation_id": operation_id, "plan_hash": plan_hash,
            "since": utc_now(), "data": None if data is None else cap_json(data),
        })
        if not exclusive:
            from azure.data.tables import UpdateMode

            self._state.upsert_entity(entity, mode=UpdateMode.REPLACE)
            return True
        try:
            self._state.create_entity(entity)
            return True
        except ResourceExistsError:
            return False

    def close_record(self, kind: str, vm_id: str, key: str = "") -> None:
        """Close a record; closing one that is not open is fine (idempotent)."""
        try:
            self._state.delete_entity(kind, self._state_key(vm_id, key))
        except ResourceNotFoundError:
            pass

    def open_records(self, kind: str, vm_id: str | None = None) -> list[OpenRecord]:
        """Open records of a kind, for every VM or one."""
        if vm_id is None:
            rows = self._state.query_entities("PartitionKey eq @k", parameters={"k": kind})
        else:  # every RowKey of this VM starts with "<subject>_"; '`' is the next character
            s = subject_key(vm_id)
            rows = self._state.query_entities(
                "PartitionKey eq @k and RowKey ge @lo and RowKey lt @hi",
                parameters={"k": kind, "lo": f"{s}_", "hi": f"{s}`"})
        return [OpenRecord(kind=kind, vm_id=r["vm_id"], key=r.get("key", ""),
                           operation_id=r["operation_id"], since=_plain(r["since"]),
                           plan_hash=r.get("plan_hash"), data=_loads(r.get("data")))
                for r in rows]

    def left_deallocated(self) -> list[OpenRecord]:
        """VMs this project deallocated and has not started again (check live state!)."""
        return self.open_records(RecordKind.DEALLOCATED)

    def verified_routes(self, vm_id: str | None = None) -> frozenset[tuple[str, str]]:
        """{(normalized VM id, frontend IP)} whose route was pushed and verified."""
        return frozenset((normalize(r.vm_id), r.key)
                         for r in self.open_records(RecordKind.VERIFIED_ROUTE, vm_id))
