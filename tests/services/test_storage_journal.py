"""The append-only journal and its open records, against the real Azurite Table service."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.journal import JournalEntry, Trigger, cap_json, subject_key
from shared.core.vocab import JournalResult, RecordKind, TriggerKind
from shared.storage.journal import Journal

VM1 = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-hs"
       "/providers/Microsoft.Compute/virtualMachines/hs-vm1")
VM2 = VM1[:-1] + "2"
EVENT = Trigger(TriggerKind.EVENT, event_id="evt-1", principal="someone@example.com",
                principal_name="Someone")


def entry(action="deallocate", result=JournalResult.SUCCEEDED, vm_id=VM1, **kw) -> JournalEntry:
    return JournalEntry(action=action, result=result, trigger=kw.pop("trigger", EVENT),
                        operation_id=kw.pop("operation_id", "op-1"), vm_id=vm_id, **kw)


@pytest.fixture
def journal(storage_ns) -> Journal:
    return Journal(storage_ns.table_service(), table=storage_ns.table("journal"),
                   state_table=storage_ns.table("state")).ensure()


# -- pure model -------------------------------------------------------------------------------

def test_subject_key_is_case_insensitive_and_key_safe():
    assert subject_key(VM1) == subject_key(VM1.upper() + "/")
    assert subject_key(VM1) != subject_key(VM2)
    assert "/" not in subject_key(VM1) and len(subject_key(VM1)) < 64
    assert subject_key(None) == "global"


def test_entry_validation():
    with pytest.raises(ValueError, match="action"):
        entry(action="")
    with pytest.raises(ValueError, match="timezone"):
        entry(timestamp=datetime(2026, 1, 1))


def test_cap_json_keeps_small_documents_and_marks_big_ones():
    assert json.loads(cap_json({"a": [1, 2]})) == {"a": [1, 2]}
    big = {"nics": ["x" * 100] * 1000}
    capped = json.loads(cap_json(big, 2000))
    assert capped["_truncated"] is True and capped["bytes"] > 100_000
    assert len(cap_json(big, 2000)) <= 2200


# -- journal on Azurite -----------------------------------------------------------------------

@pytest.mark.azurite
def test_append_round_trip(journal):
    e = entry(plan_hash="sha256:abc", step="2/attach-nic", before={"nics": ["a"]},
              after={"nics": ["a", "b"]}, error=None)
    stored = journal.append(e)
    assert stored.entry_id

    [got] = journal.history(VM1)
    assert got == stored  # every field survives, timestamp to the microsecond
    assert got.trigger == EVENT and got.after == {"nics": ["a", "b"]}
    doc = json.loads(json.dumps(got.to_json()))
    assert doc["trigger"]["event_id"] == "evt-1" and doc["entry_id"] == stored.entry_id


@pytest.mark.azurite
def test_history_is_newest_first_with_limit(journal):
    for step in range(6):
        journal.append(entry(step=str(step)))
    assert [e.step for e in journal.history(VM1)] == ["5", "4", "3", "2", "1", "0"]
    assert [e.step for e in journal.history(VM1, limit=2)] == ["5", "4"]


@pytest.mark.azurite
def test_order_follows_the_entry_timestamp_not_the_write_order(journal):
    t0 = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
    journal.append(entry(step="later", timestamp=t0 + timedelta(seconds=1)))
    journal.append(entry(step="earlier", timestamp=t0))
    assert [e.step for e in journal.history(VM1)] == ["later", "earlier"]


@pytest.mark.azurite
def test_appends_never_overwrite(journal):
    same_instant = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
    a = journal.append(entry(step="a", timestamp=same_instant))
    b = journal.append(entry(step="b", timestamp=same_instant))
    assert a.entry_id != b.entry_id
    assert sorted(e.step for e in journal.history(VM1)) == ["a", "b"]


@pytest.mark.azurite
def test_concurrent_appends_all_land(journal):
    def writer(n):
        for i in range(10):
            journal.append(entry(step=f"{n}-{i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(journal.history(VM1, limit=100)) == 50


@pytest.mark.azurite
def test_history_is_per_vm_and_case_insensitive(journal):
    journal.append(entry(vm_id=VM1, step="vm1"))
    journal.append(entry(vm_id=VM2, step="vm2"))
    journal.append(entry(vm_id=VM1.upper(), step="vm1-upper"))
    assert [e.step for e in journal.history(VM1.lower())] == ["vm1-upper", "vm1"]
    assert [e.step for e in journal.history(VM2)] == ["vm2"]
    assert journal.history(VM1[:-1] + "9") == []


@pytest.mark.azurite
def test_latest_with_filters(journal):
    journal.append(entry(action="deallocate", result=JournalResult.STARTED, plan_hash="p1"))
    journal.append(entry(action="deallocate", result=JournalResult.SUCCEEDED, plan_hash="p1"))
    journal.append(entry(action="start", result=JournalResult.FAILED, plan_hash="p1", error="boom"))
    journal.append(entry(action="verify", result=JournalResult.SUCCEEDED, plan_hash="p2"))

    assert journal.latest(VM1).action == "verify"
    assert journal.latest(VM1, action="deallocate").result == JournalResult.SUCCEEDED
    assert journal.latest(VM1, action="start").error == "boom"
    assert journal.latest(VM1, plan_hash="p1").action == "start"
    assert journal.latest(VM1, action="rollback") is None
    assert len(journal.history(VM1, action="deallocate")) == 2


@pytest.mark.azurite
def test_big_documents_are_capped_not_rejected(journal):
    huge = {"resources": [{"id": f"/x/{i}", "blob": "y" * 500} for i in range(2000)]}
    journal.append(entry(before=huge, error="e" * 100_000))
    [got] = journal.history(VM1)
    assert got.before["_truncated"] is True and got.before["bytes"] > 1_000_000
    assert got.error.endswith("[truncated]") and len(got.error) <= 4000


@pytest.mark.azurite
def test_entries_without_a_vm(journal):
    sweep = Trigger(TriggerKind.SWEEP)
    journal.append(JournalEntry(action="sweep", result=JournalResult.SUCCEEDED, trigger=sweep,
                                operation_id="sweep-7", after={"vms": 12, "drift": 1}))
    [got] = journal.history(None)
    assert got.vm_id is None and got.after == {"vms": 12, "drift": 1}
    assert journal.history(VM1) == []


# -- open records -----------------------------------------------------------------------------

@pytest.mark.azurite
def test_left_deallocated_records(journal):
    journal.open_record(RecordKind.DEALLOCATED, VM1, operation_id="op-1", plan_hash="p1")
    journal.open_record(RecordKind.DEALLOCATED, VM2, operation_id="op-2")
    assert {r.vm_id for r in journal.left_deallocated()} == {VM1, VM2}

    journal.close_record(RecordKind.DEALLOCATED, VM1.upper())  # ids compare case-insensitively
    journal.close_record(RecordKind.DEALLOCATED, VM1)  # closing twice is fine
    [left] = journal.left_deallocated()
    assert (left.vm_id, left.operation_id, left.plan_hash) == (VM2, "op-2", None)
    assert left.since.tzinfo is not None


@pytest.mark.azurite
def test_exclusive_open_is_first_one_wins(journal):
    assert journal.open_record("remediating", VM1, operation_id="a", exclusive=True) is True
    assert journal.open_record("remediating", VM1, operation_id="b", exclusive=True) is False
    [rec] = journal.open_records("remediating")
    assert rec.operation_id == "a"
    # a non-exclusive open refreshes the record instead
    journal.open_record("remediating", VM1, operation_id="c", data={"step": 3})
    [rec] = journal.open_records("remediating")
    assert (rec.operation_id, rec.data) == ("c", {"step": 3})


@pytest.mark.azurite
def test_verified_routes(journal):
    journal.open_record(RecordKind.VERIFIED_ROUTE, VM1, "10.0.1.100", operation_id="op")
    journal.open_record(RecordKind.VERIFIED_ROUTE, VM1, "10.0.1.101", operation_id="op")
    journal.open_record(RecordKind.VERIFIED_ROUTE, VM2, "10.0.1.100", operation_id="op")
    vm1, vm2 = VM1.lower(), VM2.lower()
    assert journal.verified_routes() == {(vm1, "10.0.1.100"), (vm1, "10.0.1.101"),
                                         (vm2, "10.0.1.100")}
    assert journal.verified_routes(VM1.upper()) == {(vm1, "10.0.1.100"), (vm1, "10.0.1.101")}

    journal.close_record(RecordKind.VERIFIED_ROUTE, VM1, "10.0.1.101")  # frontend removed
    assert journal.verified_routes(VM1) == {(vm1, "10.0.1.100")}
    # record kinds do not mix
    assert journal.left_deallocated() == []


@pytest.mark.azurite
def test_ensure_is_idempotent_and_from_connection_string(storage_ns):
    names = {"table": storage_ns.table("j"), "state_table": storage_ns.table("s")}
    first = Journal.from_connection_string(storage_ns.connection_string, **names).ensure()
    first.append(entry())
    again = Journal.from_connection_string(storage_ns.connection_string, **names).ensure()
    assert len(again.history(VM1)) == 1
