"""The Azure docs' sample events (subscription and resource-group system topics,
tests/fixtures/events/NOTICE.md) in both delivery schemas, decoded by `azure.functions`' own
Event Grid converter as the Functions host hands them to the trigger, then parsed, and
explained by `hairpin event`.

The CloudEvents 1.0 form is what Event Grid delivers with `eventDeliverySchema:
CloudEventSchemaV1_0`: `source` is the topic, `type` the event type, `time` the event time
(docs "CloudEvents v1.0 schema with Azure Event Grid"). `azure.functions` (1.26.0,
eventgrid.py `EventGridEventInConverter.decode`) turns a body with `specversion` into a
`CloudEvent` whose data is only reachable through `get_json()`.
"""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

from shared.cli.main import main
from shared.core import events as ev
from shared.core.events.dry_run import explain_payload
from shared.core.vocab import EventSchema
from tests.support.events import OWN, OWN_IDENTITY, as_cloud_event, claims_for
from tests.support.paths import ROOT

SAMPLES = ROOT / "tests" / "fixtures" / "events"
TOPICS = ["subscription-topic.json", "resource-group-topic.json"]
SUB = "5b4b650e-28b9-4790-b3ab-ddbd88d727c4"
RG = "rg-docs"
LB = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/loadBalancers/ilb"


def samples(name: str) -> list[dict]:
    return json.loads((SAMPLES / name).read_text())


def cloud(event: dict) -> dict:
    out = as_cloud_event(event)
    assert out["source"] == event["topic"]
    return out


def decoded(event: dict):
    """What the Functions host passes to the trigger for this body."""
    return EventGridEventInConverter.decode(Datum(json.dumps(event), "json"),
                                            trigger_metadata={})


def as_handled(event: dict, operation: str, subject: str) -> dict:
    """A docs sample with its placeholders filled and its resource one the app handles."""
    text = json.dumps(event).replace("{subscription-id}", SUB).replace(
        "{resource-group}", RG)
    out = json.loads(text)
    out["subject"] = out["data"]["resourceUri"] = out["data"]["authorization"]["scope"] = subject
    out["data"]["operationName"] = out["data"]["authorization"]["action"] = operation
    out["data"]["resourceProvider"] = "Microsoft.Network"
    return out


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("schema", list(EventSchema))
def test_docs_samples_decoded_by_azure_functions_are_parsed(topic, schema):
    for sample in samples(topic):
        body = cloud(sample) if schema is EventSchema.CLOUD_EVENTS else sample
        obj = decoded(body)
        expected_class = func.CloudEvent if schema is EventSchema.CLOUD_EVENTS else \
            func.EventGridEvent
        assert isinstance(obj, expected_class)
        parsed = ev.parse_event(obj)
        # Storage and Event Hubs operations: well-formed, not ours (acknowledged cheaply).
        assert isinstance(parsed, ev.Ignored), parsed
        assert parsed.operation == sample["data"]["operationName"]
        assert "is not handled" in parsed.reason


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("event_index, operation, subject", [
    (0, "Microsoft.Network/loadBalancers/backendAddressPools/write",
     f"{LB}/backendAddressPools/be"),
    (1, "Microsoft.Network/loadBalancers/frontendIPConfigurations/delete",
     f"{LB}/frontendIPConfigurations/fe-a"),
])
def test_handled_event_reads_the_same_in_both_schemas(topic, event_index, operation, subject):
    body = as_handled(samples(topic)[event_index], operation, subject)
    by_schema = {s: ev.parse_event(decoded(cloud(body) if s is EventSchema.CLOUD_EVENTS
                                           else body)) for s in EventSchema}
    grid, ce = by_schema[EventSchema.EVENT_GRID], by_schema[EventSchema.CLOUD_EVENTS]
    assert isinstance(grid, ev.ResourceEvent) and isinstance(ce, ev.ResourceEvent), by_schema
    assert grid.schema is EventSchema.EVENT_GRID and ce.schema is EventSchema.CLOUD_EVENTS
    assert grid.summary() | {"schema": None} == ce.summary() | {"schema": None}
    assert ce.scope == grid.scope == ev.Scope(lb_ids=frozenset({LB.lower()}))
    assert ce.event_time is not None and ce.event_time.year == 2018


def test_cloud_event_object_without_data_attribute_is_read_through_get_json():
    # azure.functions.CloudEvent keeps the data private: only get_json() returns it.
    body = cloud(as_handled(samples(TOPICS[0])[0],
                            "Microsoft.Network/loadBalancers/backendAddressPools/write",
                            f"{LB}/backendAddressPools/be"))
    obj = decoded(body)
    assert not hasattr(obj, "data") and obj.get_json() == body["data"]
    assert isinstance(ev.parse_event(obj), ev.ResourceEvent)


# --------------------------------------------------------------------------- hairpin event

def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["event", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("schema", list(EventSchema))
def test_hairpin_event_explains_the_docs_samples(capsys, tmp_path, monkeypatch, topic, schema):
    for name in ("HAIRPIN_IDENTITY_PRINCIPAL_ID", "HAIRPIN_IDENTITY_CLIENT_ID",
                 "HAIRPIN_IDENTITY_RESOURCE_ID", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    events = samples(topic)
    payload = [cloud(e) for e in events] if schema is EventSchema.CLOUD_EVENTS else events
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    code, out, _ = run_cli(capsys, str(path), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert [e["id"] for e in doc["events"]] == [e["id"] for e in events]
    for got, sample in zip(doc["events"], events, strict=True):
        assert got == {
            "id": sample["id"], "type": sample["eventType"],
            "operation": sample["data"]["operationName"], "subject": sample["subject"],
            "handled": False,
            "reason": f"operation {sample['data']['operationName']} is not handled",
            "scope": {"kind": None, "id": None}, "own_write": None}
    code, table, _ = run_cli(capsys, str(path))
    assert code == 0 and "3 event(s): 0 handled, 3 not" in table


def test_hairpin_event_json_for_handled_events_and_our_own_write(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HAIRPIN_IDENTITY_PRINCIPAL_ID", OWN.principal_id)
    base = samples(TOPICS[0])
    pool = as_handled(base[0], "Microsoft.Network/loadBalancers/backendAddressPools/write",
                      f"{LB}/backendAddressPools/be")
    subnet_id = (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/"
                 "virtualNetworks/vnet1/subnets/default")
    subnet = as_handled(base[0], "Microsoft.Network/virtualNetworks/subnets/write", subnet_id)
    subnet["id"] = "6b3f0c5e-1d2a-4c4e-9f00-5a1b2c3d4e5f"  # another event, not a redelivery
    ours = as_handled(base[2], "Microsoft.Compute/virtualMachines/start/action",
                      LB.replace("Microsoft.Network/loadBalancers/ilb",
                                 "Microsoft.Compute/virtualMachines/vm1"))
    ours["data"]["claims"], ours["data"]["authorization"]["evidence"] = claims_for("own", sub=SUB)
    path = tmp_path / "events.json"
    path.write_text(json.dumps([pool, cloud(subnet), ours]))
    code, out, _ = run_cli(capsys, str(path), "--format", "json")
    assert code == 0
    got = json.loads(out)["events"]
    assert [(e["handled"], e["scope"], e["own_write"]) for e in got] == [
        (True, {"kind": "lb", "id": LB}, False),
        (True, {"kind": "vnet", "id": subnet_id.rsplit("/subnets/", 1)[0]}, False),
        (True, {"kind": "vm", "id": ours["subject"]}, True),
    ]
    assert got[0]["reason"].startswith("backendAddressPools be written: re-read load balancer ilb")
    assert "subnet default" in got[1]["reason"]
    assert got[2]["reason"].endswith("our own write: evaluated, no remediation started")
    # The same verdicts as the pure core's (one code path).
    assert got == [v.as_dict() for v in explain_payload(path.read_bytes(), OWN_IDENTITY)]


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"), ("42", "expected an event object or an array")])
def test_hairpin_event_rejects_a_file_that_is_no_payload(capsys, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, _, err = run_cli(capsys, str(path))
    assert code == 2 and message in err


def test_a_repeated_event_id_is_a_duplicate(capsys, tmp_path):
    pool = as_handled(samples(TOPICS[0])[0],
                      "Microsoft.Network/loadBalancers/backendAddressPools/write",
                      f"{LB}/backendAddressPools/be")
    path = tmp_path / "twice.json"
    path.write_text(json.dumps([pool, cloud(pool)]))
    code, out, _ = run_cli(capsys, str(path), "--format", "json")
    first, second = json.loads(out)["events"]
    assert code == 0 and first["handled"] and not second["handled"]
    assert second["reason"].startswith("duplicate") and second["scope"] == first["scope"]


def test_hairpin_event_reports_malformed_events_without_stopping(capsys, tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([{"id": "x"}, {"eventType": "Microsoft.Storage.BlobCreated",
                                              "id": "y", "data": {}}]))
    code, out, _ = run_cli(capsys, str(path), "--format", "json")
    got = json.loads(out)["events"]
    assert code == 0 and [e["handled"] for e in got] == [False, False]
    assert got[0]["reason"].startswith("rejected: ")
    assert "not a resource event" in got[1]["reason"]


def test_hairpin_event_loads_no_azure_sdk(tmp_path):
    # "Reads no Azure": a fresh process explaining the docs' samples imports no azure.* module
    # (and so can open no connection to Azure).
    import subprocess
    import sys
    code = ("import sys, io, contextlib\n"
            "from shared.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['event', {str(SAMPLES / TOPICS[0])!r}, '--format', 'json'])\n"
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] == 'azure'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=60).stdout.split()
    assert out == ["0", "[]"], out
