"""GuestModel backed by the network-namespace fabric: Linux guests that really route.

* ``on_start``: the VM boots with the NICs it has now (veth + address per NIC, MAC from the NIC
  document), its application servers start, then its enabled units run (the persistence the
  guest installed, e.g. ``hairpin-routes.service``) inside the VM's namespace with the VM's own
  /etc: what was persisted comes back, what was not (routes, rules) is gone.
* ``on_deallocate``: processes and interfaces vanish with the namespace; /etc stays.
* ``run_command``: ``RunShellScript`` runs as root in the VM's namespace and returns its real
  exit code and output (last 4,096 bytes, as Azure). Windows VMs go to ``fallback`` (the
  recording guest) because PowerShell cannot run here.

Health: without a source, the scenario's health applies, and ``emulator.mirrors`` rules follow
power state as in the emulator (primary Up, fail-over without fail-back). ``health_source``
(optional) returns the current health list (``[{"ruleId", "response"}]``) instead; the ILB
follows it before every command and measurement. With the emulator::

    guest = NetnsGuest(scenario)
    emu = Emulator(scenario, guest=guest)
    guest.attach(emu)      # health from the emulator's own rule-health model
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from emulator.guests.fabric import Fabric, FabricError, netns_available, netns_unavailable_reason

__all__ = ["NetnsGuest", "emulator_health", "netns_available", "netns_unavailable_reason"]

_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def _os_type(vm: dict) -> str:
    profile = ((vm.get("properties") or {}).get("storageProfile") or {}).get("osDisk") or {}
    return str(profile.get("osType") or "Linux").lower()


class NetnsGuest:
    def __init__(self, scenario: dict | Fabric, *, fallback=None, deterministic: bool = True,
                 health_source: Callable[[], list[dict]] | None = None, timeout: float = 300):
        self.fabric = scenario if isinstance(scenario, Fabric) else Fabric(
            scenario, deterministic=deterministic)
        self.fabric.open()
        self.fallback = fallback
        self.fabric.health_source = health_source
        self.timeout = timeout
        self._lock = threading.RLock()  # start/stop/ILB reloads touch shared router state
        self._vm_locks: dict[str, threading.Lock] = {}

    def __enter__(self) -> NetnsGuest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.fabric.close()

    def attach(self, emu) -> None:
        """Take health from an ``emulator.server.Emulator`` (power state, mirrors)."""
        self.fabric.health_source = lambda: emulator_health(emu)
        self.fabric.reload_ilb()

    def on_health_changed(self) -> None:
        """The emulator's backend health changed (e.g. a mirror failover): re-map the ILB."""
        with self._lock:
            self.fabric.reload_ilb()

    # -- GuestModel
    def on_start(self, vm: dict, nics: list[dict]) -> None:
        if _os_type(vm) == "windows":
            if self.fallback is not None:
                self.fallback.on_start(vm, nics)
            return
        with self._lock:
            self.fabric.start_vm(vm["name"], list(nics), vm_doc=vm)

    def on_deallocate(self, vm: dict) -> None:
        if _os_type(vm) == "windows":
            if self.fallback is not None:
                self.fallback.on_deallocate(vm)
            return
        with self._lock:
            if vm["name"] in self.fabric.vms:
                self.fabric.stop_vm(vm["name"])

    def run_command(self, vm: dict, command_id: str, script: list[str],
                    parameters: list[dict]) -> tuple[int, str, str]:
        if _os_type(vm) == "windows":
            if self.fallback is not None:
                return self.fallback.run_command(vm, command_id, script, parameters)
            return 1, "", "the network-namespace guest model runs Linux guests only"
        if command_id != "RunShellScript":
            return 1, "", f"{command_id} is not supported on a Linux VM"
        env = {}
        for p in parameters or []:
            name = str(p.get("name", ""))
            if not _ENV_NAME.match(name):
                return 1, "", f"invalid parameter name {name[:40]!r}"
            env[name] = str(p.get("value", ""))
        name = vm["name"]
        state = self.fabric.vms.get(name)
        if state is None or not state.running:
            return 1, "", f"VM {name} is not running"
        with self._lock:
            self.fabric.reload_ilb()
        lock = self._vm_locks.setdefault(name, threading.Lock())
        with lock:
            try:
                return self.fabric.run_shell_script(name, "\n".join(script), env=env,
                                                    timeout=self.timeout)
            except FabricError as exc:
                return 1, "", str(exc)


def emulator_health(emu) -> list[dict]:
    """Every load-balancing rule's health as the emulator answers it right now."""
    from emulator.resources import health  # the emulator's own rule-health model

    out = []
    for lb in emu.store.of_type("Microsoft.Network/loadBalancers"):
        for rule in (lb.get("properties") or {}).get("loadBalancingRules") or []:
            body = health.rule_health(emu, lb["id"], rule["name"])
            out.append({"ruleId": rule.get("id") or f"{lb['id']}/loadBalancingRules/{rule['name']}",
                        "response": body})
    return out
