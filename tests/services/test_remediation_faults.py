"""Fault matrix on the emulator (real SDK, Azurite): throttling, server errors, failed LROs,
Run Command conflicts, dropped connections, ETag conflicts, and a run killed at each step
boundary. After each: no duplicate NIC, no VM left deallocated (after the next run), the journal
is consistent, and a rerun converges to the fixed estate."""

from __future__ import annotations

import threading
import time

import pytest

from shared.core.vocab import RecordKind
from shared.services import remediation
from shared.storage.journal import Journal
from tests.support.remediation import CLI, VM1, VM2, arm_writes, nics_named

pytestmark = pytest.mark.azurite

VM2_NICS = r"/virtualMachines/hs-vm2$"  # the PATCH of its NIC list
NIC2_PUT = r"/networkInterfaces/hs-vm2-hairpin-nic$"


def approve_and_apply(ctx, vm=VM1):
    pr = remediation.plan_for_vm(ctx, vm)
    return remediation.apply(ctx, vm, CLI, approval=pr.plan.hash)


def assert_consistent(emu, ctx):
    """No duplicate NIC; every `started` write has its `succeeded`/`failed`."""
    for name in ("hs-vm1-hairpin-nic", "hs-vm2-hairpin-nic"):
        assert len(nics_named(emu, name)) <= 1
    for vm in (VM1, VM2):
        entries = list(reversed(ctx.journal.history(vm, 500)))
        open_ops: dict[tuple, int] = {}
        for e in entries:
            key = (e.operation_id, e.action)
            if e.result == "started":
                open_ops[key] = open_ops.get(key, 0) + 1
            elif e.result in ("succeeded", "failed") and open_ops.get(key):
                open_ops[key] -= 1
        assert not any(open_ops.values()), open_ops


def assert_converges(emu, ctx):
    out = approve_and_apply(ctx)
    assert out.status in ("applied", "unchanged"), out.reasons
    assert emu.power_state(VM1) == emu.power_state(VM2) == "running"
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []
    assert len(nics_named(emu, "hs-vm1-hairpin-nic")) == 1
    assert len(nics_named(emu, "hs-vm2-hairpin-nic")) == 1
    again = approve_and_apply(ctx)
    assert again.status == "unchanged" and again.arm_writes == 0
    assert_consistent(emu, ctx)


def test_429_with_short_retry_after_is_waited_out(estate):
    emu, _, ctx = estate()
    fault = emu.faults.add("PUT", NIC2_PUT, 429, retry_after=1, times=1)
    started = time.monotonic()
    out = approve_and_apply(ctx)
    assert out.status == "applied", out.reasons
    assert fault.hits == 1 and time.monotonic() - started >= 1
    assert_converges(emu, ctx)


def test_429_longer_than_the_budget_stops_cleanly_and_starts_the_vm_first(estate):
    emu, _, ctx = estate()
    # Hit after hs-vm2 was deallocated: the run stops (pending), but not with the VM down.
    emu.faults.add("PATCH", VM2_NICS, 429, retry_after=600, times=1)
    out = approve_and_apply(ctx)
    assert out.status == "pending", out.reasons
    assert any("budget" in r for r in out.reasons)
    assert emu.power_state(VM2) == "running"  # started again before the run ended
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []
    ops = [(e.method, e.action.split("/")[-2]) for e in arm_writes(emu)]
    assert ops.index(("POST", "start")) > ops.index(("POST", "deallocate"))
    assert out.vm("hs-vm1") is None  # never went on to the serving VM
    assert_consistent(emu, ctx)
    # The next run plans again and converges.
    emu.requests.reset()
    assert_converges(emu, ctx)


def test_server_errors_are_retried(estate):
    emu, _, ctx = estate()
    for method, path in (("PUT", NIC2_PUT), ("POST", r"hs-vm2/deallocate$"),
                         ("PATCH", VM2_NICS), ("POST", r"hs-vm2/start$")):
        emu.faults.add(method, path, 500, times=1)
    emu.faults.add("GET", r"/virtualMachines/hs-vm1$", 503, times=2)
    out = approve_and_apply(ctx)
    assert out.status == "applied", out.reasons
    assert all(f.hits >= 1 for f in emu.faults.rules)
    assert_converges(emu, ctx)


@pytest.mark.parametrize("method,path", [
    ("PUT", NIC2_PUT),
    ("POST", r"hs-vm2/deallocate$"),
    ("PATCH", VM2_NICS),
    ("POST", r"hs-vm2/start$"),
    ("POST", r"hs-vm2/runCommand$"),
], ids=["nic", "deallocate", "attach", "start", "run-command"])
def test_lro_failed_at_each_step(estate, method, path):
    emu, _, ctx = estate()
    emu.faults.add(method, path, lro_failed=True, times=1)
    out = approve_and_apply(ctx)
    assert out.status == "failed", out.reasons
    assert out.vm("hs-vm1") is None  # never went on to the serving VM
    assert emu.power_state(VM2) == "running"  # restarted after the failure
    assert emu.power_state(VM1) == "running"
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []
    assert_consistent(emu, ctx)
    assert_converges(emu, ctx)


def test_run_command_conflict_waits_and_retries(estate):
    emu, _, ctx = estate()
    key = VM2.lower()
    with emu.busy_lock:
        emu.run_busy.add(key)  # another script is running on hs-vm2 ...

    def finish():  # ... until our first attempt was turned away
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(e.status == 409 and "runCommand" in e.path for e in list(emu.requests)):
                break
            time.sleep(0.02)
        with emu.busy_lock:
            emu.run_busy.discard(key)

    worker = threading.Thread(target=finish)
    worker.start()
    out = approve_and_apply(ctx)
    worker.join()
    assert out.status == "applied", out.reasons
    conflicts = [e for e in emu.requests if e.status == 409 and "runCommand" in e.path]
    assert conflicts
    assert_converges(emu, ctx)


def test_run_command_conflict_beyond_budget_is_pending(estate):
    emu, _, ctx = estate(run_command_timeout_seconds=30)
    ctx.run_command_backoff = 40  # first wait already exceeds the budget
    with emu.busy_lock:
        emu.run_busy.add(VM2.lower())
    out = approve_and_apply(ctx)
    assert out.status == "pending" and "another Run Command" in " ".join(out.reasons)
    assert emu.power_state(VM2) == "running"
    with emu.busy_lock:
        emu.run_busy.discard(VM2.lower())
    ctx.run_command_backoff = 0.05
    assert_converges(emu, ctx)


def test_vm_agent_not_ready_is_pending_not_a_crash(estate):
    emu, _, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM1)
    assert remediation.apply(ctx, VM2, CLI, approval=remediation.plan_for_vm(
        ctx, VM2).plan.hash).status == "applied"
    emu.instance_extra[VM2.lower()]["vmAgent"]["statuses"][0]["displayStatus"] = "Not Ready"
    out = remediation.ensure_guest_routes(ctx, VM2, CLI)
    assert out.status == "pending" and "agent" in " ".join(out.reasons)
    assert pr is not None


def test_dropped_connections(estate):
    emu, _, ctx = estate()
    emu.faults.add("GET", r"/virtualMachines/hs-vm2$", drop_connection=True, times=1)
    emu.faults.add("PUT", NIC2_PUT, drop_connection=True, times=1)
    emu.faults.add("POST", r"hs-vm2/deallocate$", drop_connection=True, times=1)
    out = approve_and_apply(ctx)
    # A dropped POST is not retried by the SDK: the run fails cleanly, the VM stays up.
    assert out.status in ("applied", "failed"), out.reasons
    assert emu.power_state(VM2) == "running"
    assert ctx.journal.open_records(RecordKind.DEALLOCATED) == []
    assert_consistent(emu, ctx)
    assert_converges(emu, ctx)


def test_etag_conflict_rereads_and_retries(estate):
    emu, _, ctx = estate()
    fault = emu.faults.add("PATCH", VM2_NICS, 412, error_code="PreconditionFailed", times=1)
    out = approve_and_apply(ctx)
    assert out.status == "applied", out.reasons
    assert fault.hits == 1
    assert_converges(emu, ctx)


def test_hardening_vm_patch_is_conditional_on_the_etag_it_read(estate):
    """Mutation (a): another writer changes hs-vm2 between our read and our PATCH. No injected
    412: the emulator's own If-Match check refuses the stale write, the run re-reads and
    applies, and every NIC-list PATCH carried the etag read just before it."""
    emu, _, ctx = estate()

    def someone_else_writes():
        doc = emu.store.get(VM2)
        doc["tags"]["changed"] = "yes"
        doc["etag"] = 'W/"changed-by-someone-else"'
        emu.store.put(doc)

    emu.faults.add("PATCH", VM2_NICS, action=someone_else_writes, times=1)
    out = approve_and_apply(ctx)
    assert out.status == "applied", out.reasons
    patches = [e for e in emu.requests if e.method == "PATCH" and e.path.endswith("/hs-vm2")]
    assert patches[0].status == 412 and patches[1].status in (200, 202)
    assert all(e.if_match for e in patches)
    assert patches[1].if_match == 'W/"changed-by-someone-else"'
    assert emu.store.get(VM2)["tags"]["changed"] == "yes"  # the other write was not lost
    assert_converges(emu, ctx)


def test_changed_estate_invalidates_the_approval(estate):
    emu, _, ctx = estate()
    pr = remediation.plan_for_vm(ctx, VM1)
    doc = emu.store.get(VM2)  # someone else changes hs-vm2 (a new etag)
    doc["tags"]["changed"] = "yes"
    doc["etag"] = 'W/"changed"'
    emu.store.put(doc)
    emu.requests.reset()
    out = remediation.apply(ctx, VM1, CLI, approval=pr.plan.hash)
    assert out.status == "refused" and "stale approval" in out.reasons[0]
    assert arm_writes(emu) == []


class _Killed(BaseException):
    """Stands for the process dying: nothing in the product catches a BaseException."""


class _KillingJournal(Journal):
    def __init__(self, inner: Journal, action: str):
        self.__dict__.update(inner.__dict__)
        self._kill_after = action

    def append(self, entry):
        saved = super().append(entry)
        if entry.action == self._kill_after and entry.result == "succeeded" and \
                entry.vm_id and entry.vm_id.lower() == VM2.lower():
            raise _Killed(f"killed after {entry.action}")
        return saved


@pytest.mark.parametrize("boundary", ["ensure-nic", "deallocate", "attach-nic", "start",
                                      "guest-routes", "verify"])
def test_killed_at_each_step_boundary_next_run_starts_the_vm_first(estate, boundary):
    emu, _, ctx = estate()
    inner = ctx.journal
    ctx.journal = _KillingJournal(inner, boundary)
    with pytest.raises(_Killed):
        approve_and_apply(ctx)
    ctx.journal = inner
    left_down = boundary in ("deallocate", "attach-nic")
    assert (emu.power_state(VM2) == "deallocated") == left_down
    # The next run (any trigger) starts the VM before anything else.
    emu.requests.reset()
    out = approve_and_apply(ctx)
    assert out.status == "applied", out.reasons
    if left_down:
        first_write = arm_writes(emu)[0]
        assert first_write.path.endswith("hs-vm2/start"), first_write.path
        assert out.resumed and out.resumed[0]["status"] == "applied"
    assert_converges(emu, ctx)


def test_near_function_timeout_stops_before_the_first_write(estate):
    emu, _, ctx = estate(deadline=time.monotonic() + 5)  # less than the 30 s safety margin
    emu.requests.reset()
    out = approve_and_apply(ctx)
    assert out.status == "pending" and out.resumable
    assert "time budget" in " ".join(out.reasons)
    assert arm_writes(emu) == []
    ctx.deadline = None
    assert_converges(emu, ctx)


_CHILD = r'''
import json, sys
from azure.identity import ManagedIdentityCredential
from shared.core.journal import Trigger
from shared.services import remediation
from shared.services.context import ServiceContext
from shared.settings import Settings
from shared.storage.journal import Journal
from shared.storage.locks import LockManager
from shared.storage.clients import StorageClients

a = json.loads(sys.argv[1])
s = Settings(mode="apply", arm_endpoint=a["arm"], metrics_endpoint=a["metrics"],
             storage_connection=a["conn"],
             storage_prefix=a["prefix"], lock_lease_seconds=15)
ctx = ServiceContext(s, credential=ManagedIdentityCredential(), polling_interval=0)
st = StorageClients.from_connection_string(a["conn"])
ctx.journal = Journal(st.table, table=a["journal"], state_table=a["state"]).ensure()
ctx.locks = LockManager(st.blob, container=a["locks"], lease_seconds=15, holder="child").ensure()
pr = remediation.plan_for_vm(ctx, a["vm"])
print("planned", flush=True)
remediation.apply(ctx, a["vm"], Trigger("cli", principal="child"), approval=pr.plan.hash)
print("finished", flush=True)
'''


def test_process_killed_between_deallocate_and_attach(estate, storage_ns):
    """A real SIGKILL: the lock lease expires on its own, and the next run starts the VM first."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.support.remediation import ROOT

    emu, _, ctx = estate()
    # The attach (VM PATCH) hangs, then the connection drops: the child is killed meanwhile.
    hang = emu.faults.add("PATCH", VM2_NICS, drop_connection=True, delay_seconds=20, times=1)
    args = {"arm": emu.base_url, "metrics": emu.metrics_endpoint,
            "conn": storage_ns.connection_string}
    names = ctx.settings.storage_names
    args = {**args, "prefix": names.prefix, "journal": names.journal_table,
            "state": names.state_table, "locks": names.lock_container, "vm": VM2}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=ROOT,
                             env={**os.environ, **emu.env()}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not hang.hits:  # the attach is hanging
            time.sleep(0.1)
        assert emu.power_state(VM2) == "deallocated"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert [r.vm_id.lower() for r in ctx.journal.left_deallocated()] == [VM2.lower()]
    # While the dead child's lease lasts, nobody touches the VM.
    busy = remediation.resume_interrupted(ctx, CLI)
    assert busy[0].status == "pending" and "run in progress" in busy[0].reasons[0]
    time.sleep(16)  # the 15 s lease ends by itself
    emu.requests.reset()
    out = approve_and_apply(ctx, VM2)
    assert out.status == "applied", out.reasons
    assert arm_writes(emu)[0].path.endswith("hs-vm2/start")
    assert_converges(emu, ctx)
