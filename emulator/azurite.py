"""Start and stop Azurite (the Azure Storage emulator, from npm) for the demo and the tests.

Product code never knows it talks to Azurite: it only gets the connection string, with the
documented development account key that every storage emulator uses (not a secret).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S = 60
SERVICES = ("Blob", "Queue", "Table")
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (http://\S+)")


class AzuriteError(RuntimeError):
    """Azurite is missing or did not start; the message says what to do."""


@dataclass(frozen=True)
class Azurite:
    """A running Azurite: endpoints and the connection string for them."""

    blob_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    table_endpoint: str
    queue_endpoint: str | None = None

    @property
    def connection_string(self) -> str:
        queue = f"QueueEndpoint={self.queue_endpoint};" if self.queue_endpoint else ""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};{queue}TableEndpoint={self.table_endpoint};"
        )

    @classmethod
    def from_connection_string(cls, conn: str) -> Azurite:
        parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
        queue = parts.get("QueueEndpoint")
        return cls(blob_endpoint=parts["BlobEndpoint"].rstrip("/"),
                   table_endpoint=parts["TableEndpoint"].rstrip("/"),
                   queue_endpoint=queue.rstrip("/") if queue else None)

    def blob_service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def table_service(self):
        from azure.data.tables import TableServiceClient

        return TableServiceClient.from_connection_string(self.connection_string)


def ensure_installed() -> None:
    """A fresh clone has no node_modules: install Azurite once (what `make test` does)."""
    if AZURITE_BIN.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise AzuriteError("Azurite is not installed and npm is missing: install Node.js, "
                           "then run `make test` or `make demo`")
    proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not AZURITE_BIN.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise AzuriteError("`npm install` of Azurite failed: " + " | ".join(tail))


def _die_with_parent() -> None:
    # Linux: if the parent is killed hard, the kernel stops Azurite too instead of leaking it.
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start(workdir: Path) -> tuple[subprocess.Popen, Azurite]:
    """Start an in-memory Azurite on free loopback ports; returns the process and endpoints."""
    ensure_installed()
    args = [
        str(AZURITE_BIN),
        "--inMemoryPersistence", "--extentMemoryLimit", "256",
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
                if len(endpoints) == len(SERVICES):
                    ready.set()
        ready.set()  # process ended

    threading.Thread(target=drain, name="azurite-output", daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or len(endpoints) != len(SERVICES):
        stop(proc)
        raise AzuriteError("Azurite did not start: " + " | ".join(output))
    return proc, Azurite(blob_endpoint=f"{endpoints['Blob']}/{ACCOUNT_NAME}",
                         table_endpoint=f"{endpoints['Table']}/{ACCOUNT_NAME}",
                         queue_endpoint=f"{endpoints['Queue']}/{ACCOUNT_NAME}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
