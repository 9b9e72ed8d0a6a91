"""The Azure fabric for real booted guests: one router namespace (the guests' NICs are taps in
it, qemu runs inside it), a client namespace outside every pool, and the internal load
balancer as the namespace fabric's nftables rules (``ilb_rules``: DNAT, no SNAT).

As Azure: each router port answers ARP for everything with one MAC (proxy ARP; Azure answers
every ARP with 12:34:56:78:9a:bc), holds the subnet gateway and routes each NIC address as a
/32 to its port; DHCP (dnsmasq) hands each MAC its static address, the gateway as router.
A VM that is not booted can still answer on the fabric (`add_server`): a namespace serving its
backend ports, as a mirror peer does once the ILB fails over to it.
Nothing is linked to the root namespace; names are ``hpos-<pid>-<random>-...`` so a later run
sweeps what a killed one left (``namespaces.sweep_stale``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from emulator.guests.ilb_rules import TABLE, ilb_ruleset
from emulator.guests.namespaces import FabricError, kill_group, start_server, sweep_stale
from emulator.guests.programs import CONNECT, ProbeResult
from emulator.guests.scenario import IlbRule

FABRIC_MAC = "12:34:56:78:9a:bc"
PREFIX = "hpos"
LEASE_TIME = "1h"


@dataclass
class Port:
    """One guest NIC: its tap in the router, its MAC and its static DHCP address."""

    tap: str
    mac: str
    ip: IPv4Address


@dataclass
class Server:
    """A VM that is not booted, answering on the fabric from its own namespace."""

    ns: str
    dev: str  # its port in the router
    ips: list[IPv4Address]
    proc: subprocess.Popen


@dataclass
class LeaseOptions:
    """What the DHCP server hands out; changing it and renewing is a "changed lease"."""

    lease_time: str = LEASE_TIME
    dns: list[str] = field(default_factory=lambda: ["168.63.129.16"])  # Azure's resolver


class RealOsFabric:
    def __init__(self, subnet: str = "10.0.1.0/24", *, python: str = "python3"):
        self.subnet = IPv4Network(subnet)
        self.gateway = self.subnet.network_address + 1
        self.client_ip = self.subnet.broadcast_address - 5
        self.python = python
        self.run_id = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(2)}"
        self.router, self.client = f"{self.run_id}-r", f"{self.run_id}-c"
        self.root = ""
        self.ports: list[Port] = []
        self.rules: list[IlbRule] = []
        self.live: set[IPv4Address] = set()
        self.lease = LeaseOptions()
        self.dnsmasq: subprocess.Popen | None = None
        self.created: list[str] = []
        self.servers: dict[str, Server] = {}  # by VM name
        self.server_count = 0

    def __enter__(self) -> RealOsFabric:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def sh(self, *argv: str, ns: str | None = None, check: bool = True, input: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise FabricError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return proc

    def open(self) -> RealOsFabric:
        sweep_stale(PREFIX)
        self.root = tempfile.mkdtemp(prefix=f"{self.run_id}-")
        r = self.router
        for ns in (r, self.client):
            self.sh("ip", "netns", "add", ns)
            self.created.append(ns)
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=r)
        self.sh("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", ns=r)
        self.sh("ip", "-n", r, "link", "add", "cl0", "address", FABRIC_MAC, "type", "veth",
                "peer", "name", "eth0", "address", "00:0d:3a:ff:ff:01", "netns", self.client)
        self.router_port("cl0")
        c = self.client
        self.sh("ip", "-n", c, "link", "set", "eth0", "up")
        self.sh("ip", "-n", c, "addr", "add", f"{self.client_ip}/{self.subnet.prefixlen}",
                "dev", "eth0")
        self.sh("ip", "-n", c, "route", "add", "default", "via", str(self.gateway))
        self.sh("ip", "-n", r, "route", "add", f"{self.client_ip}/32", "dev", "cl0")
        return self

    def close(self) -> None:
        self.stop_dhcp()
        for name in list(self.servers):
            self.remove_server(name)
        pids = []
        for ns in self.created:
            pids += self.sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:  # qemu processes still running in the router
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        for ns in reversed(self.created):
            self.sh("ip", "netns", "del", ns, check=False)
        self.created.clear()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)

    def router_port(self, dev: str) -> None:
        r = self.router
        self.sh("ip", "-n", r, "addr", "add", f"{self.gateway}/32", "dev", dev)
        self.sh("sysctl", "-qw", f"net.ipv4.conf.{dev}.proxy_arp=1", ns=r)
        self.sh("sysctl", "-qw", f"net.ipv4.neigh.{dev}.proxy_delay=0", ns=r)
        self.sh("ip", "-n", r, "link", "set", dev, "up")

    # -- guest NICs and DHCP
    def add_port(self, mac: str, ip: str | IPv4Address) -> Port:
        """A tap for one guest NIC, its /32 route and its static lease."""
        port = Port(f"hpt{len(self.ports)}", mac.lower().replace("-", ":"), IPv4Address(ip))
        self.sh("ip", "-n", self.router, "tuntap", "add", "mode", "tap", "name", port.tap)
        self.sh("ip", "-n", self.router, "link", "set", port.tap, "address", FABRIC_MAC)
        self.router_port(port.tap)
        self.sh("ip", "-n", self.router, "route", "replace", f"{port.ip}/32", "dev", port.tap)
        self.ports.append(port)
        self.start_dhcp()
        return port

    def start_dhcp(self) -> None:
        """(Re)start dnsmasq with the current leases and options; no DNS service."""
        self.stop_dhcp()
        leases = os.path.join(self.root, "dhcp.leases")
        open(leases, "w").close()  # a server without memory: every lease is decided afresh
        netmask = str(self.subnet.netmask)
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
                "--interface=hpt*", "--except-interface=lo", "--dhcp-authoritative",
                f"--dhcp-range={self.subnet.network_address},static,{netmask},"
                f"{self.lease.lease_time}",
                *(f"--dhcp-host={p.mac},{p.ip}" for p in self.ports),
                f"--dhcp-leasefile={leases}", "--user=root",
                f"--dhcp-option=option:router,{self.gateway}",
                f"--dhcp-option=option:dns-server,{','.join(self.lease.dns)}",
                "--log-dhcp", f"--log-facility={os.path.join(self.root, 'dnsmasq.log')}",
                f"--pid-file={os.path.join(self.root, 'dnsmasq.pid')}"]
        self.dnsmasq = subprocess.Popen(["ip", "netns", "exec", self.router, *argv],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop_dhcp(self) -> None:
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            self.dnsmasq.wait(timeout=10)
        self.dnsmasq = None

    def change_lease(self, lease_time: str, dns: list[str]) -> None:
        self.lease = LeaseOptions(lease_time, list(dns))
        self.start_dhcp()

    # -- VMs that are not booted
    def add_server(self, name: str, ips: list[IPv4Address], ports: list[int]) -> None:
        """A VM that is not booted but must answer on the fabric, as a mirror peer the ILB fails
        over to does: a namespace holding its addresses, serving `ports` with the namespace
        fabric's application server (``<vm name> <peer ip>``), routed like a guest NIC."""
        self.remove_server(name)
        self.server_count += 1
        ns, dev = f"{self.run_id}-s{self.server_count}", f"hps{self.server_count}"
        self.sh("ip", "netns", "add", ns)
        self.created.append(ns)
        self.sh("ip", "-n", self.router, "link", "add", dev, "address", FABRIC_MAC, "type",
                "veth", "peer", "name", "eth0", "netns", ns)
        self.router_port(dev)
        self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sh("ip", "-n", ns, "link", "set", "eth0", "up")
        for ip in ips:
            self.sh("ip", "-n", ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
            self.sh("ip", "-n", self.router, "route", "replace", f"{ip}/32", "dev", dev)
        self.sh("ip", "-n", ns, "route", "add", "default", "via", str(self.gateway))
        # A server that does not start leaves its namespace in `created`, for close().
        self.servers[name] = Server(ns, dev, list(ips), start_server(ns, self.python, name, ports))

    def remove_server(self, name: str) -> None:
        """The VM stopped: its server, namespace and routes are gone."""
        server = self.servers.pop(name, None)
        if server is None:
            return
        kill_group(server.proc)
        # Deleting the router's end deletes the pair and the /32 routes through it.
        self.sh("ip", "-n", self.router, "link", "del", server.dev, check=False)
        self.sh("ip", "netns", "del", server.ns, check=False)
        self.created.remove(server.ns)

    # -- the ILB
    def set_rules(self, rules: list[IlbRule]) -> None:
        self.rules = list(rules)
        self.reload_ilb()

    def set_live(self, ips: set[IPv4Address]) -> None:
        """The backend addresses that answer probes now (their VM is running)."""
        self.live = set(ips)
        self.reload_ilb()

    def reload_ilb(self) -> None:
        taps = {p.ip: p.tap for p in self.ports}
        taps.update({ip: s.dev for s in self.servers.values() for ip in s.ips})
        text, _ = ilb_ruleset(self.rules, lambda rule: [ip for ip in rule.members
                                                        if ip in self.live],
                              lambda ip: taps[ip], deterministic=True)
        exists = self.sh("nft", "list", "table", "ip", TABLE, ns=self.router,
                         check=False).returncode == 0
        prefix = f"delete table ip {TABLE}\n" if exists else ""
        for vip in {str(rule.vip) for rule in self.rules}:
            self.sh("ip", "-n", self.router, "addr", "replace", f"{vip}/32", "dev", "lo")
        self.sh("nft", "-f", "-", ns=self.router, input=prefix + text)

    # -- measuring from outside every pool
    def connect(self, vip: str | IPv4Address, port: int, *, count: int = 20,
                timeout: float = 2.0) -> ProbeResult:
        proc = self.sh(self.python, "-c", CONNECT, str(vip), str(port), str(count),
                       str(timeout), "", ns=self.client, timeout=timeout * 3 + 30)
        answers = [a for a in json.loads(proc.stdout) if a is not None]
        return ProbeResult(str(vip), int(port), len(answers), count,
                           Counter(a.split()[0] for a in answers if a != "?"),
                           Counter(a.split()[1] for a in answers if len(a.split()) > 1))
