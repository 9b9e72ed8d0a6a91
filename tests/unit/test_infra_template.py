"""infra/main.json: schema, references, and the invariants that tie it to the code.

One source of truth in code, checked here against the template:
- every app setting the code reads (`Settings.ENV_VARS`) is set, except the ones in
  `NOT_SET` (with the reason);
- the custom roles' actions are `shared.core.permissions.AUDIT_ACTIONS` / `REMEDIATION_ACTIONS`;
- the event subscription's filters are `shared.core.events.types`;
- identities and role assignments point at each other; no secret or key literal anywhere.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from shared.core import permissions
from shared.core.approvals import APPROVER_ROLE
from shared.core.events import types as event_types
from shared.core.schedule import validate_ncrontab
from shared.settings import Settings
from tests.support.paths import FIXTURES, ROOT

INFRA = ROOT / "infra"
SCHEMAS = FIXTURES / "schemas"
MAIN = INFRA / "main.json"
PARAM_FILES = sorted(INFRA.glob("parameters.*.json"))

# Settings the code reads that the deployment deliberately does not set.
NOT_SET = {
    "HAIRPIN_NOTIFY_TOPIC_KEY": "the topic's access key is a secret: the topic has local auth "
                                "disabled and the identity has EventGrid Data Sender",
    "AZURE_SUBSCRIPTION_ID": "fallback for HAIRPIN_SUBSCRIPTIONS, which is set",
    "HAIRPIN_SWEEP_BUDGET_SECONDS": "code default (540 s) fits host.json's 10 min timeout",
    "HAIRPIN_SWEEP_RUN_COMMAND_INTERVAL_SECONDS": "code default (1 s between Run Commands)",
    "HAIRPIN_SWEEP_ITEM_BUDGET_SECONDS": "code default",
    "HAIRPIN_SWEEP_ITEM_VMS": "code default (500 VMs per Resource Graph work item)",
    "HAIRPIN_SWEEP_MAX_AGE_SECONDS": "code default (1 day)",
    "HAIRPIN_EVENT_BURST_WINDOW_SECONDS": "code default",
    "HAIRPIN_EVENT_CLOCK_SKEW_SECONDS": "code default",
    "HAIRPIN_EVENT_HANDOFF_TTL_SECONDS": "code default (30 min)",
    "HAIRPIN_AGENT_READY_TIMEOUT_SECONDS": "code default (5 min)",
    "HAIRPIN_P95_DEALLOCATE_SECONDS": "code default",
    "HAIRPIN_P95_ATTACH_SECONDS": "code default",
    "HAIRPIN_P95_START_SECONDS": "code default",
    "HAIRPIN_P95_AGENT_READY_SECONDS": "code default",
    "HAIRPIN_ARM_ENDPOINT": "emulator only; unset = public Azure Resource Manager",
    "HAIRPIN_METRICS_ENDPOINT": "code default: public Azure's regional metrics endpoint",
    "HAIRPIN_HEALTH_METRIC_THRESHOLD": "code default (50: more than half the probes succeeded)",
    "HAIRPIN_STORAGE_CONNECTION": "a connection string carries the account key; the app uses "
                                  "identity-based AzureWebJobsStorage__* instead",
    "AzureWebJobsStorage": "same: replaced by AzureWebJobsStorage__accountName/__credential/"
                           "__clientId (managed identity, shared keys disabled)",
    "WEBSITE_AUTH_ENABLED": "the platform sets it when App Service Authentication is on; as an "
                            "app setting it would override the platform's value (the host "
                            "lets app settings win) and make a client's principal header "
                            "trusted",
}
# Settings Flex Consumption rejects or ignores (runtime comes from functionAppConfig).
FLEX_FORBIDDEN = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION",
                  "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
                  "WEBSITE_CONTENTSHARE", "AzureWebJobsDashboard"}
# Resource types the template may use, with the API versions it was written against.
KNOWN_TYPES = {
    "Microsoft.Resources/resourceGroups": "2022-09-01",
    "Microsoft.Resources/deployments": "2022-09-01",
    "Microsoft.Authorization/roleDefinitions": "2022-04-01",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2023-01-31",
    "Microsoft.OperationalInsights/workspaces": "2023-09-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.Storage/storageAccounts": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "2023-05-01",
    "Microsoft.Storage/storageAccounts/tableServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/tableServices/tables": "2023-05-01",
    "Microsoft.Storage/storageAccounts/queueServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/queueServices/queues": "2023-05-01",
    "Microsoft.Web/serverfarms": "2024-04-01",
    "Microsoft.Web/sites": "2024-04-01",
    "Microsoft.Web/sites/config": "2024-04-01",
    "Microsoft.Web/sites/extensions": "2024-04-01",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "2024-04-01",
    "Microsoft.EventGrid/topics": "2022-06-15",
    "Microsoft.EventGrid/systemTopics": "2022-06-15",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": "2022-06-15",
    "Microsoft.Network/networkSecurityGroups": "2024-05-01",
    "Microsoft.Network/publicIPAddresses": "2024-05-01",
    "Microsoft.Network/natGateways": "2024-05-01",
    "Microsoft.Network/virtualNetworks": "2024-05-01",
    "Microsoft.Network/privateEndpoints": "2024-05-01",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": "2024-05-01",
    "Microsoft.Network/privateDnsZones": "2024-06-01",
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": "2024-06-01",
    "Microsoft.OperationalInsights/workspaces/tables": "2022-10-01",
    "Microsoft.Insights/dataCollectionEndpoints": "2023-03-11",
    "Microsoft.Insights/dataCollectionRules": "2023-03-11",
    "Microsoft.Insights/workbooks": "2023-06-01",
    "Microsoft.Insights/scheduledQueryRules": "2023-12-01",
}


# --------------------------------------------------------------------------- helpers

def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def main() -> dict:
    return load(MAIN)


def nested(template: dict) -> list[dict]:
    """Inline templates of Microsoft.Resources/deployments resources (recursively)."""
    out = []
    for res in template.get("resources", []):
        if res["type"] == "Microsoft.Resources/deployments" and "template" in res["properties"]:
            inner = res["properties"]["template"]
            out.append(inner)
            out.extend(nested(inner))
    return out


def app_template(main: dict) -> dict:
    """The resource-group template holding the app (the deployment named '<prefix>-app')."""
    for res in main["resources"]:
        if res["type"] == "Microsoft.Resources/deployments" and "-app'" in res["name"] \
                or res["name"] == "[variables('appDeployment')]":
            return res["properties"]["template"]
    raise AssertionError("no app deployment in main.json")


def of_type(template: dict, rtype: str) -> list[dict]:
    return [r for r in template["resources"] if r["type"].lower() == rtype.lower()]


def one(template: dict, rtype: str) -> dict:
    found = of_type(template, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {len(found)}"
    return found[0]


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def registry() -> Registry:
    """The vendored schemas under their upstream ids, so cross-file $refs resolve offline."""
    resources = []
    for name in ("deploymentTemplate.json", "subscriptionDeploymentTemplate.json",
                 "deploymentParameters.json"):
        doc = load(SCHEMAS / name)
        resources.append((doc["id"].rstrip("#"),
                          Resource.from_contents(doc, default_specification=DRAFT4)))
    return Registry().with_resources(resources)


def validator(name: str) -> jsonschema.Draft4Validator:
    schema = load(SCHEMAS / name)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, registry=registry())


def errors(v: jsonschema.Draft4Validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in v.iter_errors(doc)]


# --------------------------------------------------------------------------- schema

def test_main_is_a_subscription_template_valid_against_the_schema(main):
    assert main["$schema"] == ("https://schema.management.azure.com/schemas/2018-05-01/"
                               "subscriptionDeploymentTemplate.json#")
    assert errors(validator("subscriptionDeploymentTemplate.json"), main) == []


def test_nested_templates_are_valid_resource_group_templates(main):
    inner = nested(main)
    assert len(inner) >= 2  # the app, and the per-resource-group role assignment
    v = validator("deploymentTemplate.json")
    for template in inner:
        assert template["$schema"].endswith("/2019-04-01/deploymentTemplate.json#")
        assert errors(v, template) == []


def test_schema_rejects_what_arm_rejects(main):
    """The vendored schema is not vacuous: broken templates fail it."""
    v = validator("subscriptionDeploymentTemplate.json")
    assert errors(v, {**main, "contentVersion": "1.0"})
    assert errors(v, {**main, "resourcez": []})
    assert errors(v, {k: x for k, x in main.items() if k != "resources"})
    bad_param = json.loads(json.dumps(main))
    bad_param["parameters"]["mode"]["type"] = "text"
    assert errors(v, bad_param)
    no_name = json.loads(json.dumps(main))
    del no_name["resources"][0]["name"]
    assert errors(v, no_name)


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_files_match_the_schema_and_the_template(path, main):
    doc = load(path)
    assert errors(validator("deploymentParameters.json"), doc) == []
    declared = main["parameters"]
    unknown = set(doc["parameters"]) - set(declared)
    assert not unknown, f"{path.name} sets parameters main.json does not declare: {unknown}"
    missing = {n for n, p in declared.items() if "defaultValue" not in p} - set(doc["parameters"])
    assert not missing
    for name, entry in doc["parameters"].items():
        spec = declared[name]
        value = entry["value"]
        kinds = {"string": str, "int": int, "bool": bool, "object": dict, "array": list}
        kind = kinds[spec["type"]]
        assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), name
        if "allowedValues" in spec:
            assert value in spec["allowedValues"], name
        if "minValue" in spec:
            assert spec["minValue"] <= value <= spec["maxValue"], name


def test_both_parameter_files_exist():
    assert {p.name for p in PARAM_FILES} >= {"parameters.dev.json", "parameters.prod.json"}


# --------------------------------------------------------------------------- expressions

_REF = re.compile(r"\b(parameters|variables)\('([^']+)'\)")


def _check_expression(expr: str) -> None:
    assert expr.startswith("[") and expr.endswith("]")
    depth, quoted = 0, False
    body = expr[1:-1]
    i = 0
    while i < len(body):
        c = body[i]
        if c == "'":
            if quoted and i + 1 < len(body) and body[i + 1] == "'":
                i += 2  # escaped quote
                continue
            quoted = not quoted
        elif not quoted and c in "([":
            depth += 1
        elif not quoted and c in ")]":
            depth -= 1
            assert depth >= 0, f"unbalanced: {expr}"
        i += 1
    assert depth == 0 and not quoted, f"unbalanced: {expr}"


def _scopes(template: dict):
    """(template, the strings evaluated in its scope) for the template and each inline nested
    template (all nested templates use inner scope: their own parameters and variables)."""
    own = json.loads(json.dumps(template))
    inner = []
    for res in own.get("resources", []):
        if res["type"] == "Microsoft.Resources/deployments" and "template" in res["properties"]:
            scope = res["properties"].get("expressionEvaluationOptions", {}).get("scope")
            assert scope == "inner", "nested templates must evaluate in their own scope"
            inner.append(res["properties"]["template"])
            res["properties"]["template"] = {}
    yield template, list(strings(own))
    for nested_template in inner:
        yield from _scopes(nested_template)


def test_every_expression_is_balanced_and_names_declared_parameters_and_variables(main):
    checked = 0
    for template, texts in _scopes(main):
        params, variables = set(template.get("parameters", {})), set(template.get("variables", {}))
        for text in texts:
            if not (text.startswith("[") and text.endswith("]")) or text.startswith("[["):
                continue
            _check_expression(text)
            checked += 1
            for kind, name in _REF.findall(text):
                pool = params if kind == "parameters" else variables
                assert name in pool, f"{kind}('{name}') is not declared in its template: {text}"
        # every declared parameter is used (no dead knobs)
        used = {n for t in texts for k, n in _REF.findall(t) if k == "parameters"}
        assert params <= used, f"unused parameters: {params - used}"
    assert checked > 100


def test_resource_types_and_api_versions(main):
    for template in [main, *nested(main)]:
        for res in template["resources"]:
            assert res["type"] in KNOWN_TYPES, res["type"]
            assert res["apiVersion"] == KNOWN_TYPES[res["type"]], res["type"]


def test_depends_on_names_resources_of_the_same_template(main):
    for template in [main, *nested(main)]:
        types = {r["type"].lower() for r in template["resources"]}
        loops = {r["copy"]["name"] for r in template["resources"] if "copy" in r}
        variables = template.get("variables", {})
        for res in template["resources"]:
            for dep in res.get("dependsOn", []):
                if dep in loops:
                    continue
                m = re.fullmatch(r"\[variables\('(\w+)'\)\]", dep)
                if m:  # a variable holding a resourceId(...) expression
                    dep = variables[m.group(1)]
                m = re.match(r"\[(?:extensionResourceId\(.*?\), |subscriptionResourceId\(|"
                             r"resourceId\((?:parameters\('\w+'\), )?)'([\w./]+)'", dep)
                assert m, f"{res['type']}: dependsOn {dep!r} is not a resource id expression"
                assert m.group(1).lower() in types, f"{res['type']} depends on {m.group(1)}"


def test_nested_parameters_are_passed_exactly(main):
    for res in of_type(main, "Microsoft.Resources/deployments"):
        declared = res["properties"]["template"].get("parameters", {})
        passed = res["properties"].get("parameters", {})
        assert set(passed) == set(declared), res["name"]


# --------------------------------------------------------------------------- app settings

def app_settings(main: dict) -> dict:
    config = [r for r in of_type(app_template(main), "Microsoft.Web/sites/config")
              if "/appsettings'" in r["name"]]
    assert len(config) == 1
    return config[0]["properties"]


_ENV_NAME = re.compile(r"[\"'](HAIRPIN_[A-Z0-9_]+|AZURE_SUBSCRIPTION_ID|AZURE_CLIENT_ID)[\"']")


def env_vars_read_by_code() -> set[str]:
    """Settings.ENV_VARS plus every HAIRPIN_* (and AZURE_*) name quoted in the product code:
    some modules read tuning knobs and identity hints outside Settings."""
    names = set(Settings.ENV_VARS)
    for path in [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py")]:
        names |= set(_ENV_NAME.findall(path.read_text()))
    return names - NOT_ENV


# Quoted HAIRPIN_* strings in the code that are not environment variables.
NOT_ENV = {"HAIRPIN_ROUTES_EOF"}  # heredoc marker inside the Linux guest script


def test_every_setting_the_code_reads_is_set(main):
    settings = app_settings(main)
    read = env_vars_read_by_code()
    assert set(Settings.ENV_VARS) <= read and len(read) > len(Settings.ENV_VARS)
    expected = read - set(NOT_SET)
    missing = expected - set(settings)
    assert not missing, f"app settings missing from infra/main.json: {sorted(missing)}"
    assert set(NOT_SET) <= read, "NOT_SET names a setting the code no longer reads"
    assert not set(NOT_SET) & set(settings)
    assert not FLEX_FORBIDDEN & set(settings)


def test_identity_based_storage_and_monitoring_settings(main):
    s = app_settings(main)
    assert s["AzureWebJobsStorage__accountName"] == "[variables('storageName')]"
    assert s["AzureWebJobsStorage__credential"] == "managedidentity"
    client = "[reference(variables('identityId'), '2023-01-31').clientId]"
    assert s["AzureWebJobsStorage__clientId"] == client
    assert s["AZURE_CLIENT_ID"] == client  # DefaultAzureCredential -> the user-assigned identity
    # the identity that events name when the product itself wrote (loop prevention)
    assert s["HAIRPIN_IDENTITY_CLIENT_ID"] == client
    assert s["HAIRPIN_IDENTITY_PRINCIPAL_ID"] == UAMI_PRINCIPAL
    assert s["HAIRPIN_IDENTITY_RESOURCE_ID"] == "[variables('identityId')]"
    assert "ClientId={0};Authorization=AAD" in s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert "ConnectionString" in s["APPLICATIONINSIGHTS_CONNECTION_STRING"]


def test_mode_defaults_to_audit_and_audit_only_forces_it(main):
    assert main["parameters"]["mode"]["defaultValue"] == "audit"
    assert app_settings(main)["HAIRPIN_MODE"] == \
        "[if(parameters('auditOnly'), 'audit', parameters('mode'))]"
    for path in PARAM_FILES:
        assert load(path)["parameters"].get("mode", {"value": "audit"})["value"] == "audit"


def _settings_env(main: dict, overrides: dict) -> dict:
    """Evaluate the settings whose value is a plain function of one top-level parameter."""
    values = {n: p.get("defaultValue") for n, p in main["parameters"].items()}
    values.update(overrides)
    env = {}
    for name, expr in app_settings(main).items():
        m = re.fullmatch(r"\[(string\()?parameters\('(\w+)'\)\)?\]", expr)
        if m:
            value = values[m.group(2)]
            env[name] = json.dumps(value) if isinstance(value, dict) else str(value)
        m = re.fullmatch(r"\[if\(parameters\('(\w+)'\), 'true', 'false'\)\]", expr)
        if m:
            env[name] = "true" if values[m.group(1)] else "false"
    return env


@pytest.mark.parametrize("path", [None, *PARAM_FILES], ids=lambda p: p.name if p else "defaults")
def test_the_deployed_settings_parse(path, main):
    overrides = {} if path is None else {k: v["value"] for k, v in load(path)["parameters"].items()}
    env = _settings_env(main, overrides)
    assert len(env) >= 12
    settings = Settings.from_env(env)  # raises SettingsError on any bad value
    validate_ncrontab(settings.audit_schedule)
    validate_ncrontab(settings.sweep_schedule)


def test_containers_and_tables_are_the_ones_the_code_uses(main):
    tpl = app_template(main)
    v = tpl["variables"]
    # One prefix, given to the app as HAIRPIN_STORAGE_PREFIX; every name derives from it
    # exactly as shared/core/storage_names.py derives it.
    names = Settings().storage_names
    assert v["storagePrefix"] == names.prefix
    expected = {"reportContainer": "{0}-reports", "lockContainer": "{0}-locks",
                "journalTable": "{0}journal", "stateTable": "{0}state", "fixQueue": "{0}-fix",
                "deadLetterContainer": "{0}-deadletter", "sweepTable": "{0}sweeps",
                "sweepQueue": "{0}-sweep"}
    for variable, pattern in expected.items():
        assert v[variable] == f"[format('{pattern}', variables('storagePrefix'))]"
    assert (names.report_container, names.lock_container, names.journal_table,
            names.state_table, names.fix_queue, names.sweep_table, names.sweep_queue) == tuple(
        expected[k].format(names.prefix)
        for k in ("reportContainer", "lockContainer", "journalTable", "stateTable", "fixQueue",
                  "sweepTable", "sweepQueue"))
    s = app_settings(main)
    assert s["HAIRPIN_STORAGE_PREFIX"] == "[variables('storagePrefix')]"
    containers = one(tpl, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert containers["copy"]["count"] == "[length(variables('blobContainers'))]"
    assert set(v["blobContainers"]) == {"[variables('deploymentContainer')]",
                                        "[variables('reportContainer')]",
                                        "[variables('lockContainer')]",
                                        "[variables('deadLetterContainer')]"}
    assert set(v["tables"]) == {"[variables('journalTable')]", "[variables('stateTable')]",
                                "[variables('sweepTable')]"}
    # the queues the triggers read (on AzureWebJobsStorage): POST /api/fix and event handoffs
    # write the fix queue, the sweep timer the sweep queue (the host makes the poison queues)
    queues = of_type(tpl, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert sorted(q["name"] for q in queues) == [
        f"[format('{{0}}/default/{{1}}', variables('storageName'), variables('{q}'))]"
        for q in ("fixQueue", "sweepQueue")]


# --------------------------------------------------------------------------- hosting

def test_flex_consumption_python_311(main):
    tpl = app_template(main)
    plan = one(tpl, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True  # Linux
    site = one(tpl, "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    cfg = site["properties"]["functionAppConfig"]
    assert cfg["runtime"] == {"name": "python", "version": "3.11"}
    assert {"maximumInstanceCount", "instanceMemoryMB"} <= set(cfg["scaleAndConcurrency"])
    storage = cfg["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert "variables('deploymentContainer')" in storage["value"]
    assert storage["authentication"] == {"type": "UserAssignedIdentity",
                                         "userAssignedIdentityResourceId": UAMI_ID}
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["ftpsState"] == "Disabled"
    # no publishing passwords: FTP and SCM basic auth off (deploy with Entra ID / onedeploy)
    policies = of_type(tpl, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(p["name"] for p in policies) == ["[format('{0}/ftp', variables('siteName'))]",
                                                   "[format('{0}/scm', variables('siteName'))]"]
    assert all(p["properties"] == {"allow": False} for p in policies)


def test_storage_allows_no_shared_key_and_no_public_blobs(main):
    acct = one(app_template(main), "Microsoft.Storage/storageAccounts")["properties"]
    assert acct["allowSharedKeyAccess"] is False
    assert acct["allowBlobPublicAccess"] is False
    assert acct["minimumTlsVersion"] == "TLS1_2" and acct["supportsHttpsTrafficOnly"] is True


def test_application_insights_on_log_analytics_with_entra_ingestion(main):
    tpl = app_template(main)
    ai = one(tpl, "Microsoft.Insights/components")
    assert "Microsoft.OperationalInsights/workspaces" in ai["properties"]["WorkspaceResourceId"]
    assert ai["properties"]["DisableLocalAuth"] is True
    one(tpl, "Microsoft.OperationalInsights/workspaces")


# --------------------------------------------------------------------------- identities and roles

UAMI_PRINCIPAL = "[reference(variables('identityId'), '2023-01-31').principalId]"
UAMI_ID = "[variables('identityId')]"


def test_one_user_assigned_identity_used_everywhere(main):
    tpl = app_template(main)
    ident = one(tpl, "Microsoft.ManagedIdentity/userAssignedIdentities")
    assert ident["name"] == "[variables('identityName')]"
    assert tpl["variables"]["identityId"] == (
        "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', "
        "variables('identityName'))]")
    site = one(tpl, "Microsoft.Web/sites")
    assert site["identity"] == {"type": "UserAssigned",
                                "userAssignedIdentities": {"[variables('identityId')]": {}}}
    assert tpl["outputs"]["principalId"]["value"] == UAMI_PRINCIPAL
    # the system topic (infra/eventgrid.json) gets the same identity from main's output
    assert main["outputs"]["identityResourceId"]["value"].endswith("outputs.identityId.value]")


def test_data_role_assignments_on_the_app_resources(main):
    tpl = app_template(main)
    roles = tpl["variables"]["roles"]
    assert sorted(roles.values()) == sorted(permissions.DATA_ROLES.values())
    assignments = of_type(tpl, "Microsoft.Authorization/roleAssignments")
    granted = {}
    for a in assignments:
        assert a["properties"]["principalId"] == UAMI_PRINCIPAL
        assert a["properties"]["principalType"] == "ServicePrincipal"
        assert "[variables('identityId')]" in a["dependsOn"]
        scope_type = re.match(r"\[format\('([\w./]+)/\{0\}'", a["scope"]).group(1)
        # the scope names a resource this template creates
        assert of_type(tpl, scope_type), scope_type
        if "copy" in a:
            for key in tpl["variables"][a["copy"]["count"].split("'")[1]]:
                granted.setdefault(scope_type, set()).add(key)
        else:
            granted.setdefault(scope_type, set()).add(
                re.search(r"variables\('roles'\)\.(\w+)\)\]$",
                          a["properties"]["roleDefinitionId"]).group(1))
    assert granted == {
        "Microsoft.Storage/storageAccounts": {"storageBlobDataOwner",
                                              "storageTableDataContributor",
                                              "storageQueueDataContributor"},
        "Microsoft.Insights/components": {"monitoringMetricsPublisher"},
        "Microsoft.Insights/dataCollectionRules": {"monitoringMetricsPublisher"},
        "Microsoft.EventGrid/topics": {"eventGridDataSender"},
    }
    # the app starts only after it may read its storage
    site = one(tpl, "Microsoft.Web/sites")
    assert "storageRoleAssignments" in site["dependsOn"]


def test_custom_roles_equal_shared_permissions(main):
    v = main["variables"]
    assert v["auditActions"] == list(permissions.AUDIT_ACTIONS)
    assert v["remediationActions"] == list(permissions.REMEDIATION_ACTIONS)
    defs = {r["name"]: r for r in of_type(main, "Microsoft.Authorization/roleDefinitions")}
    remediator = defs["[variables('remediatorRoleGuid')]"]
    auditor = defs["[variables('auditorRoleGuid')]"]
    assert remediator["condition"] == "[not(parameters('auditOnly'))]"
    assert auditor["condition"] == "[parameters('auditOnly')]"
    reader = defs["[variables('readerRoleGuid')]"]
    assert reader["condition"] == "[not(variables('subscriptionScope'))]"
    assert v["subscriptionReadActions"] == list(permissions.SUBSCRIPTION_READ_ACTIONS)
    assert all(permissions.is_read_only(a) for a in permissions.SUBSCRIPTION_READ_ACTIONS)
    assert set(permissions.SUBSCRIPTION_READ_ACTIONS) <= set(permissions.REMEDIATION_ACTIONS)
    assert len(defs) == 3
    for role, var in ((remediator, "remediationActions"), (auditor, "auditActions"),
                      (reader, "subscriptionReadActions")):
        props = role["properties"]
        assert props["type"] == "CustomRole"
        assert props["permissions"] == [{"actions": f"[variables('{var}')]", "notActions": [],
                                         "dataActions": [], "notDataActions": []}]
        assert props["assignableScopes"] == ["[subscription().id]"]
    # least privilege: no wildcards, audit is read-only, remediation = audit + the writes
    for action in permissions.REMEDIATION_ACTIONS:
        assert "*" not in action
    assert all(permissions.is_read_only(a) for a in permissions.AUDIT_ACTIONS)
    assert set(permissions.REMEDIATION_ACTIONS) == \
        set(permissions.AUDIT_ACTIONS) | set(permissions.WRITE_ACTIONS)
    for linked in permissions.LINKED_ACTIONS.values():
        assert set(linked) <= set(permissions.WRITE_ACTIONS)


def test_role_assignment_at_subscription_or_listed_resource_groups(main):
    v = main["variables"]
    assert v["roleGuid"] == ("[if(parameters('auditOnly'), variables('auditorRoleGuid'), "
                             "variables('remediatorRoleGuid'))]")
    assert v["roleDefinitionId"] == ("[subscriptionResourceId('Microsoft.Authorization/"
                                     "roleDefinitions', variables('roleGuid'))]")
    principal = "[reference(variables('appDeploymentId'), '2022-09-01').outputs.principalId.value]"
    assignments = of_type(main, "Microsoft.Authorization/roleAssignments")
    assert len(assignments) == 2
    sub = next(a for a in assignments if a["condition"] == "[variables('subscriptionScope')]")
    read = next(a for a in assignments if a is not sub)
    # resource-group scope: writes in the groups, reads (reader role) at subscription scope
    assert read["condition"] == "[not(variables('subscriptionScope'))]"
    assert read["properties"]["roleDefinitionId"] == (
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
        "variables('readerRoleGuid'))]")
    assert read["properties"]["principalId"] == sub["properties"]["principalId"]
    assert v["subscriptionScope"] == "[empty(parameters('scopeResourceGroups'))]"
    assert sub["properties"]["roleDefinitionId"] == "[variables('roleDefinitionId')]"
    assert sub["properties"]["principalId"] == principal
    assert "[variables('appDeploymentId')]" in sub["dependsOn"]
    assert ("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
            "variables('readerRoleGuid'))]") in read["dependsOn"]
    for guid in ("remediatorRoleGuid", "auditorRoleGuid"):
        dep = (f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
               f"variables('{guid}'))]")
        assert dep in sub["dependsOn"]
    scoped = [r for r in of_type(main, "Microsoft.Resources/deployments") if "copy" in r]
    assert len(scoped) == 1
    rg = scoped[0]
    assert rg["copy"]["count"] == "[length(parameters('scopeResourceGroups'))]"
    assert rg["resourceGroup"] == "[parameters('scopeResourceGroups')[copyIndex()]]"
    assert rg["properties"]["parameters"]["principalId"]["value"] == principal
    assert rg["properties"]["parameters"]["roleDefinitionId"]["value"] == \
        "[variables('roleDefinitionId')]"
    inner = one(rg["properties"]["template"], "Microsoft.Authorization/roleAssignments")
    assert inner["properties"]["principalId"] == "[parameters('principalId')]"
    assert inner["properties"]["roleDefinitionId"] == "[parameters('roleDefinitionId')]"
    # the principal the outer template assigns is the app's user-assigned identity
    assert app_template(main)["outputs"]["principalId"]["value"] == UAMI_PRINCIPAL
    # a resource-group-scoped identity cannot list a whole subscription: use Resource Graph
    app = [r for r in of_type(main, "Microsoft.Resources/deployments") if "copy" not in r][0]
    assert app["properties"]["parameters"]["useResourceGraph"]["value"] == \
        "[or(parameters('useResourceGraph'), not(variables('subscriptionScope')))]"


# --------------------------------------------------------------------------- Event Grid

def _event_grid_functions() -> set[str]:
    """Names of the Event Grid-triggered functions in function_app.py (read with ast: the
    FunctionApp's get_functions() may be called only once per instance)."""
    tree = ast.parse((ROOT / "function_app.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        decorators = [d for d in node.decorator_list if isinstance(d, ast.Call)]
        attrs = {getattr(d.func, "attr", "") for d in decorators}
        if "event_grid_trigger" in attrs:
            name = node.name
            for d in decorators:
                if getattr(d.func, "attr", "") == "function_name":
                    arg = (d.args or [kw.value for kw in d.keywords if kw.arg == "name"])[0]
                    name = arg.value
            names.add(name)
    return names


EVENTGRID = INFRA / "eventgrid.json"


@pytest.fixture(scope="module")
def eventgrid() -> dict:
    return load(EVENTGRID)


def test_eventgrid_template_is_a_valid_resource_group_template(eventgrid):
    assert eventgrid["$schema"].endswith("/2019-04-01/deploymentTemplate.json#")
    assert errors(validator("deploymentTemplate.json"), eventgrid) == []
    for res in eventgrid["resources"]:
        assert res["apiVersion"] == KNOWN_TYPES[res["type"]], res["type"]


def test_event_subscription_filters_equal_the_handled_events(eventgrid):
    v = eventgrid["variables"]
    assert v["handledEventTypes"] == list(event_types.HANDLED_EVENT_TYPES)
    assert v["handledOperations"] == list(event_types.ALL_HANDLED_OPERATIONS)
    sub = one(eventgrid, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    f = sub["properties"]["filter"]
    assert f["includedEventTypes"] == "[variables('handledEventTypes')]"
    assert f["advancedFilters"] == [{"operatorType": "StringIn", "key": "data.operationName",
                                     "values": "[variables('handledOperations')]"}]
    # Event Grid limits: 25 values across advanced filters, 5 filters
    assert len(event_types.ALL_HANDLED_OPERATIONS) <= 25


def test_system_topic_on_the_subscription_with_retry_and_dead_letter(eventgrid):
    topic = one(eventgrid, "Microsoft.EventGrid/systemTopics")
    assert topic["location"] == "global"
    assert topic["properties"] == {"source": "[subscription().id]",
                                   "topicType": "Microsoft.Resources.Subscriptions"}
    assert topic["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {
        "[parameters('identityResourceId')]": {}}}
    sub = one(eventgrid, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    p = sub["properties"]
    assert p["destination"]["endpointType"] == "AzureFunction"
    assert p["destination"]["properties"]["resourceId"] == (
        "[resourceId('Microsoft.Web/sites/functions', parameters('functionAppName'), "
        "parameters('eventFunctionName'))]")
    assert p["eventDeliverySchema"] == "EventGridSchema"
    assert set(p["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
    dl = p["deadLetterWithResourceIdentity"]
    assert dl["identity"] == {"type": "UserAssigned",
                              "userAssignedIdentity": "[parameters('identityResourceId')]"}
    assert dl["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dl["deadLetterDestination"]["properties"] == {
        "resourceId": "[parameters('deadLetterStorageAccountId')]",
        "blobContainerName": "[parameters('deadLetterContainer')]"}


def test_main_does_not_subscribe_events_in_the_deployment_that_uploads_code(main):
    """First-run timing (Azure/Azure-Functions#1004, Azure/azure-cli#11176): Event Grid
    validates an AzureFunction endpoint when the subscription is created, and the function and
    its system key exist only after the code is up. So the subscription is a separate step
    (scripts/deploy.sh step 3 deploys infra/eventgrid.json), as in Microsoft's Flex + Event Grid
    sample, and main.json (which may upload code through onedeploy) holds no Event Grid
    subscription and no system topic."""
    for template in [main, *nested(main)]:
        types = {r["type"] for r in template["resources"]}
        assert "Microsoft.EventGrid/systemTopics/eventSubscriptions" not in types
        assert "Microsoft.EventGrid/systemTopics" not in types
    for name in ("deployEventSubscription", "codeAlreadyPublished"):
        assert name not in main["parameters"]
    onedeploy = one(app_template(main), "Microsoft.Web/sites/extensions")
    assert onedeploy["condition"] == "[not(empty(parameters('packageUri')))]"
    # a prebuilt package (make package): the host runs it as is
    assert onedeploy["properties"] == {"packageUri": "[parameters('packageUri')]",
                                       "remoteBuild": False}


def test_main_outputs_everything_the_event_subscription_step_needs(main, eventgrid):
    """scripts/deploy.sh passes main.json's outputs to infra/eventgrid.json."""
    required = {n for n, p in eventgrid["parameters"].items() if "defaultValue" not in p}
    assert required == {"functionAppName", "identityResourceId", "deadLetterStorageAccountId"}
    outputs = main["outputs"]
    for name in ("functionAppName", "identityResourceId", "storageAccountId", "systemTopicName",
                 "deadLetterContainer", "resourceGroup", "eventDelivery"):
        assert name in outputs, name
    tpl = app_template(main)
    assert tpl["outputs"]["identityId"]["value"] == "[variables('identityId')]"
    assert tpl["outputs"]["storageAccountId"]["value"] == "[variables('storageId')]"
    assert tpl["outputs"]["systemTopicName"]["value"] == "[variables('systemTopicName')]"
    # main.json derives it from the storage prefix (its default here)
    assert eventgrid["parameters"]["deadLetterContainer"]["defaultValue"] == \
        f"{tpl['variables']['storagePrefix']}-deadletter"
    assert "[variables('deadLetterContainer')]" in tpl["variables"]["blobContainers"]
    # the identity dead-letters into the app's storage (Blob Data Owner there)
    assert "storageBlobDataOwner" in tpl["variables"]["storageRoles"]


def test_event_function_name_matches_the_trigger_in_function_app(eventgrid):
    names = _event_grid_functions()
    assert names, "function_app.py has an Event Grid trigger"
    assert eventgrid["parameters"]["eventFunctionName"]["defaultValue"] in names


def test_notification_topic_is_optional_keyless_and_private_when_isolated(main):
    tpl = app_template(main)
    topic = one(tpl, "Microsoft.EventGrid/topics")
    assert topic["condition"] == "[parameters('deployNotificationTopic')]"
    assert topic["properties"]["disableLocalAuth"] is True  # Entra ID only: no aeg-sas-key
    assert topic["properties"]["inputSchema"] == "CloudEventSchemaV1_0"
    assert topic["properties"]["publicNetworkAccess"] == \
        "[if(variables('isolated'), 'Disabled', 'Enabled')]"
    assert "deployNotificationTopic" in app_settings(main)["HAIRPIN_NOTIFY_TOPIC_ENDPOINT"]
    # ... and then reachable through a private endpoint (groupId topic)
    links = tpl["variables"]["storagePrivateLinks"]
    assert "if(parameters('deployNotificationTopic'), createArray(createObject('groupId', " \
           "'topic', 'zone', 'privatelink.eventgrid.azure.net'" in links


# --------------------------------------------------------------------------- network isolation

def _site(main):
    return one(app_template(main), "Microsoft.Web/sites")


def test_network_isolation_parameter_and_its_safe_default(main):
    spec = main["parameters"]["networkIsolation"]
    assert spec["allowedValues"] == ["none", "storage", "full"]
    assert spec["defaultValue"] == "storage"
    for path in PARAM_FILES:
        value = load(path)["parameters"].get("networkIsolation", {"value": "storage"})["value"]
        assert value in ("storage", "full"), path.name
    v = app_template(main)["variables"]
    assert v["isolated"] == "[not(equals(parameters('networkIsolation'), 'none'))]"
    assert v["privateSite"] == "[equals(parameters('networkIsolation'), 'full')]"


def test_storage_is_reachable_only_through_private_endpoints_when_isolated(main):
    tpl = app_template(main)
    acct = one(tpl, "Microsoft.Storage/storageAccounts")["properties"]
    assert acct["publicNetworkAccess"] == "[if(variables('isolated'), 'Disabled', 'Enabled')]"
    assert acct["networkAcls"]["defaultAction"] == "[if(variables('isolated'), 'Deny', 'Allow')]"
    assert acct["networkAcls"]["ipRules"] == [] and acct["networkAcls"]["virtualNetworkRules"] == []
    # Event Grid (dead-letter, trusted service with a managed identity) still reaches it
    assert acct["networkAcls"]["bypass"] == "AzureServices"
    links = tpl["variables"]["storagePrivateLinks"]
    for sub in ("blob", "queue", "table"):
        assert (f"createObject('groupId', '{sub}', 'zone', format('privatelink.{sub}.{{0}}', "
                "environment().suffixes.storage), 'target', variables('storageId'))") in links
    pe = [r for r in of_type(tpl, "Microsoft.Network/privateEndpoints")
          if r["copy"]["name"] == "privateEndpoints"][0]
    assert pe["copy"]["count"] == \
        "[if(variables('isolated'), length(variables('storagePrivateLinks')), 0)]"
    assert pe["properties"]["subnet"] == {"id": "[variables('privateEndpointSubnetId')]"}
    groups = [r for r in of_type(tpl, "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
              if r["copy"]["name"] == "privateDnsZoneGroups"][0]
    assert groups["copy"]["count"] == pe["copy"]["count"]
    zones = one(tpl, "Microsoft.Network/privateDnsZones")
    assert zones["copy"]["count"] == "[length(variables('privateLinks'))]"
    assert tpl["variables"]["privateLinks"] == (
        "[if(variables('isolated'), concat(variables('storagePrivateLinks'), "
        "variables('sitePrivateLinks')), createArray())]")
    link = one(tpl, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert link["properties"] == {"registrationEnabled": False,
                                  "virtualNetwork": {"id": "[variables('vnetId')]"}}


def test_app_is_vnet_integrated_and_the_site_private_only_in_full_isolation(main):
    tpl = app_template(main)
    site = _site(main)
    assert site["properties"]["virtualNetworkSubnetId"] == \
        "[if(variables('isolated'), variables('appSubnetId'), null())]"
    assert site["properties"]["publicNetworkAccess"] == \
        "[if(variables('privateSite'), 'Disabled', 'Enabled')]"
    # the host starts only once its storage resolves to the private endpoints
    for dep in ("privateEndpoints", "privateDnsZoneGroups", "privateDnsZoneLinks"):
        assert dep in site["dependsOn"]
    vnet = one(tpl, "Microsoft.Network/virtualNetworks")
    assert vnet["condition"] == "[variables('isolated')]"
    subnets = {s["name"]: s["properties"] for s in vnet["properties"]["subnets"]}
    assert set(subnets) == {"app", "private-endpoints"}
    assert subnets["app"]["delegations"] == [
        {"name": "flex-consumption", "properties": {"serviceName": "Microsoft.App/environments"}}]
    assert "_" not in "".join(subnets)  # Flex: no underscores in subnet names
    for props in subnets.values():
        assert props["networkSecurityGroup"] == {
            "id": "[resourceId('Microsoft.Network/networkSecurityGroups', variables('nsgName'))]"}
    assert "natGateways" in subnets["app"]["natGateway"]
    assert tpl["variables"]["appSubnetId"].endswith("variables('vnetName'), 'app')]")
    # full isolation: a private endpoint for the site itself
    assert tpl["variables"]["sitePrivateLinks"].startswith("[if(variables('privateSite'), ")
    site_pe = [r for r in of_type(tpl, "Microsoft.Network/privateEndpoints")
               if r["copy"]["name"] == "sitePrivateEndpoints"][0]
    conn = site_pe["properties"]["privateLinkServiceConnections"][0]["properties"]
    assert conn == {"privateLinkServiceId": "[variables('siteId')]", "groupIds": ["sites"]}
    # what deploy.sh reads to know whether Event Grid can push to the function
    assert tpl["outputs"]["eventDelivery"]["value"] == "[not(variables('privateSite'))]"


# --------------------------------------------------------------------------- redundancy

def test_zone_and_storage_redundancy_parameters(main):
    p = main["parameters"]
    assert p["storageSku"]["defaultValue"] == "Standard_ZRS"
    assert "Standard_LRS" in p["storageSku"]["allowedValues"]
    assert p["zoneRedundant"]["type"] == "bool" and p["zoneRedundant"]["defaultValue"] is False
    tpl = app_template(main)
    assert one(tpl, "Microsoft.Storage/storageAccounts")["sku"] == \
        {"name": "[parameters('storageSku')]"}
    plan = one(tpl, "Microsoft.Web/serverfarms")
    assert plan["properties"]["zoneRedundant"] == "[parameters('zoneRedundant')]"
    # a zone-redundant plan needs zone-redundant storage
    for path in PARAM_FILES:
        values = {k: v["value"] for k, v in load(path)["parameters"].items()}
        if values.get("zoneRedundant"):
            assert "ZRS" in values.get("storageSku", p["storageSku"]["defaultValue"]), path.name


# --------------------------------------------------------------------------- authentication

def test_app_service_authentication_validates_entra_id_tokens(main):
    tpl = app_template(main)
    (auth,) = [r for r in of_type(tpl, "Microsoft.Web/sites/config")
               if r["name"] == "[format('{0}/authsettingsV2', variables('siteName'))]"]
    assert auth["condition"] == "[not(empty(parameters('authClientId')))]"
    p = auth["properties"]
    assert p["platform"] == {"enabled": True}
    # function keys still guard every route; the platform only vouches for who the caller is
    # (x-ms-client-principal), so dry runs and Event Grid's webhook need no token
    assert p["globalValidation"] == {"requireAuthentication": False,
                                     "unauthenticatedClientAction": "AllowAnonymous"}
    aad = p["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "[parameters('authClientId')]"
    assert "environment().authentication.loginEndpoint" in aad["registration"]["openIdIssuer"]
    assert "clientSecretSettingName" not in aad["registration"]  # token validation: no secret
    assert aad["validation"]["allowedAudiences"] == [
        "[format('api://{0}', parameters('authClientId'))]", "[parameters('authClientId')]"]
    assert p["login"]["tokenStore"] == {"enabled": False}
    assert tpl["variables"]["approverRole"] == APPROVER_ROLE
    assert main["outputs"]["approverRole"]["value"].endswith("outputs.approverRole.value]")


def test_key_only_approvals_are_off_unless_a_lab_turns_them_on(main):
    assert main["parameters"]["allowKeyOnlyApprovals"] == {
        "type": "bool", "defaultValue": False,
        "metadata": main["parameters"]["allowKeyOnlyApprovals"]["metadata"]}
    assert app_settings(main)["HAIRPIN_ALLOW_KEY_ONLY_APPROVALS"] == \
        "[if(parameters('allowKeyOnlyApprovals'), 'true', 'false')]"
    for path in PARAM_FILES:
        values = {k: v["value"] for k, v in json.loads(path.read_text())["parameters"].items()}
        assert values.get("allowKeyOnlyApprovals", False) is False, path.name
    # never faked by the deployment: only the platform may say its authentication is on
    assert "WEBSITE_AUTH_ENABLED" not in json.dumps(main)


def test_the_approver_app_role_definition(main):
    roles = json.loads((INFRA / "approver-app-roles.json").read_text())
    (role,) = roles
    assert role["value"] == app_template(main)["variables"]["approverRole"]
    assert role["isEnabled"] is True
    assert set(role["allowedMemberTypes"]) == {"User", "Application"}
    assert re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", role["id"])

# --------------------------------------------------------------------------- secrets

SECRET_PATTERNS = [
    re.compile(p, re.I) for p in (
        r"AccountKey=", r"listKeys\s*\(", r"listKeys'", r"listSecrets\s*\(", r"[?&]sig=",
        r"SharedAccessSignature", r"SharedAccessKey", r"aeg-sas-key", r"\bpassword\b",
        r"\bpwd\b", r"InstrumentationKey=", r"DefaultEndpointsProtocol=",
        r"-----BEGIN", r"\bclient_?secret\b", r"AZURE_CLIENT_SECRET",
        r"[A-Za-z0-9+/]{30,}==",  # base64 keys (storage, SAS, Event Grid keys end with ==)
        r"\b[A-Za-z0-9]{60,}\b",  # long opaque tokens
    )
]


@pytest.mark.parametrize("path", [MAIN, *PARAM_FILES], ids=lambda p: p.name)
def test_no_secret_or_key_literal(path):
    text = path.read_text()
    hits = [(p.pattern, m.group(0)) for p in SECRET_PATTERNS for m in p.finditer(text)]
    assert hits == []
    doc = load(path)
    for name, spec in doc.get("parameters", {}).items():
        if isinstance(spec, dict) and spec.get("type", "").lower() in ("securestring",
                                                                       "secureobject"):
            assert "defaultValue" not in spec, name


def test_the_secret_scan_catches_secrets():
    samples = ["DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc",
               "[listKeys(variables('storageId'), '2023-05-01').keys[0].value]",
               "https://x.blob.core.windows.net/c?sv=2022&sig=abcd", "aeg-sas-key",
               "\"password\": \"hunter2\""]
    for s in samples:
        assert any(p.search(s) for p in SECRET_PATTERNS), s


def test_deploy_doc_has_the_one_command_and_the_button():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    readme = (ROOT / "README.md").read_text()
    one = "scripts/deploy.sh --subscription <id> --location <region>"
    assert one in doc and one in readme
    for section in ("## What it does, step by step", "## How long it takes",
                    "## When step 3 fails", "## Network isolation", "## Sources",
                    "## Not verified here", "Hairpin.Approver"):
        assert section in doc, section
    assert "scripts/deploy.sh --events-only" in doc and "--events-only" in readme
    assert "az deployment sub create -l <region> -f infra/main.json " \
           "-p @infra/parameters.prod.json" in doc
    assert "https://aka.ms/deploytoazurebutton" in doc
    assert "#create/Microsoft.Template/uri/" in doc and "infra%2Fmain.json" in doc
    ops = (ROOT / "docs" / "operations.md").read_text()
    for section in ("## Deploying", "## Approving a plan", "## Rolling back",
                    "## Reading the journal", "## Rotating function keys",
                    "## What the role can and cannot do"):
        assert section in ops
    for action in {*permissions.REMEDIATION_ACTIONS, *permissions.SUBSCRIPTION_READ_ACTIONS}:
        assert f"| `{action}` |" in ops, f"docs/operations.md does not list {action}"


# --------------------------------------------------------------------------- checkov

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_CONFIG = ROOT / ".checkov.yaml"
_SKIP_LINE = re.compile(r"^\s*-\s*(CKV2?_[A-Z]+_\d+)\s*(?:#\s*(.*))?$")


def _configured_skips() -> dict[str, str]:
    """{check id: reason} from .checkov.yaml's skip-check list (the reason is the line's
    comment; the YAML parser would drop it, so the lines are read as text)."""
    skips, inside = {}, False
    for line in CHECKOV_CONFIG.read_text().splitlines():
        if re.match(r"^skip-check:\s*$", line):
            inside = True
            continue
        if inside and line and not line.startswith((" ", "-")):
            inside = False
        m = _SKIP_LINE.match(line) if inside else None
        if m:
            skips[m.group(1)] = (m.group(2) or "").strip()
    return skips


def _checkov(*args: str, cwd: Path, home: Path) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LOG_LEVEL": "ERROR"}
    return subprocess.Popen([str(CHECKOV), *args, "-o", "json"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _failed(proc: subprocess.Popen) -> list[tuple[str, str]]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), err[-2000:]
    reports = json.loads(out)
    reports = reports if isinstance(reports, list) else [reports]
    assert reports and all(r["check_type"] == "arm" for r in reports)
    assert sum(r["summary"]["parsing_errors"] for r in reports) == 0
    assert sum(r["summary"]["passed"] for r in reports) > 20
    return [(c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]]


def test_checkov_finds_nothing_that_is_not_skipped_with_a_reason(tmp_path):
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed (make checkov installs it in .venv-checkov)")
    skips = _configured_skips()
    assert skips, ".checkov.yaml lists no skip-check entries"
    unexplained = [cid for cid, reason in skips.items() if len(reason.split()) < 8]
    assert unexplained == [], f"skips without a reason: {unexplained}"
    # the configured run (what a person runs) and a raw run of every check, side by side
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    configured = _checkov("--config-file", str(CHECKOV_CONFIG), "-d", str(INFRA),
                          cwd=ROOT, home=tmp_path / "a")
    raw = _checkov("-d", str(INFRA), "--framework", "arm", "--skip-download", "--quiet",
                   cwd=tmp_path / "b", home=tmp_path / "b")
    assert _failed(configured) == []
    findings = _failed(raw)
    assert {cid for cid, _ in findings} == set(skips), (
        "unskipped findings: "
        f"{sorted({f for f in findings if f[0] not in skips})}; "
        f"skips no finding needs: {sorted(set(skips) - {cid for cid, _ in findings})}")
