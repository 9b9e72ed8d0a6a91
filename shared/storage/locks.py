"""Locks per backend pool and per VM, held as Blob leases.

Design: *finite* leases (15-60 s, Blob storage's range) renewed by a background thread while
held. The storage service itself ends a lease that is not renewed, so a holder that crashes,
is killed or loses its network leaves the lock for at most one lease period: no other process
has to decide that the holder is dead, nothing depends on clocks agreeing, and no "break stale
locks" code can get it wrong. (An infinite lease with an expiry time in metadata would need
every other process to read and trust that time and break the lease: a bug or a skewed clock
there leaves a lock forever or breaks a live one.) The price: a holder that stalls for longer
than a lease period loses its lock; the renewal thread notices, and `HeldLocks.check()` raises
`LockLost`, so callers check before every write.

Several locks are taken in one deterministic order (sorted by kind, then lowercased id: pools
before VMs), without waiting while holding: when one is busy, those already taken are released
and `LockBusy` says who holds it. Two processes can therefore never deadlock.

One empty blob per lock, `<kind>/<sha256 of the lowercased id>`, created on first use; its
metadata says who holds it (holder, since, operation id, resource id) for the `LockBusy` message.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.core.arm_ids import normalize
from shared.core.storage_names import StorageNames

if TYPE_CHECKING:  # imported where used: `import function_app` stays fast
    from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient

MIN_LEASE_S, MAX_LEASE_S = 15, 60  # what Blob storage accepts for a finite lease


@dataclass(frozen=True, order=True)
class LockName:
    """A lock on one resource. Ordering (kind, normalized id) is the acquisition order."""

    kind: str
    key: str  # normalized resource id
    resource_id: str = field(compare=False, default="")

    @property
    def blob_name(self) -> str:
        return f"{self.kind}/{hashlib.sha256(self.key.encode()).hexdigest()[:40]}"

    def __str__(self) -> str:
        return f"{self.kind} {self.resource_id or self.key}"


def lock_name(kind: str, resource_id: str) -> LockName:
    if not kind.isalnum():
        raise ValueError(f"lock kind must be alphanumeric: {kind!r}")
    return LockName(kind.lower(), normalize(resource_id), resource_id)


def pool_lock(pool_id: str) -> LockName:
    return lock_name("pool", pool_id)


def vm_lock(vm_id: str) -> LockName:
    return lock_name("vm", vm_id)


@dataclass(frozen=True)
class LockInfo:
    name: LockName
    holder: str
    since: str
    operation_id: str


class LockBusy(Exception):
    """Someone else holds the lock; `info` says who, since when, for which operation."""

    def __init__(self, info: LockInfo) -> None:
        self.info = info
        super().__init__(f"lock on {info.name} is held by {info.holder} since {info.since} "
                         f"(operation {info.operation_id})")


class LockLost(Exception):
    """A lease could not be renewed in time: another process may hold the lock now."""


def _default_holder() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


class LockManager:
    """`with LockManager(blob_service).hold([pool_lock(p), vm_lock(v)], operation_id=op) as h:`
    do work, calling `h.check()` before each write."""

    def __init__(self, blobs: BlobServiceClient, *,
                 container: str = StorageNames().lock_container,
                 holder: str | None = None, lease_seconds: int = 30,
                 renew_every: float | None = None) -> None:
        if not MIN_LEASE_S <= lease_seconds <= MAX_LEASE_S:
            raise ValueError(f"lease_seconds must be {MIN_LEASE_S}-{MAX_LEASE_S}")
        self._container = blobs.get_container_client(container)
        self.holder = holder or _default_holder()
        self.lease_seconds = lease_seconds
        # A third of the lease: a slow renewal (SDK retries included) still lands in time.
        self.renew_every = renew_every or lease_seconds / 3

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs) -> LockManager:
        from azure.storage.blob import BlobServiceClient

        return cls(BlobServiceClient.from_connection_string(connection_string), **kwargs)

    def ensure(self) -> LockManager:
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        return self

    def hold(self, names: Iterable[LockName], *, operation_id: str, wait: float = 0.0,
             poll: float = 1.0) -> HeldLocks:
        """Take every lock (deterministic order) or none. With `wait` > 0, retry the whole set
        until that many seconds have passed, then raise the last `LockBusy`."""
        ordered = tuple(sorted(set(names)))
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._take_all(ordered, operation_id)
            except LockBusy:
                if time.monotonic() + poll > deadline:
                    raise
                time.sleep(poll)

    def holder_of(self, name: LockName) -> LockInfo | None:
        """Who holds this lock now (None when it is free)."""
        try:
            props = self._container.get_blob_client(name.blob_name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        if props.lease.state != "leased":
            return None
        return self._info(name, props.metadata)

    def _take_all(self, ordered: tuple[LockName, ...], operation_id: str) -> HeldLocks:
        taken: list[tuple[LockName, BlobLeaseClient]] = []
        try:
            for name in ordered:
                taken.append((name, self._take(name, operation_id)))
        except BaseException:
            for _, lease in reversed(taken):
                _release_quietly(lease)
            raise
        return HeldLocks(taken, self.lease_seconds, self.renew_every)

    def _take(self, name: LockName, operation_id: str) -> BlobLeaseClient:
        from azure.storage.blob import BlobLeaseClient

        blob = self._container.get_blob_client(name.blob_name)
        lease = BlobLeaseClient(blob, lease_id=str(uuid.uuid4()))
        try:
            self._acquire(blob, lease)
        except HttpResponseError as e:
            if e.status_code != 409:  # 409 LeaseAlreadyPresent: someone holds it
                raise
            busy = self.holder_of(name) or self._info(name, {})
            raise LockBusy(busy) from None
        try:
            blob.set_blob_metadata({
                "holder": quote(self.holder), "since": datetime.now(UTC).isoformat(),
                "operation_id": quote(operation_id), "resource": quote(name.resource_id)},
                lease=lease)
        except BaseException:
            _release_quietly(lease)
            raise
        return lease

    def _acquire(self, blob: BlobClient, lease: BlobLeaseClient) -> None:
        try:
            lease.acquire(lease_duration=self.lease_seconds)
        except ResourceNotFoundError:  # first use of this lock: create its blob, then lease it
            try:
                blob.upload_blob(b"", overwrite=False)
            except ResourceExistsError:
                pass  # created meanwhile by another process: fine
            lease.acquire(lease_duration=self.lease_seconds)

    @staticmethod
    def _info(name: LockName, metadata: dict) -> LockInfo:
        return LockInfo(name, unquote(metadata.get("holder", "unknown")),
                        metadata.get("since", "unknown"),
                        unquote(metadata.get("operation_id", "unknown")))


def _release_quietly(lease: BlobLeaseClient) -> None:
    try:
        lease.release()
    except HttpResponseError:
        pass  # already expired and possibly taken by someone else: nothing of ours to release


class HeldLocks:
    """Locks held by this process, renewed in the background until `release()`."""

    def __init__(self, taken: list[tuple[LockName, BlobLeaseClient]], lease_seconds: int,
                 renew_every: float):
        self._taken = taken
        self._lease_seconds = lease_seconds
        self._renewed_at = time.monotonic()  # last time every lease was known to be ours
        self._stop = threading.Event()
        self._lost: str | None = None
        self._thread = threading.Thread(target=self._renew, args=(renew_every,),
                                        name="lock-renewal", daemon=True)
        self._thread.start()

    @property
    def names(self) -> tuple[LockName, ...]:
        """In acquisition order."""
        return tuple(name for name, _ in self._taken)

    def check(self) -> None:
        """Raise `LockLost` if any lease could not be renewed: stop before the next write."""
        if self._lost:
            raise LockLost(self._lost)
        # Also by the clock: if this whole process was suspended, the renewal thread was too.
        silent = time.monotonic() - self._renewed_at
        if silent >= self._lease_seconds:
            raise LockLost(f"locks not renewed for {silent:.0f} s (lease {self._lease_seconds} s)")

    def release(self) -> None:
        """Give every lock back (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        for _, lease in reversed(self._taken):
            _release_quietly(lease)

    def _renew(self, every: float) -> None:
        while not self._stop.wait(every):
            started, ok = time.monotonic(), True
            for name, lease in self._taken:
                try:
                    lease.renew()
                except Exception as e:  # noqa: BLE001 - any failure means we may not hold it
                    ok = False
                    self._lost = self._lost or f"lock on {name} lost: {e}".splitlines()[0]
            if ok:
                self._renewed_at = started

    def __enter__(self) -> HeldLocks:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
