"""The drift sweep: what it finds per VM (pure), its order of work, its limits (one Run Command
per VM, pools one member at a time, a rate limit), the summary it stores, and stopping and
resuming: before a deadline, after an in-process kill, and after a real SIGKILL."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from shared.core import drift
from shared.core.journal import Trigger
from shared.core.remediation.outcome import Outcome
from shared.core.risk import evaluate
from shared.core.topology import topology_from_snapshot
from shared.core.vocab import DriftKind, RecordKind, Status, TriggerKind
from shared.services.sweep import SweepBusy, SweepConfig, run_sweep
from shared.settings import Settings
from tests.support.events import RecordingRemediation, make_ctx
from tests.support.fixtures_emulator import LOC, NSG_ID, SUB, SUBNET_ID, P, nic_doc, vm_doc
from tests.support.paths import ROOT

TRIGGER = Trigger(TriggerKind.SWEEP, principal="managed-identity")


# --------------------------------------------------------------------------- estates

def vm_id(name: str) -> str:
    return f"{P}/Microsoft.Compute/virtualMachines/{name}"


def lb_doc(index: int, members: int = 2) -> dict:
    lb_id = f"{P}/Microsoft.Network/loadBalancers/ilb{index}"
    vip = f"10.0.1.{200 + index}"
    return {
        "id": lb_id, "name": f"ilb{index}", "type": "Microsoft.Network/loadBalancers",
        "location": LOC, "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {
            "frontendIPConfigurations": [{"name": "fe", "properties": {
                "privateIPAddress": vip, "privateIPAllocationMethod": "Static",
                "subnet": {"id": SUBNET_ID}}}],
            "backendAddressPools": [{"name": "be", "properties": {}}],
            "probes": [{"name": "probe", "properties": {"protocol": "Tcp", "port": 1972,
                                                         "intervalInSeconds": 5,
                                                         "numberOfProbes": 1}}],
            "loadBalancingRules": [{"name": "rule", "properties": {
                "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/fe"},
                "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/be"},
                "probe": {"id": f"{lb_id}/probes/probe"}, "protocol": "Tcp",
                "frontendPort": 1972, "backendPort": 1972, "enableFloatingIP": False}}],
        },
    }


def estate_doc(pools: int = 3, per_pool: int = 2, os_type: str = "Linux") -> tuple[dict, dict]:
    """`pools` ILBs, each with `per_pool` VMs declared to call its VIP (high findings).
    Returns (scenario, declared callers)."""
    resources = [{
        "id": f"{P}/Microsoft.Network/virtualNetworks/vnet1", "name": "vnet1",
        "type": "Microsoft.Network/virtualNetworks", "location": LOC,
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                       "subnets": [{"name": "default",
                                    "properties": {"addressPrefix": "10.0.1.0/24"}}]}},
        {"id": NSG_ID, "name": "nsg1", "type": "Microsoft.Network/networkSecurityGroups",
         "location": LOC, "properties": {"securityRules": []}}]
    callers: dict[str, list[str]] = {}
    n = 0
    for i in range(pools):
        lb = lb_doc(i)
        resources.append(lb)
        pool_id = f"{lb['id']}/backendAddressPools/be"
        for _ in range(per_pool):
            n += 1
            name = f"vm{n:02d}"
            resources.append(nic_doc(f"{name}-nic", f"10.0.1.{10 + n}", pools=[pool_id], vm=name))
            vm = vm_doc(name, f"{name}-nic", os_type)
            vm["tags"] = {"hairpin-remediation": "auto"}
            resources.append(vm)
            callers[name] = [f"10.0.1.{200 + i}:1972"]
    skus = [{"resourceType": "virtualMachines", "name": "Standard_D2s_v3", "locations": [LOC],
             "capabilities": [{"name": "MaxNetworkInterfaces", "value": "2"}]}]
    return with_child_ids({"resources": resources, "skus": skus}), callers


def with_child_ids(scenario: dict) -> dict:
    """Child resources carry their ids, as ARM returns them (the emulator adds them on load)."""
    from emulator.resources.types import CHILDREN

    for doc in scenario["resources"]:
        for coll in CHILDREN.get(doc.get("type", "").lower(), []):
            for child in doc.get("properties", {}).get(coll) or []:
                child.setdefault("id", f"{doc['id']}/{coll}/{child.get('name')}")
    return scenario


def sweep_settings(emu, storage_ns, callers) -> Settings:
    from tests.support.events import make_settings

    return make_settings(emu, storage_ns, HAIRPIN_DECLARED_CALLERS=json.dumps(callers))


def add_managed_nic(scenario: dict, vm_name: str, ip: str, *, pools=(), attached=True) -> str:
    nic_name = f"{vm_name}-hairpin-nic"
    nic = nic_doc(nic_name, ip, pools=list(pools), vm=vm_name if attached else None,
                  primary=False)
    nic["tags"] = {"hairpin-managed": "true"}
    nic["properties"]["ipConfigurations"][0]["properties"]["primary"] = True
    scenario["resources"].append(nic)
    if attached:
        vm = next(d for d in scenario["resources"] if d["name"] == vm_name
                  and d["type"] == "Microsoft.Compute/virtualMachines")
        vm["properties"]["networkProfile"]["networkInterfaces"].append(
            {"id": nic["id"], "properties": {"primary": False}})
    return nic["id"]


# --------------------------------------------------------------------------- pure planning

def _plan(scenario, callers, verified=()):
    scenario = with_child_ids(scenario)
    settings = Settings.from_env({"HAIRPIN_DECLARED_CALLERS": json.dumps(callers)})
    topology = topology_from_snapshot({k: v for k, v in scenario.items() if k != "emulator"})
    verified = frozenset((v.lower(), ip) for v, ip in verified)
    return {w.vm_id.rsplit("/", 1)[-1]: w
            for w in drift.assess(topology, evaluate(topology, settings, verified), verified,
                                  settings, trigger=drift.Trigger(check_guests=True))}


def test_plan_new_findings_get_apply():
    scenario, callers = estate_doc(1, 2)
    work = _plan(scenario, callers)
    assert {n: (w.call, w.drift) for n, w in work.items()} == {
        "vm01": ("apply", [DriftKind.NEW_FINDING]), "vm02": ("apply", [DriftKind.NEW_FINDING])}


def test_plan_drift_kinds():
    scenario, callers = estate_doc(2, 2)
    add_managed_nic(scenario, "vm01", "10.0.1.101")  # fixed, verified: check the guest
    add_managed_nic(scenario, "vm02", "10.0.1.102")  # fixed, but a second VIP is new
    add_managed_nic(scenario, "vm03", "10.0.1.103", pools=[
        f"{P}/Microsoft.Network/loadBalancers/ilb1/backendAddressPools/be"])  # moved into pool
    add_managed_nic(scenario, "vm04", "10.0.1.104", attached=False)  # detached by someone
    callers["vm02"] = ["10.0.1.200:1972", "10.0.1.201:1972"]
    lb1 = next(d for d in scenario["resources"] if d["name"] == "ilb1")
    # vm02 also joins ilb1's pool: a VM newly added to a pool
    nic2 = next(d for d in scenario["resources"] if d["name"] == "vm02-nic")
    nic2["properties"]["ipConfigurations"][0]["properties"][
        "loadBalancerBackendAddressPools"].append(
        {"id": f"{lb1['id']}/backendAddressPools/be"})
    verified = [(vm_id("vm01"), "10.0.1.200"), (vm_id("vm01"), "10.0.1.250"),  # .250: removed
                (vm_id("vm02"), "10.0.1.200"), (vm_id("vm03"), "10.0.1.201"),
                (vm_id("vm04"), "10.0.1.201")]
    work = _plan(scenario, callers, verified)
    assert work["vm01"].call == "ensure_guest_routes" and work["vm01"].drift == [DriftKind.STALE]
    assert work["vm02"].call == "ensure_guest_routes" and work["vm02"].drift == [DriftKind.NEW_VIP]
    assert work["vm03"].call == "apply" and DriftKind.NIC_IN_POOL in work["vm03"].drift
    assert work["vm04"].call == "apply" and work["vm04"].drift == [DriftKind.NIC_DETACHED]

    # Nothing but a verified VM with a managed NIC: verify in the guest (Run Command).
    scenario, callers = estate_doc(1, 1)
    add_managed_nic(scenario, "vm01", "10.0.1.101")
    work = _plan(scenario, callers, [(vm_id("vm01"), "10.0.1.200")])
    assert work["vm01"].call == "verify" and work["vm01"].drift == []
    # Verified routes recorded but the managed NIC is gone (deleted): apply re-creates it.
    scenario, callers = estate_doc(1, 1)
    work = _plan(scenario, callers, [(vm_id("vm01"), "10.0.1.200")])
    assert work["vm01"].call == "apply" and work["vm01"].drift == [DriftKind.NIC_MISSING]


def test_plan_no_run_command_for_vms_without_a_managed_nic():
    scenario, _ = estate_doc(2, 2)
    work = _plan(scenario, {})  # no callers: info findings only, nothing to do
    assert work == {}


# --------------------------------------------------------------------------- the sweep

class SlowRemediation(RecordingRemediation):
    """Records concurrency: calls per VM and per pool in flight at once, start times."""

    def __init__(self, pools_of: dict[str, str], delay: float = 0.05, kill_at: int | None = None,
                 status: str = "applied"):
        super().__init__(status)
        self.delay, self.kill_at, self.pools_of = delay, kill_at, pools_of
        self.active_vms: dict[str, int] = {}
        self.active_pools: dict[str, int] = {}
        self.max_vm = self.max_pool = self.max_total = 0
        self.starts: list[float] = []
        self.count = 0

    def _record(self, name, vm, trigger):
        key, pool = vm.lower(), self.pools_of.get(vm.lower().rsplit("/", 1)[-1])
        with self._lock:
            self.count += 1
            if self.kill_at is not None and self.count == self.kill_at:
                raise KeyboardInterrupt("killed mid-sweep")  # like a host shutdown/kill
            self.starts.append(time.monotonic())
            self.active_vms[key] = self.active_vms.get(key, 0) + 1
            self.active_pools[pool] = self.active_pools.get(pool, 0) + 1
            self.max_vm = max(self.max_vm, self.active_vms[key])
            self.max_pool = max(self.max_pool, self.active_pools[pool])
            self.max_total = max(self.max_total, sum(self.active_vms.values()))
        time.sleep(self.delay)
        with self._lock:
            self.active_vms[key] -= 1
            self.active_pools[pool] -= 1
        return super()._record(name, vm, trigger)


def pools_of(per_pool=2, pools=3):
    return {f"vm{n:02d}": f"ilb{(n - 1) // per_pool}" for n in range(1, pools * per_pool + 1)}


@pytest.fixture
def sweep_estate(emulator, storage_ns):
    def make(pools=3, per_pool=2, **kw):
        scenario, callers = estate_doc(pools, per_pool)
        emu = emulator(scenario)
        ctx = make_ctx(emu, storage_ns, sweep_settings(emu, storage_ns, callers))
        return emu, ctx

    return make


@pytest.mark.azurite
def test_sweep_summary_structure_journal_and_blob(sweep_estate):
    emu, ctx = sweep_estate()
    ctx.journal.open_record(RecordKind.VERIFIED_ROUTE, vm_id("vm01"), "10.0.1.200",
                            operation_id="o")
    rem = SlowRemediation(pools_of(), delay=0, status="pending")
    summary = run_sweep(ctx, remediation=rem, trigger=TRIGGER,
                        config=SweepConfig(run_command_workers=2, run_command_interval=0))
    assert rem.calls[0] == ("resume_interrupted", "")  # interrupted remediations come first
    assert sorted(vm for n, vm in rem.calls if n == "apply") == sorted(
        vm_id(f"vm{i:02d}").lower() for i in range(1, 7))
    d = summary.as_dict()
    assert d["complete"] and d["vms"] == 6 and d["at_risk"] == 6 and d["vms_processed"] == 6
    # vm01 had a verified route
    assert d["drift"] == {DriftKind.NEW_FINDING: 5, DriftKind.NIC_MISSING: 1}
    assert d["actions"] == {"apply:pending": 6} and d["pending_plans"] == 6
    assert d["drift_found"] == 6 and d["actions_taken"] == 0
    stored = ctx.reports.sweeps.read_json(summary.sweep_id)
    assert stored == json.loads(json.dumps(d))
    assert ctx.reports.sweeps.latest().summary["pending_plans"] == 6
    entry = ctx.journal.latest(None, action="sweep")
    assert entry.operation_id == summary.sweep_id and entry.after["complete"] is True
    per_vm = ctx.journal.history(vm_id("vm03"), 5, action="sweep")
    assert per_vm and per_vm[0].after["calls"] == [{"call": "apply", "status": "pending"}]
    assert ctx.reports.checkpoints.get("sweep") is None  # a complete sweep leaves no cursor
    assert emu.requests.writes() == []  # the sweep itself never writes to ARM


@pytest.mark.azurite
def test_one_run_command_per_vm_pools_one_at_a_time_and_rate_limited(sweep_estate):
    emu, ctx = sweep_estate(pools=3, per_pool=2)
    # Every VM fixed and verified: the sweep checks each guest by Run Command (verify).
    for n in range(1, 7):
        ctx.journal.open_record(RecordKind.VERIFIED_ROUTE, vm_id(f"vm{n:02d}"),
                                f"10.0.1.{200 + (n - 1) // 2}", operation_id="o")
    scenario = copy.deepcopy(emu.scenario)
    for n in range(1, 7):
        add_managed_nic(scenario, f"vm{n:02d}", f"10.0.1.{100 + n}")

    def gather(ctx):
        return {k: v for k, v in scenario.items() if k != "emulator"}

    rem = SlowRemediation(pools_of(), delay=0.1, status="unchanged")  # verify: every connect ok
    summary = run_sweep(ctx, remediation=rem, trigger=TRIGGER, gather=gather,
                        config=SweepConfig(run_command_workers=3, run_command_interval=0.05))
    assert summary.complete and summary.actions == {"verify:ok": 6}
    assert rem.max_vm == 1  # never two Run Commands on one VM
    assert rem.max_pool == 1  # a pool's members one at a time
    assert rem.max_total >= 2  # but different pools in parallel
    gaps = [b - a for a, b in zip(rem.starts, rem.starts[1:], strict=False)]
    assert min(gaps) >= 0.045  # the rate limit between two Run Command starts


@pytest.mark.azurite
def test_failed_guest_check_pushes_routes_again(sweep_estate):
    emu, ctx = sweep_estate(pools=1, per_pool=1)
    ctx.journal.open_record(RecordKind.VERIFIED_ROUTE, vm_id("vm01"), "10.0.1.200",
                            operation_id="o")
    scenario = copy.deepcopy(emu.scenario)
    add_managed_nic(scenario, "vm01", "10.0.1.101")

    class Broken(RecordingRemediation):
        def verify(self, ctx, vm, trigger):
            self._record("verify", vm, trigger)
            return Outcome(Status.FAILED, ["verification below 100%"], verified=False)

    rem = Broken("applied")
    summary = run_sweep(ctx, remediation=rem, trigger=TRIGGER,
                        gather=lambda c: {k: v for k, v in scenario.items() if k != "emulator"},
                        config=SweepConfig(run_command_workers=1, run_command_interval=0))
    assert [n for n, _ in rem.calls] == ["resume_interrupted", "verify", "ensure_guest_routes"]
    assert summary.drift == {"guest_routes_missing": 1}
    assert summary.actions == {"verify:routes_missing": 1, "ensure_guest_routes:repaired": 1}


@pytest.mark.azurite
def test_stops_cleanly_before_the_deadline_and_resumes_where_it_stopped(sweep_estate):
    emu, ctx = sweep_estate()
    rem = SlowRemediation(pools_of(), delay=0.3)
    config = SweepConfig(run_command_workers=1, run_command_interval=0, item_budget_seconds=0.35)
    first = run_sweep(ctx, remediation=rem, trigger=TRIGGER, config=config,
                      deadline=time.monotonic() + 1.5)
    done_first = rem.of("apply")
    assert not first.complete and first.stopped_reason.startswith("deadline")
    assert 1 <= len(done_first) < 6 and first.vms_remaining == 6 - len(done_first)
    cp = ctx.reports.checkpoints.get("sweep")
    assert cp is not None and len(cp.value["done"]) == len(done_first)
    second = run_sweep(ctx, remediation=rem, trigger=TRIGGER, config=config)
    assert second.complete and second.resumed and second.runs == 2
    assert second.sweep_id == first.sweep_id
    applied = rem.of("apply")
    assert sorted(applied) == sorted(vm_id(f"vm{i:02d}").lower() for i in range(1, 7))
    assert len(applied) == 6  # nothing done twice
    assert second.vms_processed == 6 and second.actions == {"apply:applied": 6}
    assert ctx.reports.checkpoints.get("sweep") is None


@pytest.mark.azurite
def test_kill_in_the_middle_then_resume(sweep_estate):
    emu, ctx = sweep_estate()
    rem = SlowRemediation(pools_of(), delay=0, kill_at=3)  # killed in the third apply
    config = SweepConfig(run_command_workers=1, run_command_interval=0)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(ctx, remediation=rem, trigger=TRIGGER, config=config)
    before = rem.of("apply")
    assert len(before) == 2
    cp = ctx.reports.checkpoints.get("sweep")
    assert cp.value["phase"] == "reconcile" and len(cp.value["done"]) == 2
    rem.kill_at = None
    summary = run_sweep(ctx, remediation=rem, trigger=TRIGGER, config=config)
    after = rem.of("apply")[2:]
    assert summary.complete and summary.resumed and summary.runs == 2
    assert len(after) == 4 and not set(after) & set(before)  # the rest, nothing twice
    assert summary.vms_processed == 6


@pytest.mark.azurite
def test_one_sweep_at_a_time(sweep_estate):
    from shared.storage.locks import lock_name

    emu, ctx = sweep_estate(pools=1, per_pool=1)
    with ctx.locks.hold([lock_name("sweep", "hairpin-drift-sweep")], operation_id="other"):
        with pytest.raises(SweepBusy):
            run_sweep(ctx, remediation=RecordingRemediation(), trigger=TRIGGER)


_CHILD = r"""
import json, os, sys, threading, time
from types import SimpleNamespace
sys.path.insert(0, os.environ["REPO"])
from tests.support.events import make_ctx  # noqa: E402
from shared.settings import Settings
from shared.services.sweep import SweepConfig, run_sweep
from shared.services.context import ServiceContext

class Emu:  # what make_ctx needs from the emulator
    base_url = os.environ["HAIRPIN_ARM_ENDPOINT"]

class NS:
    def __init__(self, d): self.__dict__.update(d)
    def container(self, n): return f"{self.prefix}-{n}"
    def table(self, n): return self.prefix + n
    def table_service(self):
        from azure.data.tables import TableServiceClient
        return TableServiceClient.from_connection_string(self.connection_string)
    def blob_service(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(self.connection_string)

ns = NS(json.loads(os.environ["NS"]))
settings = Settings.from_env({**json.loads(os.environ["SETTINGS"]),
                              "HAIRPIN_ARM_ENDPOINT": Emu.base_url})
ctx = make_ctx(Emu, ns, settings)

class Hang:
    n = 0
    def resume_interrupted(self, ctx, trigger): return []
    def apply(self, ctx, vm, trigger, approval=None):
        Hang.n += 1
        print("APPLY", vm, flush=True)
        if Hang.n == 3:
            print("HANGING", flush=True)
            time.sleep(600)
        return Outcome(Status.APPLIED)

run_sweep(ctx, remediation=Hang(), config=SweepConfig(run_command_workers=1,
                                                       run_command_interval=0))
"""


@pytest.mark.azurite
def test_sigkill_in_the_middle_then_resume(sweep_estate, storage_ns):
    """A real kill: the process dies holding the sweep lock and a checkpoint; the lock's lease
    runs out (15 s) and the next sweep resumes after the VMs already done."""
    emu, ctx = sweep_estate()
    env = dict(os.environ, REPO=str(ROOT), NS=json.dumps({
        "prefix": storage_ns.prefix, "connection_string": storage_ns.connection_string}),
        SETTINGS=json.dumps({"HAIRPIN_MODE": "apply", "HAIRPIN_DECLARED_CALLERS": json.dumps(
            estate_doc()[1])}))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    applied = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.startswith("APPLY"):
            applied.append(line.split()[1].lower())
        if line.startswith("HANGING") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert len(applied) == 3, applied
    cp = ctx.reports.checkpoints.get("sweep")
    assert cp is not None and len(cp.value["done"]) == 2  # the third was in flight
    with pytest.raises(SweepBusy):  # the dead process's lease has not run out yet
        run_sweep(ctx, remediation=RecordingRemediation(), trigger=TRIGGER)
    rem = RecordingRemediation()
    end = time.monotonic() + 30
    while True:
        try:
            summary = run_sweep(ctx, remediation=rem, trigger=TRIGGER,
                                config=SweepConfig(run_command_workers=1,
                                                   run_command_interval=0))
            break
        except SweepBusy:
            assert time.monotonic() < end
            time.sleep(1)
    resumed = rem.of("apply")
    assert summary.complete and summary.resumed and summary.vms_processed == 6
    assert applied[2] in resumed  # the VM in flight is done again (remediation is idempotent)
    assert not set(resumed) & set(applied[:2]) and len(resumed) == 4


def test_rate_limiter_spaces_starts():
    from shared.services.sweep.reconcile import RateLimiter

    limiter = RateLimiter(0.05)
    starts = []

    def go():
        limiter.wait()
        starts.append(time.monotonic())

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert all(b - a >= 0.045 for a, b in zip(starts, starts[1:], strict=False))


_ = SUB
