"""Hardening (issue 12 items 5, 11) through the Functions triggers themselves (a private copy of
function_app.py, invoked with azure.functions objects) against the emulator and Azurite."""

from __future__ import annotations

import importlib.util
import json

import azure.functions as func
import pytest

from tests.support.paths import ROOT
from tests.support.remediation import VM1

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def functions() -> dict:
    spec = importlib.util.spec_from_file_location("function_app_for_hardening_tests",
                                                  ROOT / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): f for f in module.app.get_functions()}


@pytest.fixture
def app_env(emulator, storage_ns, monkeypatch):
    emu = emulator("default", lro_retry_after=1, lro_polls=0)  # rule health: quick LROs
    monkeypatch.setenv("HAIRPIN_ARM_ENDPOINT", emu.base_url)
    monkeypatch.setenv("AzureWebJobsStorage", storage_ns.connection_string)
    monkeypatch.setenv("HAIRPIN_STORAGE_PREFIX", storage_ns.prefix)
    monkeypatch.delenv("HAIRPIN_SUBSCRIPTIONS", raising=False)
    return emu


def test_hardening_health_is_ok_with_only_the_ambient_subscription(functions, app_env,
                                                                   monkeypatch):
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", app_env.subscription_id)
    req = func.HttpRequest("GET", "/api/health", headers={}, body=b"")
    resp = functions["health_check"].get_user_function()(req)
    body = json.loads(resp.get_body())
    assert resp.status_code == 200 and body["status"] == "ok", body
    assert body["checks"]["arm"] == {"reachable": True}


def post(functions, body: bytes, headers: dict) -> tuple[int, dict]:
    req = func.HttpRequest("POST", "http://localhost/api/fix", headers=headers, body=body)
    resp = functions["fix_post"].get_user_function()(req)
    return resp.status_code, json.loads(resp.get_body())


def test_hardening_fix_trigger_answers_hostile_headers_with_4xx(functions, app_env,
                                                                monkeypatch):
    monkeypatch.setenv("HAIRPIN_SUBSCRIPTIONS", app_env.subscription_id)
    body = json.dumps({"vm_id": VM1}).encode()
    assert post(functions, body, {"content-type": "text/plain"})[0] == 415
    status, answer = post(functions, body, {"content-type": "application/json",
                                            "x-ms-client-principal": "p" * 40_000})
    assert status == 200, answer  # a dry run: the principal is read only to approve
    assert post(functions, body, {"content-type": "application/json"})[0] == 200
