"""scripts/deploy.sh against a recording `az` stub (tests/fixtures/az_stub/az, first on PATH).

No Azure subscription is reachable here: the stub logs every call and answers canned JSON per
subcommand, so these tests pin the sequence (infrastructure, publish, wait for the functions,
Event Grid subscription last), the key arguments, the retries and the exit codes. What Azure
itself answers is documented in docs/deploy.md with its sources. Also: shellcheck on the
script, and azure.yaml (azd) against azd's own schema.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT201909

from tests.support.paths import FIXTURES, ROOT

SCRIPT = ROOT / "scripts" / "deploy.sh"
STUB_DIR = FIXTURES / "az_stub"
SUB = "00000000-0000-4000-8000-0000000000aa"
APP = "hairpin-func-abc123"
RG = "rg-hairpin"
IDENTITY = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/" \
           "userAssignedIdentities/hairpin-id"
STORAGE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/" \
          "storageAccounts/hairpinstabc123"
FUNCTIONS = ["health_check", "scheduled_audit", "get_audit", "on_resource_event", "drift_sweep",
             "sweep_worker", "sweep_poison", "fix_post", "fix_status", "fix_worker"]


def outputs(**over) -> dict:
    values = {"resourceGroup": RG, "functionAppName": APP,
              "functionAppUrl": f"https://{APP}.azurewebsites.net",
              "identityPrincipalId": "11111111-1111-4111-8111-111111111111",
              "identityClientId": "22222222-2222-4222-8222-222222222222",
              "identityResourceId": IDENTITY, "storageAccountId": STORAGE,
              "systemTopicName": "hairpin-arm-events", "deadLetterContainer": "hairpin-deadletter",
              "eventDelivery": True, "authEnabled": True, "approverRole": "Hairpin.Approver",
              "roleDefinitionId": "/subscriptions/x/providers/Microsoft.Authorization/"
                                  "roleDefinitions/y", "roleScope": f"/subscriptions/{SUB}",
              "identityClientIdUnused": ""}
    values.update(over)
    kinds = {bool: "Bool", str: "String"}
    return {k: {"type": kinds[type(v)], "value": v} for k, v in values.items()}


def ok(stdout: str = "") -> dict:
    return {"rc": 0, "stdout": stdout}


def fail(stderr: str, rc: int = 1) -> dict:
    return {"rc": rc, "stderr": stderr}


def listing(names) -> dict:
    return ok("".join(f"{APP}/{n}\n" for n in names))


def success_scenario(**over) -> dict:
    scenario = {
        "account set": [ok()],
        "account show": [ok("tenant-1\n")],
        "provider show": [ok("Registered\n")],
        "provider register": [ok()],
        "ad app list": [ok("\n")],
        "ad app create": [ok("33333333-3333-4333-8333-333333333333\n")],
        "ad app update": [ok()],
        "ad sp list": [ok("\n")],
        "ad sp create": [ok()],
        "deployment sub create": [ok(json.dumps(outputs()))],
        "deployment sub show": [ok(json.dumps(outputs()))],
        "functionapp deployment source config-zip": [ok()],
        "functionapp function list": [listing(FUNCTIONS)],
        "deployment group create": [ok("Succeeded\n")],
    }
    scenario.update(over)
    return scenario


class Run:
    def __init__(self, proc: subprocess.CompletedProcess, calls: list[list[str]]):
        self.rc, self.out, self.err, self.calls = proc.returncode, proc.stdout, proc.stderr, calls

    def commands(self) -> list[str]:
        out = []
        for argv in self.calls:
            words = []
            for a in argv:
                if a.startswith("-"):
                    break
                words.append(a)
            out.append(" ".join(words))
        return out

    def call(self, command: str, nth: int = 0) -> list[str]:
        return [c for c, k in zip(self.calls, self.commands(), strict=True) if k == command][nth]


def arg(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


@pytest.fixture
def package(tmp_path) -> Path:
    zp = tmp_path / "azure-ilb-hairpin-0.1.0.zip"
    zp.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: the stub never opens it
    return zp


@pytest.fixture
def deploy(tmp_path, package):
    def run(scenario: dict, *extra: str, env: dict | None = None, with_package: bool = True,
            path: str | None = None) -> Run:
        log = tmp_path / "az.log"
        log.unlink(missing_ok=True)
        for f in tmp_path.glob("az.log.*"):
            f.unlink()
        (tmp_path / "scenario.json").write_text(json.dumps(scenario))
        environ = {"PATH": path if path is not None else f"{STUB_DIR}:/usr/bin:/bin",
                   "HOME": str(tmp_path), "AZ_STUB_LOG": str(log),
                   "AZ_STUB_SCENARIO": str(tmp_path / "scenario.json"),
                   "HAIRPIN_DEPLOY_RETRY_SECONDS": "0", "HAIRPIN_DEPLOY_RETRIES": "4",
                   "HAIRPIN_DEPLOY_WAIT_TRIES": "5", **(env or {})}
        if shutil.which("python3", path=environ["PATH"]) is None:
            environ["PATH"] += f":{Path(shutil.which('python3')).parent}"
        args = ["--subscription", SUB, "--location", "swedencentral", *extra]
        if with_package:
            args += ["--package", str(package)]
        proc = subprocess.run(["bash", str(SCRIPT), *args], env=environ, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        calls = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
        return Run(proc, calls)
    return run


PROVIDERS = ["Microsoft.Web", "Microsoft.Storage", "Microsoft.Network", "Microsoft.App",
             "Microsoft.EventGrid", "Microsoft.Insights", "Microsoft.OperationalInsights",
             "Microsoft.ManagedIdentity"]
FULL_SEQUENCE = ["account set", "account show", *["provider show"] * len(PROVIDERS),
                 "ad app list", "ad app create", "ad app update", "ad sp list", "ad sp create",
                 "deployment sub create",
                 "functionapp deployment source config-zip", "functionapp function list",
                 "deployment group create"]


# --------------------------------------------------------------------------- success

def test_the_whole_sequence_with_its_key_arguments(deploy, package):
    r = deploy(success_scenario())
    assert r.rc == 0, r.err
    assert r.commands() == FULL_SEQUENCE
    assert r.call("account set")[-1] == SUB
    create = r.call("ad app create")
    assert arg(create, "--app-roles") == f"@{ROOT}/infra/approver-app-roles.json"
    assert arg(create, "--display-name") == "hairpin-hairpin-approvals"
    assert arg(create, "--sign-in-audience") == "AzureADMyOrg"
    client = "33333333-3333-4333-8333-333333333333"
    assert arg(r.call("ad app update"), "--identifier-uris") == f"api://{client}"
    infra = r.call("deployment sub create")
    assert arg(infra, "--template-file") == str(ROOT / "infra" / "main.json")
    assert arg(infra, "--location") == "swedencentral"
    assert arg(infra, "--name") == "hairpin"
    params = [infra[i + 1] for i, a in enumerate(infra) if a == "--parameters"]
    assert params[0] == f"@{ROOT}/infra/parameters.prod.json"
    assert f"authClientId={client}" in infra
    publish = r.call("functionapp deployment source config-zip")
    assert arg(publish, "--resource-group") == RG and arg(publish, "--name") == APP
    assert arg(publish, "--src") == str(package)
    assert arg(publish, "--build-remote") == "false"  # the package is ready to run
    listed = r.call("functionapp function list")
    assert arg(listed, "--resource-group") == RG and arg(listed, "--name") == APP
    events = r.call("deployment group create")
    assert arg(events, "--template-file") == str(ROOT / "infra" / "eventgrid.json")
    assert arg(events, "--resource-group") == RG
    for expected in (f"functionAppName={APP}", f"identityResourceId={IDENTITY}",
                     f"deadLetterStorageAccountId={STORAGE}", "systemTopicName=hairpin-arm-events",
                     "deadLetterContainer=hairpin-deadletter",
                     "eventFunctionName=on_resource_event"):
        assert expected in events, expected
    # (4) URLs, identity and the check commands
    url = f"https://{APP}.azurewebsites.net"
    for text in (f"{url}/api/health", f"{url}/api/audit", f"{url}/api/fix",
                 "principal 11111111-1111-4111-8111-111111111111",
                 "client 22222222-2222-4222-8222-222222222222", IDENTITY,
                 f"hairpin audit --subscription {SUB}",
                 f"az functionapp function keys list -g {RG} -n {APP} --function-name "
                 "health_check", "subscribed (hairpin-arm-events -> on_resource_event)"):
        assert text in r.out, text


def test_unregistered_resource_providers_are_registered(deploy):
    r = deploy(success_scenario(**{"provider show": [ok("Registered\n"), ok("NotRegistered\n"),
                                                     ok("Registered\n")]}))
    assert r.rc == 0, r.err
    shown = [arg(c, "--namespace") for c in r.calls if c[:2] == ["provider", "show"]]
    assert shown == PROVIDERS
    (register,) = [c for c in r.calls if c[:2] == ["provider", "register"]]
    assert arg(register, "--namespace") == "Microsoft.Storage" and "--wait" in register


def test_name_prefix_and_parameter_file_are_passed(deploy, tmp_path):
    params = tmp_path / "p.json"
    params.write_text((ROOT / "infra" / "parameters.dev.json").read_text())
    r = deploy(success_scenario(), "--parameters", str(params), "--name-prefix", "hp-lab")
    assert r.rc == 0, r.err
    infra = r.call("deployment sub create")
    assert f"@{params}" in infra and "namePrefix=hp-lab" in infra
    assert arg(r.call("ad app list"), "--display-name") == "hp-lab-hairpin-approvals"


def test_an_existing_app_registration_is_reused(deploy):
    r = deploy(success_scenario(**{"ad app list": [ok("44444444-4444-4444-8444-444444444444\n")],
                                   "ad sp list": [ok("sp-object-id\n")]}))
    assert r.rc == 0, r.err
    assert "ad app create" not in r.commands() and "ad sp create" not in r.commands()
    assert "authClientId=44444444-4444-4444-8444-444444444444" in r.call("deployment sub create")


def test_auth_client_id_or_no_auth_skip_the_app_registration(deploy):
    r = deploy(success_scenario(), "--auth-client-id", "55555555-5555-4555-8555-555555555555")
    assert r.rc == 0, r.err
    assert not [c for c in r.commands() if c.startswith("ad ")]
    assert "authClientId=55555555-5555-4555-8555-555555555555" in r.call("deployment sub create")
    r = deploy(success_scenario(), "--no-auth")
    assert r.rc == 0, r.err
    assert not [c for c in r.commands() if c.startswith("ad ")]
    assert "authClientId=" in r.call("deployment sub create")
    assert "none (--no-auth): no approval can be verified" in r.out


def test_waits_until_all_functions_are_listed(deploy):
    r = deploy(success_scenario(**{"functionapp function list": [
        listing([]), listing(FUNCTIONS[:3]), listing(FUNCTIONS)]}))
    assert r.rc == 0, r.err
    assert r.commands().count("functionapp function list") == 3
    assert "functions listed: 3 of 10" in r.out
    # the subscription comes only after the listing is complete
    assert r.commands().index("deployment group create") > \
        max(i for i, c in enumerate(r.commands()) if c == "functionapp function list")


# --------------------------------------------------------------------------- retries

def test_endpoint_validation_failure_is_retried_then_succeeds(deploy):
    r = deploy(success_scenario(**{"deployment group create": [
        fail("ERROR: (Endpoint validation) Destination endpoint not found.\n"),
        fail("ERROR: {\"code\":\"Url validation\",\"message\":\"The attempt to validate the "
             "provided endpoint https://x/runtime/webhooks/EventGrid failed.\"}\n"),
        ok("Succeeded\n")]}))
    assert r.rc == 0, r.err
    assert r.commands().count("deployment group create") == 3
    assert r.commands()[:-3] == FULL_SEQUENCE[:-1]
    assert "event subscription failed (attempt 1 of 4)" in r.err
    assert "Destination endpoint not found" in r.err


def test_publish_403_while_the_role_assignment_propagates_is_retried(deploy):
    r = deploy(success_scenario(**{"functionapp deployment source config-zip": [
        fail("ERROR: Status Code: 400, BlobUploadFailedException: (403) This request is not "
             "authorized to perform this operation using this permission.\n"),
        ok()]}))
    assert r.rc == 0, r.err
    assert r.commands().count("functionapp deployment source config-zip") == 2


def test_validation_failures_are_bounded(deploy):
    r = deploy(success_scenario(**{"deployment group create": [
        fail("ERROR: (Endpoint validation) Destination endpoint not found.\n")]}))
    assert r.rc == 6
    assert r.commands().count("deployment group create") == 4  # HAIRPIN_DEPLOY_RETRIES
    assert "giving up after 4 attempts" in r.err
    assert "--events-only" in r.err and "When step 3 fails" in r.err


# --------------------------------------------------------------------------- failures that stop

def test_infrastructure_failure_stops_with_a_clear_message(deploy):
    r = deploy(success_scenario(**{"deployment sub create": [fail(
        "ERROR: (AuthorizationFailed) The client 'x' does not have authorization to perform "
        "action 'Microsoft.Authorization/roleDefinitions/write'.\n")]}))
    assert r.rc == 3
    assert r.commands() == FULL_SEQUENCE[:FULL_SEQUENCE.index("deployment sub create") + 1]
    assert "deploy: error: the infrastructure deployment failed" in r.err
    assert "AuthorizationFailed" in r.err  # az's own reason is shown


def test_outputs_of_an_older_template_stop_with_exit_3(deploy):
    old = outputs()
    del old["systemTopicName"]
    r = deploy(success_scenario(**{"deployment sub create": [ok(json.dumps(old))]}))
    assert r.rc == 3
    assert "has no output systemTopicName" in r.err
    assert "functionapp deployment source config-zip" not in r.commands()


def test_a_non_transient_event_subscription_error_is_not_retried(deploy):
    r = deploy(success_scenario(**{"deployment group create": [fail(
        "ERROR: (AuthorizationFailed) The client does not have authorization to perform action "
        "'Microsoft.EventGrid/systemTopics/write'.\n")]}))
    assert r.rc == 6
    assert r.commands().count("deployment group create") == 1
    assert "the Event Grid subscription failed" in r.err


def test_publish_failure_stops_before_the_subscription(deploy):
    r = deploy(success_scenario(**{"functionapp deployment source config-zip": [
        fail("ERROR: Deployment failed: the package is not a zip file\n")]}))
    assert r.rc == 4
    assert "deployment group create" not in r.commands()
    assert "publishing" in r.err


def test_functions_never_listed(deploy):
    r = deploy(success_scenario(**{"functionapp function list": [listing(FUNCTIONS[:2])]}))
    assert r.rc == 5
    assert r.commands().count("functionapp function list") == 5  # HAIRPIN_DEPLOY_WAIT_TRIES
    assert "deployment group create" not in r.commands()
    assert "lists 2 of 10 functions" in r.err


def test_usage_errors_exit_2_before_any_az_call(deploy, tmp_path):
    for extra, message in ((("--location",), "--location needs a value"),
                           (("--bogus",), "unknown argument: --bogus"),
                           (("--name-prefix", "Bad_Name"), "--name-prefix must be"),
                           (("--parameters", str(tmp_path / "none.json")),
                            "parameter file not found"),
                           (("--no-auth", "--auth-client-id", "x"), "exclude each other")):
        r = deploy(success_scenario(), *extra)
        assert r.rc == 2, (extra, r.err)
        assert r.calls == []
        if message:
            assert message in r.err, (extra, r.err)
    env = {"AZ_STUB_LOG": str(tmp_path / "x.log"), "AZ_STUB_SCENARIO": "/nonexistent",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(SCRIPT), "--subscription", SUB], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--location is required" in proc.stderr


def test_az_missing_from_path(deploy, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    r = deploy(success_scenario(), path=f"{bare}:/usr/bin:/bin")
    if shutil.which("az", path="/usr/bin:/bin"):
        pytest.skip("a real az is installed in /usr/bin")
    assert r.rc == 2 and "the Azure CLI (az) is not on PATH" in r.err


# --------------------------------------------------------------------------- other modes

def test_full_isolation_skips_the_event_subscription(deploy):
    scenario = success_scenario(**{"deployment sub create": [
        ok(json.dumps(outputs(eventDelivery=False)))]})
    r = deploy(scenario)
    assert r.rc == 0, r.err
    assert r.commands() == FULL_SEQUENCE[:-1]
    assert "Event Grid" in r.out and "cannot deliver to a private endpoint" in r.out


def test_skip_events_then_events_only(deploy):
    r = deploy(success_scenario(), "--skip-events")
    assert r.rc == 0, r.err
    assert r.commands() == FULL_SEQUENCE[:-1]
    r = deploy(success_scenario(), "--events-only", with_package=False)
    assert r.rc == 0, r.err
    assert r.commands() == ["account set", "deployment sub show", "deployment group create"]
    assert arg(r.call("deployment sub show"), "--name") == "hairpin"
    assert f"functionAppName={APP}" in r.call("deployment group create")


# --------------------------------------------------------------------------- shellcheck

def test_shellcheck_is_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (as root, make test installs it)")
    scripts = [SCRIPT, ROOT / "scripts" / "azd-postdeploy.sh",
               ROOT / "scripts" / "install-system-packages.sh"]
    done = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scripts_are_executable():
    for script in (SCRIPT, ROOT / "scripts" / "azd-postdeploy.sh", STUB_DIR / "az"):
        assert os.access(script, os.X_OK), script


# --------------------------------------------------------------------------- azd

AZD_SCHEMA = FIXTURES / "schemas" / "azure.yaml.json"


def _azd_validator() -> jsonschema.Draft201909Validator:
    """azd's schema, vendored. Its only external $refs are the schemas of azd extensions'
    AI hosts (azure.ai.*, microsoft.foundry), applied only to services with those hosts; they
    are registered as empty schemas here (NOTICE.md)."""
    schema = json.loads(AZD_SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    external = set(re.findall(r'"\$ref":\s*"(https://[^"#]+)', AZD_SCHEMA.read_text()))
    assert external and all("/cli/azd/extensions/azure.ai." in u for u in external), external
    registry = Registry().with_resources(
        (url, Resource.from_contents({}, default_specification=DRAFT201909)) for url in external)
    return jsonschema.Draft201909Validator(schema, registry=registry)


def test_azure_yaml_is_valid_against_azds_schema():
    v = _azd_validator()
    assert v.schema["$id"].endswith("/schemas/v1.0/azure.yaml.json")
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
    assert errors == []
    # the schema is not vacuous
    bad = json.loads(json.dumps(doc))
    bad["hooks"]["postdeploy"]["posix"]["shell"] = "bash"  # azd runs sh or pwsh
    assert list(v.iter_errors(bad))
    assert list(v.iter_errors({**doc, "name": "Not Valid"}))
    bad = json.loads(json.dumps(doc))
    bad["services"]["hairpin"]["host"] = 3
    assert list(v.iter_errors(bad))


def test_azure_yaml_deploys_the_function_and_subscribes_after_deploy():
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (name, service), = doc["services"].items()
    assert service["host"] == "function" and service["language"] == "python"
    assert service["remoteBuild"] is True  # azd zips sources; the platform installs wheels
    # azd finds the app by its azd-service-name tag
    main = json.loads((ROOT / "infra" / "main.json").read_text())
    tpl = next(r for r in main["resources"] if r["type"] == "Microsoft.Resources/deployments"
               and r["name"] == "[variables('appDeployment')]")["properties"]["template"]
    site = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Web/sites")
    assert site["tags"]["azd-service-name"] == name
    hook = doc["hooks"]["postdeploy"]
    assert hook["posix"]["run"] == "./scripts/azd-postdeploy.sh"
    assert hook["posix"]["continueOnError"] is False
    assert "--events-only" in (ROOT / "scripts" / "azd-postdeploy.sh").read_text()
    assert (ROOT / doc["infra"]["path"] / f"{doc['infra']['module']}.bicep").exists()
