"""The emulator's data collection endpoint (Logs Ingestion API) through the real
`azure-monitor-ingestion` LogsIngestionClient: gzip bodies, bearer tokens for Azure Monitor,
the DCR's immutable ID and stream (from infra/main.json), RBAC on the DCR, the 1 MB limit."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.monitor.ingestion import LogsIngestionClient

from emulator.logs_ingestion import TELEMETRY_WRITE
from shared.core.log_rows import LOG_COLUMNS, STREAM
from tests.support.log_analytics import DCR_ID, add_template_rule

ROW = {"TimeGenerated": "2026-11-26T05:00:00Z", "Kind": "finding", "FindingId": "hp-1",
       "Severity": "high", "Likelihood": 1.0, "Blocked": False}


def client(emu) -> LogsIngestionClient:
    return LogsIngestionClient(emu.logs_endpoint, ManagedIdentityCredential(), retry_total=0)


def test_rows_posted_by_the_real_client_are_kept_with_the_declared_columns(emulator):
    emu = emulator()
    rule = add_template_rule(emu)
    rows = [dict(ROW, FindingId=f"hp-{i}") for i in range(3)]
    client(emu).upload(rule_id=rule, stream_name=STREAM, logs=rows)
    kept = emu.logs.rows[(rule, STREAM)]
    assert [r["FindingId"] for r in kept] == ["hp-0", "hp-1", "hp-2"]
    assert all(list(r) == [name for name, _ in LOG_COLUMNS] for r in kept)
    (seen,) = emu.logs.requests
    assert (seen.status, seen.encoding, seen.rows) == (204, "gzip", 3)
    assert seen.principal == emu.tokens.identities[0].principal_id
    assert seen.dropped == set() and seen.nulled == set()


def test_undeclared_columns_are_dropped_and_wrong_types_nulled_as_a_dcr_does(emulator):
    emu = emulator()
    rule = add_template_rule(emu)
    client(emu).upload(rule_id=rule, stream_name=STREAM,
                       logs=[dict(ROW, Extra="x", Likelihood="high")])
    (kept,) = emu.logs.rows[(rule, STREAM)]
    assert "Extra" not in kept and kept["Likelihood"] is None
    assert (emu.logs.requests[0].dropped, emu.logs.requests[0].nulled) == ({"Extra"},
                                                                         {"Likelihood"})


def test_unknown_rule_or_stream_is_refused(emulator):
    emu = emulator()
    rule = add_template_rule(emu)
    with pytest.raises(HttpResponseError) as unknown_rule:
        client(emu).upload(rule_id="dcr-00000000000000000000000000000000", stream_name=STREAM,
                           logs=[ROW])
    assert unknown_rule.value.status_code == 404
    with pytest.raises(HttpResponseError) as unknown_stream:
        client(emu).upload(rule_id=rule, stream_name="Custom-Other_CL", logs=[ROW])
    assert unknown_stream.value.status_code == 400
    assert unknown_stream.value.error.code == "InvalidStream"
    assert (rule, STREAM) not in emu.logs.rows


def test_without_monitoring_metrics_publisher_on_the_rule_the_upload_is_forbidden(emulator):
    ident = "11111111-1111-4111-8111-111111111111"
    emu = emulator(roles={ident: {"/subscriptions/00000000-0000-0000-0000-000000000001/"
                                  "resourceGroups/other": {TELEMETRY_WRITE}}})
    rule = add_template_rule(emu)
    with pytest.raises(HttpResponseError) as denied:
        client(emu).upload(rule_id=rule, stream_name=STREAM, logs=[ROW])
    assert denied.value.status_code == 403 and denied.value.error.code == "OperationFailed"
    assert "does not have access to ingest data" in denied.value.error.message
    emu.roles[ident][DCR_ID] = {TELEMETRY_WRITE}  # the role assignment the template makes
    client(emu).upload(rule_id=rule, stream_name=STREAM, logs=[ROW])
    assert len(emu.logs.rows[(rule, STREAM)]) == 1


def test_tokens_must_be_for_azure_monitor_and_bodies_gzip_and_at_most_1_mb(emulator):
    emu = emulator()
    rule = add_template_rule(emu)
    url = f"{emu.logs_endpoint}/dataCollectionRules/{rule}/streams/{STREAM}"
    params = {"api-version": "2023-01-01"}
    body = gzip.compress(json.dumps([ROW]).encode())

    def post(token: str | None, data: bytes, encoding: str | None = "gzip"):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if encoding:
            headers["Content-Encoding"] = encoding
        return requests.post(url, params=params, data=data, headers=headers,
                             verify=emu.ca_path, timeout=10)

    assert post(None, body).status_code == 401
    arm_token = emu.token_for()  # audience https://management.azure.com
    assert post(arm_token, body).json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    token = emu.token_for(audience="https://monitor.azure.com")
    assert post(token, b"not gzip").json()["error"]["code"] == "InvalidContentEncoding"
    assert post(token, b"x" * (1024 * 1024 + 1), None).status_code == 413
    assert post(token, gzip.compress(b'{"not": "an array"}')).status_code == 400
    assert requests.post(url, data=body, headers={"Authorization": f"Bearer {token}",
                                                  "Content-Encoding": "gzip"},
                         verify=emu.ca_path, timeout=10).status_code == 400  # no api-version
    assert post(token, body).status_code == 204
    assert len(emu.logs.rows[(rule, STREAM)]) == 1
