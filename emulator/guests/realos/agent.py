"""The qemu guest agent over virtio-serial: the rig's control channel, out of band of the
network under test, running commands as root as Azure's Run Command does.

Protocol (QEMU's qemu-ga reference, "guest-sync-delimited", "guest-exec",
"guest-exec-status"): JSON objects, one per line; a sync answer is preceded by 0xFF so stale
answers from before a reconnect can be skipped; ``guest-exec`` returns a pid, and
``guest-exec-status`` reports ``exited``, ``exitcode`` and base64 ``out-data``/``err-data``.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time

from emulator.guests.namespaces import FabricError

GUEST_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME=/root", "LANG=C.UTF-8")


class AgentTimeout(FabricError):
    pass


class GuestAgent:
    """One connection to the agent socket qemu serves (``-chardev socket,server=on``)."""

    def __init__(self, path: str):
        self.path = path
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def connect(self) -> None:
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        self.sock = sock

    def wait_ready(self, timeout: float) -> None:
        """Until the agent in the guest answers a sync (it starts late in the boot)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.sock is None:
                    self.connect()
                self.sync(3.0)
                return
            except (OSError, AgentTimeout):
                self.close()
                time.sleep(1)
        raise AgentTimeout(f"guest agent at {self.path} did not answer within {timeout:.0f} s")

    def sync(self, timeout: float) -> None:
        ident = secrets.randbelow(2**31)
        self.send("guest-sync-delimited", {"id": ident})
        deadline = time.monotonic() + timeout
        while True:
            reply = self.read_json(deadline - time.monotonic(), delimited=True)
            if reply.get("return") == ident:
                return

    def send(self, command: str, arguments: dict | None = None) -> None:
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        if self.sock is None:
            self.connect()
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def read_json(self, timeout: float, *, delimited: bool = False) -> dict:
        """The next JSON line; after a delimited sync, whatever precedes 0xFF is stale."""
        deadline = time.monotonic() + max(timeout, 0.01)
        while True:
            if delimited and b"\xff" in self.buffer:
                self.buffer = self.buffer[self.buffer.rindex(b"\xff") + 1:]
                delimited = False
            if not delimited and b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if line.strip():
                    return json.loads(line)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentTimeout("no answer from the guest agent")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AgentTimeout("no answer from the guest agent") from None
            if not chunk:
                raise AgentTimeout("guest agent connection closed")
            self.buffer += chunk

    def call(self, command: str, arguments: dict | None = None, timeout: float = 30) -> object:
        self.sync(timeout)
        self.send(command, arguments)
        reply = self.read_json(timeout)
        if "error" in reply:
            raise FabricError(f"{command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def exec(self, argv: list[str], *, input: str = "", env: dict[str, str] | None = None,
             timeout: float = 120) -> tuple[int, str, str]:
        """Run ``argv`` as root in the guest; (exit code, stdout, stderr). ``timeout(1)`` in
        the guest ends a hung command, as the agent cannot kill one itself."""
        args = {"path": "/usr/bin/timeout", "arg": ["-k", "5", str(int(timeout)), *argv],
                "env": [*GUEST_ENV, *(f"{k}={v}" for k, v in (env or {}).items())],
                "capture-output": True}
        if input:
            args["input-data"] = base64.b64encode(input.encode()).decode()
        pid = self.call("guest-exec", args)["pid"]
        deadline = time.monotonic() + timeout + 15
        while time.monotonic() < deadline:
            status = self.call("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                out = base64.b64decode(status.get("out-data", "")).decode("utf-8", "replace")
                err = base64.b64decode(status.get("err-data", "")).decode("utf-8", "replace")
                return int(status.get("exitcode", 128 + int(status.get("signal", 0)))), out, err
            time.sleep(0.2)
        raise AgentTimeout(f"{argv[0]} did not finish within {timeout:.0f} s")

    def shell(self, script: str, *, env: dict[str, str] | None = None,
              timeout: float = 120) -> tuple[int, str, str]:
        return self.exec(["/bin/bash", "-s"], input=script, env=env, timeout=timeout)
