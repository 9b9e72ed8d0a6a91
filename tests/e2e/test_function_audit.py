"""The audit's Functions triggers: bindings as the host indexes them, the timer run against the
ARM emulator and Azurite (dated blobs + index), and GET /api/audit as JSON and HTML."""

from __future__ import annotations

import importlib.util
import json
import re

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.core.schedule import validate_ncrontab
from shared.settings import Settings
from tests.support.paths import ROOT
from tests.support.report_page import embedded


@pytest.fixture(scope="module")
def functions() -> dict:
    """Indexed functions of a private copy of function_app: `get_functions()` may be called
    only once per FunctionApp instance, and other test modules index the shared one."""
    spec = importlib.util.spec_from_file_location("function_app_for_audit_tests",
                                                  ROOT / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): f for f in module.app.get_functions()}


def binding(function, kind: str) -> dict:
    found = [b.get_dict_repr() for b in function.get_bindings() if b.type == kind]
    assert len(found) == 1, kind
    return found[0]


def test_timer_binding_reads_the_schedule_from_app_settings(functions):
    timer = binding(functions["scheduled_audit"], "timerTrigger")
    assert timer["schedule"] == "%HAIRPIN_AUDIT_SCHEDULE%"
    assert timer["runOnStartup"] is False
    assert timer["name"] == "timer"
    # The app setting the expression names exists in Settings, with a valid default.
    assert "HAIRPIN_AUDIT_SCHEDULE" in Settings.ENV_VARS
    assert validate_ncrontab(Settings().audit_schedule) == "0 0 */6 * * *"


def test_http_binding_is_get_api_audit_with_function_key(functions):
    http = binding(functions["get_audit"], "httpTrigger")
    assert http["route"] == "audit"
    assert [str(m.value) for m in http["methods"]] == ["GET"]
    assert http["authLevel"] == func.AuthLevel.FUNCTION
    assert binding(functions["get_audit"], "http")["name"] == "$return"


@pytest.fixture
def estate(emulator, storage_ns, monkeypatch):
    """Emulator (default scenario) + Azurite, configured through app settings as in Azure."""
    emu = emulator("default", lro_polls=0)
    for key, value in {
        "HAIRPIN_STORAGE_CONNECTION": storage_ns.connection_string,
        "HAIRPIN_STORAGE_PREFIX": storage_ns.prefix,
        "HAIRPIN_AUDIT_SCHEDULE": "0 */5 * * * *",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HAIRPIN_SUBSCRIPTIONS", raising=False)  # AZURE_SUBSCRIPTION_ID is used
    monkeypatch.delenv("HAIRPIN_USE_RESOURCE_GRAPH", raising=False)
    return emu, storage_ns.blob_service().get_container_client(storage_ns.container("reports"))


def get(functions, accept: str | None = None, **params) -> func.HttpResponse:
    headers = {"Accept": accept} if accept else {}
    request = func.HttpRequest("GET", "http://localhost/api/audit", headers=headers,
                               params=params, body=b"")
    return functions["get_audit"].get_user_function()(request)


@pytest.mark.azurite
def test_timer_writes_dated_json_and_html_and_keeps_the_index(functions, estate):
    emu, container = estate
    run = functions["scheduled_audit"].get_user_function()
    run(TimerRequest(past_due=False))
    run(TimerRequest(past_due=True))

    names = sorted(b.name for b in container.list_blobs())
    dated = [n for n in names if n != "reports/index.json"]
    assert "reports/index.json" in names and len(dated) == 4
    assert all(re.fullmatch(r"reports/\d{4}/\d{2}/\d{2}/\d{8}T\d{6}Z-[0-9a-f]{6}\.(json|html)", n)
               for n in dated)
    index = json.loads(container.download_blob("reports/index.json").readall())
    assert len(index) == 2 and index[0]["at"] >= index[1]["at"]
    newest = index[0]
    assert newest["summary"]["by_severity"] == {"high": 2, "medium": 2, "info": 0}
    assert newest["summary"]["trend"] == {"new": 0, "resolved": 0, "unchanged": 4, "new_high": 0}
    assert "trend" not in index[1]["summary"]
    report = json.loads(container.download_blob(newest["paths"]["json"]).readall())
    hs_vm1 = [f for f in report["findings"] if f["vm_name"] == "hs-vm1"]
    assert [(f["severity"], f["frontend_ip"], f["likelihood"]) for f in hs_vm1] == [
        ("high", "10.0.1.100", 1.0), ("high", "10.0.1.101", 1.0)]
    assert report["scope"]["subscriptions"] == [emu.subscription_id]
    html = container.get_blob_client(newest["paths"]["html"])
    assert html.get_blob_properties().content_settings.content_type.startswith("text/html")
    assert b'id="hairpin-data"' in html.download_blob().readall()
    assert not emu.requests.writes()  # an audit never changes the estate


@pytest.mark.azurite
def test_get_audit_returns_latest_fresh_or_html(functions, estate):
    _, container = estate
    functions["scheduled_audit"].get_user_function()(TimerRequest())
    index = json.loads(container.download_blob("reports/index.json").readall())
    stored = json.loads(container.download_blob(index[0]["paths"]["json"]).readall())

    latest = get(functions, "application/json")
    assert latest.status_code == 200 and latest.mimetype == "application/json"
    assert json.loads(latest.get_body()) == stored

    fresh = get(functions, fresh="true")
    body = json.loads(fresh.get_body())
    assert body["generated_at"] != stored["generated_at"]
    assert body["findings"] == stored["findings"]
    assert len(json.loads(container.download_blob("reports/index.json").readall())) == 1

    page = get(functions, "text/html,application/xhtml+xml,*/*;q=0.8")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.get_body() == container.download_blob(index[0]["paths"]["html"]).readall()
    fresh_page = get(functions, "text/html", fresh="1")
    assert fresh_page.get_body().startswith(b"<!DOCTYPE html>")
    pictures = embedded(fresh_page.get_body())["pictures"]
    assert any('data-vm="hs-vm1"' in svg for svg in pictures.values())


@pytest.mark.azurite
def test_get_audit_before_any_run_audits_now(functions, estate):
    _, container = estate
    response = get(functions)
    assert response.status_code == 200
    assert json.loads(response.get_body())["summary"]["by_severity"]["high"] == 2
    assert [b.name for b in container.list_blobs()] == []  # a GET stores nothing


@pytest.mark.azurite
def test_timer_uses_resource_graph_when_the_settings_say_so(functions, estate, monkeypatch):
    emu, container = estate
    monkeypatch.setenv("HAIRPIN_USE_RESOURCE_GRAPH", "true")
    functions["scheduled_audit"].get_user_function()(TimerRequest())
    index = json.loads(container.download_blob("reports/index.json").readall())
    report = json.loads(container.download_blob(index[0]["paths"]["json"]).readall())
    assert report["scope"]["source"] == "resource_graph"
    assert emu.requests.count("POST", action="Microsoft.ResourceGraph/resources/read") == 1
