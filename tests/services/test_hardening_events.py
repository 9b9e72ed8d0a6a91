"""Hardening (issue 12), the event trigger on the ARM emulator + Azurite: any event id is a
valid claim (item 2), no event lost after a failed claim (item 1), extreme event times (item 9)."""

from __future__ import annotations

import pytest

from shared.core.vocab import EventStatus
from shared.services.events import EventMemo, EventProcessor
from shared.services.events.scope import is_transient
from tests.support.events import (
    OWN_IDENTITY,
    VM1,
    RecordingRemediation,
    ago,
    arm_event,
    make_ctx,
    processor,
)

pytestmark = pytest.mark.azurite

VM_WRITE = "Microsoft.Compute/virtualMachines/write"


@pytest.mark.parametrize("event_id", ["ev-\x85", "ev-\x9f\x80", "ev/1#2?3\\4", "ev-\x01\x7f",
                                      "ÉV-ünïcødé-✓", "ev-" + "x" * 250])
def test_hardening_any_event_id_is_claimed_processed_and_recognised_again(
        emulator, storage_ns, event_id):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    event = arm_event(VM_WRITE, VM1, event_id=event_id, at=ago(30))
    result = processor(ctx, rem).handle(event)
    assert result.status == EventStatus.EVALUATED and rem.of("apply") == [VM1.lower()]
    # A redelivery to another instance is recognised from the claim in Table storage.
    again = processor(ctx, rem).handle(event)
    assert again.status == EventStatus.DUPLICATE and len(rem.calls) == 1


def test_hardening_ids_differing_only_in_forbidden_characters_are_different_events(
        emulator, storage_ns):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    first = processor(ctx).handle(arm_event(VM_WRITE, VM1, event_id="ev/1", at=ago(30)))
    other = processor(ctx).handle(arm_event(VM_WRITE, VM1, event_id="ev#1", at=ago(30)))
    assert first.status == EventStatus.EVALUATED
    assert other.status != EventStatus.DUPLICATE  # covered by the first pass, not "seen"


@pytest.mark.parametrize("field", ["id", "resource"])
def test_hardening_lone_surrogate_is_rejected_not_raised(emulator, storage_ns, field):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    event = arm_event(VM_WRITE, VM1, event_id="ev-1", at=ago(30))
    if field == "id":
        event["id"] += "\ud800"
    else:  # both places that name the resource
        event["subject"] += "\ud800"
        event["data"]["resourceUri"] += "\ud800"
    result = processor(ctx, rem).handle(event)
    assert result.status == EventStatus.REJECTED and rem.calls == []


@pytest.mark.parametrize("event_time", ["9999-12-31T23:59:59.9999999Z", "0001-01-01T00:00:00Z",
                                        "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_hardening_extreme_event_time_is_evaluated(emulator, storage_ns, event_time):
    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    rem = RecordingRemediation()
    event = arm_event(VM_WRITE, VM1)
    event["eventTime"] = event_time
    result = processor(ctx, rem).handle(event)
    assert result.status == EventStatus.EVALUATED and rem.of("apply") == [VM1.lower()]


def test_hardening_redelivery_after_a_storage_blip_is_processed_on_the_same_instance(
        emulator, storage_ns):
    """Item 1: the claim in Table storage fails (the table endpoint refuses connections); Event
    Grid delivers the event again to the same host process, which must process it."""
    from azure.data.tables import TableServiceClient

    from shared.storage.journal import Journal
    from tests.support.tcp_gate import TcpGate

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    table_port = int(storage_ns.azurite.table_endpoint.rsplit(":", 1)[1].split("/")[0])
    with TcpGate(table_port) as gate:
        conn = storage_ns.connection_string.replace(
            storage_ns.azurite.table_endpoint,
            f"http://127.0.0.1:{gate.port}/devstoreaccount1")
        # azure-core's retries, quickly: the blip outlasts them, the reopened gate does not.
        tables = TableServiceClient.from_connection_string(conn, retry_total=2,
                                                           retry_backoff_factor=0.01)
        ctx.journal = Journal(tables, table=storage_ns.table("journal"),
                              state_table=storage_ns.table("state")).ensure()
        rem = RecordingRemediation()
        instance = processor(ctx, rem)
        event = arm_event(VM_WRITE, VM1, event_id="ev-blip", at=ago(30))
        gate.shut()
        with pytest.raises(Exception) as failed:
            instance.handle(event)
        assert rem.calls == []
        assert is_transient(failed.value)  # the trigger raises only for what Event Grid retries
        gate.open()
        again = instance.handle(event)
        assert again.status == EventStatus.EVALUATED and rem.of("apply") == [VM1.lower()]
        assert processor(ctx, rem).handle(event).status == EventStatus.DUPLICATE


def test_hardening_claim_of_an_instance_that_died_is_taken_over_on_an_instance_that_saw_it(
        emulator, storage_ns):
    """An instance that found the claim in progress elsewhere answers in_progress, and once the
    claim is stale the same instance processes the redelivery (not a remembered duplicate)."""
    from datetime import UTC, datetime, timedelta

    from shared.core.events import EventConfig, parse_event
    from shared.core.vocab import RecordKind

    emu = emulator()
    ctx = make_ctx(emu, storage_ns)
    event = arm_event(VM_WRITE, VM1, event_id="ev-orphan", at=ago(30))
    parsed = parse_event(event)
    ctx.journal.open_record(RecordKind.EVENT, parsed.resource_id, parsed.event_id,
                            operation_id=parsed.event_id, exclusive=True,
                            data={"state": "processing", "operation": parsed.operation})
    memo, rem, start = EventMemo(), RecordingRemediation(), datetime.now(UTC)

    def instance(after_s: float) -> EventProcessor:
        return EventProcessor(ctx, remediation=rem, identity=OWN_IDENTITY, memo=memo,
                              config=EventConfig(window_seconds=60, clock_skew_seconds=2),
                              now=lambda: start + timedelta(seconds=after_s))

    assert instance(0).handle(event).status == EventStatus.IN_PROGRESS
    assert rem.calls == []
    again = instance(601).handle(event)  # stale_claim_seconds 600
    assert again.status == EventStatus.EVALUATED and rem.of("apply") == [VM1.lower()]
