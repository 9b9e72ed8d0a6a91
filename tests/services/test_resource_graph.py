"""Resource Graph: the emulator's service (paging, quota, errors) and the discovery adapter
driven through the real `ResourceGraphClient`."""

from __future__ import annotations

import base64
import dataclasses
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.resourcegraph import ResourceGraphClient

from emulator.graph.resource_graph import ResourceGraphService, to_arg_row
from shared.azure.resource_graph import (
    DISCOVERY_QUERY,
    TOP_LEVEL,
    TOPOLOGY_PROPERTIES,
    VM_NIC_QUERY,
    discover_resources,
    from_arg_row,
)

SUB = "00000000-0000-0000-0000-000000000001"
OTHER_SUB = "00000000-0000-0000-0000-000000000002"
RG = f"/subscriptions/{SUB}/resourceGroups/HS-RG"


def projected(doc: dict) -> dict:
    """An ARM document cut to what DISCOVERY_QUERY asks for (written here independently of the
    KQL text, so a query that drops or mangles a property fails the comparisons below)."""
    out = {k: doc[k] for k in TOP_LEVEL if doc.get(k) not in (None, "")}
    props = doc.get("properties") or {}
    cut: dict = {}
    for path in TOPOLOGY_PROPERTIES:
        parts, value = path.split("."), props
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        target = cut
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    out["properties"] = cut
    return out


class FakeClock:
    """Time for the quota window, advanced only by the test (or by the adapter's sleep)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def nic(i: int, sub: str = SUB) -> dict:
    return {
        "id": f"/subscriptions/{sub}/resourceGroups/HS-RG/providers/Microsoft.Network/"
              f"networkInterfaces/nic{i:05d}",
        "name": f"nic{i:05d}", "type": "Microsoft.Network/networkInterfaces",
        "location": "westeurope", "etag": 'W/"1"', "tags": {"n": str(i)},
        "properties": {"provisioningState": "Succeeded", "primary": True, "ipConfigurations": [
            {"name": "ipconfig1", "id": f"/subscriptions/{sub}/resourceGroups/HS-RG/providers/"
                                        f"Microsoft.Network/networkInterfaces/nic{i:05d}/"
                                        "ipConfigurations/ipconfig1",
             "properties": {"privateIPAddress": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}}]},
    }


def vm(name: str, power: str | None = "running", nics: tuple[str, ...] = ()) -> dict:
    doc = {
        "id": f"{RG}/providers/Microsoft.Compute/virtualMachines/{name}", "name": name,
        "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
        "tags": {"hairpin": "opt-in"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
            "storageProfile": {"osDisk": {"osType": "Windows"}},
            "networkProfile": {"networkInterfaces": [
                {"id": n, "properties": {"primary": i == 0}} for i, n in enumerate(nics)]},
        },
    }
    if power:
        doc["properties"]["instanceView"] = {"statuses": [
            {"code": "ProvisioningState/succeeded", "level": "Info"},
            {"code": f"PowerState/{power}", "level": "Info", "displayStatus": f"VM {power}"}]}
    return doc


VNET = {
    "id": f"{RG}/providers/Microsoft.Network/virtualNetworks/hs-vnet", "name": "hs-vnet",
    "type": "Microsoft.Network/virtualNetworks", "location": "westeurope",
    "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/8"]}, "subnets": [
        {"name": "default", "id": f"{RG}/providers/Microsoft.Network/virtualNetworks/hs-vnet/"
                                  "subnets/default",
         "properties": {"addressPrefix": "10.0.0.0/8"}}]},
}
SUBNET_AS_DOC = {**VNET["properties"]["subnets"][0],
                 "type": "Microsoft.Network/virtualNetworks/subnets"}
STORAGE = {"id": f"{RG}/providers/Microsoft.Storage/storageAccounts/st1", "name": "st1",
           "type": "Microsoft.Storage/storageAccounts", "location": "westeurope",
           "kind": "StorageV2", "sku": {"name": "Standard_LRS"}, "properties": {}}


def estate(n_nics: int) -> list[dict]:
    nics = [nic(i) for i in range(n_nics)]
    return nics + [vm("hs-vm1", "running", (nics[0]["id"],)),
                   vm("hs-vm2", "deallocated", (nics[1]["id"],)), VNET, SUBNET_AS_DOC, STORAGE,
                   nic(0, OTHER_SUB)]


def page_through(svc, body, resources, caller="alice"):
    """All pages of one query through the service; returns (rows, statuses, pages)."""
    rows, pages = [], 0
    token = None
    while True:
        options = dict(body.get("options") or {})
        if token:
            options["$skipToken"] = token
        status, headers, out = svc.query({**body, "options": options}, resources, caller)
        assert status == 200, out
        pages += 1
        rows.extend(out["data"])
        token = out.get("$skipToken")
        if not token:
            return rows, pages


# ---------------------------------------------------------------------------------------------
# The service


def test_rows_look_like_arg():
    row = to_arg_row(vm("hs-vm1", "running", ("/x",)), tenant_id="t1")
    assert list(row) == ["id", "name", "type", "tenantId", "kind", "location", "resourceGroup",
                         "subscriptionId", "managedBy", "sku", "plan", "properties", "tags",
                         "identity", "zones", "extendedLocation"]
    assert row["type"] == "microsoft.compute/virtualmachines"
    assert row["resourceGroup"] == "hs-rg" and row["subscriptionId"] == SUB
    assert row["tenantId"] == "t1" and row["kind"] == "" and row["sku"] is None
    assert "instanceView" not in row["properties"]
    assert row["properties"]["extended"]["instanceView"]["powerState"] == {
        "code": "PowerState/running", "level": "Info", "displayStatus": "VM running"}


def test_paging_over_2500_rows_with_skip_tokens():
    svc = ResourceGraphService(quota=100)
    resources = estate(2495)  # + 2 VMs, 1 VNet, 1 storage account in SUB = 2,499 rows
    body = {"subscriptions": [SUB], "query": "Resources | project id, name | order by id asc"}
    status, headers, first = svc.query(body, resources, "alice")
    assert status == 200
    assert (first["totalRecords"], first["count"], first["resultTruncated"]) == (2499, 1000,
                                                                                  "false")
    assert first["facets"] == [] and len(first["data"]) == 1000
    token = first["$skipToken"]
    assert "1000" not in token and base64.urlsafe_b64decode(token + "==")  # opaque, not bare

    rows, pages = page_through(svc, body, resources)
    assert pages == 3
    assert len(rows) == 2499 and len({r["id"] for r in rows}) == 2499
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert svc.queries == 4  # every page was a query


def test_top_skip_and_token_options():
    svc = ResourceGraphService(quota=100)
    resources = estate(50)
    body = {"subscriptions": [SUB], "query": "Resources | where type =~ "
            "'microsoft.network/networkinterfaces' | project id | order by id asc",
            "options": {"$top": 20}}
    rows, pages = page_through(svc, body, resources)
    assert (len(rows), pages) == (50, 3)
    _, _, out = svc.query({**body, "options": {"$top": 5, "$skip": 45}}, resources, "a")
    assert [r["id"][-8:] for r in out["data"]] == [f"nic{i:05d}" for i in range(45, 50)]
    assert "$skipToken" not in out
    _, _, out = svc.query({**body, "options": {"$top": 5000}}, resources, "a")
    assert out["count"] == 50  # $top is capped at 1,000 rows a page


def test_take_and_all_dynamic_columns_cannot_page():
    svc = ResourceGraphService(quota=100)
    resources = estate(1500)
    _, _, out = svc.query({"query": "Resources | take 1200 | project id"}, resources, "a")
    assert (out["count"], out["resultTruncated"]) == (1000, "true")
    assert "$skipToken" not in out
    _, _, out = svc.query({"query": "Resources | project properties"}, resources, "a")
    assert (out["count"], out["resultTruncated"]) == (1000, "true")
    assert "$skipToken" not in out


def test_scope_filter_and_arg_table():
    svc = ResourceGraphService(quota=100)
    resources = estate(3)
    _, _, out = svc.query({"subscriptions": [SUB.upper()],
                           "query": "Resources | summarize count() by type | order by type asc"},
                          resources, "a")
    assert out["data"] == [
        {"type": "microsoft.compute/virtualmachines", "count_": 2},
        {"type": "microsoft.network/networkinterfaces", "count_": 3},
        {"type": "microsoft.network/virtualnetworks", "count_": 1},  # subnets stay inside it
        {"type": "microsoft.storage/storageaccounts", "count_": 1},
    ]
    _, _, out = svc.query({"query": "Resources | count"}, resources, "a")  # no scope: tenant
    assert out["data"] == [{"Count": 8}]
    _, _, out = svc.query({"managementGroups": ["mg1"], "query": "Resources | count"},
                          resources, "a")
    assert out["data"] == [{"Count": 8}]


def test_table_result_format():
    svc = ResourceGraphService()
    _, _, out = svc.query({"query": "Resources | where name == 'hs-vm1' | project name, tags,"
                                    " n = array_length(properties.networkProfile"
                                    ".networkInterfaces)",
                           "options": {"resultFormat": "table"}}, estate(2), "a")
    assert out["data"] == {
        "columns": [{"name": "name", "type": "string"}, {"name": "tags", "type": "object"},
                    {"name": "n", "type": "integer"}],
        "rows": [["hs-vm1", {"hairpin": "opt-in"}, 1]]}


def test_quota_429_and_headers():
    clock = FakeClock()
    svc = ResourceGraphService(quota=3, window_seconds=5, clock=clock)
    body = {"query": "Resources | project id"}
    seen = []
    for _ in range(3):
        status, headers, _ = svc.query(body, [], "alice")
        seen.append((status, headers["x-ms-user-quota-remaining"],
                     headers["x-ms-user-quota-resets-after"]))
        clock.now += 1
    assert seen == [(200, "2", "00:00:05"), (200, "1", "00:00:04"), (200, "0", "00:00:03")]
    status, headers, out = svc.query(body, [], "alice")
    assert status == 429
    assert headers["Retry-After"] == "2" and headers["x-ms-user-quota-remaining"] == "0"
    assert out["error"]["code"] == "RateLimiting"
    assert out["error"]["details"][0]["code"] == "RateLimiting"
    assert "throttled" in out["error"]["details"][0]["message"]
    assert svc.query(body, [], "bob")[0] == 200  # the quota is per caller
    clock.now += 2  # the window resets
    status, headers, _ = svc.query(body, [], "alice")
    assert (status, headers["x-ms-user-quota-remaining"]) == (200, "2")


def test_bad_query_gets_args_error_body():
    svc = ResourceGraphService()
    status, headers, out = svc.query({"query": "Resources\n| where type =~ 'x'\n| parse id"},
                                     [], "a")
    assert status == 400
    assert "x-ms-user-quota-remaining" in headers
    err = out["error"]
    assert err["code"] == "BadRequest" and "correlationId" in err["message"]
    assert err["details"][0] == {"code": "InvalidQuery", "message": (
        "Query is invalid. Please refer to the documentation for the Azure Resource Graph "
        "service and fix the error before retrying.")}
    assert err["details"][1]["code"] == "InvalidQueryLanguage"
    assert (err["details"][1]["line"], err["details"][1]["characterPositionInLine"],
            err["details"][1]["token"]) == (3, 2, "parse")
    status, _, out = svc.query({"query": "Resources | where"}, [], "a")
    assert status == 400 and out["error"]["details"][1]["code"] == "ParserFailure"
    status, _, out = svc.query({"query": "Resources | project id",
                                "options": {"$skipToken": "garbage"}}, [], "a")
    assert status == 400 and out["error"]["details"][1]["code"] == "InvalidSkipToken"


def test_skip_token_is_bound_to_its_query():
    svc = ResourceGraphService(quota=100)
    resources = estate(1200)
    _, _, out = svc.query({"query": "Resources | project id"}, resources, "a")
    status, _, err = svc.query({"query": "Resources | project name",
                                "options": {"$skipToken": out["$skipToken"]}}, resources, "a")
    assert status == 400 and err["error"]["details"][1]["code"] == "InvalidSkipToken"


def test_project_queries_run_on_the_service():
    svc = ResourceGraphService(quota=100)
    resources = estate(3)
    _, _, out = svc.query({"subscriptions": [SUB], "query": VM_NIC_QUERY}, resources, "a")
    assert out["data"] == [
        {"vmId": f"{RG}/providers/Microsoft.Compute/virtualMachines/hs-vm1", "vmName": "hs-vm1",
         "nicId": nic(0)["id"], "primary": True, "powerState": "PowerState/running"},
        {"vmId": f"{RG}/providers/Microsoft.Compute/virtualMachines/hs-vm2", "vmName": "hs-vm2",
         "nicId": nic(1)["id"], "primary": True, "powerState": "PowerState/deallocated"},
    ]
    rows, _ = page_through(svc, {"subscriptions": [SUB], "query": DISCOVERY_QUERY}, resources)
    assert {r["name"] for r in rows} == {"nic00000", "nic00001", "nic00002", "hs-vm1",
                                         "hs-vm2", "hs-vnet"}


def test_round_trip_gives_back_arm_documents():
    for doc in [vm("hs-vm1", "running", ("/n",)), nic(7), VNET]:
        back = from_arg_row(to_arg_row(doc))
        expected = {k: v for k, v in doc.items() if k != "etag"}  # ARG has no etag column
        if "instanceView" in doc["properties"]:  # only the power state survives ARG
            expected = json.loads(json.dumps(expected))
            expected["properties"]["instanceView"] = {"statuses": [
                doc["properties"]["instanceView"]["statuses"][1]]}
        assert back == expected


# ---------------------------------------------------------------------------------------------
# The adapter through the real SDK client, over HTTPS on loopback


class _Token:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("test-token", int(time.time()) + 3600)


@pytest.fixture
def graph_server(tmp_path):
    """A loopback HTTPS endpoint that hands each ARG request to a ResourceGraphService."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    state = {"resources": [], "requests": [], "svc": None}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            ok = (self.path.startswith("/providers/Microsoft.ResourceGraph/resources?")
                  and self.headers.get("Authorization") == "Bearer test-token")
            state["requests"].append(body)
            status, headers, out = (state["svc"].query(body, state["resources"], "caller")
                                    if ok else (401, {}, {"error": {"code": "Unauthorized"}}))
            data = json.dumps(out).encode()
            self.send_response(status)
            for k, v in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"https://127.0.0.1:{server.server_address[1]}"
    state["ca"] = str(ca_path)
    yield state
    server.shutdown()
    server.server_close()


def graph_client(server, **kwargs) -> ResourceGraphClient:
    return ResourceGraphClient(_Token(), base_url=server["url"], connection_verify=server["ca"],
                               credential_scopes=["https://management.azure.com/.default"],
                               **kwargs)


def test_adapter_pages_through_the_sdk_and_waits_for_quota(graph_server):
    clock = FakeClock()
    graph_server["svc"] = ResourceGraphService(quota=15, window_seconds=5, clock=clock)
    graph_server["resources"] = estate(2495)
    progress = []
    docs = discover_resources(graph_client(graph_server), [SUB], page_size=100,
                              sleep=clock.sleep, on_page=lambda p, n: progress.append((p, n)))
    assert len(docs) == 2495 + 3  # NICs, VMs and the VNet of SUB; no storage, no subnet doc
    assert len(progress) == 25 and progress[-1] == (25, 2498)
    # 25 pages at 15 queries per 5 s: the adapter waited once, when the quota hit 0, and
    # never earned a 429
    assert clock.sleeps == [5.0]
    assert graph_server["svc"].queries == 25 == len(graph_server["requests"])
    sent = graph_server["requests"][0]
    assert sent["query"] == DISCOVERY_QUERY and sent["subscriptions"] == [SUB]
    vm1 = next(d for d in docs if d["name"] == "hs-vm1")
    assert vm1["type"] == "Microsoft.Compute/virtualMachines"
    assert vm1["properties"]["instanceView"]["statuses"] == [
        {"code": "PowerState/running", "level": "Info", "displayStatus": "VM running"}]
    assert "extended" not in vm1["properties"] and "tenantId" not in vm1
    assert next(d for d in docs if d["name"] == "nic00007") == projected(nic(7))
    assert "provisioningState" not in vm1["properties"]  # not read by the topology: not sent


def test_adapter_waits_out_a_429(graph_server):
    clock = FakeClock()
    graph_server["svc"] = ResourceGraphService(quota=1, window_seconds=3, clock=clock)
    graph_server["resources"] = estate(5)
    client = graph_client(graph_server, retry_total=0)  # let the 429 reach the adapter
    graph_server["svc"].query({"query": "Resources | count"}, [], "caller")  # use the quota
    docs = discover_resources(client, [SUB], sleep=clock.sleep)
    assert len(docs) == 5 + 3
    assert clock.sleeps == [3.0]


def test_adapter_surfaces_a_bad_query(graph_server):
    from azure.core.exceptions import HttpResponseError
    graph_server["svc"] = ResourceGraphService()
    with pytest.raises(HttpResponseError) as info:
        discover_resources(graph_client(graph_server), [SUB], query="Resources | nope")
    assert info.value.status_code == 400
    assert info.value.error.code == "BadRequest"
    assert [d.code for d in info.value.error.details] == ["InvalidQuery",
                                                           "InvalidQueryLanguage"]


# ---------------------------------------------------------------------------------------------
# The adapter against the ARM emulator (same store as the ARM path)

try:
    import emulator.server  # noqa: F401

    _EMULATOR_MISSING = None
except ImportError as exc:  # the emulator is another part of the project; say why we skip
    _EMULATOR_MISSING = f"emulator.server cannot be imported: {exc}"

needs_emulator = pytest.mark.skipif(_EMULATOR_MISSING is not None,
                                    reason=_EMULATOR_MISSING or "")


def _arm_get(client, resource_id: str, expand: bool) -> dict:
    """The raw JSON an ARM GET returns, through the SDK client's own pipeline."""
    from azure.core.rest import HttpRequest
    url = f"{resource_id}?api-version=2024-07-01" + ("&$expand=instanceView" if expand else "")
    response = client._send_request(HttpRequest("GET", url))
    response.raise_for_status()
    return response.json()


@needs_emulator
def test_emulator_graph_discovery_returns_what_arm_gets_return(emulator, arm_clients):
    emu = emulator()
    c = arm_clients(emu)
    progress = []
    docs = discover_resources(c.graph, [emu.subscription_id],
                              on_page=lambda p, n: progress.append((p, n)))
    assert progress == [(1, 10)]
    assert sorted(d["name"] for d in docs) == sorted([
        "vnet1", "vnet2", "nsg1", "vm1-nic", "vm2-nic", "spare-nic", "other-nic", "ilb", "vm1",
        "vm2"])
    assert emu.requests.count("POST", action="Microsoft.ResourceGraph/resources/read") == 1
    for doc in docs:
        is_vm = doc["type"] == "Microsoft.Compute/virtualMachines"
        got = _arm_get(c.graph, doc["id"], expand=is_vm)
        got.pop("etag", None)  # ARG has no etag column
        if is_vm:
            power = [s for s in got["properties"].pop("instanceView")["statuses"]
                     if s["code"].startswith("PowerState/")]
            assert doc["properties"].pop("instanceView")["statuses"] == power
        assert doc == projected(got), doc["id"]


@needs_emulator
def test_emulator_graph_sees_power_changes(emulator, arm_clients):
    emu = emulator()
    c = arm_clients(emu)
    c.compute.virtual_machines.begin_deallocate("rg-test", "vm1").result()
    docs = {d["name"]: d for d in discover_resources(c.graph, [emu.subscription_id])}
    codes = {n: docs[n]["properties"]["instanceView"]["statuses"][0]["code"]
             for n in ("vm1", "vm2")}
    assert codes == {"vm1": "PowerState/deallocated", "vm2": "PowerState/running"}


@needs_emulator
def test_emulator_graph_pages_2500_rows_and_counts_queries(emulator, arm_clients):
    from tests.support.fixtures_emulator import nic_doc, small_scenario
    scenario = small_scenario()
    scenario["resources"] += [nic_doc(f"bulk-{i:04d}", None) for i in range(2500)]
    emu = emulator(scenario)
    c = arm_clients(emu)
    progress = []
    docs = discover_resources(c.graph, [emu.subscription_id],
                              on_page=lambda p, n: progress.append((p, n)))
    assert len(docs) == 2510 == len({d["id"].lower() for d in docs})
    assert progress == [(1, 1000), (2, 2000), (3, 2510)]
    assert emu.requests.count("POST", action="Microsoft.ResourceGraph/resources/read") == 3


@needs_emulator
def test_emulator_graph_rejects_a_bad_query(emulator, arm_clients):
    from azure.core.exceptions import HttpResponseError
    emu = emulator()
    c = arm_clients(emu)
    with pytest.raises(HttpResponseError) as info:
        discover_resources(c.graph, [emu.subscription_id],
                           query="Resources | where type =~ 'x' | project-smart id")
    assert info.value.status_code == 400
    assert [d.code for d in info.value.error.details] == ["InvalidQuery",
                                                           "InvalidQueryLanguage"]


@needs_emulator
def test_emulator_graph_and_arm_discovery_see_the_same_documents(emulator, arm_clients):
    """The seed scenario through both discovery paths: same documents, except what ARG does
    not carry (etag, instance view beyond the power state)."""
    from shared.azure.clients import AzureClients
    from shared.azure.discovery import discover_subscription

    emu = emulator("default")
    c = arm_clients(emu)
    clients = AzureClients(emu.subscription_id, arm_endpoint=emu.base_url,
                           credential=c.credential, polling_interval=0)
    via_arm = {d["id"].lower(): d
               for d in discover_subscription(clients, include_health=False)["resources"]}
    via_arg = {d["id"].lower(): d for d in discover_resources(c.graph, [emu.subscription_id])}
    nsg = "Microsoft.Network/networkSecurityGroups"
    assert any(d["type"] == nsg for d in via_arm.values())
    assert set(via_arg) == set(via_arm)
    assert all(d["properties"] == {} for d in via_arg.values() if d["type"] == nsg)
    for key in via_arg:
        arm_doc = json.loads(json.dumps(via_arm[key]))
        expected = projected(arm_doc)
        iv = arm_doc["properties"].get("instanceView")
        if iv is not None:
            expected["properties"]["instanceView"] = {"statuses": [
                s for s in iv["statuses"] if s["code"].startswith("PowerState/")]}
        assert via_arg[key] == expected, key
    # What matters: the topology built from either is the same.
    from shared.core.topology import build_topology
    arm_topology = build_topology(list(via_arm.values()))
    arg_topology = build_topology(list(via_arg.values()))
    for part in ("nics", "ip_configs", "vnets", "subnets", "load_balancers", "frontends",
                 "rules", "pools", "probes", "pool_members", "nic_vm"):
        assert getattr(arg_topology, part) == getattr(arm_topology, part), part
    # ARG carries a VM's power state but not its agent's status (unknown, never guessed).
    assert {k: dataclasses.replace(v, agent_ready=None) for k, v in arm_topology.vms.items()} \
        == dict(arg_topology.vms)


@needs_emulator
def test_a_page_over_the_response_limit_is_asked_for_again_with_half_the_rows(emulator,
                                                                               arm_clients):
    # ARG answers 400 BadRequest / ResponsePayloadTooLarge past 16 MiB (microsoft/ARI#199);
    # the emulator's limit is lowered so that 1,000 of these rows are too many, 500 are not.
    from tests.support.fixtures_emulator import nic_doc, small_scenario
    scenario = small_scenario()
    scenario["resources"] += [nic_doc(f"bulk-{i:04d}", None) for i in range(2500)]
    emu = emulator(scenario)
    _, _, page = ResourceGraphService().query(
        {"query": DISCOVERY_QUERY, "options": {"$top": 500}}, emu.arg_resources(), "probe")
    emu.graph_response_limit_bytes = len(json.dumps(page, separators=(",", ":"))) + 100
    c = arm_clients(emu)
    progress = []
    docs = discover_resources(c.graph, [emu.subscription_id],
                              on_page=lambda p, n: progress.append((p, n)))
    assert len(docs) == 2510 == len({d["id"].lower() for d in docs})
    statuses = [e.status for e in emu.requests
                if e.action == "Microsoft.ResourceGraph/resources/read"]
    # 1,000 rows refused once, then the same first page and the rest at 500 rows a page.
    assert statuses == [400] + [200] * 6
    assert [n for _, n in progress] == [500, 1000, 1500, 2000, 2500, 2510]


@needs_emulator
def test_one_row_over_the_limit_is_an_error_not_a_loop(emulator, arm_clients):
    from azure.core.exceptions import HttpResponseError
    emu = emulator()
    emu.graph_response_limit_bytes = 100
    with pytest.raises(HttpResponseError) as info:
        discover_resources(arm_clients(emu).graph, [emu.subscription_id])
    assert [d.code for d in info.value.error.details] == ["ResponsePayloadTooLarge"]
    assert "has exceeded the limit of 100" in info.value.error.details[0].message
    # 1,000, 500, 250, 125, 62, 31, 15, 7, 3 and 1 rows: each too large, then the error.
    assert emu.requests.count("POST", action="Microsoft.ResourceGraph/resources/read") == 10


@needs_emulator
def test_only_the_properties_the_topology_reads_come_back(emulator, arm_clients):
    from tests.support.fixtures_emulator import small_scenario
    scenario = small_scenario()
    vm1 = next(d for d in scenario["resources"] if d["name"] == "vm1")
    vm1["properties"]["storageProfile"]["dataDisks"] = [
        {"lun": i, "name": f"vm1-data-{i}", "createOption": "Attach", "diskSizeGB": 1024}
        for i in range(64)]
    vm1["properties"]["osProfile"] = {"computerName": "vm1", "customData": "x" * 50_000,
                                      "windowsConfiguration": {"provisionVMAgent": True}}
    emu = emulator(scenario)
    doc = next(d for d in discover_resources(arm_clients(emu).graph, [emu.subscription_id])
               if d["name"] == "vm1")
    assert doc["properties"]["storageProfile"] == {"osDisk": {"osType": "Windows"}}
    assert doc["properties"]["osProfile"] == {"windowsConfiguration": {"provisionVMAgent": True}}
    assert len(json.dumps(doc)) < 3000
