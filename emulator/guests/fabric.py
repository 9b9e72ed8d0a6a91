"""The Azure fabric in Linux network namespaces (test and demo asset, not product logic).

Built from a scenario document (the same one the ARM emulator serves):

* one namespace per VM, one router namespace playing the Azure fabric, one routed veth pair per
  VM NIC (no bridge: VMs must not ARP each other directly and skip the NAT);
* every router port answers ARP for everything it routes with one MAC (proxy ARP, as Azure
  answers every ARP with 12:34:56:78:9a:bc), holds each subnet's gateway address and a /32 route
  per NIC address;
* the internal load balancer as nftables rules (``ilb_rules``), DNAT without SNAT;
* a small TCP server per backend port in each VM namespace answering ``<vm name> <peer ip>``;
* a client namespace outside every pool (an address no NIC uses), for baseline traffic;
* each VM gets a private ``/etc`` (``guest_etc``) that survives its "reboot".
Nothing here has a link to the root namespace: scenario addresses exist only inside our
namespaces. Names are ``<prefix>-<pid>-<random>-...``; everything is removed on close (context
manager, atexit), and the next fabric sweeps what a killed process left behind.

Needs root, iproute2 (ip, ip netns), nftables (nft), util-linux (unshare) and overlayfs.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from ipaddress import IPv4Address

from emulator.guests.guest_etc import (
    GUEST_ENV,
    boot_units,
    changed_files,
    overlay_argv,
    start_service,
)
from emulator.guests.ilb_rules import TABLE, DsrRoute, ilb_ruleset
from emulator.guests.namespaces import (
    FabricError,
    kill_group,
    netns_available,
    netns_unavailable_reason,
    start_server,
    sweep_stale,
    tail,
)
from emulator.guests.programs import CONNECT, ProbeResult
from emulator.guests.scenario import IlbRule, Scenario, VmState, lower, subnet_gateway

__all__ = ["Fabric", "FabricError", "ProbeResult", "netns_available", "netns_unavailable_reason"]

FABRIC_MAC = "12:34:56:78:9a:bc"


class Fabric:
    """Build with ``with Fabric(scenario) as fab:``; VMs start with :meth:`start_vm`."""

    def __init__(self, scenario: dict, *, prefix: str = "hp", deterministic: bool = True,
                 rp_filter: int = 2, python: str | None = None):
        self.scenario = Scenario(scenario)
        self.deterministic = deterministic
        self.rp_filter = rp_filter  # Ubuntu/Debian default (systemd): loose
        self.python = python or sys.executable
        # <prefix>-<pid>-<random>: unique per run, and lets a later run sweep what a killed
        # run (no atexit) left behind.
        self.prefix = prefix
        self.run_id = f"{prefix}-{os.getpid()}-{secrets.token_hex(2)}"
        self.router = f"{self.run_id}-r"
        self.client = f"{self.run_id}-c"
        self.client_ip: IPv4Address | None = None
        self.health = list(self.scenario.health)
        # Without a health_source, mirror rules follow power state here as in the emulator:
        # only the primary is Up; when its VM stops, the first running member takes over.
        self.mirrors = [{"rules": {lower(r) for r in m.get("rules") or []},
                         "members": [lower(x) for x in m.get("members") or []],
                         "primary": lower(m.get("primary") or (m.get("members") or [""])[0])}
                        for m in (scenario.get("emulator") or {}).get("mirrors") or []]
        self.vms: dict[str, VmState] = {}
        self._created: list[str] = []
        self._root = ""
        self._open = False
        self._dsr_tables: list[DsrRoute] = []
        self._loaded = ""  # ruleset text last loaded (reload only on change: keeps RR phase)
        # Optional callable returning the current health list (e.g. the emulator's view, where
        # mirror fail-over follows power state); consulted on every ILB reload.
        self.health_source = None

    # -- lifecycle
    def __enter__(self) -> Fabric:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> Fabric:
        if self._open:
            return self
        reason = netns_unavailable_reason()
        if reason:
            raise FabricError(reason)
        sweep_stale(self.prefix)
        atexit.register(self.close)
        self._open = True
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # tmpfs: overlay upper
        self._root = tempfile.mkdtemp(prefix=f"{self.run_id}-", dir=base)
        try:
            self._build_router()
            self._build_client()
            self.reload_ilb()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        for vm in self.vms.values():
            self._kill_servers(vm)
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._created.clear()
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001 - interpreter shutting down
            pass

    # -- plumbing
    def sh(self, *argv: str, ns: str | None = None, check: bool = True, input: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise FabricError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return proc

    def _add_ns(self, name: str, rp_filter: int) -> None:
        self.sh("ip", "netns", "add", name)
        self._created.append(name)
        self.sh("ip", "-n", name, "link", "set", "lo", "up")
        for key in ("all", "default"):  # and link-local addresses at once (exact snapshots)
            self.sh("sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter={rp_filter}",
                    f"net.ipv6.conf.{key}.accept_dad=0", ns=name)

    def _build_router(self) -> None:
        r = self.router
        self._add_ns(r, 0)
        self.sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=r)
        # DSR replies leave the backend with the VIP as source, a local address here.
        self.sh("sysctl", "-qw", "net.ipv4.conf.all.accept_local=1", ns=r)
        for net in self.scenario.subnets.values():
            self.sh("ip", "-n", r, "addr", "add", f"{subnet_gateway(net)}/32", "dev", "lo")
        for vip in sorted({rule.vip for rule in self.scenario.ilb_rules()}):
            self.sh("ip", "-n", r, "addr", "add", f"{vip}/32", "dev", "lo")
        # DSR: marked flows must reach the fwmark rules before the local table claims the VIP.
        self.sh("ip", "-n", r, "rule", "add", "pref", "1000", "lookup", "local")
        self.sh("ip", "-n", r, "rule", "del", "pref", "0", "lookup", "local")

    def _port(self, ns: str, port: str, dev: str, mac: str) -> None:
        """A routed veth: ``port`` in the router, ``dev`` in ``ns``."""
        r = self.router
        self.sh("ip", "-n", r, "link", "add", port, "address", FABRIC_MAC, "type", "veth",
                "peer", "name", dev, "address", mac, "netns", ns)
        self.sh("sysctl", "-qw", f"net.ipv4.conf.{port}.proxy_arp=1", ns=r)
        self.sh("sysctl", "-qw", f"net.ipv4.neigh.{port}.proxy_delay=0", ns=r)
        self.sh("ip", "-n", r, "link", "set", port, "up")
        self.sh("ip", "-n", ns, "link", "set", dev, "up")

    def _used_ips(self) -> set[IPv4Address]:
        return {*self.scenario.ipconfig_ips().values(), *(r.vip for r in self.scenario.ilb_rules())}

    def _build_client(self) -> None:
        rules = self.scenario.ilb_rules()
        nets = list(self.scenario.subnets.values())
        if rules:
            nets.sort(key=lambda n: rules[0].vip not in n)
        if not nets:
            raise FabricError("scenario has no subnets")
        net, used = nets[0], self._used_ips()
        hosts = [h for h in net.hosts() if h not in used][3:]  # skip .1-.3 (reserved)
        self.client_ip = hosts[-2] if len(hosts) > 1 else hosts[-1]
        self._add_ns(self.client, 0)
        self._port(self.client, "cl0", "eth0", "00:0d:3a:ff:ff:01")
        self.sh("ip", "-n", self.client, "addr", "add", f"{self.client_ip}/{net.prefixlen}",
                "dev", "eth0")
        self.sh("ip", "-n", self.client, "route", "add", "default", "via",
                str(subnet_gateway(net)), "dev", "eth0")
        self.sh("ip", "-n", self.router, "route", "add", f"{self.client_ip}/32", "dev", "cl0")

    # -- VMs
    def vm(self, name: str) -> VmState:
        if name not in self.vms:
            self.vms[name] = VmState(name, len(self.vms) + 1, f"{self.run_id}-v{len(self.vms) + 1}")
        return self.vms[name]

    def vm_netns(self, name: str) -> str:
        return self.vm(name).netns

    def start_vm(self, name: str, nics: list[dict] | None = None, *, vm_doc: dict | None = None,
                 boot: bool = True) -> VmState:
        """Boot: fresh namespace (no old routes/rules), NICs as DHCP configures them, the
        application servers, then the units the guest enabled (its persisted config)."""
        vm = self.vm(name)
        if vm.running:
            self.stop_vm(name)
        doc = vm_doc or self.scenario.vms.get(name) or {"name": name}
        vm.nics = self.scenario.vm_nics(doc, nics)
        self._add_ns(vm.netns, self.rp_filter)
        r = self.router
        for i, nic in enumerate(vm.nics):
            port, dev = f"v{vm.index}n{i}", f"eth{i}"
            self._port(vm.netns, port, dev, nic.mac)
            for a in nic.addresses:
                if nic.primary:
                    self.sh("ip", "-n", vm.netns, "addr", "add", f"{a.ip}/{a.subnet.prefixlen}",
                            "dev", dev)
                else:  # as cloud-init/netplan: no default route, subnet route at a higher metric
                    self.sh("ip", "-n", vm.netns, "addr", "add", f"{a.ip}/{a.subnet.prefixlen}",
                            "dev", dev, "noprefixroute")
                    self.sh("ip", "-n", vm.netns, "route", "replace", str(a.subnet), "dev", dev,
                            "src", str(a.ip), "metric", str(100 * (i + 1)), "proto", "dhcp")
                self.sh("ip", "-n", r, "route", "replace", f"{a.ip}/32", "dev", port)
            if nic.primary and nic.addresses:
                self.sh("ip", "-n", vm.netns, "route", "add", "default", "via",
                        str(subnet_gateway(nic.addresses[0].subnet)), "dev", dev)
        my_ips = {a.ip for n in vm.nics for a in n.addresses}
        ports: set[int] = set()
        for rule in self.scenario.ilb_rules():
            if not set(rule.members) & my_ips or rule.protocol == "Udp":
                continue
            if rule.floating_ip:  # DSR guests own the VIP on loopback
                self.sh("ip", "-n", vm.netns, "addr", "replace", f"{rule.vip}/32", "dev", "lo")
                if rule.frontend_port:
                    ports.add(rule.frontend_port)
            elif rule.backend_port:
                ports.add(rule.backend_port)
        if ports:
            self._start_server(vm, sorted(ports))
        vm.running = True
        self.reload_ilb()
        if boot:
            vm.boot_log = self.boot(name)
        return vm

    def stop_vm(self, name: str) -> None:
        """Deallocate: processes die, interfaces, routes and rules vanish; /etc stays."""
        vm = self.vm(name)
        self._kill_servers(vm)
        if vm.netns in self._created:  # router ports first: a namespace's devices go later
            for i in range(len(vm.nics)):
                self.sh("ip", "-n", self.router, "link", "del", f"v{vm.index}n{i}", check=False)
            self.sh("ip", "netns", "del", vm.netns, check=False)
            self._created.remove(vm.netns)
        vm.running = False
        live, ipcfg = self.running_ips(), self.scenario.ipconfig_ips()
        for m in self.mirrors:  # fail over (no fail-back), as the emulator's mirrors do
            if ipcfg.get(m["primary"]) not in live:
                m["primary"] = next((x for x in m["members"] if ipcfg.get(x) in live),
                                    m["primary"])
        self.reload_ilb()

    def _start_server(self, vm: VmState, ports: list[int]) -> None:
        vm.servers.append(start_server(vm.netns, self.python, vm.name, ports))

    def _kill_servers(self, vm: VmState) -> None:  # and the guest's long-running units
        for proc in vm.servers:
            kill_group(proc)
        vm.servers.clear()

    # -- the ILB
    def set_health(self, health: list[dict]) -> None:
        self.health = list(health)
        self.reload_ilb()

    def running_ips(self) -> set[IPv4Address]:
        return {a.ip for vm in self.vms.values() if vm.running for n in vm.nics
                for a in n.addresses}

    def nft_ruleset(self) -> str:
        text, self._dsr_tables = ilb_ruleset(self.scenario.ilb_rules(), self._backends(),
                                             self._port_of, deterministic=self.deterministic)
        return text

    def _backends(self):
        """Per rule, the backends that answer now: healthy (or mirror primary) and running."""
        live = self.running_ips()
        health = list(self.health_source() or []) if self.health_source else None
        ipcfg = self.scenario.ipconfig_ips()

        def backends(rule: IlbRule) -> list[IPv4Address]:
            mirror = next((m for m in self.mirrors if rule.id in m["rules"]), None)
            if health is None and mirror is not None:
                up = [ipcfg.get(mirror["primary"])]
            else:
                up = self.scenario.healthy(rule, self.health if health is None else health)
            return [ip for ip in up if ip in live]

        return backends

    def _port_of(self, ip: IPv4Address) -> str:
        for vm in self.vms.values():
            for i, nic in enumerate(vm.nics):
                if any(a.ip == ip for a in nic.addresses):
                    return f"v{vm.index}n{i}"
        raise FabricError(f"no port for {ip}")

    def reload_ilb(self) -> None:
        if not self._open:
            return
        text = self.nft_ruleset()
        if text == self._loaded:
            return
        exists = self.sh("nft", "list", "table", "ip", TABLE, ns=self.router,
                         check=False).returncode == 0
        prefix = f"delete table ip {TABLE}\n" if exists else ""
        self.sh("nft", "-f", "-", ns=self.router, input=prefix + text)
        # DSR: one fwmark rule and table per backend, replaced on every reload.
        r = self.router
        for line in self.sh("ip", "-n", r, "rule", "show", "pref", "500").stdout.splitlines():
            self.sh("ip", "-n", r, "rule", "del", "pref", "500", *line.split(":", 1)[1].split(),
                    check=False)
        for route in self._dsr_tables:
            self.sh("ip", "-n", r, "route", "replace", "default", "via", str(route.backend),
                    "dev", route.port, "onlink", "table", str(route.mark))
            self.sh("ip", "-n", r, "rule", "add", "pref", "500", "fwmark", hex(route.mark),
                    "lookup", str(route.mark))
        self._loaded = text

    # -- guests
    def guest_etc(self, name: str) -> str:
        """Host path of the files the guest wrote under /etc (the overlay's upper dir)."""
        return os.path.join(self._root, name, "etc")

    def guest_run(self, name: str, argv: list[str], *, input: str | None = None,
                  env: dict[str, str] | None = None, timeout: float = 120
                  ) -> subprocess.CompletedProcess:
        vm = self.vm(name)
        if not vm.running:
            raise FabricError(f"{name} is not running")
        entered = overlay_argv(vm.netns, self.guest_etc(name),
                               os.path.join(self._root, name, "etc-work"), argv)
        return subprocess.run(entered, input=input, capture_output=True, text=True,
                              env={**GUEST_ENV, **(env or {})}, timeout=timeout)

    def run_shell_script(self, name: str, script: str, *, env: dict[str, str] | None = None,
                         timeout: float = 120) -> tuple[int, str, str]:
        """RunShellScript: bash as root in the guest; output cut to the last 4,096 bytes."""
        try:
            proc = self.guest_run(name, ["/bin/bash", "-s"], input=script, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return 124, tail(exc.stdout or ""), tail((exc.stderr or "") + "\ntimed out")
        return proc.returncode, tail(proc.stdout), tail(proc.stderr)

    def boot(self, name: str) -> list[dict]:
        """systemd at boot, for the units the guest enabled in its own /etc (`boot_units`)."""
        vm, work = self.vm(name), os.path.join(self._root, name, "etc-work")
        return boot_units(
            self.guest_etc(name), lambda argv: self.guest_run(name, argv),
            lambda argv: vm.servers.append(start_service(overlay_argv(
                vm.netns, self.guest_etc(name), work, argv))))

    # -- measuring
    def connect(self, ns: str, vip: str | IPv4Address, port: int, *, count: int = 20,
                timeout: float = 2.0, source: str | IPv4Address | None = None) -> ProbeResult:
        """``count`` parallel TCP connects (new source port each) from namespace ``ns``."""
        self.reload_ilb()  # follow health changes made since the last reload
        proc = self.sh(self.python, "-c", CONNECT, str(vip), str(port), str(count),
                       str(timeout), str(source or ""), ns=ns, timeout=timeout * 3 + 30)
        answers = json.loads(proc.stdout)
        ok = [a for a in answers if a is not None]
        return ProbeResult(str(vip), int(port), len(ok), count,
                           Counter(a.split()[0] for a in ok if a != "?"),
                           Counter(a.split()[1] for a in ok if len(a.split()) > 1))

    def state(self, name: str) -> dict:
        """Routes (all tables), rules and guest-written files: for exact before/after checks."""
        ns = self.vm(name).netns
        return {
            "routes": self.sh("ip", "-n", ns, "route", "show", "table", "all").stdout,
            "rules": self.sh("ip", "-n", ns, "rule", "show").stdout,
            "addresses": self.sh("ip", "-n", ns, "-o", "-4", "addr", "show").stdout,
            "files": changed_files(self.guest_etc(name)),
        }
