"""Hardening (issue 12), the fix API and the targets on the ARM emulator + Azurite: bounded
journaled input (item 5), the configured subscriptions as an allow-list (item 8), the smaller
answers (item 11) and the VM-ID validator (mutation b)."""
# ruff: noqa: F811 - the `estate` fixture is imported from tests.support.remediation

from __future__ import annotations

import json

import pytest

from shared.core.approvals import APPROVER_ROLE
from shared.core.journal import JournalEntry, Trigger
from shared.core.vocab import TriggerKind
from shared.services import fix_api
from shared.services import remediation as rem
from shared.services.events import EventProcessor
from shared.services.remediation.targets import TargetError, parse_target
from shared.storage.journal import MAX_WHO_CHARS, Journal
from tests.support.easy_auth import SignedIn, client_principal_header
from tests.support.events import RecordingRemediation, arm_event
from tests.support.remediation import CLI, SUB, VM1, estate  # noqa: F401 - fixtures

pytestmark = pytest.mark.azurite

OTHER = "00000000-0000-0000-0000-0000000000ff"
VM_ELSEWHERE = VM1.replace(SUB, OTHER)


def post(ctx, body, **kw):
    return fix_api.post_fix(ctx, body if isinstance(body, bytes | str) else json.dumps(body),
                            **kw)


# --------------------------------------------------------------------------- item 5

def test_hardening_overlong_principal_name_is_journaled_bounded_not_a_500(estate):
    """The platform vouches for who approves, not for the length of its name claim."""
    _, _, ctx = estate(platform_auth_enabled=True)
    plan_hash = post(ctx, {"vm_id": VM1}).body["plan_hash"]
    who = SignedIn("8c1f5c6e-4a7d-4e0b-9d8e-1f2a3b4c5d6e", "n" * 20_000, (APPROVER_ROLE,))
    sent = []
    resp = post(ctx, {"vm_id": VM1, "approve": plan_hash}, enqueue=sent.append,
                client_principal=client_principal_header(who))
    assert resp.status == 202 and len(sent) == 1
    status = ctx.journal.latest(None, action=fix_api.STATUS_ACTION,
                                operation_id=resp.body["operation"])
    assert status.trigger.principal == who.object_id
    assert status.trigger.principal_name.startswith("n" * 1000)
    assert len(status.trigger.principal_name) <= MAX_WHO_CHARS


def test_hardening_journal_bounds_who_asked(storage_ns):
    """Over 32 K characters Table storage refuses the entry (PropertyValueTooLarge): the 500
    of a long x-ms-client-principal-name. Whoever writes, the journal stores a bounded text."""
    journal = Journal(storage_ns.table_service(), table=storage_ns.table("journal"),
                      state_table=storage_ns.table("state")).ensure()
    entry = journal.append(JournalEntry(
        action="fix-operation", result="queued", operation_id="op", step="s" * 40_000,
        trigger=Trigger(TriggerKind.HTTP, "e" * 200, "p" * 40_000, "n" * 40_000)))
    (read,) = journal.history(None, 1)
    assert read.entry_id == entry.entry_id
    assert all(len(text) <= MAX_WHO_CHARS for text in (
        read.trigger.principal, read.trigger.principal_name, read.step))


def test_hardening_overlong_target_is_400(estate):
    _, _, ctx = estate()
    resp = post(ctx, {"vm_id": VM1 + "x" * 2000})
    assert resp.status == 400 and "at most" in resp.body["error"]


# --------------------------------------------------------------------------- item 8

def test_hardening_vm_outside_the_configured_subscriptions_gets_no_plan(estate):
    emu, _, ctx = estate(subscriptions=(OTHER,))
    emu.requests.reset()
    resp = post(ctx, {"vm_id": VM1})
    assert resp.status == 403 and "HAIRPIN_SUBSCRIPTIONS" in resp.body["error"]
    assert emu.requests.count() == 0  # refused before anything is read
    with pytest.raises(TargetError) as refused:
        rem.apply(ctx, VM1, CLI, approval="0" * 64)
    assert refused.value.status == 403
    finding = post(ctx, {"finding_id": "hp-00000000000000000000", "subscription_id": SUB})
    assert finding.status == 403
    assert emu.requests.count() == 0 and emu.power_state(VM1) == "running"


def test_hardening_event_outside_the_configured_subscriptions_is_ignored(estate):
    emu, _, ctx = estate(subscriptions=(OTHER,))
    calls = RecordingRemediation()
    emu.requests.reset()
    result = EventProcessor(ctx, remediation=calls).handle(
        arm_event("Microsoft.Compute/virtualMachines/write", VM1))
    assert result.status == "ignored" and "HAIRPIN_SUBSCRIPTIONS" in result.reason
    assert calls.calls == [] and emu.requests.count() == 0


def test_hardening_arm_subscription_errors_are_not_echoed(estate):
    """A key holder must not learn which subscriptions the identity can read."""
    _, _, ctx = estate()
    resp = post(ctx, {"vm_id": VM_ELSEWHERE})  # no such subscription in the emulator
    text = json.dumps(resp.body)
    assert resp.status == 404 and "not found or this app cannot read it" in text
    assert "SubscriptionNotFound" not in text and "could not be found" not in text


# --------------------------------------------------------------------------- item 11

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_hardening_non_json_content_type_is_415(estate, content_type):
    _, _, ctx = estate()
    resp = post(ctx, {"vm_id": VM1}, content_type=content_type)
    assert resp.status == 415 and "application/json" in resp.body["error"]


@pytest.mark.parametrize("content_type", [None, "application/json",
                                          "application/json; charset=utf-8",
                                          "application/merge-patch+json"])
def test_hardening_json_content_types_are_accepted(estate, content_type):
    _, _, ctx = estate()
    assert post(ctx, {"vm_id": VM1}, content_type=content_type).status == 200


def test_hardening_target_in_the_wrong_field_is_400(estate):
    _, _, ctx = estate()
    finding = post(ctx, {"vm_id": VM1}).body["plan"]["vms"][0]["finding_ids"][0]
    as_vm = post(ctx, {"vm_id": finding})
    assert as_vm.status == 400 and "vm_id must be a VM resource ID" in as_vm.body["error"]
    as_finding = post(ctx, {"finding_id": VM1})
    assert as_finding.status == 400 and "finding_id must be a finding ID" in \
        as_finding.body["error"]


def test_hardening_dry_run_with_storage_down_is_503(estate, storage_ns):
    emu, _, _ = estate()
    dead = storage_ns.connection_string
    for endpoint in ("BlobEndpoint", "TableEndpoint", "QueueEndpoint"):
        start = dead.index(endpoint + "=") + len(endpoint) + 1
        end = dead.index(";", start)
        dead = dead[:start] + "http://127.0.0.1:9/devstoreaccount1" + dead[end:]
    env = {"AzureWebJobsStorage": dead, "HAIRPIN_MODE": "apply",
           "HAIRPIN_ARM_ENDPOINT": emu.base_url, "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix}
    resp = fix_api.http_post(json.dumps({"vm_id": VM1}).encode(), None, env)
    assert resp.status == 503 and "not reachable" in resp.body["error"]


# --------------------------------------------------------------------------- mutation b

@pytest.mark.parametrize("subscription", ["not-a-guid", "00000000-0000-0000-0000-00000000000",
                                          SUB + "0", SUB + "\n", "x" + SUB[1:] + "\n"])
def test_hardening_vm_id_needs_a_guid_subscription(subscription):
    with pytest.raises(TargetError):
        parse_target(VM1.replace(SUB, subscription))
    assert parse_target(VM1) == ("vm", VM1)
