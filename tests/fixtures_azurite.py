"""Azurite fixtures: start the storage emulator once per test session.

`azurite` (session): one Azurite process (Blob + Table, in memory, random loopback ports) and its
connection string with the well-known development account key. Product code never knows it is
talking to Azurite: it only gets the connection string.

`storage_ns` (function): a fresh, unique name prefix per test, so tests never see each other's
containers or tables; whatever a test created under the prefix is deleted afterwards.

    @pytest.mark.azurite
    def test_something(storage_ns):
        blobs = storage_ns.blob_service()
        container = storage_ns.container("reports")   # "<prefix>-reports"
        table = storage_ns.table("journal")           # "<prefix>journal"

Set AZURITE_CONNECTION_STRING to use an Azurite you started yourself instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"

# The documented, public development account of every storage emulator (not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S = 60
_LISTENING = re.compile(
    r"Azurite (Blob|Table|Queue) service is successfully listening at (http://\S+)")


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: endpoints and the connection string for them."""

    blob_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    table_endpoint: str
    queue_endpoint: str = ""  # Azurite serves queues too (the fix API's work queue)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};TableEndpoint={self.table_endpoint};"
            + (f"QueueEndpoint={self.queue_endpoint};" if self.queue_endpoint else "")
        )

    def blob_service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def table_service(self):
        from azure.data.tables import TableServiceClient

        return TableServiceClient.from_connection_string(self.connection_string)


def _ensure_installed() -> None:
    """A fresh clone has no node_modules: install Azurite once (what `make test` does)."""
    if AZURITE_BIN.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("Azurite is not installed and npm is missing: install Node.js, then "
                    "`make test`", pytrace=False)
    proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not AZURITE_BIN.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        pytest.fail("`npm install` of Azurite failed (`make test` installs it): "
                    + " | ".join(tail), pytrace=False)


def _die_with_parent() -> None:
    # Linux: if pytest is killed hard, the kernel stops Azurite too instead of leaking it.
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(workdir: Path) -> tuple[subprocess.Popen, Azurite]:
    _ensure_installed()
    args = [
        str(AZURITE_BIN),
        "--inMemoryPersistence", "--extentMemoryLimit", "256",  # cwd is a tmp dir for any debris
        "--skipApiVersionCheck",  # the Python SDKs may be newer than this Azurite
        "--loose",
        "--disableTelemetry",  # no network beyond loopback
        "--silent",  # no access log
        # Port 0: the OS picks a free port (no race); Azurite prints the one it got.
        "--blobHost", "127.0.0.1", "--blobPort", "0",
        "--tableHost", "127.0.0.1", "--tablePort", "0",
        "--queueHost", "127.0.0.1", "--queuePort", "0",
    ]
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=_die_with_parent)
    endpoints: dict[str, str] = {}
    ready = threading.Event()
    output: deque[str] = deque(maxlen=50)

    def drain() -> None:  # keep reading so a full pipe never blocks Azurite
        for line in proc.stdout:
            output.append(line.rstrip())
            m = _LISTENING.search(line)
            if m:
                endpoints[m.group(1)] = m.group(2).rstrip("/")
                if len(endpoints) == 3:
                    ready.set()
        ready.set()  # process ended

    threading.Thread(target=drain, name="azurite-output", daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or len(endpoints) != 3:
        _stop(proc)
        pytest.fail("Azurite did not start: " + " | ".join(output), pytrace=False)
    return proc, Azurite(blob_endpoint=f"{endpoints['Blob']}/{ACCOUNT_NAME}",
                         table_endpoint=f"{endpoints['Table']}/{ACCOUNT_NAME}",
                         queue_endpoint=f"{endpoints['Queue']}/{ACCOUNT_NAME}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _from_connection_string(conn: str) -> Azurite:
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return Azurite(blob_endpoint=parts["BlobEndpoint"].rstrip("/"),
                   table_endpoint=parts["TableEndpoint"].rstrip("/"),
                   queue_endpoint=parts.get("QueueEndpoint", "").rstrip("/"))


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Azurite:
    external = os.environ.get("AZURITE_CONNECTION_STRING")
    if external:
        yield _from_connection_string(external)
        return
    proc, instance = _start(tmp_path_factory.mktemp("azurite"))
    try:
        yield instance
    finally:
        _stop(proc)


@dataclass(frozen=True)
class StorageNamespace:
    """A unique prefix valid for both container names (lowercase, '-') and table names (alnum)."""

    azurite: Azurite
    prefix: str

    @property
    def connection_string(self) -> str:
        return self.azurite.connection_string

    def container(self, name: str = "data") -> str:
        return f"{self.prefix}-{name}"

    def table(self, name: str = "data") -> str:
        return self.prefix + re.sub(r"[^A-Za-z0-9]", "", name)

    def blob_service(self):
        return self.azurite.blob_service()

    def table_service(self):
        return self.azurite.table_service()


@pytest.fixture
def storage_ns(azurite) -> StorageNamespace:
    ns = StorageNamespace(azurite, "t" + uuid.uuid4().hex[:12])
    yield ns
    # Keep the in-memory Azurite small over a long session.
    blobs, tables = azurite.blob_service(), azurite.table_service()
    for c in blobs.list_containers(name_starts_with=ns.prefix):
        blobs.delete_container(c.name)
    for t in tables.list_tables():
        if t.name.startswith(ns.prefix):
            tables.delete_table(t.name)
