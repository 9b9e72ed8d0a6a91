"""GuestModel backed by real booted Debian guests (qemu, TCG) on the real-OS fabric: the
emulator's Run Command runs in the VM through the qemu guest agent, as root and out of band,
so ``hairpin apply`` / ``verify`` / ``rollback`` and the sweep act on a real network stack.

* ``on_start``: powers the VM on with the NICs it has now (MAC and static DHCP lease from each
  NIC document); the boot goes on in the background, as Azure's start returns before the guest
  is up, and ends with a listener on every backend port the VM's rules balance to. Its OS
  disk is the VM's own copy-on-write disk, kept across deallocation.
* ``on_deallocate``: the machine is gone at once; the disk stays.
* ``run_command``: ``RunShellScript`` waits for the boot, then runs ``bash -s`` with the
  parameters as environment variables; output is cut to the last 4,096 bytes, as Azure's.
  VMs not named in ``stacks`` (and Windows VMs) go to ``fallback``.
* VMs not named in ``stacks`` still answer on the fabric while running: a namespace holding
  their addresses serves their backend ports (``RealOsFabric.add_server``), so when the ILB
  fails a mirror over to such a peer, the booted guest's calls to the VIP reach a real server,
  as they do on Azure.

The ILB balances over the rule members whose VM is running (a stopped VM fails its probe);
``health_source`` (e.g. ``netns.emulator_health``) narrows that to what the emulator reports.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from ipaddress import IPv4Address

from emulator.guests.namespaces import FabricError, tail
from emulator.guests.realos.fabric import RealOsFabric
from emulator.guests.realos.machine import BOOT_TIMEOUT, Image, Nic, QemuMachine
from emulator.guests.scenario import Scenario

ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class RealOsGuest:
    def __init__(self, scenario: dict, image: Image, stacks: dict[str, str], *, fallback=None,
                 health_source: Callable[[], list[dict]] | None = None):
        self.scenario = Scenario(scenario)
        self.image, self.stacks, self.fallback = image, dict(stacks), fallback
        self.health_source = health_source
        subnets = list(self.scenario.subnets.values())
        self.fabric = RealOsFabric(str(subnets[0])).open()
        self.workdir = tempfile.mkdtemp(prefix=f"{self.fabric.run_id}-vms-")
        self.machines: dict[str, QemuMachine] = {}
        self.ips: dict[str, set[IPv4Address]] = {}
        self.booted: dict[str, threading.Event] = {}
        self.boot_errors: dict[str, str] = {}
        self.ports: dict[str, str] = {}  # MAC -> tap
        self.lock = threading.RLock()
        self.fabric.set_rules(self.scenario.ilb_rules())

    def __enter__(self) -> RealOsGuest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for machine in self.machines.values():
            machine.power_off()
        self.fabric.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def real(self, vm: dict) -> bool:
        return vm["name"] in self.stacks

    # -- GuestModel
    def on_start(self, vm: dict, nics: list[dict]) -> None:
        if not self.real(vm):
            if self.fallback is not None:
                self.fallback.on_start(vm, nics)
            self.serve(vm, nics)
            return
        name = vm["name"]
        with self.lock:
            plans = self.scenario.vm_nics(vm, list(nics))
            attached = []
            for plan in plans:
                mac = plan.mac.lower().replace("-", ":")
                if mac not in self.ports:
                    self.ports[mac] = self.fabric.add_port(mac, plan.addresses[0].ip).tap
                attached.append(Nic(mac, self.ports[mac]))
            machine = self.machines.get(name) or QemuMachine(
                name, self.image, self.stacks[name], os.path.join(self.workdir, name),
                self.fabric.router)
            self.machines[name] = machine
            self.ips[name] = ips = {a.ip for p in plans for a in p.addresses}
            self.booted[name] = done = threading.Event()
            self.boot_errors.pop(name, None)
            self.reload_ilb()
        threading.Thread(target=self.boot, args=(machine, attached, self.backend_ports(ips), done),
                         daemon=True, name=f"boot-{name}").start()

    def backend_ports(self, ips: set[IPv4Address]) -> list[int]:
        """The ports the rules balancing to these addresses send to: what the VM serves."""
        return sorted({r.backend_port for r in self.scenario.ilb_rules()
                       if r.backend_port and ips & set(r.members)})

    def boot(self, machine: QemuMachine, nics: list[Nic], ports: list[int],
             done: threading.Event) -> None:
        try:
            machine.start(nics)
            # The image listens on 1972; the VM's other rules may balance to other ports.
            units = " ".join(f"hairpin-listener@{port}.service" for port in ports)
            if units:
                rc, _, err = machine.run(f"systemctl enable --now {units}", timeout=120)
                if rc != 0:
                    raise FabricError(f"listeners {units} did not start: {err.strip()[-200:]}")
        except Exception as exc:  # noqa: BLE001 - reported by the next run_command
            self.boot_errors[machine.name] = str(exc)
        finally:
            done.set()

    def serve(self, vm: dict, nics: list[dict]) -> None:
        """A running VM that is not booted serves its backend ports on the fabric."""
        with self.lock:
            ips = {a.ip for p in self.scenario.vm_nics(vm, list(nics)) for a in p.addresses}
            self.fabric.add_server(vm["name"], sorted(ips), self.backend_ports(ips))
            self.ips[vm["name"]] = ips
            self.reload_ilb()

    def on_deallocate(self, vm: dict) -> None:
        if not self.real(vm):
            if self.fallback is not None:
                self.fallback.on_deallocate(vm)
            with self.lock:
                self.fabric.remove_server(vm["name"])
                self.ips.pop(vm["name"], None)
                self.reload_ilb()
            return
        with self.lock:
            event = self.booted.get(vm["name"])
            if event is not None:
                event.wait(BOOT_TIMEOUT)  # a boot in progress finishes before the power-off
            machine = self.machines.get(vm["name"])
            if machine is not None:
                machine.power_off()
            self.ips.pop(vm["name"], None)
            self.reload_ilb()

    def on_health_changed(self) -> None:
        with self.lock:
            self.reload_ilb()

    def reload_ilb(self) -> None:
        live = {ip for name, ips in self.ips.items()
                if name in self.fabric.servers or self.machines[name].proc is not None
                for ip in ips}
        if self.health_source is not None:
            up = {ip for rule in self.scenario.ilb_rules()
                  for ip in self.scenario.healthy(rule, self.health_source())}
            live &= up
        self.fabric.set_live(live)

    def run_command(self, vm: dict, command_id: str, script: list[str],
                    parameters: list[dict]) -> tuple[int, str, str]:
        if not self.real(vm):
            if self.fallback is not None:
                return self.fallback.run_command(vm, command_id, script, parameters)
            return 1, "", "this guest model runs only the VMs it was given a stack for"
        if command_id != "RunShellScript":
            return 1, "", f"{command_id} is not supported on a Linux VM"
        env = {}
        for p in parameters or []:
            if not ENV_NAME.match(str(p.get("name", ""))):
                return 1, "", f"invalid parameter name {str(p.get('name'))[:40]!r}"
            env[str(p["name"])] = str(p.get("value", ""))
        name = vm["name"]
        event = self.booted.get(name)
        if event is None or not event.wait(BOOT_TIMEOUT) or name in self.boot_errors:
            return 1, "", f"VM {name} is not running: {self.boot_errors.get(name, 'no boot')}"
        with self.lock:
            self.reload_ilb()
        try:
            code, out, err = self.machines[name].run("\n".join(script), env=env, timeout=600)
        except FabricError as exc:
            return 1, "", str(exc)
        return code, tail(out), tail(err)
