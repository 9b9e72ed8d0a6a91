"""The real-OS matrix: per network stack, boot a real Debian guest, measure before the fix,
run the stack's own events once (the control: what they change by themselves is not the
fix's to undo), run the project's rendered apply script, then after every event the stack
can throw at it (reboot, restart, netplan apply, reconfigure / re-activation, renew, changed
lease, carrier flap) measure again; re-run unchanged; clean up and compare with the state
before the fix (after the control).

    python -m tests.realos.matrix [--stack networkd ...] [--json FILE]

One line per stack and step; exit 1 when any step fails. Expected at every step: the outside
client and the guest's 127.0.0.1 20/20, the secondary NIC never a default route; connects from
the guest to its own VIP 0/20 before the fix and after cleanup, 20/20 in between, and the
product's own verification script (Run Command) counting the same.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from dataclasses import asdict, dataclass, field

from tests.realos.rig import COUNT, Measurement, Rig, image
from tests.realos.stacks import EVENTS, Event, EventKind, Stack

CARRIER_OFF_SECONDS = 5
# Another lease time for the same address: a DNS server added here would (rightly) leave a
# route of the stack's own behind, which the cleanup comparison would then blame on the fix.
CHANGED_LEASE = ("10m", ["168.63.129.16"])


@dataclass
class Step:
    stack: str
    name: str
    seconds: float
    measurement: Measurement | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        shown = self.measurement.text() if self.measurement else ""
        verdict = "ok  " if self.ok else "FAIL"
        notes = f"  ({'; '.join(self.problems)})" if self.problems else ""
        return f"{self.stack:15s} {self.name:14s} {verdict} {shown}{notes}  [{self.seconds:.0f} s]"


def problems_of(m: Measurement, fixed: bool) -> list[str]:
    want_vip = COUNT if fixed else 0
    found = []
    if m.vip != want_vip:
        found.append(f"vip {m.vip}/{COUNT}, expected {want_vip}/{COUNT}")
    if m.verify != m.vip:
        found.append(f"the product's verification counted {m.verify}/{COUNT}")
    if m.client != COUNT:
        found.append("outside client lost the VIP")
    if m.loopback != COUNT:
        found.append("127.0.0.1 lost")
    if fixed and m.default_via_secondary:  # before the fix it is the image's own config
        found.append("default route via the secondary NIC")
    return found


def trigger(rig: Rig, event: Event) -> list[str]:
    """Make the event happen; what went wrong doing so (not what it did to the fix)."""
    if event.kind is EventKind.REBOOT:
        rig.machine.reboot()
        return []
    if event.kind is EventKind.CARRIER:
        rig.machine.set_link(1, False)
        time.sleep(CARRIER_OFF_SECONDS)
        rig.machine.set_link(1, True)
        return []
    if event.kind is EventKind.LEASE:
        rig.fabric.change_lease(*CHANGED_LEASE)
    rc, _, err = rig.run(event.command, timeout=180)
    return [] if rc == 0 else [f"`{event.command}` rc {rc}: {err.strip()[-200:]}"]


def script_step(rig: Rig, mode: str) -> tuple[list[str], dict]:
    rc, result, err = rig.script(mode)
    if rc != 0:
        return [f"{mode} rc {rc}: {json.dumps(result)[:300]} {err.strip()[-200:]}"], result
    return [], result


def state_diff(before: str, after: str) -> list[str]:
    """What differs, as sets of lines: the kernel lists routes of one table in the order they
    were added, which a restart of the stack changes without changing any route."""
    old, new = sorted(before.splitlines()), sorted(after.splitlines())
    if old == new:
        return []
    lines = [x for x in difflib.unified_diff(old, new, lineterm="", n=0)
             if x[:1] in "+-" and x[:3] not in ("+++", "---")]
    return ["state differs: " + " | ".join(lines[:10])]


class StackRun:
    """One stack's matrix, step by step, printing each line as it is measured."""

    def __init__(self, stack: Stack, rig: Rig, emit=print):
        self.stack, self.rig, self.emit = stack, rig, emit
        self.steps: list[Step] = []
        self.started = time.monotonic()

    def record(self, name: str, fixed: bool, problems: list[str]) -> Step:
        self.rig.settle()
        m = self.rig.measure()
        step = Step(str(self.stack), name, time.monotonic() - self.started, m,
                    problems + problems_of(m, fixed))
        self.started = time.monotonic()
        self.steps.append(step)
        self.emit(step.line())
        return step

    def control(self) -> list[str]:
        """The stack's own events once before the fix, so that the state cleanup is compared
        with holds what they do by themselves: NetworkManager's `device reapply` (its renew)
        removes the IPv6 link-local address of an ``ipv6.method=ignore`` profile for good,
        with no fix in the guest (measured)."""
        problems = []
        for event in EVENTS[self.stack]:
            if event.kind is not EventKind.REBOOT:  # a boot changes nothing that stays
                problems += trigger(self.rig, event)
                self.rig.settle()
        return problems

    def run(self) -> list[Step]:
        rig = self.rig
        self.record(f"boot [{rig.machine.boot_seconds[-1]:.0f} s]", False, [])
        self.record("control", False, self.control())
        before = rig.state()
        self.record("apply", True, script_step(rig, "apply")[0])
        for event in EVENTS[self.stack]:
            self.record(event.name, True, trigger(rig, event))
        fixed_state = rig.state()
        problems, result = script_step(rig, "apply")
        if result.get("changes"):
            problems.append(f"re-run changed {result['changes']}")
        self.record("re-run", True, problems + state_diff(fixed_state, rig.state()))
        problems = script_step(rig, "cleanup")[0]
        self.record("cleanup", False, problems + state_diff(before, rig.state()))
        return self.steps


def run_matrix(stacks: list[Stack], emit=print) -> list[Step]:
    img = image()
    steps: list[Step] = []
    for stack in stacks:  # one VM at a time: the machine is shared
        started = time.monotonic()
        try:
            with Rig(stack, img) as rig:
                steps += StackRun(stack, rig, emit).run()
        except Exception as exc:  # noqa: BLE001 - report the stack as failed, go on
            steps.append(Step(str(stack), "rig", time.monotonic() - started, None,
                              [f"{type(exc).__name__}: {exc}"]))
            emit(steps[-1].line())
        emit(f"{stack:15s} {'total':14s} {time.monotonic() - started:.0f} s")
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", action="append", choices=[s.value for s in Stack])
    parser.add_argument("--json", metavar="FILE", help="also write every step as JSON")
    args = parser.parse_args(argv)
    stacks = [Stack(s) for s in args.stack] if args.stack else list(Stack)
    started = time.monotonic()
    steps = run_matrix(stacks, emit=lambda line: print(line, flush=True))
    failed = [s for s in steps if not s.ok]
    print(f"real-OS matrix: {len(steps) - len(failed)} steps ok, {len(failed)} failed, "
          f"{time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(s) for s in steps], fh, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
