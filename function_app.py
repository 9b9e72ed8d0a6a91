"""Azure Functions entry points (Python v2 model). Each trigger only translates its input into a
call on `shared.services` and the result into a response; all logic lives in `shared/`."""

import json
import logging

import azure.functions as func

from shared import observability
from shared.core.approvals import CLIENT_PRINCIPAL_HEADER
from shared.core.report import to_json
from shared.core.storage_names import fix_queue_of, poison_queue_of, sweep_queue_of
from shared.services import audit, fix_api, health
from shared.services import events as event_service
from shared.services.context import build_context
from shared.services.sweep import triggers as sweep_triggers
from shared.settings import FUNCTION_BUDGET_S, Settings, SettingsError

observability.setup()  # correlation IDs on every log line; OpenTelemetry when configured
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger("hairpin.functions")


def _context():
    """One invocation's services, inside the Functions timeout."""
    return build_context(Settings.from_env(), budget_seconds=FUNCTION_BUDGET_S)


def _json(body, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status,
                             mimetype="application/json")


def _unavailable(what: str, exc: Exception) -> func.HttpResponse:
    # A clear 503 with the kind of problem; details (never secrets) go to the function log.
    log.warning("%s failed: %s", what, exc)
    detail = (f"configuration error in {exc.variable or 'the settings'}"
              if isinstance(exc, SettingsError) else f"{type(exc).__name__}; see the function log")
    return _json({"error": {"code": "Unavailable", "message": f"{what}: {detail}"}}, 503)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _unavailable("health", exc)
    report = health.health_report(settings, arm_probe=health.arm_probe(settings),
                                  storage_probe=health.storage_probe(settings))
    return _json(report, 200 if report["status"] == "ok" else 503)


@app.timer_trigger(arg_name="timer", schedule="%HAIRPIN_AUDIT_SCHEDULE%", run_on_startup=False)
def scheduled_audit(timer: func.TimerRequest) -> None:
    # The host resolves %HAIRPIN_AUDIT_SCHEDULE% from app settings (Settings.audit_schedule).
    audit.scheduled_audit(_context())


@app.route(route="audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_audit(req: func.HttpRequest) -> func.HttpResponse:
    as_html = audit.prefers_html(req.headers.get("Accept"))
    try:
        found = audit.latest_or_fresh(_context(),
                                      audit.is_true(req.params.get("fresh")), html=as_html)
    except Exception as exc:  # noqa: BLE001 - a clear 503, never a stack trace
        return _unavailable("audit", exc)
    if as_html:
        return func.HttpResponse(found.html, mimetype="text/html", charset="utf-8")
    return func.HttpResponse(to_json(found.report), mimetype="application/json")


@app.event_grid_trigger(arg_name="event")
def on_resource_event(event: func.EventGridEvent) -> None:
    # Subscription system-topic events (infra/eventgrid.json). Raises only on transient
    # failures, so that Event Grid delivers the event again; the rest is acknowledged.
    with observability.correlate(event_id=getattr(event, "id", None), trigger="event"):
        event_service.handle_event(event)


@app.timer_trigger(arg_name="timer", schedule="%HAIRPIN_SWEEP_SCHEDULE%", run_on_startup=False,
                   use_monitor=True)
def drift_sweep(timer: func.TimerRequest) -> None:
    # %HAIRPIN_SWEEP_SCHEDULE% comes from app settings (Settings.sweep_schedule). Only plans:
    # the work items go on the sweep queue, which sweep_worker runs as the host scales out.
    sweep_triggers.start_from_env()


@app.queue_trigger(arg_name="msg", queue_name=sweep_queue_of("%HAIRPIN_STORAGE_PREFIX%"),
                   connection="AzureWebJobsStorage")
def sweep_worker(msg: func.QueueMessage) -> None:
    # One work item of a fleet sweep (host.json extensions.queues sizes the parallelism).
    sweep_triggers.item_from_env(msg.get_body())


@app.queue_trigger(arg_name="msg",
                   queue_name=poison_queue_of(sweep_queue_of("%HAIRPIN_STORAGE_PREFIX%")),
                   connection="AzureWebJobsStorage")
def sweep_poison(msg: func.QueueMessage) -> None:
    # An item that failed maxDequeueCount times: recorded as an error, so its sweep completes.
    sweep_triggers.poisoned_from_env(msg.get_body(), msg.dequeue_count)


def _fix_response(resp: fix_api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(resp.json(), status_code=resp.status, headers=resp.headers,
                             mimetype="application/json")


@app.route(route="fix", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def fix_post(req: func.HttpRequest) -> func.HttpResponse:
    # Dry run by default; {"approve": "<plan hash>"} queues the apply (202 + status URL).
    # The approver comes from App Service Authentication's header, read only while the
    # platform says its auth is on (shared/core/approvals.py).
    return _fix_response(fix_api.http_post(req.get_body(),
                                           req.headers.get(CLIENT_PRINCIPAL_HEADER),
                                           content_type=req.headers.get("content-type")))


@app.route(route="fix/{operation}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def fix_status(req: func.HttpRequest) -> func.HttpResponse:
    return _fix_response(fix_api.http_get(req.route_params.get("operation", "")))


# The host resolves %HAIRPIN_STORAGE_PREFIX% from app settings: the queue POST /api/fix and the
# event handoff write (Settings.storage_names.fix_queue).
@app.queue_trigger(arg_name="msg", queue_name=fix_queue_of("%HAIRPIN_STORAGE_PREFIX%"),
                   connection="AzureWebJobsStorage")
def fix_worker(msg: func.QueueMessage) -> None:
    # Approved applies (POST /api/fix) and the remediations events hand off; status goes to
    # the journal under the operation, which GET /api/fix/{operation} reads.
    fix_api.http_worker(msg.get_body())
