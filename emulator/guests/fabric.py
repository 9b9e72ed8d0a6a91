"""The Azure fabric in Linux network namespaces (test and demo asset, not product logic).

Built from a scenario document (the same one the ARM emulator serves):

* one namespace per VM, one router namespace playing the Azure fabric, one routed veth pair per
  VM NIC (no bridge: VMs must not ARP each other directly and skip the NAT);
* every router port answers ARP for everything it routes with one MAC (proxy ARP, as Azure
  answers every ARP with 12:34:56:78:9a:bc), holds each subnet's gateway address and a /32 route
  per NIC address;
* the internal load balancer: nftables DNAT of VIP:port to the healthy backends of the pool,
  spread per connection (round-robin ``numgen inc`` by default so tests are deterministic, or
  ``numgen random``), no SNAT, conntrack reverse-NAT on replies; floating-IP rules are DSR
  (connection mark -> policy route to the chosen backend, destination left as the VIP);
* a small TCP server per backend port in each VM namespace answering ``<vm name> <peer ip>``;
* a client namespace outside every pool (an address no NIC uses), for baseline traffic;
* each VM gets a private ``/etc`` (overlay of the host's /etc with a per-VM upper directory) for
  guest commands, so files a guest writes persist across its "reboot" while routes do not.

Nothing here has a link to the root namespace: scenario addresses exist only inside our
namespaces. Names are ``<prefix>-<pid>-<random>-...``; everything is removed on close (context
manager, atexit), and the next fabric sweeps what a killed process left behind.

Needs root, iproute2 (ip, ip netns), nftables (nft), util-linux (unshare) and overlayfs.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

FABRIC_MAC = "12:34:56:78:9a:bc"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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


# ---------------------------------------------------------------- scenario parsing

def _lower(value: object) -> str:
    return str(value or "").lower()


def _props(doc: dict) -> dict:
    return doc.get("properties") or {}


def subnet_gateway(prefix: IPv4Network) -> IPv4Address:
    return prefix.network_address + 1


@dataclass
class NicAddr:
    ip: IPv4Address
    subnet: IPv4Network
    ipconfig_id: str
    subnet_id: str = ""


@dataclass
class NicPlan:
    id: str
    name: str
    mac: str
    primary: bool
    addresses: list[NicAddr]


@dataclass
class IlbRule:
    id: str
    name: str
    vip: IPv4Address
    protocol: str  # Tcp | Udp | All
    frontend_port: int
    backend_port: int
    floating_ip: bool
    members: list[IPv4Address]  # pool members (all, before health)


@dataclass
class VmState:
    name: str
    index: int
    netns: str
    nics: list[NicPlan] = field(default_factory=list)
    servers: list[subprocess.Popen] = field(default_factory=list)
    running: bool = False
    boot_log: list[dict] = field(default_factory=list)


def _mac_for(nic: dict) -> str:
    mac = _props(nic).get("macAddress")
    if isinstance(mac, str) and len(mac.replace("-", "").replace(":", "")) == 12:
        raw = mac.replace("-", "").replace(":", "").lower()
    else:  # NIC not yet given a MAC: derive one from its ID (00:0d:3a is Azure's prefix)
        raw = "000d3a" + hashlib.sha256(_lower(nic.get("id")).encode()).hexdigest()[:6]
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


_CHILDREN = {
    "microsoft.network/virtualnetworks": ["subnets"],
    "microsoft.network/networkinterfaces": ["ipConfigurations"],
    "microsoft.network/loadbalancers": ["frontendIPConfigurations", "backendAddressPools",
                                        "loadBalancingRules", "probes"],
}


def _with_child_ids(doc: dict) -> dict:
    """Scenario files may omit child IDs; ARM (and the emulator) derive them from the name."""
    colls = _CHILDREN.get(_lower(doc.get("type")))
    if not colls or not doc.get("id"):
        return doc
    doc = copy.deepcopy(doc)
    for coll in colls:
        for child in _props(doc).get(coll) or []:
            child.setdefault("id", f"{doc['id']}/{coll}/{child.get('name')}")
    return doc


class Scenario:
    """The parts of a scenario document the fabric needs (raw ARM documents)."""

    def __init__(self, doc: dict):
        self.doc = doc
        res = [_with_child_ids(r) for r in doc.get("resources") or []]
        by_type: dict[str, list[dict]] = {}
        for r in res:
            by_type.setdefault(_lower(r.get("type")), []).append(r)
        self.subnets: dict[str, IPv4Network] = {}
        for vnet in by_type.get("microsoft.network/virtualnetworks", []):
            for sn in _props(vnet).get("subnets") or []:
                p = _props(sn)
                prefix = p.get("addressPrefix") or (p.get("addressPrefixes") or [None])[0]
                if prefix:
                    self.subnets[_lower(sn.get("id"))] = IPv4Network(prefix, strict=False)
        for sn in by_type.get("microsoft.network/virtualnetworks/subnets", []):
            prefix = _props(sn).get("addressPrefix")
            if prefix:
                self.subnets[_lower(sn.get("id"))] = IPv4Network(prefix, strict=False)
        self.nics = {_lower(n.get("id")): n for n in
                     by_type.get("microsoft.network/networkinterfaces", [])}
        self.vms = {v["name"]: v for v in by_type.get("microsoft.compute/virtualmachines", [])}
        self.lbs = by_type.get("microsoft.network/loadbalancers", [])
        self.health = list(doc.get("health") or [])

    def subnet_of(self, subnet_ref: dict | None, ip: IPv4Address) -> IPv4Network:
        net = self.subnets.get(_lower((subnet_ref or {}).get("id")))
        if net is None:  # unknown subnet document: assume the /24 around the address
            net = IPv4Network(f"{ip}/24", strict=False)
        return net

    def nic_plan(self, nic: dict, primary_hint: bool | None = None) -> NicPlan:
        addrs = []
        for cfg in _props(nic).get("ipConfigurations") or []:
            p = _props(cfg)
            if not p.get("privateIPAddress"):
                continue
            ip = IPv4Address(p["privateIPAddress"])
            addrs.append((bool(p.get("primary")), NicAddr(
                ip, self.subnet_of(p.get("subnet"), ip), _lower(cfg.get("id")),
                str((p.get("subnet") or {}).get("id") or ""))))
        addrs.sort(key=lambda a: not a[0])  # primary ipconfig first
        primary = primary_hint if primary_hint is not None else bool(_props(nic).get("primary"))
        return NicPlan(_lower(nic.get("id")), str(nic.get("name")), _mac_for(nic), primary,
                       [a for _, a in addrs])

    def vm_nics(self, vm: dict, nics: list[dict] | None = None) -> list[NicPlan]:
        """The VM's NICs, primary first then in attach order (eth0, eth1, ...)."""
        refs = (_props(vm).get("networkProfile") or {}).get("networkInterfaces") or []
        hints = {_lower(r.get("id")): (r.get("properties") or {}).get("primary") for r in refs}
        if nics is None:
            nics = [self.nics[_lower(r.get("id"))] for r in refs
                    if _lower(r.get("id")) in self.nics]
        order = {k: i for i, k in enumerate(hints)}
        plans = [self.nic_plan(n, hints.get(_lower(n.get("id")))) for n in nics]
        if plans and not any(p.primary for p in plans):
            plans[0].primary = True
        plans.sort(key=lambda p: (not p.primary, order.get(p.id, len(order))))
        return plans

    def ipconfig_ips(self) -> dict[str, IPv4Address]:
        out = {}
        for nic in self.nics.values():
            for cfg in _props(nic).get("ipConfigurations") or []:
                ip = _props(cfg).get("privateIPAddress")
                if ip:
                    out[_lower(cfg.get("id"))] = IPv4Address(ip)
        return out

    def ilb_rules(self) -> list[IlbRule]:
        ipcfg = self.ipconfig_ips()
        pool_members: dict[str, list[IPv4Address]] = {}
        for nic in self.nics.values():  # NIC-based pools
            for cfg in _props(nic).get("ipConfigurations") or []:
                ip = _props(cfg).get("privateIPAddress")
                for pool in _props(cfg).get("loadBalancerBackendAddressPools") or []:
                    if ip:
                        pool_members.setdefault(_lower(pool.get("id")), []).append(IPv4Address(ip))
        rules = []
        for lb in self.lbs:
            p = _props(lb)
            for pool in p.get("backendAddressPools") or []:  # IP-based pools
                for addr in _props(pool).get("loadBalancerBackendAddresses") or []:
                    ap = _props(addr)
                    ip = ap.get("ipAddress") or ipcfg.get(
                        _lower((ap.get("networkInterfaceIPConfiguration") or {}).get("id")))
                    if ip:
                        lst = pool_members.setdefault(_lower(pool.get("id")), [])
                        if IPv4Address(str(ip)) not in lst:
                            lst.append(IPv4Address(str(ip)))
            fronts = {_lower(f.get("id")): _props(f).get("privateIPAddress")
                      for f in p.get("frontendIPConfigurations") or []}
            for rule in p.get("loadBalancingRules") or []:
                rp = _props(rule)
                vip = fronts.get(_lower((rp.get("frontendIPConfiguration") or {}).get("id")))
                if not vip:
                    continue  # public frontend: not an ILB hairpin
                pools = [rp["backendAddressPool"]] if rp.get("backendAddressPool") else []
                pools += rp.get("backendAddressPools") or []
                members: list[IPv4Address] = []
                for pool in pools:
                    for ip in pool_members.get(_lower(pool.get("id")), []):
                        if ip not in members:
                            members.append(ip)
                rules.append(IlbRule(_lower(rule.get("id")), str(rule.get("name")),
                                     IPv4Address(vip), str(rp.get("protocol", "Tcp")).title(),
                                     int(rp.get("frontendPort") or 0),
                                     int(rp.get("backendPort") or rp.get("frontendPort") or 0),
                                     bool(rp.get("enableFloatingIP")), members))
        return rules

    def healthy(self, rule: IlbRule, health: list[dict]) -> list[IPv4Address]:
        """Members the probe sees Up (all members when the scenario gives no health)."""
        ipcfg = self.ipconfig_ips()
        for entry in health:
            if _lower(entry.get("ruleId")) != rule.id:
                continue
            up = set()
            for a in (entry.get("response") or {}).get("loadBalancerBackendAddresses") or []:
                if str(a.get("state", "")).lower() != "up":
                    continue
                ip = a.get("ipAddress") or ipcfg.get(
                    _lower(a.get("networkInterfaceIPConfigurationId")))
                if ip:
                    up.add(IPv4Address(str(ip)))
            return [m for m in rule.members if m in up]
        return list(rule.members)


# ---------------------------------------------------------------- small programs run inside

_SERVER = r"""
import socket, sys, threading
name, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
socks = []
for port in ports:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(128); socks.append(s)
def serve(s):
    while True:
        c, peer = s.accept()
        try: c.sendall(("%s %s\n" % (name, peer[0])).encode())
        except OSError: pass
        c.close()
for s in socks: threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

_CONNECT = r"""
import json, socket, sys, threading
vip, port, n, timeout, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), sys.argv[5]
res = [None] * n
def one(i):
    s = socket.socket(); s.settimeout(timeout)
    try:
        if src: s.bind((src, 0))
        s.connect((vip, port))
        try: line = s.makefile().readline().strip()
        except OSError: line = ""
        res[i] = line or "?"
    except OSError:
        res[i] = None
    finally:
        s.close()
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(res))
"""


@dataclass
class ProbeResult:
    vip: str
    port: int
    ok: int
    total: int
    backends: Counter  # VM name -> successful connects it served
    peers: Counter  # source address the backend saw -> count

    @property
    def ratio(self) -> float:
        return self.ok / self.total if self.total else 0.0


# ---------------------------------------------------------------- the fabric

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
        self.mirrors = [{"rules": {_lower(r) for r in m.get("rules") or []},
                         "members": [_lower(x) for x in m.get("members") or []],
                         "primary": _lower(m.get("primary") or (m.get("members") or [""])[0])}
                        for m in (scenario.get("emulator") or {}).get("mirrors") or []]
        self.vms: dict[str, VmState] = {}
        self._created: list[str] = []
        self._root = ""
        self._open = False
        self._dsr_tables: list[tuple[int, IPv4Address, str]] = []
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
        for key in ("all", "default"):
            self.sh("sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter={rp_filter}", ns=name)

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
        used = set(self.scenario.ipconfig_ips().values())
        used |= {rule.vip for rule in self.scenario.ilb_rules()}
        return used

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
        if vm.netns in self._created:
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
        proc = subprocess.Popen(
            ["ip", "netns", "exec", vm.netns, self.python, "-c", _SERVER, vm.name,
             *map(str, ports)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        vm.servers.append(proc)
        if proc.stdout.readline().strip() != "ready":
            raise FabricError(f"server in {vm.name} did not start")

    def _kill_servers(self, vm: VmState) -> None:
        for proc in vm.servers:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=10)
        vm.servers.clear()

    # -- the ILB
    def set_health(self, health: list[dict]) -> None:
        self.health = list(health)
        self.reload_ilb()

    def running_ips(self) -> set[IPv4Address]:
        return {a.ip for vm in self.vms.values() if vm.running for n in vm.nics
                for a in n.addresses}

    def nft_ruleset(self) -> str:
        """The ILB as one nftables table (replaced atomically, which also resets the
        round-robin counters: each reload starts with the first backend)."""
        gen = "inc" if self.deterministic else "random"
        live = self.running_ips()  # a stopped VM fails its probe
        health = list(self.health_source() or []) if self.health_source else None
        ipcfg = self.scenario.ipconfig_ips()
        nat, mangle, mark = [], [], 0x100
        self._dsr_tables = []
        for rule in self.scenario.ilb_rules():
            mirror = next((m for m in self.mirrors if rule.id in m["rules"]), None)
            if health is None and mirror is not None:
                up = [ipcfg.get(mirror["primary"])]
            else:
                up = self.scenario.healthy(rule, self.health if health is None else health)
            backends = [ip for ip in up if ip in live]
            if rule.protocol == "All":
                match = f"ip daddr {rule.vip} meta l4proto {{ tcp, udp }}"
            else:
                match = f"ip daddr {rule.vip} {rule.protocol.lower()} dport {rule.frontend_port}"
            if not backends:
                nat.append(f"{match} drop")
                continue
            if rule.floating_ip:
                marks = []
                for i, ip in enumerate(backends):
                    mark += 1
                    marks.append(f"{i} : {mark:#x}")
                    self._dsr_tables.append((mark, ip, self._port_of(ip)))
                mangle.append(f"{match} ct state new ct mark set numgen {gen} mod "
                              f"{len(backends)} map {{ {', '.join(marks)} }}")
                continue
            port_changes = rule.protocol != "All" and rule.backend_port != rule.frontend_port
            targets = ", ".join(f"{i} : {ip} . {rule.backend_port}" if port_changes
                                else f"{i} : {ip}" for i, ip in enumerate(backends))
            nat.append(f"{match} dnat ip to numgen {gen} mod {len(backends)} map {{ {targets} }}")
        lines = ["table ip hairpin_ilb {",
                 "  chain dsr {", "    type filter hook prerouting priority mangle; policy accept;",
                 *[f"    {x}" for x in mangle],
                 # Only the original direction follows the mark: replies route normally.
                 "    ct direction original ct mark != 0 meta mark set ct mark", "  }",
                 "  chain ilb {", "    type nat hook prerouting priority dstnat; policy accept;",
                 *[f"    {x}" for x in nat], "  }", "}"]
        return "\n".join(lines) + "\n"

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
        exists = self.sh("nft", "list", "table", "ip", "hairpin_ilb", ns=self.router,
                         check=False).returncode == 0
        prefix = "delete table ip hairpin_ilb\n" if exists else ""
        self.sh("nft", "-f", "-", ns=self.router, input=prefix + text)
        # DSR: one fwmark rule and table per backend, replaced on every reload.
        r = self.router
        for line in self.sh("ip", "-n", r, "rule", "show", "pref", "500").stdout.splitlines():
            self.sh("ip", "-n", r, "rule", "del", "pref", "500", *line.split(":", 1)[1].split(),
                    check=False)
        for mark, ip, port in self._dsr_tables:
            self.sh("ip", "-n", r, "route", "replace", "default", "via", str(ip), "dev", port,
                    "onlink", "table", str(mark))
            self.sh("ip", "-n", r, "rule", "add", "pref", "500", "fwmark", hex(mark),
                    "lookup", str(mark))
        self._loaded = text

    # -- guests
    def _guest_argv(self, name: str, argv: list[str]) -> list[str]:
        """argv run in the VM's namespace as root, with the VM's private /etc (overlay on the
        host's /etc; writes land in a per-VM directory) and a fresh /run (per boot)."""
        vm = self.vm(name)
        upper = os.path.join(self._root, name, "etc")
        work = os.path.join(self._root, name, "etc-work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        setup = ('mount -t overlay hairpin-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc '
                 '&& mount -t tmpfs hairpin-run /run && shift 2 && exec "$@"')
        return ["ip", "netns", "exec", vm.netns, "unshare", "--mount", "--propagation",
                "private", "--", "/bin/sh", "-c", setup, "hairpin-guest", upper, work, *argv]

    def guest_etc(self, name: str) -> str:
        """Host path of the files the guest wrote under /etc (the overlay's upper dir)."""
        return os.path.join(self._root, name, "etc")

    def guest_run(self, name: str, argv: list[str], *, input: str | None = None,
                  env: dict[str, str] | None = None, timeout: float = 120
                  ) -> subprocess.CompletedProcess:
        vm = self.vm(name)
        if not vm.running:
            raise FabricError(f"{name} is not running")
        base = {"PATH": GUEST_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        return subprocess.run(self._guest_argv(name, argv), input=input, capture_output=True,
                              text=True, env={**base, **(env or {})}, timeout=timeout)

    def run_shell_script(self, name: str, script: str, *, env: dict[str, str] | None = None,
                         timeout: float = 120) -> tuple[int, str, str]:
        """RunShellScript: bash as root in the guest; output cut to the last 4,096 bytes."""
        try:
            proc = self.guest_run(name, ["/bin/bash", "-s"], input=script, env=env,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return 124, _tail(exc.stdout or ""), _tail((exc.stderr or "") + "\ntimed out")
        return proc.returncode, _tail(proc.stdout), _tail(proc.stderr)

    def boot(self, name: str) -> list[dict]:
        """What systemd does at boot for the units the guest enabled itself (the ones in its
        own /etc layer; the base image's services are out of scope): run each ExecStart."""
        upper = self.guest_etc(name)
        wants = os.path.join(upper, "systemd", "system", "multi-user.target.wants")
        log = []
        if not os.path.isdir(wants):
            return log
        for link in sorted(os.listdir(wants)):
            path = os.path.join(wants, link)
            target = os.readlink(path) if os.path.islink(path) else f"/etc/systemd/system/{link}"
            if not target.startswith("/etc/"):
                target = os.path.normpath(os.path.join("/etc/systemd/system", target))
            unit_file = os.path.join(upper, target[len("/etc/"):])
            if not os.path.isfile(unit_file):
                log.append({"unit": link, "error": "unit file missing"})
                continue
            for line in open(unit_file, encoding="utf-8").read().splitlines():
                if not line.startswith("ExecStart="):
                    continue
                argv = shlex.split(line.split("=", 1)[1].lstrip("-@+!"))
                proc = self.guest_run(name, argv)
                log.append({"unit": link, "argv": argv, "rc": proc.returncode,
                            "stdout": _tail(proc.stdout), "stderr": _tail(proc.stderr)})
        return log

    # -- measuring
    def connect(self, ns: str, vip: str | IPv4Address, port: int, *, count: int = 20,
                timeout: float = 2.0, source: str | IPv4Address | None = None) -> ProbeResult:
        """``count`` parallel TCP connects (new source port each) from namespace ``ns``."""
        self.reload_ilb()  # follow health changes made since the last reload
        proc = self.sh(self.python, "-c", _CONNECT, str(vip), str(port), str(count),
                       str(timeout), str(source or ""), ns=ns, timeout=timeout * 3 + 30)
        answers = json.loads(proc.stdout)
        ok = [a for a in answers if a is not None]
        return ProbeResult(str(vip), int(port), len(ok), count,
                           Counter(a.split()[0] for a in ok if a != "?"),
                           Counter(a.split()[1] for a in ok if len(a.split()) > 1))

    def state(self, name: str) -> dict:
        """Routes (all tables), rules and guest-written files: for exact before/after checks."""
        ns = self.vm(name).netns
        files = []  # what the guest changed in /etc (copied-up parent dirs are no change)
        upper = self.guest_etc(name)
        for root, dirs, names in os.walk(upper):
            for n in dirs + names:
                rel = os.path.relpath(os.path.join(root, n), upper)
                if n in names or not os.path.isdir(os.path.join("/etc", rel)):
                    files.append(rel)
        return {
            "routes": self.sh("ip", "-n", ns, "route", "show", "table", "all").stdout,
            "rules": self.sh("ip", "-n", ns, "rule", "show").stdout,
            "addresses": self.sh("ip", "-n", ns, "-o", "-4", "addr", "show").stdout,
            "files": sorted(files),
        }


def sweep_stale(prefix: str = "hp") -> list[str]:
    """Remove namespaces (and their processes, and temp dirs) of fabrics whose process died."""
    pattern = re.compile(rf"\A{re.escape(prefix)}-(\d+)-[0-9a-f]{{4}}(-.*)?\Z")
    removed = []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in (line.split()[0] for line in listing.splitlines() if line.strip()):
        m = pattern.match(ns)
        if not m or _alive(int(m.group(1))):
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
            if m and not _alive(int(m.group(1))):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    data = text.encode("utf-8", "replace")
    return data[-limit:].decode("utf-8", "replace") if len(data) > limit else text
