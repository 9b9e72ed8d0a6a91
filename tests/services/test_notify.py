"""Notifications: CloudEvents published with azure-eventgrid's EventGridPublisherClient to a
local HTTPS topic (trustme certificate) that checks the `aeg-sas-key` header, the CloudEvents
envelope and the documented `data` schema; a failing topic never fails the caller."""

from __future__ import annotations

import json
import re
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
import trustme
from azure.core.credentials import AzureKeyCredential

from shared.core.journal import Trigger
from shared.core.remediation.outcome import Outcome, VmOutcome
from shared.core.vocab import Status, TriggerKind
from shared.services import notify
from shared.services.notify import DATA_SCHEMA, EVENT_TYPES, Notifier
from tests.support.paths import ROOT

KEY = "test-topic-key-0123456789abcdef"
VM = ("/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-test/providers/"
      "Microsoft.Compute/virtualMachines/vm1")
TRIGGER = Trigger(TriggerKind.EVENT, "evt-1", "ops@contoso.com")
_CLOUD_EVENT_REQUIRED = ("specversion", "id", "source", "type")


class Topic:
    """A local Event Grid topic: HTTPS on 127.0.0.1, `aeg-sas-key` auth, schema checks."""

    def __init__(self, tmp_path: Path, *, status: int = 200) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = tmp_path / "topic-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self.status = status
        self.received: list[dict] = []
        self.rejected: list[str] = []
        self.requests = 0
        topic = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - http.server naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                topic.requests += 1
                if topic.status != 200:
                    return self._answer(topic.status, {"error": {"code": "InternalError"}})
                if self.headers.get("aeg-sas-key") != KEY:
                    topic.rejected.append("bad or missing aeg-sas-key")
                    return self._answer(401, {"error": {"code": "Unauthorized"}})
                ctype = self.headers.get("Content-Type", "")
                if not ctype.startswith("application/cloudevents-batch+json"):
                    topic.rejected.append(f"content type {ctype}")
                    return self._answer(400, {"error": {"code": "BadRequest"}})
                try:
                    events = json.loads(raw)
                    assert isinstance(events, list) and events
                    for e in events:
                        topic.check(e)
                except (AssertionError, ValueError, jsonschema.ValidationError) as exc:
                    topic.rejected.append(str(exc)[:300])
                    return self._answer(400, {"error": {"code": "BadRequest"}})
                topic.received.extend(events)
                return self._answer(200)

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{self.server.server_address[1]}/api/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def check(e: dict) -> None:
        for name in _CLOUD_EVENT_REQUIRED:
            assert isinstance(e.get(name), str) and e[name], f"CloudEvent without {name}"
        assert e["specversion"] == "1.0"
        assert e["type"] in EVENT_TYPES, e["type"]
        assert re.match(r"^\d{4}-\d\d-\d\dT", e["time"])
        assert e.get("datacontenttype") == "application/json"
        jsonschema.Draft202012Validator(DATA_SCHEMA, format_checker=jsonschema.FormatChecker(
        )).validate(e["data"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def topic(tmp_path, monkeypatch):
    t = Topic(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(t.ca_path))  # trust the local topic's CA
    yield t
    t.close()


def notifier(endpoint: str, key: str = KEY) -> Notifier:
    return Notifier(endpoint, AzureKeyCredential(key), send_kwargs={"retry_total": 0})


def test_schema_is_valid_and_documented():
    jsonschema.Draft202012Validator.check_schema(DATA_SCHEMA)
    doc = (ROOT / "docs" / "notifications.md").read_text()
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in doc
    documented = json.loads(re.search(r"```json\n(\{.*?\n\})\n```", doc, re.S).group(1))
    assert documented == json.loads(json.dumps(DATA_SCHEMA))


def test_every_type_is_published_and_received(topic):
    n = notifier(topic.endpoint)
    finding = SimpleNamespace(id="hp-0123456789abcdef0123", vm_id=VM, frontend_ip="10.0.1.100",
                              severity="high", reason="vm1 calls its own VIP")
    assert n.finding_opened(finding, TRIGGER)
    applied = Outcome(Status.APPLIED, ["fixed"], operation_id="op-1", plan_hash="ab" * 32,
                      vms=[VmOutcome(VM, "vm1", verification=[
                          {"vip": "10.0.1.100", "port": 1972, "ok": 20, "total": 20}])])
    assert n.outcome(applied, TRIGGER) == [notify.REMEDIATION_APPLIED,
                                           notify.REMEDIATION_VERIFIED]
    assert n.outcome(applied, Trigger(TriggerKind.SWEEP), drift=["managed_nic_missing"]) == [
        notify.DRIFT_REPAIRED, notify.REMEDIATION_VERIFIED]
    assert n.outcome(Outcome(Status.PENDING, ["outside the window"]),
                     TRIGGER, vm_id=VM) == [notify.PLAN_PENDING]
    assert n.outcome(Outcome(Status.FAILED, ["boom"]), TRIGGER,
                     vm_id=VM) == [notify.REMEDIATION_FAILED]
    assert n.outcome(Outcome(Status.UNCHANGED), TRIGGER, vm_id=VM) == []
    assert n.sweep_completed({"sweep_id": "20261202T150000Z-abcdef", "complete": True,
                              "vms": 20, "drift": {"guest_routes": 1}}, TRIGGER)
    assert topic.rejected == []
    types = [e["type"] for e in topic.received]
    assert set(types) == set(EVENT_TYPES)
    assert n.published == len(types) == 8 and n.failed == 0
    opened = next(e for e in topic.received if e["type"] == notify.FINDING_OPENED)
    assert opened["subject"] == VM and opened["source"] == notify.SOURCE
    assert opened["data"]["vmName"] == "vm1" and opened["data"]["severity"] == "high"
    assert opened["data"]["findingIds"] == ["hp-0123456789abcdef0123"]
    assert opened["data"]["trigger"] == {"kind": "event", "eventId": "evt-1",
                                         "principal": "ops@contoso.com"}
    repaired = next(e for e in topic.received if e["type"] == notify.DRIFT_REPAIRED)
    assert repaired["data"]["drift"] == ["managed_nic_missing"]
    assert repaired["data"]["frontendIps"] == ["10.0.1.100"]
    swept = next(e for e in topic.received if e["type"] == notify.SWEEP_COMPLETED)
    assert (swept["id"], swept["subject"]) == ("sweep-20261202T150000Z-abcdef",
                                               "sweeps/20261202T150000Z-abcdef")
    assert swept["data"]["vmId"] is None and swept["data"]["drift"] == ["guest_routes"]
    assert swept["data"]["summary"].startswith("20 VMs")


def test_wrong_key_is_refused_by_the_topic_and_does_not_raise(topic):
    n = notifier(topic.endpoint, key="wrong")
    assert n.notify(notify.REMEDIATION_APPLIED, vm_id=VM, status="applied",
                    trigger=TRIGGER) is False
    assert n.failed == 1 and n.published == 0 and n.last_error
    assert topic.rejected == ["bad or missing aeg-sas-key"] and topic.received == []


@pytest.mark.parametrize("status", [500, 503])
def test_failing_topic_does_not_fail_the_caller(tmp_path, monkeypatch, status, caplog):
    t = Topic(tmp_path, status=status)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(t.ca_path))
    try:
        n = notifier(t.endpoint)
        assert n.outcome(Outcome(Status.FAILED, ["x"]), TRIGGER,
                         vm_id=VM) == []
        assert n.failed == 1 and t.requests >= 1
        assert any("not published" in r.getMessage() for r in caplog.records)
    finally:
        t.close()


def test_unreachable_topic_does_not_fail_the_caller():
    n = notifier("https://127.0.0.1:9/api/events")  # nothing listens on the discard port
    assert n.notify(notify.PLAN_PENDING, vm_id=VM, status="pending", trigger=TRIGGER) is False
    assert n.failed == 1


def test_no_topic_configured_means_no_notifier():
    from shared.settings import Settings

    assert Notifier.from_settings(Settings()) is None
    s = Settings(notify_topic_endpoint="https://t.westeurope-1.eventgrid.azure.net/api/events",
                 notify_topic_key=KEY)
    assert KEY not in repr(s)  # a secret never shows in logs of the settings
    n = Notifier.from_settings(s)
    assert isinstance(n._credential, AzureKeyCredential) and n.enabled


@pytest.mark.azurite
def test_event_driven_remediation_publishes_and_a_failing_topic_changes_nothing(
        topic, tmp_path, monkeypatch, emulator, storage_ns):
    from shared.services.events import EventProcessor
    from tests.support.events import (
        OWN_IDENTITY,
        VM1,
        RecordingRemediation,
        ago,
        arm_event,
        make_ctx,
        processor,
    )

    emu = emulator()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(topic.ca_path))
    ctx = make_ctx(emu, storage_ns)
    # One CA bundle for both local HTTPS servers (emulator and topic).
    bundle = tmp_path / "both.pem"
    bundle.write_text(Path(emu.ca_path).read_text() + topic.ca_path.read_text())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    ctx.notifier = notifier(topic.endpoint)
    rem = RecordingRemediation("applied")
    result = processor(ctx, rem).handle(
        arm_event("Microsoft.Compute/virtualMachines/write", VM1, at=ago(30)))
    assert result.remediations[0]["status"] == "applied"
    types = [e["type"] for e in topic.received]
    assert types == [notify.FINDING_OPENED, notify.REMEDIATION_APPLIED,
                     notify.REMEDIATION_VERIFIED]
    # The same finding is announced once, whatever the number of events.
    processor(ctx, rem).handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1))
    assert [e["type"] for e in topic.received].count(notify.FINDING_OPENED) == 1

    # A topic that fails: the remediation result is the same, the failure is counted.
    topic.status = 500
    ctx.notifier = notifier(topic.endpoint)
    later = EventProcessor(ctx, remediation=rem, identity=OWN_IDENTITY,  # a later window
                           now=lambda: datetime.now(UTC) + timedelta(minutes=5))
    again = later.handle(arm_event("Microsoft.Compute/virtualMachines/write", VM1))
    assert again.status == "evaluated" and again.remediations[0]["status"] == "applied"
    assert ctx.notifier.failed >= 1 and ctx.notifier.published == 0
