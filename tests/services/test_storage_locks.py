"""Pool and VM locks as Blob leases, against the real Azurite Blob service."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from azure.storage.blob import BlobLeaseClient

from shared.storage.locks import (
    LockBusy,
    LockLost,
    LockManager,
    lock_name,
    pool_lock,
    vm_lock,
)
from tests.support.paths import ROOT

pytestmark = pytest.mark.azurite

RG = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-hs/providers"
VM1 = f"{RG}/Microsoft.Compute/virtualMachines/hs-vm1"
VM2 = f"{RG}/Microsoft.Compute/virtualMachines/hs-vm2"
POOL = f"{RG}/Microsoft.Network/loadBalancers/ilb/backendAddressPools/mirrors"


@pytest.fixture
def manager(storage_ns):
    """Returns a factory: one LockManager per simulated process (holder)."""
    blobs = storage_ns.blob_service()
    container = storage_ns.container("locks")

    def make(holder: str, **kw) -> LockManager:
        return LockManager(blobs, container=container, holder=holder, lease_seconds=15,
                           **kw).ensure()

    make.container = blobs.get_container_client(container)
    return make


def test_contention_says_who_holds_the_lock(manager):
    a, b = manager("func-a/1"), manager("func-b/2")
    with a.hold([vm_lock(VM1)], operation_id="op-a"):
        with pytest.raises(LockBusy) as busy:
            b.hold([vm_lock(VM1.upper())], operation_id="op-b")  # ids are case-insensitive
        info = busy.value.info
        assert (info.holder, info.operation_id) == ("func-a/1", "op-a")
        assert info.since.startswith("20")
        assert "func-a/1" in str(busy.value) and "op-a" in str(busy.value)
        assert b.holder_of(vm_lock(VM1)).holder == "func-a/1"
    # released on leaving the block
    assert b.holder_of(vm_lock(VM1)) is None
    with b.hold([vm_lock(VM1)], operation_id="op-b") as held:
        assert held.names == (vm_lock(VM1),)


def test_released_when_the_block_raises(manager):
    a = manager("a")
    with pytest.raises(RuntimeError), a.hold([vm_lock(VM1)], operation_id="op"):
        raise RuntimeError("step failed")
    assert a.holder_of(vm_lock(VM1)) is None


def test_deterministic_order_pools_first(manager):
    a = manager("a")
    wanted = [vm_lock(VM2), pool_lock(POOL), vm_lock(VM1), vm_lock(VM1.upper())]
    with a.hold(wanted, operation_id="op") as held:
        assert held.names == (pool_lock(POOL), vm_lock(VM1), vm_lock(VM2))
    with a.hold(reversed(wanted), operation_id="op") as held:
        assert held.names == (pool_lock(POOL), vm_lock(VM1), vm_lock(VM2))


def test_all_or_nothing_and_stops_at_the_first_busy_lock(manager):
    a, b = manager("a"), manager("b")
    with a.hold([vm_lock(VM1)], operation_id="op-a"):
        with pytest.raises(LockBusy) as busy:
            b.hold([vm_lock(VM2), pool_lock(POOL), vm_lock(VM1)], operation_id="op-b")
        assert busy.value.info.name == vm_lock(VM1)
        # the pool lock b took first was given back at once ...
        assert a.holder_of(pool_lock(POOL)) is None
        # ... and b never touched the lock after the busy one in the order
        assert not manager.container.get_blob_client(vm_lock(VM2).blob_name).exists()


def test_wait_for_a_lock(manager):
    a, b = manager("a"), manager("b")
    held = a.hold([pool_lock(POOL)], operation_id="op-a")
    threading.Timer(1.0, held.release).start()
    started = time.monotonic()
    with b.hold([pool_lock(POOL)], operation_id="op-b", wait=10, poll=0.2):
        assert 0.8 < time.monotonic() - started < 5
    with a.hold([pool_lock(POOL)], operation_id="op-a"), pytest.raises(LockBusy):
        b.hold([pool_lock(POOL)], operation_id="op-b", wait=0.5, poll=0.2)


def test_lost_lease_is_detected(manager):
    a, b = manager("a", renew_every=0.2), manager("b")
    with a.hold([vm_lock(VM1)], operation_id="op-a") as held:
        held.check()  # fine while ours
        # Someone breaks the lease (an operator, or expiry during a long stall) and takes it.
        blob = manager.container.get_blob_client(vm_lock(VM1).blob_name)
        BlobLeaseClient(blob).break_lease(lease_break_period=0)
        b_held = b.hold([vm_lock(VM1)], operation_id="op-b")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                held.check()
            except LockLost as lost:
                assert "hs-vm1" in str(lost)
                break
            time.sleep(0.1)
        else:
            pytest.fail("the lost lease was not noticed")
    # a's release did not free b's lock
    assert b.holder_of(vm_lock(VM1)).holder == "b"
    b_held.release()


CRASHER = textwrap.dedent("""
    import os, sys, time
    from shared.storage.locks import LockManager, pool_lock
    m = LockManager.from_connection_string(os.environ["CONN"], container=os.environ["CONTAINER"],
                                           holder="crasher", lease_seconds=15)
    m.hold([pool_lock(os.environ["POOL"])], operation_id="op-crash")
    print("held", flush=True)
    time.sleep(600)
""")


def test_crash_frees_the_lock_after_one_lease_while_a_live_holder_keeps_its(manager, storage_ns):
    """The holder is killed (SIGKILL: no release, no more renewals). Its lock frees itself
    within one lease period (15 s, the minimum Blob storage allows), while a live holder's
    lock, renewed in the background, stays held past that period."""
    live, other = manager("live"), manager("other")
    live_held = live.hold([vm_lock(VM2)], operation_id="op-live")
    live_since = time.monotonic()

    env = {**os.environ, "CONN": storage_ns.connection_string, "POOL": POOL,
           "CONTAINER": storage_ns.container("locks")}
    proc = subprocess.Popen([sys.executable, "-c", CRASHER], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = time.monotonic()

    with pytest.raises(LockBusy) as busy:
        other.hold([pool_lock(POOL)], operation_id="op-other")
    assert busy.value.info.holder == "crasher"

    with other.hold([pool_lock(POOL)], operation_id="op-other", wait=30, poll=0.5):
        freed_after = time.monotonic() - killed
    assert freed_after < 17  # one lease period (+ polling): never "forever"

    assert time.monotonic() - live_since > 15  # longer than one lease ...
    live_held.check()  # ... and still ours thanks to renewal
    with pytest.raises(LockBusy):
        other.hold([vm_lock(VM2)], operation_id="op-other")
    live_held.release()
    print(f"crashed holder's lock freed after {freed_after:.1f} s")


def test_invalid_arguments(manager, storage_ns):
    with pytest.raises(ValueError, match="lease_seconds"):
        LockManager(storage_ns.blob_service(), lease_seconds=5)
    with pytest.raises(ValueError, match="kind"):
        lock_name("pool/x", POOL)
    assert str(vm_lock(VM1)).startswith("vm /subscriptions/")
