"""Audit reports, sweep summaries and sweep checkpoints in Blob storage.

    reports/YYYY/MM/DD/<run-id>.json|.html   one audit run (JSON document + HTML report)
    reports/index.json                       past runs, newest first (the latest is the first)
    sweeps/YYYY/MM/DD/<sweep-id>.json        one drift-sweep summary
    sweeps/index.json
    checkpoints/<name>.json                  resumable cursors, written with ETag conditions

Index updates are read-modify-write under the blob's ETag (If-Match), retried on conflict, so
concurrent runs never drop each other's entry. The dated files are written before the index:
a crash in between leaves a report that only the index does not know about, never an index
entry without its report.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared.core.storage_names import StorageNames

if TYPE_CHECKING:  # imported where used: `import function_app` stays fast
    from azure.storage.blob import BlobServiceClient, ContainerClient

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # fullmatch: `$` allows a final "\n"
_CONTENT_TYPES = {"json": "application/json", "html": "text/html; charset=utf-8"}
INDEX_KEEP = 1000  # index entries kept; older runs stay in storage, listed by their dated path


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: letters, digits, '.', '_', '-' (max 100)")
    return value


def new_run_id(at: datetime) -> str:
    """Sortable and unique: the UTC time of the run plus a random suffix."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _as_bytes(value: bytes | str | Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, indent=1, sort_keys=True, default=str).encode()


@dataclass(frozen=True)
class RunRecord:
    """One archived run as listed in the index."""

    run_id: str
    at: datetime
    paths: Mapping[str, str]  # extension -> blob name, e.g. {"json": "reports/2026/...json"}
    summary: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "at": self.at.isoformat(), "paths": dict(self.paths),
                "summary": dict(self.summary)}

    @classmethod
    def from_json(cls, d: dict) -> RunRecord:
        return cls(d["run_id"], datetime.fromisoformat(d["at"]), d["paths"], d.get("summary", {}))


class Archive:
    """Dated files of one kind of run plus their index (see the module docstring)."""

    def __init__(self, container: ContainerClient, prefix: str, keep: int = INDEX_KEEP):
        self._container = container
        self.prefix = prefix
        self._keep = keep

    @property
    def index_name(self) -> str:
        return f"{self.prefix}/index.json"

    def put(self, files: Mapping[str, bytes | str | Any], *, run_id: str | None = None,
            at: datetime | None = None, summary: Mapping[str, Any] | None = None) -> RunRecord:
        """Store the files of one run ({"json": doc, "html": bytes}) and index it."""
        at = (at or datetime.now(UTC)).astimezone(UTC)
        run_id = _check_id(new_run_id(at) if run_id is None else run_id, "run id")
        paths = {}
        for ext, content in files.items():
            name = f"{self.prefix}/{at:%Y/%m/%d}/{run_id}.{_check_id(ext, 'extension')}"
            self._container.upload_blob(
                name, _as_bytes(content), overwrite=True,
                content_settings=blob_content(
                    content_type=_CONTENT_TYPES.get(ext, "application/octet-stream")))
            paths[ext] = name
        record = RunRecord(run_id, at, paths, dict(summary or {}))
        _update_json(self._container, self.index_name, lambda runs: self._add(runs, record))
        return record

    def _add(self, runs: list | None, record: RunRecord) -> list:
        kept = [r for r in runs or [] if r["run_id"] != record.run_id]
        kept.append(record.to_json())
        kept.sort(key=lambda r: (r["at"], r["run_id"]), reverse=True)  # ISO UTC sorts as time
        return kept[: self._keep]

    def runs(self, limit: int = 50) -> list[RunRecord]:
        """Past runs, newest first."""
        found = _read_json(self._container, self.index_name)
        runs = found[0] if found else []
        return [RunRecord.from_json(r) for r in runs[:limit]]

    def latest(self) -> RunRecord | None:
        runs = self.runs(1)
        return runs[0] if runs else None

    def find(self, run_id: str) -> RunRecord | None:
        return next((r for r in self.runs(self._keep) if r.run_id == run_id), None)

    def read(self, record: RunRecord | str, ext: str = "json") -> bytes:
        """The bytes of one file of a run (by record or run id)."""
        if isinstance(record, str):
            found = self.find(record)
            if found is None:
                raise KeyError(f"no run {record!r} in {self.index_name}")
            record = found
        return self._container.download_blob(record.paths[ext]).readall()

    def read_json(self, record: RunRecord | str) -> Any:
        return json.loads(self.read(record, "json"))


@dataclass(frozen=True)
class Checkpoint:
    name: str
    value: Any
    etag: str


class CheckpointConflict(Exception):
    """The checkpoint changed since it was read (or exists when it was meant to be created)."""


class CheckpointStore:
    """Small named JSON values (sweep cursors) with optimistic concurrency.

    `put(name, value, etag=None)` creates and fails if it exists; `put(name, value, etag=E)`
    replaces only the version read with ETag E. A stale writer gets `CheckpointConflict`."""

    def __init__(self, container: ContainerClient, prefix: str = "checkpoints"):
        self._container = container
        self._prefix = prefix

    def _blob(self, name: str) -> str:
        return f"{self._prefix}/{_check_id(name, 'checkpoint name')}.json"

    def get(self, name: str) -> Checkpoint | None:
        found = _read_json(self._container, self._blob(name))
        return None if found is None else Checkpoint(name, found[0], found[1])

    def put(self, name: str, value: Any, *, etag: str | None) -> Checkpoint:
        blob = self._container.get_blob_client(self._blob(name))
        try:
            if etag is None:
                props = blob.upload_blob(_as_bytes(value), overwrite=False)
            else:
                props = blob.upload_blob(_as_bytes(value), overwrite=True, etag=etag,
                                         match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as e:
            raise CheckpointConflict(f"checkpoint {name!r} changed meanwhile") from e
        return Checkpoint(name, value, props["etag"])

    def delete(self, name: str, *, etag: str | None = None) -> None:
        """Delete (only the version with `etag`, if given); deleting nothing is fine."""
        kwargs = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            self._container.delete_blob(self._blob(name), **kwargs)
        except ResourceNotFoundError:
            pass
        except ResourceModifiedError as e:
            raise CheckpointConflict(f"checkpoint {name!r} changed meanwhile") from e


class ReportStore:
    """Everything an audit or a sweep keeps in Blob storage, in one container."""

    def __init__(self, blobs: BlobServiceClient, *,
                 container: str = StorageNames().report_container) -> None:
        self._container = blobs.get_container_client(container)
        self.reports = Archive(self._container, "reports")
        self.sweeps = Archive(self._container, "sweeps")
        self.checkpoints = CheckpointStore(self._container)

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs) -> ReportStore:
        from azure.storage.blob import BlobServiceClient

        return cls(BlobServiceClient.from_connection_string(connection_string), **kwargs)

    def ensure(self) -> ReportStore:
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        return self

    def save_audit(self, report: Any, html: bytes | str | None = None, *,
                   run_id: str | None = None, at: datetime | None = None,
                   summary: Mapping[str, Any] | None = None) -> RunRecord:
        files = {"json": report} if html is None else {"json": report, "html": html}
        return self.reports.put(files, run_id=run_id, at=at, summary=summary)

    def save_sweep(self, summary: Mapping[str, Any], *, sweep_id: str | None = None,
                   at: datetime | None = None) -> RunRecord:
        """The full summary goes to the dated file; the index keeps only its counts."""
        counts = {k: v for k, v in summary.items() if isinstance(v, int | float | bool)}
        return self.sweeps.put({"json": summary}, run_id=sweep_id, at=at, summary=counts)


def blob_content(**settings):
    """azure-storage-blob's ContentSettings, imported on first use."""
    from azure.storage.blob import ContentSettings

    return ContentSettings(**settings)


def _read_json(container: ContainerClient, name: str) -> tuple[Any, str] | None:
    try:
        download = container.download_blob(name)
    except ResourceNotFoundError:
        return None
    return json.loads(download.readall()), download.properties.etag


def _update_json(container: ContainerClient, name: str, change, attempts: int = 20) -> Any:
    """Optimistic read-modify-write of a JSON blob: retry when someone else wrote in between."""
    blob = container.get_blob_client(name)
    for attempt in range(attempts):
        found = _read_json(container, name)
        new = change(found[0] if found else None)
        try:
            if found is None:
                blob.upload_blob(_as_bytes(new), overwrite=False,
                                 content_settings=blob_content(content_type="application/json"))
            else:
                blob.upload_blob(_as_bytes(new), overwrite=True, etag=found[1],
                                 match_condition=MatchConditions.IfNotModified,
                                 content_settings=blob_content(content_type="application/json"))
            return new
        except (ResourceExistsError, ResourceModifiedError):
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # jitter: writers spread out
    raise RuntimeError(f"{name}: too many concurrent updates")
