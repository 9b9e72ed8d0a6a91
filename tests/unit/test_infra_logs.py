"""infra/main.json, Log Analytics part: the custom table and the DCR stream carry exactly the
columns the code writes (shared.core.log_rows.LOG_COLUMNS), the app may ingest (Monitoring
Metrics Publisher on the DCR) and is told where (app settings), the workbook shows the fleet
and the alert fires on new high findings; the queries name only real columns."""

from __future__ import annotations

import json
import re

import pytest

from shared.core.log_rows import LOG_COLUMNS, STREAM, TABLE
from shared.settings import Settings
from tests.support.log_analytics import app_template, resolve

UAMI_PRINCIPAL = "[reference(variables('identityId'), '2023-01-31').principalId]"
ALIASES = {"Findings", "Series", "High", "Medium", "Info", "VMs", "Items", "Blocked"}


@pytest.fixture(scope="module")
def tpl() -> dict:
    return app_template()


def one(tpl: dict, rtype: str) -> dict:
    (found,) = [r for r in tpl["resources"] if r["type"] == rtype]
    return found


def columns_named(query: str) -> set[str]:
    """Capitalised identifiers of a query (KQL's own words are lower case), minus strings."""
    query = re.sub(r"'[^']*'", "''", query)
    return set(re.findall(r"\b[A-Z][A-Za-z]*\b", query)) - {TABLE.split("_")[0], "CL"}


def test_table_and_stream_declare_the_columns_the_code_writes(tpl):
    table = one(tpl, "Microsoft.OperationalInsights/workspaces/tables")
    assert table["name"].endswith("variables('logTable'))]")
    assert tpl["variables"]["logTable"] == TABLE
    assert table["properties"]["plan"] == "Analytics"
    spelled = {"datetime": "dateTime"}  # the Tables API's spelling; a DCR says datetime
    assert resolve(tpl, table["properties"]["schema"]["columns"]) == [
        {"name": n, "type": spelled.get(t, t)} for n, t in LOG_COLUMNS]
    dcr = one(tpl, "Microsoft.Insights/dataCollectionRules")["properties"]
    assert list(dcr["streamDeclarations"]) == [STREAM]
    assert resolve(tpl, dcr["streamDeclarations"][STREAM]["columns"]) == [
        {"name": n, "type": t} for n, t in LOG_COLUMNS]
    assert dcr["dataFlows"] == [{"streams": [STREAM], "destinations": ["workspace"],
                                 "transformKql": "source", "outputStream": STREAM}]
    assert dcr["destinations"]["logAnalytics"] == [
        {"name": "workspace", "workspaceResourceId": "[variables('workspaceId')]"}]
    assert dcr["dataCollectionEndpointId"] == "[variables('dceId')]"
    for name, _ in LOG_COLUMNS:  # Log Analytics' column rules
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,44}", name)
        assert name.lower() not in {"type", "tenantid", "resource", "resourceid", "resourcename",
                                    "resourcetype", "subscriptionid"}


def test_the_identity_may_ingest_and_the_app_knows_where(tpl):
    (grant,) = [r for r in tpl["resources"]
                if r["type"] == "Microsoft.Authorization/roleAssignments"
                and "dataCollectionRules" in r["scope"]]
    assert grant["properties"]["principalId"] == UAMI_PRINCIPAL
    assert grant["properties"]["roleDefinitionId"].endswith(
        "variables('roles').monitoringMetricsPublisher)]")
    assert tpl["variables"]["roles"]["monitoringMetricsPublisher"] == (
        "3913510d-42f4-4e42-8a64-420c390055eb")
    cfg = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Web/sites/config"
               and "appsettings" in r["name"])
    s = cfg["properties"]
    assert s["HAIRPIN_LOGS_ENDPOINT"] == (
        "[reference(variables('dceId'), '2023-03-11').logsIngestion.endpoint]")
    assert s["HAIRPIN_LOGS_RULE_ID"] == "[reference(variables('dcrId'), '2023-03-11').immutableId]"
    assert resolve(tpl, s["HAIRPIN_LOGS_STREAM"]) == STREAM == Settings().logs_stream
    # the app starts only once it may ingest
    assert any("variables('dcrId')" in d and "roleAssignments" in d for d in cfg["dependsOn"])


def test_the_workbook_shows_the_fleet(tpl):
    wb = one(tpl, "Microsoft.Insights/workbooks")
    assert wb["kind"] == "shared" and wb["properties"]["category"] == "workbook"
    assert wb["properties"]["sourceId"] == "[variables('workspaceId')]"
    assert wb["properties"]["serializedData"] == "[string(variables('workbookContent'))]"
    content = tpl["variables"]["workbookContent"]
    json.dumps(content)  # serialisable as string() will
    items = {i["name"]: i["content"] for i in content["items"] if i["type"] == 3}
    assert set(items) == {"risk-by-subscription", "risk-by-lb", "risk-by-lb-over-time",
                          "pending-plans", "drift", "failed-verifications"}
    known = {name for name, _ in LOG_COLUMNS} | ALIASES
    for name, item in items.items():
        assert item["resourceType"] == "microsoft.operationalinsights/workspaces"
        assert "Hairpin_CL" in item["query"], name
        assert columns_named(item["query"]) <= known, (name, columns_named(item["query"]) - known)
    assert "Status == 'pending'" in items["pending-plans"]["query"]
    assert "Verified == false" in items["failed-verifications"]["query"]
    assert "Kind == 'drift'" in items["drift"]["query"]


def test_the_alert_fires_on_new_high_findings(tpl):
    alert = one(tpl, "Microsoft.Insights/scheduledQueryRules")["properties"]
    assert alert["scopes"] == ["[variables('workspaceId')]"] and alert["enabled"] is True
    (criterion,) = alert["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Count", "GreaterThan", 0)
    query = resolve(tpl, criterion["query"])
    assert "Severity == 'high'" in query and "Kind == 'finding'" in query
    assert "join kind=leftanti" in query  # new: not seen in the audits before
    assert columns_named(query) <= {name for name, _ in LOG_COLUMNS}
    # the query looks back 2 days: the rule's window must hold that much data
    assert alert["windowSize"] == "P2D" and "ago(2d)" in query
    assert alert["evaluationFrequency"] == "PT1H" and "ago(1h)" in query
