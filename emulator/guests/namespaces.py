"""Network namespaces on this host: can they be made here, sweeping what a killed fabric
process left behind (namespaces named ``<prefix>-<pid>-<random>``, their processes, temp dirs),
and the application server a fabric runs in a namespace.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile

from emulator.guests.programs import SERVER

OUTPUT_LIMIT = 4096  # Run Command returns the last 4,096 bytes


class FabricError(RuntimeError):
    pass


def netns_available() -> bool:
    """True when network namespaces can be created here (root, iproute2, nftables)."""
    return netns_unavailable_reason() is None


def netns_unavailable_reason() -> str | None:
    """None when namespaces can be created here, else a one-line reason."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "unshare"):
        if shutil.which(tool) is None:
            return f"'{tool}' not installed (apt-get install iproute2 nftables util-linux)"
    name = f"hpchk{secrets.token_hex(3)}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()[:120]}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def sweep_stale(prefix: str = "hp") -> list[str]:
    """Remove namespaces (and their processes, and temp dirs) of fabrics whose process died."""
    pattern = re.compile(rf"\A{re.escape(prefix)}-(\d+)-[0-9a-f]{{4}}(-.*)?\Z")
    removed = []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in (line.split()[0] for line in listing.splitlines() if line.strip()):
        m = pattern.match(ns)
        if not m or alive(int(m.group(1))):
            continue
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        removed.append(ns)
    for base in ("/dev/shm", tempfile.gettempdir()):
        for name in os.listdir(base) if os.path.isdir(base) else []:
            m = pattern.match(name)
            if m and not alive(int(m.group(1))):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return removed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_server(netns: str, python: str, name: str, ports: list[int]) -> subprocess.Popen:
    """The application server (``programs.SERVER``: ``<vm name> <peer ip>`` on each port) in a
    namespace, returned once it listens; its own process group, for `kill_group`."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, python, "-c", SERVER, name,
                             *map(str, ports)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    if proc.stdout.readline().strip() != "ready":
        kill_group(proc)
        raise FabricError(f"server in {name} did not start")
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    """A process started in its own session, and everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


def tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    data = text.encode("utf-8", "replace")
    return data[-limit:].decode("utf-8", "replace") if len(data) > limit else text
