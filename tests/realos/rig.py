"""One real guest on its own fabric, set up as the matrix needs it: a VM with the primary NIC
in the ILB's pool and the secondary NIC already attached (the state `hairpin apply` leaves
before it runs the guest script), and the measurements the matrix takes after every event."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from emulator.guests.realos.fabric import RealOsFabric
from emulator.guests.realos.machine import Image, Nic, QemuMachine
from emulator.guests.scenario import IlbRule
from shared.core import guest as gs
from tests.realos.stacks import STACK_FILES, Stack

IMAGE_SCRIPT = Path(__file__).with_name("image.sh")
PRIMARY, SECONDARY = "10.0.1.10", "10.0.1.11"
MACS = ("00:0d:3a:00:01:0a", "00:0d:3a:00:01:0b")
VIP, PORT, COUNT = "10.0.1.100", 1972, 20
WAIT_SECONDS = 10
SETTLE_SECONDS = 5.0

# No process per connect (a TCG guest forks slowly): subshells with bash's /dev/tcp, and one
# deadline for all of them; a connect still hanging then (a hairpin SYN is never answered) fails.
PROBE = r"""
probe() { # $1 ip, $2 port: how many of $COUNT parallel fresh connections succeed
  local dir i pids=() waited=0
  dir=$(mktemp -d)
  for i in $(seq 1 "$COUNT"); do
    ( exec 3<>"/dev/tcp/$1/$2" && : >"$dir/$i" ) 2>/dev/null &
    pids+=($!)
  done
  while [ "$waited" -lt "$WAIT" ]; do
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 1; waited=$((waited + 1))
  done
  kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null
  find "$dir" -type f | wc -l; rm -rf "$dir"
}
printf '{"vip":%d,"loopback":%d,"default_via_secondary":%d}\n' \
  "$(probe "$VIP" "$PORT")" "$(probe 127.0.0.1 "$PORT")" \
  "$(ip -4 route show default | grep -c ' dev eth1')"
"""

STATE = r"""
ip rule show; echo ---; ip route show table all; echo ---
find DIRS -xdev \( -type f -o -type l \) 2>/dev/null | sort | while read -r f; do
  if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else sha256sum "$f"; fi
done
"""

ADDRESSED = f"""
ip -4 -o addr show dev eth0 | grep -q ' {PRIMARY}/' && \
ip -4 -o addr show dev eth1 | grep -q ' {SECONDARY}/'
"""


def image() -> Image:
    """The cached images, built on first use (minutes; see tests/realos/image.sh)."""
    out = subprocess.run(["bash", str(IMAGE_SCRIPT)], check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()
    return Image(out[-1])


def route_spec() -> gs.GuestRouteSpec:
    return gs.GuestRouteSpec(
        primary_ip=PRIMARY, secondary_ip=SECONDARY, secondary_mac=gs.MacAddress.parse(MACS[1]),
        gateway="10.0.1.1", prefix_len=24,
        routes=(gs.VipRoute(VIP, gs.Protocol.parse("Tcp"), PORT, PORT),))


@dataclass
class Measurement:
    vip: int  # connects from the guest to its own ILB's VIP
    client: int  # connects from outside every pool to the VIP
    loopback: int  # the guest's own 127.0.0.1
    default_via_secondary: bool
    verify: int  # what the product's verification script counted to the VIP (-1: no result)

    def text(self) -> str:
        extra = "  secondary NIC holds a default route" if self.default_via_secondary else ""
        return (f"vip {self.vip:2d}/{COUNT}  client {self.client:2d}/{COUNT}  "
                f"127.0.0.1 {self.loopback:2d}/{COUNT}  verify {self.verify:2d}/{COUNT}{extra}")


class Rig:
    def __init__(self, stack: Stack, img: Image):
        self.stack = stack
        self.workdir = tempfile.mkdtemp(prefix=f"hpos-{stack}-")
        self.fabric = RealOsFabric()
        self.machine = QemuMachine(f"hp-{stack}", img, str(stack), self.workdir,
                                   self.fabric.router)

    def __enter__(self) -> Rig:
        fab = self.fabric.open()
        nics = [Nic(mac, fab.add_port(mac, ip).tap) for mac, ip in zip(MACS, (PRIMARY, SECONDARY),
                                                                       strict=True)]
        fab.set_rules([IlbRule("rule", "rule", IPv4Address(VIP), "Tcp", PORT, PORT, False,
                               [IPv4Address(PRIMARY)])])
        self.machine.start(nics)
        fab.set_live({IPv4Address(PRIMARY)})
        self.settle()
        return self

    def __exit__(self, *exc) -> None:
        self.machine.power_off()
        self.fabric.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self, script: str, timeout: float = 120) -> tuple[int, str, str]:
        return self.machine.run(script, timeout=timeout)

    def settle(self, timeout: float = 90) -> bool:
        """Both NICs addressed again (the stack finished what the event started), then a
        pause for anything the stack does a little later."""
        deadline = time.monotonic() + timeout
        while self.run(ADDRESSED, timeout=20)[0] != 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(1)
        time.sleep(SETTLE_SECONDS)
        return True

    def measure(self) -> Measurement:
        env_script = f"COUNT={COUNT} WAIT={WAIT_SECONDS} VIP={VIP} PORT={PORT}\n{PROBE}"
        rc, out, err = self.run(env_script, timeout=60)
        inside = json.loads(out.strip().splitlines()[-1]) if rc == 0 else {}
        outside = self.fabric.connect(VIP, PORT, count=COUNT)
        return Measurement(int(inside.get("vip", -1)), outside.ok,
                           int(inside.get("loopback", -1)),
                           bool(inside.get("default_via_secondary", 0)), self.product_verify())

    def product_verify(self) -> int:
        """The connects to the VIP that the product's own verification script (what `hairpin
        verify`, apply and the drift sweep run through Run Command) counts in this guest."""
        rc, result, _ = self.script("verify")
        counts = [v.get("ok") for v in result.get("verify") or []] if rc in (0, 1) else []
        return counts[0] if len(counts) == 1 and isinstance(counts[0], int) else -1

    def state(self) -> str:
        return self.run(STATE.replace("DIRS", " ".join(STACK_FILES)), timeout=60)[1]

    def script(self, mode: str) -> tuple[int, dict, str]:
        """The project's own rendered script (apply, cleanup or verify) as Run Command runs
        it: exit code, its JSON result line, and stderr."""
        rc, out, err = self.run(gs.render(route_spec(), "linux", mode), timeout=300)
        try:
            result = gs.parse_run_command_output(out)
        except gs.RunCommandOutputError:
            result = {"stdout": out[-300:]}
        return rc, result, err

    def console_tail(self, lines: int = 20) -> str:
        path = os.path.join(self.workdir, "console.log")
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
