"""One real Debian guest under ``qemu-system-x86_64``: its own copy-on-write disk (kept across
power-off, as an OS disk survives deallocation), one virtio NIC per tap in the fabric's router
namespace, the guest agent on a virtio-serial port, the serial console in a log file.

TCG, not KVM: this host's /dev/kvm (a PVM host) cannot run stock kernels, so a boot takes
about 30-55 s (docs/real-os.md). One CPU per guest: the machine is shared.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass

from emulator.guests.namespaces import FabricError
from emulator.guests.realos.agent import AgentTimeout, GuestAgent

BOOT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Image:
    """The cached images of one recipe (tests/realos/image.sh)."""

    directory: str

    @property
    def kernel(self) -> str:
        return os.path.join(self.directory, "vmlinuz")

    @property
    def initrd(self) -> str:
        return os.path.join(self.directory, "initrd.img")

    def disk(self, stack: str) -> str:
        return os.path.join(self.directory, f"{stack}.img")


@dataclass(frozen=True)
class Nic:
    mac: str  # Linux form, 00:0d:3a:..
    tap: str  # tap device name in the router namespace


class QemuMachine:
    def __init__(self, name: str, image: Image, stack: str, workdir: str, netns: str):
        self.name, self.image, self.stack, self.netns = name, image, stack, netns
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.disk = os.path.join(workdir, "disk.qcow2")
        self.agent_path = os.path.join(workdir, "qga.sock")
        self.qmp_path = os.path.join(workdir, "qmp.sock")
        self.console = os.path.join(workdir, "console.log")
        self.proc: subprocess.Popen | None = None
        self.agent = GuestAgent(self.agent_path)
        self.boot_seconds: list[float] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self, nics: list[Nic]) -> list[str]:
        # mitigations=off: an emulated CPU has nothing to protect and TCG pays for every barrier.
        cmdline = ("root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet mitigations=off "
                   f"systemd.hostname={self.name} systemd.show_status=false")
        argv = ["ip", "netns", "exec", self.netns, "qemu-system-x86_64", "-accel", "tcg",
                "-machine", "q35", "-m", "768", "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-kernel", self.image.kernel, "-initrd", self.image.initrd,
                "-append", cmdline,
                "-drive", f"file={self.disk},if=virtio,format=qcow2,cache=unsafe",
                "-serial", f"file:{self.console}",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=qga,path={self.agent_path},server=on,wait=off",
                "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        for i, nic in enumerate(nics):
            argv += ["-netdev", f"tap,id=n{i},ifname={nic.tap},script=no,downscript=no",
                     "-device", f"virtio-net-pci,netdev=n{i},mac={nic.mac},id=nic{i}"]
        return argv

    def start(self, nics: list[Nic]) -> float:
        """Power on with these NICs and wait for the agent; returns the boot time in s."""
        if self.running:
            raise FabricError(f"{self.name} is already running")
        if not os.path.exists(self.disk):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                            self.image.disk(self.stack), self.disk], check=True)
        started = time.monotonic()
        self.proc = subprocess.Popen(self.argv(nics), stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.workdir, "qemu.err"), "w"),
                                     start_new_session=True)
        self.wait_booted(started, previous_boot="")
        return self.boot_seconds[-1]

    def wait_booted(self, started: float, previous_boot: str) -> None:
        """The agent answers and the boot id differs from ``previous_boot``; then systemd has
        reached its start-up target (the stack has configured the NICs or given up)."""
        deadline = started + BOOT_TIMEOUT
        while True:
            if not self.running:
                raise FabricError(f"qemu for {self.name} exited: {self.qemu_error()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentTimeout(f"{self.name} did not boot in {BOOT_TIMEOUT:.0f} s; "
                                   f"console: {self.console}")
            try:
                self.agent.wait_ready(min(left, 20))
                rc, boot_id, _ = self.agent.exec(["cat", "/proc/sys/kernel/random/boot_id"],
                                                 timeout=20)
                if rc == 0 and boot_id.strip() != previous_boot:
                    break
            except AgentTimeout:
                pass
            time.sleep(2)
        self.agent.exec(["systemctl", "is-system-running", "--wait"], timeout=240)
        self.boot_seconds.append(round(time.monotonic() - started, 1))

    def reboot(self) -> float:
        """``systemctl reboot`` in the guest (same qemu process, same disk)."""
        _, before, _ = self.agent.exec(["cat", "/proc/sys/kernel/random/boot_id"], timeout=20)
        started = time.monotonic()
        self.agent.exec(["systemd-run", "--no-block", "systemctl", "reboot"], timeout=20)
        self.agent.close()
        self.wait_booted(started, previous_boot=before.strip())
        return self.boot_seconds[-1]

    def power_off(self) -> None:
        """Deallocate: the machine is gone at once (the disk stays)."""
        self.agent.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def set_link(self, index: int, up: bool) -> None:
        """Carrier of NIC ``index`` as the guest sees it (QMP ``set_link``)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(self.qmp_path)
            stream = sock.makefile("rw")
            stream.readline()  # greeting
            for command in ({"execute": "qmp_capabilities"},
                            {"execute": "set_link", "arguments": {"name": f"nic{index}",
                                                                  "up": up}}):
                stream.write(json.dumps(command) + "\n")
                stream.flush()
                reply = json.loads(stream.readline())
                while "event" in reply:
                    reply = json.loads(stream.readline())
                if "error" in reply:
                    raise FabricError(f"QMP {command['execute']}: {reply['error']}")

    def qemu_error(self) -> str:
        try:
            with open(os.path.join(self.workdir, "qemu.err")) as fh:
                return fh.read()[-500:]
        except OSError:
            return ""

    def run(self, script: str, *, env: dict[str, str] | None = None,
            timeout: float = 120) -> tuple[int, str, str]:
        if not self.running:
            raise FabricError(f"{self.name} is not running")
        return self.agent.shell(script, env=env, timeout=timeout)
