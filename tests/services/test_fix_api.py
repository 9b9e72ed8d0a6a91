"""POST /api/fix and GET /api/fix/{operation}: handlers on the emulator + Azurite (queue too),
and the Functions triggers themselves (bindings, auth level, invocation with azure.functions
objects)."""
# ruff: noqa: F811 - the `estate` fixture is imported from tests.support.remediation

from __future__ import annotations

import dataclasses
import importlib
import json
import sys

import azure.functions as func
import pytest

from shared.core.approvals import APPROVER_ROLE, KEY_ONLY_PRINCIPAL
from shared.services import fix_api
from shared.settings import Settings
from shared.storage import queues
from tests.support.easy_auth import (
    SignedIn,
    client_principal_header,
    headers_reaching_the_app,
    host_environment,
)
from tests.support.remediation import VM1, VM2, arm_writes, estate  # noqa: F401 - fixtures

pytestmark = pytest.mark.azurite


ALICE = SignedIn("3f2504e0-4f89-41d3-9a0c-0305e82c3301", "alice@contoso.com",
                 roles=(APPROVER_ROLE,))
BOB = SignedIn("7c9e6679-7425-40de-944b-e07fc1f90ae7", "bob@contoso.com", roles=("Reader",))


def post(ctx, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return fix_api.post_fix(ctx, data, **kw)


def as_platform_sends(who):
    """The x-ms-client-principal the app receives for `who` with App Service auth on."""
    return client_principal_header(who)


def test_dry_run_returns_the_plan_and_writes_nothing(estate):
    emu, _, ctx = estate()
    emu.requests.reset()
    resp = post(ctx, {"vm_id": VM1})
    assert resp.status == 200
    assert resp.body["dry_run"] is True and resp.body["deallocates"] == ["hs-vm2", "hs-vm1"]
    assert resp.body["approve_with"] == {"vm_id": VM1, "approve": resp.body["plan_hash"]}
    assert "Deallocates" in resp.body["text"]
    assert arm_writes(emu) == []
    finding = resp.body["plan"]["vms"][1]["finding_ids"][0]
    by_finding = post(ctx, {"finding_id": finding})
    assert by_finding.status == 200 and by_finding.body["plan_hash"] == resp.body["plan_hash"]


@pytest.mark.parametrize("body,status,text", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"", 400, "empty body"),
    ({"vm": VM1}, 400, "unknown field"),
    ({}, 400, "exactly one of vm_id or finding_id"),
    ({"vm_id": VM1, "finding_id": "hp-00000000000000000000"}, 400, "exactly one"),
    ({"vm_id": 42}, 400, "must be a string"),
    ({"vm_id": "/subscriptions/x/resourceGroups/rg"}, 400, "not a virtual machine resource ID"),
    ({"vm_id": "hs-vm1; rm -rf /"}, 400, "neither a VM resource ID nor a finding ID"),
    ({"vm_id": VM1, "approve": "yes"}, 400, "plan hash"),
    ({"vm_id": VM1.replace("hs-vm1", "nope")}, 404, "was not found"),
    ({"finding_id": "hp-00000000000000000000"}, 404, "was not found"),
])
def test_bad_input_is_a_clear_4xx(estate, body, status, text):
    emu, _, ctx = estate()
    resp = post(ctx, body)
    assert resp.status == status, resp.body
    assert text in resp.body["error"]
    assert "Traceback" not in json.dumps(resp.body)


def test_body_over_the_limit_is_413(estate):
    _, _, ctx = estate()
    resp = post(ctx, b"{" + b" " * (fix_api.MAX_BODY_BYTES + 1) + b"}")
    assert resp.status == 413 and "limit" in resp.body["error"]


def test_stale_approval_is_409(estate):
    _, _, ctx = estate(platform_auth_enabled=True)
    resp = post(ctx, {"vm_id": VM1, "approve": "b" * 64},
                client_principal=as_platform_sends(ALICE))
    assert resp.status == 409 and "stale approval" in resp.body["error"]


def _refused(ctx, emu, principal):
    """An approval of the current plan that must be refused before anything is read or
    queued."""
    plan_hash = post(ctx, {"vm_id": VM1}).body["plan_hash"]
    emu.requests.reset()
    queued = []
    resp = post(ctx, {"vm_id": VM1, "approve": plan_hash}, enqueue=queued.append,
                client_principal=principal)
    assert queued == [] and emu.requests.writes() == []
    assert "Traceback" not in json.dumps(resp.body)
    return resp


def test_approval_is_refused_when_platform_auth_is_not_enabled(estate):
    # Auth off: the platform passes a client's header through, so a forged one is ignored.
    emu, _, ctx = estate()
    resp = _refused(ctx, emu, as_platform_sends(ALICE))
    assert resp.status == 403 and resp.body["approver"] == "auth-not-enabled"
    assert "App Service Authentication" in resp.body["error"]
    assert "ignored" in resp.body["error"]


def test_approval_by_a_principal_without_the_role_is_403(estate):
    emu, _, ctx = estate(platform_auth_enabled=True)
    resp = _refused(ctx, emu, as_platform_sends(BOB))
    assert resp.status == 403 and resp.body["approver"] == "missing-role"
    assert resp.body["error"].startswith(
        f"bob@contoso.com ({BOB.object_id}) does not hold the app role Hairpin.Approver")


def test_approval_without_a_signed_in_caller_is_401(estate):
    emu, _, ctx = estate(platform_auth_enabled=True)
    resp = _refused(ctx, emu, None)
    assert resp.status == 401 and "bearer token" in resp.body["error"].lower()
    assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_key_only_approvals_work_only_with_the_setting(estate):
    emu, _, lab = estate()
    assert _refused(lab, emu, None).status == 403
    lab.settings = dataclasses.replace(lab.settings, allow_key_only_approvals=True)
    plan_hash = post(lab, {"vm_id": VM1}).body["plan_hash"]
    sent = []
    resp = post(lab, {"vm_id": VM1, "approve": plan_hash}, enqueue=sent.append)
    assert resp.status == 202, resp.body
    assert sent[0]["principal"] == KEY_ONLY_PRINCIPAL and sent[0]["principal_name"] is None
    status = lab.journal.latest(None, action=fix_api.STATUS_ACTION,
                                operation_id=resp.body["operation"])
    assert status.trigger.principal == KEY_ONLY_PRINCIPAL


def test_approved_apply_is_queued_then_run_by_the_worker(estate, storage_ns):
    emu, _, ctx = estate(platform_auth_enabled=True)
    queue = queues.queue_client(storage_ns.connection_string, storage_ns.container("fix"))
    sent = []

    def enqueue(message):
        sent.append(message)
        queue.send_message(json.dumps(message))

    plan_hash = post(ctx, {"vm_id": VM1}).body["plan_hash"]
    resp = post(ctx, {"vm_id": VM1, "approve": plan_hash}, enqueue=enqueue,
                client_principal=as_platform_sends(ALICE))
    assert resp.status == 202
    op = resp.body["operation"]
    assert resp.body["status_url"] == f"/api/fix/{op}" == resp.headers["Location"]
    assert fix_api.get_fix(ctx, op).body["status"] == "queued"
    # The queue trigger's side: the message as the Functions host hands it over.
    messages = list(queue.receive_messages())
    assert len(messages) == 1
    outcome = fix_api.run_fix_message(ctx, messages[0].content)
    assert outcome is not None and outcome.status == "applied", outcome.reasons
    status = fix_api.get_fix(ctx, op)
    assert status.status == 200 and status.body["status"] == "applied"
    assert [h["status"] for h in status.body["history"]] == ["queued", "running", "applied"]
    assert [v["vm_name"] for v in status.body["outcome"]["vms"]] == ["hs-vm2", "hs-vm1"]
    # the journal names the approver the platform verified: object id and name
    assert ctx.journal.latest(VM1).trigger.principal == ALICE.object_id
    assert ctx.journal.latest(VM1).trigger.principal_name == "alice@contoso.com"
    # Queues deliver at least once: a duplicate changes nothing.
    emu.requests.reset()
    assert fix_api.run_fix_message(ctx, messages[0].content) is None
    assert fix_api.get_fix(ctx, op).body["status"] == "applied"
    assert emu.requests.writes() == []


def test_status_of_unknown_or_malformed_operation(estate):
    _, _, ctx = estate()
    assert fix_api.get_fix(ctx, "0" * 32).status == 404
    assert fix_api.get_fix(ctx, "../etc").status == 400
    assert fix_api.run_fix_message(ctx, b"garbage") is None


# ------------------------------------------------------------------ the Functions triggers

_FUNCTIONS = {}


def functions():
    """`app.get_functions()` may be called once per FunctionApp: import function_app fresh."""
    if not _FUNCTIONS:
        sys.modules.pop("function_app", None)
        module = importlib.import_module("function_app")
        _FUNCTIONS.update({f.get_function_name(): f for f in module.app.get_functions()})
    return _FUNCTIONS


def test_bindings():
    fns = functions()
    post_b = fns["fix_post"].get_bindings()[0]
    get_b = fns["fix_status"].get_bindings()[0]
    queue_b = fns["fix_worker"].get_bindings()[0]
    assert (post_b.type, post_b.route, [str(m.value) for m in post_b.methods]) == (
        "httpTrigger", "fix", ["POST"])
    assert (get_b.type, get_b.route, [str(m.value) for m in get_b.methods]) == (
        "httpTrigger", "fix/{operation}", ["GET"])
    assert post_b.auth_level == get_b.auth_level == func.AuthLevel.FUNCTION
    # The host resolves the app setting: the queue the product writes under that prefix.
    assert queue_b.type == "queueTrigger" and queue_b.queue_name == "%HAIRPIN_STORAGE_PREFIX%-fix"
    assert queue_b.queue_name.replace("%HAIRPIN_STORAGE_PREFIX%", "depl2") == Settings.from_env(
        {"HAIRPIN_STORAGE_PREFIX": "depl2"}).storage_names.fix_queue
    assert queue_b.connection == "AzureWebJobsStorage"


def _env(monkeypatch, emu, storage_ns):
    for key, value in {
        "HAIRPIN_MODE": "apply", "AzureWebJobsStorage": storage_ns.connection_string,
        "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix + "fn",
        "HAIRPIN_LOCK_LEASE_SECONDS": "15",
    }.items():
        monkeypatch.setenv(key, value)


def test_http_triggers_end_to_end(estate, storage_ns, monkeypatch):
    # The triggers build their context from the environment (SDK default polling): the
    # emulator asks for 1 s between polls so this stays quick.
    emu, _, _ = estate(emu_kwargs={"lro_retry_after": 1, "lro_polls": 0})
    _env(monkeypatch, emu, storage_ns)
    for key, value in host_environment(auth_enabled=True).items():
        monkeypatch.setenv(key, value)
    fns = functions()
    user_post = fns["fix_post"].get_user_function()
    user_get = fns["fix_status"].get_user_function()
    worker = fns["fix_worker"].get_user_function()

    def request(body, method="POST", route_params=None, url="/api/fix", signed_in=None,
                client_headers=None):
        headers = headers_reaching_the_app(client_headers or {}, auth_enabled=True,
                                           signed_in=signed_in)
        return func.HttpRequest(method=method, url=f"http://localhost{url}", headers=headers,
                                params={}, route_params=route_params or {},
                                body=body if isinstance(body, bytes) else json.dumps(
                                    body).encode())

    bad = user_post(request(b"{oops"))
    assert bad.status_code == 400 and "not valid JSON" in json.loads(bad.get_body())["error"]
    dry = user_post(request({"vm_id": VM1}))
    assert dry.status_code == 200
    plan_hash = json.loads(dry.get_body())["plan_hash"]
    approve = {"vm_id": VM1, "approve": plan_hash}
    # a client's own header does not get past the platform: no one is signed in
    forged = user_post(request(approve, client_headers={
        "X-MS-CLIENT-PRINCIPAL": as_platform_sends(ALICE)}))
    assert forged.status_code == 401, forged.get_body()
    refused = user_post(request(approve, signed_in=BOB))
    assert refused.status_code == 403 and "Hairpin.Approver" in refused.get_body().decode()
    queued = user_post(request(approve, signed_in=ALICE))
    assert queued.status_code == 202, queued.get_body()
    op = json.loads(queued.get_body())["operation"]
    assert queued.headers["Location"] == f"/api/fix/{op}"
    status = user_get(request(b"", "GET", {"operation": op}, f"/api/fix/{op}"))
    assert json.loads(status.get_body())["status"] == "queued"
    # The queue trigger, with the message the POST queued.
    queue = queues.queue_client(storage_ns.connection_string, storage_ns.prefix + "fn-fix")
    msg = next(m for m in queue.receive_messages() if op in m.content.decode())
    worker(func.QueueMessage(id=msg.id, body=msg.content))
    queue.delete_message(msg)
    done = json.loads(user_get(request(b"", "GET", {"operation": op})).get_body())
    assert done["status"] == "applied", done
    assert emu.power_state(VM1) == emu.power_state(VM2) == "running"


@pytest.mark.azurite
def test_queue_client_from_identity_based_storage(storage_ns, azurite):
    """Without keys (the deployed template) the apply queue is reached through the storage
    account's QueueServiceClient and its credential."""
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.storage.queue import QueueServiceClient

    from tests.support.fixtures_azurite import ACCOUNT_KEY, ACCOUNT_NAME

    service = QueueServiceClient(azurite.queue_endpoint,
                                 credential=AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY))
    name = storage_ns.container("idq")
    queues.queue_sender(service, name)({"operation": "op1"})
    by_key = queues.queue_client(storage_ns.connection_string, name)
    [msg] = list(by_key.receive_messages())
    assert json.loads(msg.content) == {"operation": "op1"}
    service.delete_queue(name)
