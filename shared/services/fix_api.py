"""HTTP-agnostic handlers for `POST /api/fix`, `GET /api/fix/{operation}` and the queue worker.

The worker runs two kinds of message from one queue: approved applies (below) and the
remediations Event Grid events hand off (`shared.services.remediation.work`); both record their
status under their operation, so `GET /api/fix/{operation}` answers for either.

POST body: `{"vm_id": "<VM resource ID>"}` or `{"finding_id": "hp-..."}`, optional
`"subscription_id"` (for finding IDs) and `"approve": "<plan hash>"`.
- no `approve`: a dry run, 200 with the plan (JSON and text) and the hash to approve;
- `approve` equal to the current plan hash, from a caller App Service Authentication verified
  as holding the app role `Hairpin.Approver` (`shared.core.approvals`; or any key holder when
  HAIRPIN_ALLOW_KEY_ONLY_APPROVALS is on): the apply is queued (Storage queue) and the answer
  is 202 with `Location`/`status_url` = `/api/fix/{operation}`; the journal records the
  verified object id and name;
- bad input: 4xx with a one-line message (never a stack trace): 400 malformed JSON / fields /
  IDs, 401 approval without a signed-in caller, 403 approval by a caller without the role or
  on an app without App Service Authentication, 404 unknown VM or finding, 409 stale
  approval, 413 body too large, 415 not JSON.
The operation's status lives in the journal (global partition, action `fix-operation`), so any
instance can answer GET.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError

from shared.core.approvals import ApproverCheck, check_approver
from shared.core.journal import JournalEntry, Trigger
from shared.core.vocab import ApproverVerdict, TriggerKind
from shared.services import remediation
from shared.services.context import ServiceContext, build_context
from shared.services.remediation.work import WORK_KIND, RemediationWork, run_work
from shared.storage.queues import queue_sender, queue_source

log = logging.getLogger(__name__)

__all__ = ["MAX_BODY_BYTES", "ApiResponse", "parse_request", "is_json_type", "check_target",
           "approver_of", "post_fix", "get_fix", "run_fix_message", "STATUS_ACTION"]

MAX_BODY_BYTES = 16 * 1024
_TARGET_KIND = {"vm_id": "vm", "finding_id": "finding"}
STATUS_ACTION = "fix-operation"
_HASH = re.compile(r"\A[0-9a-f]{64}\Z")
_OPERATION = re.compile(r"\A[0-9a-f]{32}\Z")
_FIELDS = {"vm_id", "finding_id", "approve", "subscription_id"}
# A refused approver: 401 when no one signed in (or the platform's word is unreadable),
# 403 when the caller is known and not allowed, or no one can be verified on this app.
_REFUSED_STATUS = {ApproverVerdict.NOT_SIGNED_IN: 401, ApproverVerdict.UNREADABLE: 401,
                   ApproverVerdict.MISSING_ROLE: 403, ApproverVerdict.AUTH_NOT_ENABLED: 403}


@dataclass
class ApiResponse:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, indent=2, default=str)


def _error(status: int, message: str, **extra) -> ApiResponse:
    return ApiResponse(status, {"error": message, **extra})


def _status(ctx: ServiceContext, operation: str, result: str, trigger: Trigger,
            after: Any = None, error: str | None = None) -> None:
    ctx.journal.append(JournalEntry(action=STATUS_ACTION, result=result, trigger=trigger,
                                    operation_id=operation, vm_id=None, after=after,
                                    error=error))


def is_json_type(content_type: str | None) -> bool:
    """No Content-Type (accepted as JSON), application/json or a +json type; any parameters."""
    if not content_type or not content_type.strip():
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def parse_request(body: bytes | str | None, content_type: str | None = None) -> dict | ApiResponse:
    """The request document, or the 4xx answer that says what is wrong with it."""
    if not is_json_type(content_type):
        return _error(415, f"Content-Type {content_type[:80]!r}: send application/json")
    if body is None:
        body = b""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    if not raw.strip():
        return _error(400, 'empty body: send JSON like {"vm_id": "/subscriptions/..."} or '
                           '{"finding_id": "hp-..."}')
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"body is not valid JSON ({str(exc).splitlines()[0][:120]})")
    except RecursionError:
        return _error(400, "body is not acceptable JSON (nested too deeply)")
    if not isinstance(doc, dict):
        return _error(400, "body must be a JSON object with vm_id or finding_id")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        return _error(400, f"unknown field(s): {', '.join(k[:40] for k in unknown[:5])}; "
                           f"expected {', '.join(sorted(_FIELDS))}")
    targets = [k for k in ("vm_id", "finding_id") if k in doc]
    if len(targets) != 1:
        return _error(400, "give exactly one of vm_id or finding_id")
    for key in doc:
        if doc[key] is not None and not isinstance(doc[key], str):
            return _error(400, f"{key} must be a string")
    approve = doc.get("approve")
    if approve is not None and not _HASH.match(approve.strip().lower()):
        return _error(400, "approve must be the plan hash (64 hex digits) from a dry run")
    return doc


def approver_of(ctx: ServiceContext, client_principal: str | None) -> ApproverCheck:
    """Who approves: `client_principal` is the request's x-ms-client-principal header."""
    return check_approver(client_principal,
                          platform_auth_enabled=ctx.settings.platform_auth_enabled,
                          key_only_allowed=ctx.settings.allow_key_only_approvals)


def check_target(doc: dict) -> ApiResponse | None:
    """The 4xx for a malformed target or one in the wrong field (a finding ID as vm_id)."""
    field_name = "vm_id" if "vm_id" in doc else "finding_id"
    try:
        kind, _ = remediation.parse_target(doc[field_name])
    except remediation.TargetError as exc:
        return _error(exc.status, str(exc))
    if kind != _TARGET_KIND[field_name]:
        return _error(400, "vm_id must be a VM resource ID" if field_name == "vm_id"
                      else "finding_id must be a finding ID (hp-...)")
    return None


def _approval_refused(approver) -> ApiResponse:
    log.warning("fix: approval refused (%s)", approver.verdict)
    refused = _error(_REFUSED_STATUS[approver.verdict], approver.reason,
                     approver=str(approver.verdict))
    if refused.status == 401:
        refused.headers["WWW-Authenticate"] = "Bearer"  # a 401 names its scheme (RFC 9110)
    return refused


def post_fix(ctx: ServiceContext, body: bytes | str | None, *,
             enqueue: Callable[[dict], None] | None = None,
             client_principal: str | None = None, status_url_base: str = "/api/fix",
             content_type: str | None = None) -> ApiResponse:
    """Dry run (default) or queue an approved apply."""
    doc = parse_request(body, content_type)
    if isinstance(doc, ApiResponse):
        return doc
    refused = check_target(doc)
    if refused is not None:
        return refused
    approver = approver_of(ctx, client_principal) if doc.get("approve") is not None else None
    if approver is not None and not approver.accepted:
        return _approval_refused(approver)
    target = doc.get("vm_id") or doc.get("finding_id")
    try:
        pr = remediation.plan_for_target(ctx, target, doc.get("subscription_id"))
    except remediation.TargetError as exc:
        return _error(exc.status, str(exc))
    except Exception as exc:  # noqa: BLE001 - an answer, never a stack trace
        # ARM's own message stays in the log: it may name what the identity can read.
        log.warning("fix: could not build the plan", exc_info=True)
        return _error(502, f"could not read the estate from Azure ({type(exc).__name__}); "
                           "see the function log")
    plan = pr.plan
    approve = doc.get("approve")
    if approve is None:
        return ApiResponse(200, {
            "dry_run": True, "plan_hash": plan.hash, "deallocates": [
                v.vm_name for v in plan.vms if v.needs_deallocation],
            "approve_with": {"vm_id" if "vm_id" in doc else "finding_id": target,
                             "approve": plan.hash},
            "plan": plan.as_dict(), "text": plan.to_text()})
    if approve.strip().lower() != plan.hash:
        return _error(409, "stale approval: the plan changed since it was approved (the estate "
                           "changed); review the new plan and approve its hash",
                      plan_hash=plan.hash)
    if plan.empty:
        return ApiResponse(200, {"status": "unchanged", "plan_hash": plan.hash,
                                 "reasons": ["nothing to do"]})
    if ctx.journal is None or enqueue is None:
        return _error(503, "applies run from a Storage queue: storage is not configured "
                           "(HAIRPIN_STORAGE_CONNECTION or AzureWebJobsStorage)")
    operation = remediation.new_operation_id()
    trigger = Trigger(TriggerKind.HTTP, principal=approver.journal_principal,
                      principal_name=approver.journal_name)
    message = {"operation": operation, "target": target, "approval": plan.hash,
               "subscription_id": doc.get("subscription_id") or pr.subscription_id,
               "principal": trigger.principal, "principal_name": trigger.principal_name}
    _status(ctx, operation, "queued", trigger, after={"target": target, "plan_hash": plan.hash})
    try:
        enqueue(message)
    except Exception as exc:  # noqa: BLE001
        _status(ctx, operation, "failed", trigger, error=f"could not queue: {exc}")
        return _error(503, f"could not queue the apply: {type(exc).__name__}")
    url = f"{status_url_base.rstrip('/')}/{operation}"
    return ApiResponse(202, {"operation": operation, "status": "queued", "status_url": url,
                             "plan_hash": plan.hash}, {"Location": url})


def run_fix_message(ctx: ServiceContext, message: bytes | str | dict) -> remediation.Outcome | None:
    """The queue worker: run an approved apply or a handed-off remediation and record its
    status. Never raises for a bad message (it would only be retried); ARM/budget problems end
    as a recorded outcome."""
    try:
        doc = message if isinstance(message, dict) else json.loads(message)
        work = RemediationWork.from_message(doc) if doc.get("kind") == WORK_KIND else None
        operation = doc["operation"]
        if not _OPERATION.match(operation):
            raise ValueError("bad operation id")
    except Exception:  # noqa: BLE001
        log.error("fix queue: dropping a malformed message")
        return None
    trigger = work.trigger if work is not None else Trigger(
        TriggerKind.HTTP, principal=doc.get("principal"),
        principal_name=doc.get("principal_name"))
    done = ctx.journal.latest(None, action=STATUS_ACTION, operation_id=operation)
    if done is not None and done.result not in ("queued", "running", "pending"):
        log.info("fix %s already ended (%s): duplicate delivery ignored", operation, done.result)
        return None  # queues deliver at least once
    if work is not None and work.expired():
        # Live state decides again at the next event or sweep; a late fix could act on a
        # situation that no longer holds.
        _status(ctx, operation, "expired", trigger, after={"vm_id": work.vm_id,
                                                           "call": str(work.call)},
                error=f"not started before its deadline {work.deadline.isoformat()}")
        return None
    _status(ctx, operation, "running", trigger)
    try:
        if work is not None:
            outcome = run_work(ctx, work)
        else:
            outcome = remediation.apply(ctx, doc["target"], trigger,
                                        approval=doc.get("approval"), operation_id=operation,
                                        subscription_id=doc.get("subscription_id"))
    except Exception as exc:  # noqa: BLE001
        log.warning("fix %s failed", operation, exc_info=True)
        _status(ctx, operation, "failed", trigger,
                error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
        return None
    summary = outcome.as_dict()
    summary.pop("plan", None)
    _status(ctx, operation, outcome.status, trigger, after=summary,
            error="; ".join(outcome.reasons)[:2000] or None)
    return outcome


def get_fix(ctx: ServiceContext, operation: str) -> ApiResponse:
    if not isinstance(operation, str) or not _OPERATION.match(operation.strip().lower()):
        return _error(400, "operation must be the 32-hex-digit id a POST /api/fix returned")
    if ctx.journal is None:
        return _error(503, "storage is not configured")
    entries = ctx.journal.history(None, 20, action=STATUS_ACTION,
                                  operation_id=operation.strip().lower())
    if not entries:
        return _error(404, f"operation {operation} not found")
    latest = entries[0]
    body = {"operation": latest.operation_id, "status": latest.result,
            "updated": latest.timestamp.isoformat(),
            "history": [{"status": e.result, "at": e.timestamp.isoformat()}
                        for e in reversed(entries)]}
    if latest.after is not None:
        body["outcome" if latest.result not in ("queued", "running") else "request"] = latest.after
    if latest.error:
        body["reasons"] = latest.error
    return ApiResponse(200, body)


# --------------------------------------------------------------------------- trigger glue

def context_from_env(environ=None) -> ServiceContext:
    """One invocation's context, inside the Functions timeout (the rest resumes next run)."""
    from shared.settings import FUNCTION_BUDGET_S, Settings

    return build_context(Settings.from_env(environ), environ=environ,
                         budget_seconds=FUNCTION_BUDGET_S)


def _guarded(handler: Callable[[], ApiResponse]) -> ApiResponse:
    from shared.settings import SettingsError

    try:
        return handler()
    except SettingsError as exc:
        log.warning("fix API configuration error: %s", exc)
        return _error(500, f"configuration error in {exc.variable or 'the settings'}; see the "
                      "function logs")
    except AzureError as exc:  # storage (or ARM) not reachable while composing the context
        log.warning("fix API: a dependency did not answer", exc_info=True)
        return _error(503, f"storage or Azure is not reachable ({type(exc).__name__}); try "
                           "again later")
    except Exception as exc:  # noqa: BLE001 - never a stack trace to the caller
        log.exception("fix API failed")
        return _error(500, f"internal error ({type(exc).__name__}); see the function logs")


def http_post(body: bytes | None, client_principal: str | None = None,
              environ=None, *, content_type: str | None = None) -> ApiResponse:
    def handle() -> ApiResponse:
        ctx = context_from_env(environ)
        source = queue_source(ctx.settings, ctx.storage, environ)
        enqueue = None
        if source:
            def enqueue(message: dict) -> None:
                queue_sender(source, ctx.settings.storage_names.fix_queue)(message)
        return post_fix(ctx, body, enqueue=enqueue, client_principal=client_principal,
                        content_type=content_type)
    return _guarded(handle)


def http_get(operation: str, environ=None) -> ApiResponse:
    return _guarded(lambda: get_fix(context_from_env(environ), operation))


def http_worker(message: bytes | str, environ=None) -> None:
    run_fix_message(context_from_env(environ), message)
