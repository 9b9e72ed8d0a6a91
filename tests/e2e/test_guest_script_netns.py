"""The Linux script's safety properties, shown with real kernels in the namespace fabric (the
scenario of tests/e2e/test_fabric.py): what a namespace can show without a network stack.

* numeric selectors: no /etc/protocols (minimal images without netbase) is no failure;
* all or nothing: a failure after routes and rules were applied undoes them;
* a rule looking up the local table exists at every instant (`ip monitor rule`), on apply,
  boot, rollback and cleanup;
* the networkd outage of issue 10: systemd-networkd's restart removes every rule it did not
  configure except kernel ones; the VM keeps its local delivery (fails on format 1);
* with no stack recognised, the watcher re-applies after link and address events;
* strict rp_filter (some images set net.ipv4.conf.all.rp_filter=1) does not stop the fix.
Which stacks own the persistence in a booted OS is the real-OS rig's part (docs/real-os.md).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from emulator.guests.fabric import Fabric, netns_unavailable_reason
from emulator.guests.netns import NetnsGuest
from shared.core import guest as gs
from tests.e2e.test_fabric import (
    NIC1,
    NIC1B,
    NIC2,
    PORT,
    SPEC,
    VIPS,
    VM1,
    VM2,
    N,
    attach_second_nic,
    run,
    scenario,
    vm1_ns,
)

_REASON = netns_unavailable_reason()
if _REASON:
    pytest.skip(f"network-namespace tests skipped: {_REASON}", allow_module_level=True)

pytestmark = pytest.mark.netns


@pytest.fixture
def guest():
    with NetnsGuest(scenario()) as g:
        g.on_start(VM1, [NIC1])
        g.on_start(VM2, [NIC2])
        attach_second_nic(g)
        yield g


def hairpin_ok(g: NetnsGuest) -> list[int]:
    return [g.fabric.connect(vm1_ns(g), vip, PORT, count=N).ok for vip in VIPS]


def local_delivery_ok(g: NetnsGuest) -> bool:
    """The guest reaches its own 127.0.0.1 (its application server listens on every address)."""
    return g.fabric.connect(vm1_ns(g), "127.0.0.1", PORT, count=4, timeout=1).ok == 4


class RuleMonitor:
    """`ip monitor rule` in the VM: every rule added and deleted, in order, so that the number
    of rules looking up the local table can be followed event by event."""

    def __init__(self, g: NetnsGuest):
        self.ns = vm1_ns(g)
        self.start = self._local_count()
        self.proc = subprocess.Popen(["ip", "-n", self.ns, "monitor", "rule"],
                                     stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)  # monitor subscribed before the first change

    def _local_count(self) -> int:
        out = subprocess.run(["ip", "-n", self.ns, "rule", "show", "table", "local"],
                             capture_output=True, text=True, check=True).stdout
        return len(out.splitlines())

    def lowest(self) -> tuple[int, int]:
        """(fewest local rules at any instant, events seen)."""
        time.sleep(0.3)
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        count, low, events = self.start, self.start, 0
        for line in out.splitlines():
            if "lookup local" not in line:
                continue
            events += 1
            count += -1 if line.startswith("Deleted") else 1
            low = min(low, count)
        return low, events


def test_no_etc_protocols_numeric_selectors_apply_rerun_and_clean(guest):
    fab = guest.fabric
    assert fab.guest_run("vm1", ["rm", "-f", "/etc/protocols"]).returncode == 0  # no netbase
    before = fab.state("vm1")
    code, res, err = run(guest, gs.render_linux_apply(SPEC))
    assert code == 0, err
    assert "+rule tcp sport 1972" in res["changes"]
    code, res, _ = run(guest, gs.render_linux_apply(SPEC))  # read back as "ipproto 6"
    assert (code, res["result"], res["changes"]) == (0, "unchanged", [])
    assert hairpin_ok(guest) == [N, N]
    code, res, _ = run(guest, gs.render_linux_cleanup(SPEC))
    assert code == 0 and "-rule from 10.0.1.10 to 10.0.1.11 ipproto 6 sport 1972 lookup 100" \
        in res["changes"]
    assert fab.state("vm1") == before


def test_a_failure_after_routes_and_rules_undoes_the_whole_run(guest):
    """Persisting fails (/etc/hairpin cannot be a directory) after the body applied the routes,
    the rules and the local-rule move: everything this run did is undone, pref 0 is back."""
    fab = guest.fabric
    assert fab.guest_run("vm1", ["touch", gs.STATE_DIR]).returncode == 0
    before = fab.state("vm1")
    monitor = RuleMonitor(guest)
    code, res, err = run(guest, gs.render_linux_apply(SPEC))
    assert (code, res["result"], res["error"]) == (9, "error", "persist"), err
    assert res["rolled_back"] >= 6 and res["local_rule"] == [0]
    assert {"+route 10.0.1.100/32 eth1", "+rule tcp sport 1972", "-rule local pref 0"} <= set(
        res["changes"])  # applied first, then undone
    assert fab.state("vm1") == before
    low, events = monitor.lowest()
    assert events >= 4 and low >= 1  # moved and moved back, never without a local rule
    assert hairpin_ok(guest) == [N // 2, N // 2] and local_delivery_ok(guest)


def test_a_local_rule_exists_at_every_instant_apply_boot_cleanup(guest):
    fab = guest.fabric
    monitor = RuleMonitor(guest)
    assert run(guest, gs.render_linux_apply(SPEC))[0] == 0
    low, events = monitor.lowest()
    assert (low, events) == (1, 2)  # +1000, then -0
    # The boot path: the unit runs on a fresh kernel (pref 0 only), watched from the start.
    guest.on_deallocate(VM1)
    fab.start_vm("vm1", [NIC1, NIC1B], vm_doc=VM1, boot=False)
    monitor = RuleMonitor(guest)
    fab.vm("vm1").boot_log = fab.boot("vm1")
    assert fab.vm("vm1").boot_log[0]["rc"] == 0
    assert monitor.lowest() == (1, 2)
    assert hairpin_ok(guest) == [N, N]
    monitor = RuleMonitor(guest)
    code, res, _ = run(guest, gs.render_linux_cleanup(SPEC))
    assert code == 0 and res["local_rule"] == [0]
    assert monitor.lowest() == (1, 2)  # +0, then -1000


def networkd_restart_rules(g: NetnsGuest) -> None:
    """What systemd-networkd does to rules on restart, reconfigure and `netplan apply` with
    ManageForeignRoutingPolicyRules=yes (the default, man systemd-networkd.conf): every rule it
    did not configure goes, except rules whose protocol is kernel (networkd-routing-policy-
    rule.c: "Do not touch rules managed by kernel"). Its own rules it then adds back; this
    model stands for a guest whose networkd has none of ours configured."""
    ns = vm1_ns(g)
    shown = subprocess.run(["ip", "-n", ns, "-d", "rule", "show"], capture_output=True,
                           text=True, check=True).stdout
    for line in shown.splitlines():
        pref, rest = line.split(":", 1)
        fields = rest.split()
        if fields[-2:] == ["proto", "kernel"]:
            continue
        selector = fields[:-2] if fields[-2] == "proto" else fields
        subprocess.run(["ip", "-n", ns, "rule", "del", "pref", pref, *selector], check=True)


def test_networkd_restart_never_takes_local_delivery_away(guest):
    """Issue 10's outage: format 1 moved the local rule to pref 1000 (protocol unspec) and
    deleted pref 0; networkd's restart then deleted the moved rule, leaving no local rule: the
    guest could not reach 127.0.0.1 and a client outside the pool got 0/20 to the VIP."""
    fab = guest.fabric
    assert run(guest, gs.render_linux_apply(SPEC))[0] == 0
    networkd_restart_rules(guest)
    assert "lookup local" in fab.state("vm1")["rules"]
    assert local_delivery_ok(guest)
    for vip in VIPS:
        c = fab.connect(fab.client, vip, PORT, count=N)
        assert c.ok == N, c


def wait_for(check, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.5)
    return check()


def test_the_watcher_reapplies_after_link_and_address_events(guest):
    """No stack recognised (a namespace has none): the routes die with the secondary's address
    or link (a changed lease, an admin down/up) and the watcher puts them back."""
    fab = guest.fabric
    code, res, err = run(guest, gs.render_linux_apply(SPEC))
    assert code == 0 and res["mechanism"] == gs.Mechanism.UNIT_WATCH, err
    guest.on_deallocate(VM1)
    guest.on_start(VM1, [NIC1, NIC1B])  # the boot starts the watcher
    assert hairpin_ok(guest) == [N, N]
    time.sleep(1.5)  # the watcher's first quiet second after the boot's own events

    def vip_routes() -> int:
        return fab.state("vm1")["routes"].count("dev eth1 proto 211")

    assert vip_routes() == len(VIPS)
    fab.guest_run("vm1", ["ip", "link", "set", "eth1", "down"])
    assert wait_for(lambda: vip_routes() == 0, 5)
    fab.guest_run("vm1", ["ip", "link", "set", "eth1", "up"])
    assert wait_for(lambda: vip_routes() == len(VIPS))
    assert hairpin_ok(guest) == [N, N]
    fab.guest_run("vm1", ["ip", "addr", "flush", "dev", "eth1"])  # the lease went...
    fab.guest_run("vm1", ["ip", "addr", "add", "10.0.1.11/24", "dev", "eth1", "noprefixroute"])
    assert wait_for(lambda: vip_routes() == len(VIPS))  # ...and came back: routes re-added
    assert hairpin_ok(guest) == [N, N] and local_delivery_ok(guest)


def test_strict_rp_filter_is_reported_and_does_not_stop_the_fix():
    with NetnsGuest(Fabric(scenario(), rp_filter=1)) as g:
        g.on_start(VM1, [NIC1])
        g.on_start(VM2, [NIC2])
        attach_second_nic(g)
        code, res, err = run(g, gs.render_linux_apply(SPEC))
        assert code == 0, err
        assert res["kernel"]["rp_filter"] == {"all": 1, "primary": 1, "secondary": 1}
        assert hairpin_ok(g) == [N, N]


def test_the_accelerated_networking_vf_is_never_chosen(guest):
    """The VF shares the synthetic NIC's MAC and is enslaved to it (here: a veth end with that
    MAC under a bridge, as the VF is under hv_netvsc): it is skipped; two unenslaved ones are
    ambiguous and refused."""
    fab = guest.fabric
    mac = SPEC.secondary_mac.linux
    for argv in (["ip", "link", "add", "vf0", "address", mac, "type", "veth", "peer", "vf0p"],
                 ["ip", "link", "add", "master0", "address", "02:00:00:00:00:01", "type", "bridge"],
                 ["ip", "link", "set", "vf0", "master", "master0"]):
        assert fab.guest_run("vm1", argv).returncode == 0, argv
    code, res, err = run(guest, gs.render_linux_apply(SPEC))
    assert code == 0 and res["secondary_dev"] == "eth1", err
    assert fab.guest_run("vm1", ["ip", "link", "set", "vf0", "nomaster"]).returncode == 0
    code, res, _ = run(guest, gs.render_linux_apply(SPEC))
    assert (code, res["error"]) == (3, "ambiguous_mac")


def test_verification_reports_what_the_guest_holds_of_the_fix(guest):
    """Drift visible from Azure: per VIP its route, the rules, the local rule and the mechanism
    beside the connects; routes lost show as such, and apply (what the sweep calls then) puts
    them back."""
    fab = guest.fabric

    def verify() -> dict:
        code, res, _ = run(guest, gs.render_linux_verify(SPEC, count=N))
        assert code == (0 if res["ok"] else 1)
        return res

    res = verify()
    assert (res["ok"], res["rules"], res["local_rule"], res["mechanism"]) == (
        False, 0, [0], "none")
    assert [(v["ok"], v["route"]) for v in res["verify"]] == [(N // 2, False)] * 2
    assert run(guest, gs.render_linux_apply(SPEC))[0] == 0
    res = verify()
    assert (res["ok"], res["rules"], res["local_rule"], res["mechanism"]) == (
        True, 1, [1000], gs.Mechanism.UNIT_WATCH)
    assert [(v["ok"], v["route"]) for v in res["verify"]] == [(N, True)] * 2
    fab.guest_run("vm1", ["ip", "route", "del", f"{VIPS[1]}/32", "table", "main"])  # lost
    res = verify()
    assert res["ok"] is False
    assert [(v["ok"], v["route"]) for v in res["verify"]] == [(N, True), (N // 2, False)]
    code, res, _ = run(guest, gs.render_linux_apply(SPEC))
    assert (code, res["changes"]) == (0, [f"+route {VIPS[1]}/32 eth1"])
    assert verify()["ok"] is True
