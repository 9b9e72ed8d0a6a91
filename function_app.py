"""Azure Functions entry points (Python v2 model). Each trigger only translates its input into a
call on `shared.services` and the result into a response; all logic lives in `shared/`."""

import json

import azure.functions as func

from shared.services import health
from shared.settings import Settings

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(body, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status,
                             mimetype="application/json")


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings.from_env()
    report = health.health_report(settings, arm_probe=health.arm_probe(settings),
                                  storage_probe=health.storage_probe(settings))
    return _json(report, 200 if report["status"] == "ok" else 503)

