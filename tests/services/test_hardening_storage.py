"""Hardening (issue 12 item 3): two deployments side by side on one Azurite, each under its own
HAIRPIN_STORAGE_PREFIX, never see each other's journal, records, reports or locks."""

from __future__ import annotations

import pytest
from azure.storage.queue import QueueServiceClient

from shared.core.journal import JournalEntry, Trigger
from shared.core.vocab import JournalResult, RecordKind, RemediationCall, TriggerKind
from shared.services.context import build_context
from shared.services.remediation.work import RemediationWork, queue_handoff
from shared.settings import Settings, SettingsError
from shared.storage.locks import vm_lock
from shared.storage.queues import queue_client

pytestmark = pytest.mark.azurite

VM = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
      "Microsoft.Compute/virtualMachines/vm1")


def deployment(storage_ns, name: str):
    """A deployment's context exactly as its triggers build it: settings from app settings."""
    return build_context(Settings.from_env({
        "AzureWebJobsStorage": storage_ns.connection_string,
        "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix + name, "HAIRPIN_MODE": "apply"}),
        budget_seconds=120, environ={})


def names_under(storage_ns) -> set[str]:
    blobs, tables = storage_ns.blob_service(), storage_ns.table_service()
    found = {c.name for c in blobs.list_containers(name_starts_with=storage_ns.prefix)}
    return found | {t.name for t in tables.list_tables() if t.name.startswith(storage_ns.prefix)}


def test_hardening_two_deployments_share_one_storage_account_without_crosstalk(storage_ns):
    before = names_under(storage_ns)
    a, b = deployment(storage_ns, "a"), deployment(storage_ns, "b")
    # Deployment A deallocated a VM and journals it; B must not start it or see the entry.
    a.journal.open_record(RecordKind.DEALLOCATED, VM, operation_id="op-a")
    a.journal.append(JournalEntry(action="deallocate", result=JournalResult.SUCCEEDED,
                                  trigger=Trigger(TriggerKind.CLI), operation_id="op-a",
                                  vm_id=VM))
    a.reports.reports.put({"json": {"from": "a"}}, run_id="run-a")
    assert [r.vm_id for r in a.journal.left_deallocated()] == [VM]
    assert b.journal.left_deallocated() == [] and b.journal.history(VM) == []
    assert b.reports.reports.latest() is None
    # Locks: A's lease on the VM does not exist for B (its own container).
    with a.locks.hold([vm_lock(VM)], operation_id="op-a"):
        with b.locks.hold([vm_lock(VM)], operation_id="op-b"):
            pass
    # A's event handoff goes to A's work queue, which B's worker never reads.
    env = {"AzureWebJobsStorage": storage_ns.connection_string}
    queue_handoff(a, env)(RemediationWork.due_within(
        60, operation="op-a", call=RemediationCall.APPLY, vm_id=VM,
        trigger=Trigger(TriggerKind.EVENT, "ev-a")))
    pa, pb = storage_ns.prefix + "a", storage_ns.prefix + "b"
    queues = QueueServiceClient.from_connection_string(storage_ns.connection_string)
    assert [q.name for q in queues.list_queues(name_starts_with=storage_ns.prefix)] == [
        f"{pa}-fix"]
    (message,) = queue_client(storage_ns.connection_string, f"{pa}-fix").peek_messages()
    assert "op-a" in message.content.decode()
    # Every table and container either created is named from its own prefix.
    created = names_under(storage_ns) - before
    assert created == {f"{p}{name}" for p in (pa, pb)
                       for name in ("journal", "state", "sweeps", "-reports", "-locks")}
    queues.delete_queue(f"{pa}-fix")


@pytest.mark.parametrize("prefix", ["Hairpin", "hair-pin", "9hairpin", "h" * 56, "hairpin\n"])
def test_hardening_storage_prefix_must_make_valid_names(prefix):
    with pytest.raises(SettingsError, match="HAIRPIN_STORAGE_PREFIX"):
        Settings.from_env({"HAIRPIN_STORAGE_PREFIX": prefix})
