"""GET /api/health and the error answers of the HTTP triggers: found through the indexed
FunctionApp, binding asserted, invoked with azure.functions objects against the emulator and
Azurite."""

from __future__ import annotations

import importlib.util
import json

import azure.functions as func
import pytest

from shared import __version__
from tests.support.paths import ROOT

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def functions() -> dict:
    # get_functions() may be called once per FunctionApp: index a private copy of the module.
    spec = importlib.util.spec_from_file_location("function_app_for_health_tests",
                                                  ROOT / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): f for f in module.app.get_functions()}


def call(functions, name: str, url: str, headers=None) -> tuple[int, dict]:
    req = func.HttpRequest("GET", url, headers=headers or {}, body=b"")
    resp = functions[name].get_user_function()(req)
    return resp.status_code, json.loads(resp.get_body())


def test_every_http_route_needs_a_function_key(functions):
    routes = {}
    for f in functions.values():
        for b in f.get_bindings():
            if b.type == "httpTrigger":
                d = b.get_dict_repr()
                routes[d["route"]] = str(d["authLevel"].value if hasattr(d["authLevel"], "value")
                                         else d["authLevel"])
    assert set(routes) == {"health", "audit", "fix", "fix/{operation}"}
    assert set(routes.values()) == {"function"}


def test_health_reports_version_mode_and_reachability(functions, emulator, azurite, monkeypatch):
    emu = emulator("default")
    monkeypatch.setenv("HAIRPIN_SUBSCRIPTIONS", emu.subscription_id)
    monkeypatch.setenv("HAIRPIN_ARM_ENDPOINT", emu.base_url)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.delenv("HAIRPIN_MODE", raising=False)
    status, body = call(functions, "health_check", "/api/health")
    assert status == 200
    assert body == {"status": "ok", "version": __version__, "mode": "audit",
                    "checks": {"arm": {"reachable": True}, "storage": {"reachable": True}}}
    assert emu.requests.count(method="GET", resource_type="microsoft.network/loadbalancers") == 1


def test_health_degrades_when_arm_does_not_answer(functions, emulator, azurite, monkeypatch):
    emu = emulator("default")
    emu.faults.add(method="GET", path="loadBalancers", status=503, times=None)
    monkeypatch.setenv("HAIRPIN_SUBSCRIPTIONS", emu.subscription_id)
    monkeypatch.setenv("HAIRPIN_ARM_ENDPOINT", emu.base_url)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    status, body = call(functions, "health_check", "/api/health")
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"]["arm"] == {"reachable": False, "error": "HttpResponseError"}
    assert body["checks"]["storage"] == {"reachable": True}


def test_bad_setting_is_a_503_naming_the_variable_not_its_value(functions, monkeypatch):
    monkeypatch.setenv("HAIRPIN_MODE", "s3cret-typo")
    for name, url in (("health_check", "/api/health"), ("get_audit", "/api/audit")):
        status, body = call(functions, name, url)
        assert status == 503
        assert "HAIRPIN_MODE" in body["error"]["message"]
        assert "s3cret" not in json.dumps(body)


def test_audit_without_a_subscription_is_a_clear_503(functions, monkeypatch, azurite):
    for var in ("HAIRPIN_SUBSCRIPTIONS", "AZURE_SUBSCRIPTION_ID", "HAIRPIN_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    status, body = call(functions, "get_audit", "/api/audit?fresh=true")
    assert status == 503
    assert body["error"]["code"] == "Unavailable"
    assert "Traceback" not in json.dumps(body)
