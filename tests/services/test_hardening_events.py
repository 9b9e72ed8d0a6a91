"""Hardening (issue 12), the event trigger on the ARM emulator + Azurite: any event id is a
valid claim (item 2)."""

from __future__ import annotations

import pytest

from shared.core.vocab import EventStatus
from tests.support.events import VM1, RecordingRemediation, ago, arm_event, make_ctx, processor

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
