"""The event service on the ARM emulator + Azurite, with a recording stand-in for the
remediation service (tests/e2e/test_events_e2e.py uses the real one): scoping from current
state, own-write recognition, duplicates, bursts, out-of-order delivery, deletes,
transient/permanent failures."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from shared.core import events as ev
from shared.core.events import EventConfig
from shared.core.vocab import JournalResult, RecordKind
from shared.services.events import EventProcessor
from shared.settings import Settings
from tests.support.events import (
    NIC1,
    NIC2,
    OWN,
    OWN_IDENTITY,
    VM1,
    VM2,
    RecordingRemediation,
    ago,
    arm_event,
    make_ctx,
    processor,
)
from tests.support.fixtures_emulator import LB_ID, P


def test_own_identity_from_env_and_from_our_token(emulator):
    env = {ev.ENV_PRINCIPAL_ID: OWN.principal_id, "AZURE_CLIENT_ID": OWN.client_id}
    assert ev.identity_from_settings(Settings.from_env(env)) == ev.OwnIdentity(
        OWN.principal_id, OWN.client_id)
    assert not ev.identity_from_settings(Settings.from_env({}))
    emu = emulator()
    ident = ev.identity_from_jwt(emu.token_for())
    assert ident.principal_id == emu.tokens.identities[0].principal_id
    assert ident.client_id == emu.tokens.identities[0].client_id
    assert ev.identity_from_jwt("not a token") == ev.OwnIdentity()


@pytest.mark.azurite
def test_vm_write_evaluates_current_state_and_hands_at_risk_vm_to_remediation(
        emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    result = p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30)))
    assert result.status == "evaluated" and result.evaluated == [VM1]
    assert result.findings and rem.calls == [("apply", VM1.lower())]
    (ran,) = result.remediations
    assert (ran["vm_id"], ran["call"], ran["status"]) == (VM1, "apply", "applied")
    assert re.fullmatch(r"[0-9a-f]{32}", ran["operation"])  # the run's journal operation
    entries = ctx.journal.history(VM1, 10, action="event")
    assert entries and entries[0].trigger.event_id == result.event_id
    assert entries[0].after["status"] == "evaluated"
    # Nothing was written to ARM by the event path itself (remediation is the only writer).
    assert emu.requests.writes() == []


@pytest.mark.azurite
def test_duplicate_event_id_gives_one_remediation_across_processors(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30))
    first = processor(ctx, rem).handle(raw)
    again = processor(ctx, rem).handle(json.loads(json.dumps(raw)))  # another host instance
    same_host = processor(ctx, rem)
    same_host.handle(raw)
    assert first.status == "evaluated"
    assert again.status == "duplicate"
    assert rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_burst_of_writes_for_one_vm_is_one_pass(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    burst = [arm_event(op, res, at=ago(40 - i))
             for i, (op, res) in enumerate(
                 [("Microsoft.Compute/virtualMachines/write", VM1),
                  ("Microsoft.Network/networkInterfaces/write", NIC1),
                  ("Microsoft.Compute/virtualMachines/write", VM1),
                  ("Microsoft.Compute/virtualMachines/start/action", VM1)] * 5)]
    results = p.handle_batch(burst)
    statuses = [r.status for r in results]
    # The NIC write's scope is the VM plus its pool peers (vm2): one pass each.
    assert p.stats["passes"] == 2
    assert statuses.count("coalesced") == len(burst) - 2
    assert sorted(rem.of("apply")) == sorted([VM1.lower(), VM2.lower()])
    # A second host instance sees the same passes in the state table.
    rem2 = RecordingRemediation()
    late = processor(ctx, rem2).handle(arm_event("Microsoft.Compute/virtualMachines/write",
                                                 VM1, at=ago(20)))
    assert late.status == "coalesced" and rem2.calls == []


@pytest.mark.azurite
def test_change_after_the_pass_read_state_gets_another_pass(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation("unchanged")
    p = processor(ctx, rem, clock_skew_seconds=0)
    p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30)))
    later = p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1,
                               at=datetime.now(UTC) + timedelta(seconds=1)))
    assert later.status == "evaluated"
    assert rem.of("apply") == [VM1.lower(), VM1.lower()]


@pytest.mark.azurite
def test_changes_beyond_the_windows_passes_are_deferred_to_a_later_window(emulator, storage_ns):
    from shared.core.events import DeferredEvent

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation("unchanged")
    p = processor(ctx, rem, clock_skew_seconds=0)
    future = datetime.now(UTC) + timedelta(seconds=1)  # changes after every pass's read
    assert p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1,
                              at=future)).status == "evaluated"
    assert p.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1,
                              at=future)).status == "evaluated"
    third = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=future)
    with pytest.raises(DeferredEvent):
        p.handle(third)  # Event Grid will deliver it again
    assert len(rem.of("apply")) == 2
    later = EventProcessor(ctx, remediation=rem, identity=OWN_IDENTITY,
                           config=EventConfig(window_seconds=60, clock_skew_seconds=0),
                           now=lambda: datetime.now(UTC) + timedelta(seconds=120))
    assert later.handle(third).status == "evaluated"  # the retry, in a later window
    assert len(rem.of("apply")) == 3


@pytest.mark.azurite
def test_old_event_after_newer_change_reads_current_state(emulator, storage_ns, arm_clients):
    """vm2's NIC leaves the pool (newer change); the old LB write event arrives afterwards: the
    pass reads the current pool, so vm2 is not remediated for a membership it no longer has."""
    emu = emulator()
    c = arm_clients(emu)
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    old_lb_write = arm_event("Microsoft.Network/loadBalancers/write", LB_ID, at=ago(120))
    nic = c.network.network_interfaces.get("rg-test", "vm2-nic")
    nic.ip_configurations[0].load_balancer_backend_address_pools = []
    c.network.network_interfaces.begin_create_or_update("rg-test", "vm2-nic", nic).result()
    newer = arm_event("Microsoft.Network/networkInterfaces/write", NIC2, at=ago(60))
    r_new = p.handle(newer)
    r_old = p.handle(old_lb_write)
    assert r_new.status == "evaluated" and r_new.findings == []  # vm2 no longer exposed
    assert VM2.lower() not in rem.of("apply")
    assert r_old.status in ("evaluated", "coalesced")
    assert VM2 not in r_old.vm_ids and VM2.lower() not in rem.of("apply")
    assert rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_own_writes_are_evaluated_but_never_remediated(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    results = p.handle_batch([
        arm_event("Microsoft.Compute/virtualMachines/write", VM1, caller="own", at=ago(30)),
        arm_event("Microsoft.Network/networkInterfaces/write", NIC2, caller="own", at=ago(30)),
        arm_event("Microsoft.Compute/virtualMachines/start/action", VM1, caller="own",
                  at=ago(10)),
    ])
    assert all(r.own_write for r in results)
    assert results[0].status == "evaluated" and results[0].findings  # still verified
    assert rem.calls == []
    (entry,) = ctx.journal.history(VM1, 5, action="event")[-1:]
    assert entry.after["own_write"] is True and "no remediation" in entry.after["note"]
    assert emu.requests.writes() == []


@pytest.mark.azurite
def test_journal_recognises_our_write_when_claims_are_missing(emulator, storage_ns):
    from shared.core.journal import JournalEntry, Trigger

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    ctx.journal.append(JournalEntry(action="attach-nic", result=JournalResult.SUCCEEDED,
                                    trigger=Trigger("timer"), operation_id="op-9", vm_id=VM1))
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=datetime.now(UTC))
    raw["data"]["claims"] = {}
    raw["data"]["authorization"] = {}
    result = processor(ctx, rem).handle(raw)
    assert result.own_write and rem.calls == []
    # With a caller named in the claims that is not us, the journal does not decide.
    rem2 = RecordingRemediation()
    other = processor(ctx, rem2).handle(arm_event("Microsoft.Compute/virtualMachines/write",
                                                  VM1, at=datetime.now(UTC)))
    assert not other.own_write


@pytest.mark.azurite
def test_managed_nic_deleted_event_maps_to_its_vm(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    gone_nic = f"{P}/Microsoft.Network/networkInterfaces/vm1-hairpin-nic"
    result = p.handle(arm_event("Microsoft.Network/networkInterfaces/delete", gone_nic,
                                at=ago(30)))
    assert result.status == "evaluated" and result.vm_ids == [VM1]
    assert rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_lb_delete_reevaluates_vms_with_verified_routes(emulator, storage_ns):

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    ctx.journal.open_record(RecordKind.VERIFIED_ROUTE, VM2, "10.0.1.200", operation_id="op-1")
    other_lb = f"{P}/Microsoft.Network/loadBalancers/ilb-old"
    rem = RecordingRemediation()
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Network/loadBalancers/delete", other_lb, at=ago(30)))
    assert result.vm_ids == [VM2]
    # vm2 holds a verified route for a VIP no frontend serves now, and no managed NIC.
    assert any(d.startswith("stale_routes:10.0.1.200") for d in result.drift[VM2])


@pytest.mark.azurite
def test_vm_gone_is_permanent_journalled_and_acknowledged(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    vm9 = f"{P}/Microsoft.Compute/virtualMachines/vm9"
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Compute/virtualMachines/write", vm9, at=ago(30)))
    assert result.status == "gone" and rem.calls == []
    (entry,) = ctx.journal.history(vm9, 5, action="event")
    assert entry.result == "skipped" and "no longer exists" in entry.after["note"]


@pytest.mark.azurite
def test_transient_failure_raises_and_the_redelivery_is_processed(emulator, storage_ns):
    from azure.core.exceptions import HttpResponseError

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    ctx.polling_interval = 0
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30))
    emu.faults.add("GET", r"/virtualMachines/vm1$", 503, times=None)
    with pytest.raises(HttpResponseError):
        processor(ctx, rem).handle(raw)
    assert rem.calls == []
    emu.faults.clear()
    again = processor(ctx, rem).handle(raw)  # Event Grid delivers it again
    assert again.status == "evaluated" and rem.of("apply") == [VM1.lower()]


@pytest.mark.azurite
def test_rejected_event_is_journalled_and_acknowledged(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1)
    raw["data"]["resourceUri"] = "not-an-id"
    raw["subject"] = "not-an-id"
    result = processor(ctx, rem).handle(raw)
    assert result.status == "rejected"
    (entry,) = ctx.journal.history(None, 5, action="event-rejected")
    assert "not an ARM resource id" in entry.error and entry.trigger.event_id == raw["id"]
    assert rem.calls == [] and emu.requests.count() == 0


@pytest.mark.azurite
def test_audit_mode_records_findings_and_remediates_nothing(emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns, HAIRPIN_MODE="audit")
    rem = RecordingRemediation()
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30)))
    assert result.findings and rem.calls == []
    (entry,) = ctx.journal.history(VM1, 5, action="event")
    assert "audit mode" in entry.after["note"]


def test_without_storage_duplicates_are_caught_in_memory(emulator):
    emu = emulator()
    ctx = make_ctx(emu)
    rem = RecordingRemediation()
    p = processor(ctx, rem)
    raw = arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30))
    assert p.handle(raw).status == "evaluated"
    assert p.handle(raw).status == "duplicate"
    assert rem.of("apply") == [VM1.lower()]
