"""A fabric VM's private ``/etc``: an overlay of the host's /etc whose upper directory holds
what the guest wrote, so those files persist across the VM's "reboot" while routes do not.
Here: the argv that enters it, the files the guest changed, and the boot units it enabled."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass

from emulator.guests.namespaces import tail

GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GUEST_ENV = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
WANTS = os.path.join("systemd", "system", "multi-user.target.wants")


def overlay_argv(netns: str, upper: str, work: str, argv: list[str]) -> list[str]:
    """argv run in ``netns`` as root, with /etc overlaid (writes land in ``upper``) and a fresh
    /run (per boot)."""
    os.makedirs(upper, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    setup = ('mount -t overlay hairpin-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc '
             '&& mount -t tmpfs hairpin-run /run && shift 2 && exec "$@"')
    return ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation",
            "private", "--", "/bin/sh", "-c", setup, "hairpin-guest", upper, work, *argv]


def changed_files(upper: str) -> list[str]:
    """What the guest changed in /etc (copied-up parent directories are no change)."""
    files = []
    for root, dirs, names in os.walk(upper):
        for n in dirs + names:
            rel = os.path.relpath(os.path.join(root, n), upper)
            if n in names or not os.path.isdir(os.path.join("/etc", rel)):
                files.append(rel)
    return sorted(files)


@dataclass(frozen=True)
class BootStep:
    """One ExecStart of a unit the guest enabled (``argv``), or why the unit cannot start."""

    unit: str
    argv: tuple[str, ...] = ()
    error: str | None = None
    oneshot: bool = True  # Type=oneshot runs to its end; any other type keeps running


def enabled_units(upper: str) -> list[BootStep]:
    """The units the guest enabled itself for multi-user.target (the ones in its own /etc layer;
    the base image's services are out of scope), as systemd would start them."""
    wants = os.path.join(upper, WANTS)
    if not os.path.isdir(wants):
        return []
    steps = []
    for link in sorted(os.listdir(wants)):
        path = os.path.join(wants, link)
        target = os.readlink(path) if os.path.islink(path) else f"/etc/systemd/system/{link}"
        if not target.startswith("/etc/"):
            target = os.path.normpath(os.path.join("/etc/systemd/system", target))
        unit_file = os.path.join(upper, target[len("/etc/"):])
        if not os.path.isfile(unit_file):
            steps.append(BootStep(link, error="unit file missing"))
            continue
        with open(unit_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
        oneshot = "Type=oneshot" in lines
        for line in lines:
            if line.startswith("ExecStart="):
                argv = shlex.split(line.split("=", 1)[1].lstrip("-@+!"))
                steps.append(BootStep(link, tuple(argv), oneshot=oneshot))
    # systemd starts long-running services after the oneshots they are ordered after; here
    # every long-running one goes last.
    return sorted(steps, key=lambda step: not step.oneshot)


def start_service(entered: list[str]) -> subprocess.Popen:
    """A long-running unit's ExecStart (``entered``: from `overlay_argv`), in its own process
    group so that stopping the VM kills it with the application servers."""
    return subprocess.Popen(entered, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env=GUEST_ENV)


def boot_units(upper: str, run, start) -> list[dict]:
    """The boot log of the units enabled in ``upper``: each oneshot's ExecStart run to its end
    (``run(argv)`` -> CompletedProcess), then the long-running ones started (``start(argv)``;
    stopped with the VM)."""
    log: list[dict] = []
    for step in enabled_units(upper):
        if step.error:
            log.append({"unit": step.unit, "error": step.error})
        elif step.oneshot:
            proc = run(list(step.argv))
            log.append({"unit": step.unit, "argv": list(step.argv), "rc": proc.returncode,
                        "stdout": tail(proc.stdout), "stderr": tail(proc.stderr)})
        else:
            start(list(step.argv))
            log.append({"unit": step.unit, "argv": list(step.argv), "started": True})
    return log
