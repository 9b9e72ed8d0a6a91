"""The latency profile (emulator.latency): Retry-After and duration per operation kind, ARM's
subscription token buckets and Microsoft.Compute's policies, seen through the real SDK; and the
product honouring Retry-After under it. Counts and headers, never elapsed time."""

import json
from types import MappingProxyType

import pytest
import requests

from emulator.compute_limits import Policy, PolicyLimit
from emulator.latency import FIELD, LatencyProfile, LroTiming, OperationKind, profile_named
from tests.support.fixtures_emulator import LOC, RG, SUBNET_ID


def _profile(**kw) -> LatencyProfile:
    lro = kw.pop("lro", {})
    return LatencyProfile("test", lro=MappingProxyType(lro), **kw)


def _hook(seen: list):
    """raw_response_hook: runs after the SDK's retry policy, so it sees every attempt."""
    def hook(response):
        http = response.http_response
        body = http.read() if http.status_code >= 400 else b""  # errors: the body is the point
        seen.append((http.request.method, http.status_code, dict(http.headers), body))
    return hook


def _raw(emu, method, url, body=None):
    return requests.request(method, url if url.startswith("http") else f"{emu.base_url}{url}",
                            json=body, verify=emu.ca_path, timeout=10,
                            headers={"Authorization": f"Bearer {emu.token_for()}"})


def test_profile_names():
    assert profile_named("off") is None and profile_named(None) is None
    assert profile_named("field") is FIELD
    with pytest.raises(ValueError, match="known: off, field"):
        profile_named("fast")


def test_latency_per_request_kind(emulator, arm_clients):
    """Each answer spends its kind's latency (recorded here instead of slept)."""
    from emulator.latency import RequestKind as K

    latency = {K.GET: 0.01, K.LIST: 0.02, K.PUT: 0.03, K.POST: 0.04, K.DELETE: 0.05,
               K.POLL: 0.06, K.QUERY: 0.07}
    emu = emulator(profile=_profile(latency=MappingProxyType(latency)))
    spent: list[float] = []
    emu.profile_stage.sleep = spent.append
    c = arm_clients(emu)
    steps = [
        (K.GET, lambda: c.network.load_balancers.get(RG, "ilb")),
        (K.LIST, lambda: list(c.network.network_interfaces.list(RG))),
        (K.POST, lambda: c.compute.virtual_machines.begin_deallocate(RG, "vm2", polling=False)),
        (K.DELETE, lambda: c.network.network_interfaces.begin_delete(RG, "spare-nic",
                                                                   polling=False)),
        (K.PUT, lambda: c.compute.virtual_machines.begin_update(RG, "vm1", {"tags": {}},
                                                              polling=False)),
        (K.QUERY, lambda: c.graph.resources({"subscriptions": [emu.subscription_id],
                                             "query": "Resources | take 1"})),
    ]
    for kind, call in steps:
        spent.clear()
        call()
        assert spent == [latency[kind]], kind
    vm1 = f"/subscriptions/{emu.subscription_id}/resourceGroups/{RG}/providers/" \
          "Microsoft.Compute/virtualMachines/vm1"
    status_url = _raw(emu, "POST", f"{vm1}/restart?api-version=x").headers["Azure-AsyncOperation"]
    spent.clear()
    _raw(emu, "GET", status_url)
    assert spent == [latency[K.POLL]]


def test_retry_after_per_operation_kind(emulator, arm_clients):
    kinds = {OperationKind.NIC_CREATE: 4, OperationKind.VM_DEALLOCATE: 5,
             OperationKind.VM_START: 6, OperationKind.RULE_HEALTH: 7,
             OperationKind.VM_UPDATE: 8, OperationKind.RUN_COMMAND: 9}
    emu = emulator(profile=_profile(lro={k: LroTiming(v, 600.0) for k, v in kinds.items()}))
    c = arm_clients(emu)
    seen: list = []
    hook = dict(polling=False, raw_response_hook=_hook(seen))  # the first answers only
    nic = {"location": LOC, "properties": {"ipConfigurations": [
        {"name": "ipconfig1", "properties": {"subnet": {"id": SUBNET_ID}}}]}}
    c.network.network_interfaces.begin_create_or_update(RG, "new-nic", nic, **hook)
    c.compute.virtual_machines.begin_deallocate(RG, "vm2", **hook)
    c.compute.virtual_machines.begin_start(RG, "vm2", **hook)
    c.network.load_balancer_load_balancing_rules.begin_health(RG, "ilb", "rule-a", **hook)
    c.compute.virtual_machines.begin_update(RG, "vm1", {"tags": {"a": "b"}}, **hook)
    c.compute.virtual_machines.begin_run_command(
        RG, "vm1", {"commandId": "RunPowerShellScript", "script": ["echo"]}, **hook)
    assert [h.get("Retry-After") for _, _, h, _ in seen] == [str(v) for v in kinds.values()]

    # The operation runs for its duration: a status read says InProgress and asks to come
    # back after the same Retry-After; a second read at once comes too early, and is counted.
    for _ in range(2):
        status = _raw(emu, "GET", seen[3][2]["Azure-AsyncOperation"])
        assert status.json()["status"] == "InProgress"
        assert status.headers["Retry-After"] == "7"
    assert emu.ops.early_polls == 1


def test_arm_token_buckets_through_the_sdk(emulator, arm_clients):
    # 3 reads, one back every 3 s: the 4th read is refused until a token is back.
    emu = emulator(profile=_profile(arm_limits={"reads": (3, 1 / 3)}))
    c = arm_clients(emu)
    seen: list = []
    for _ in range(4):
        c.network.load_balancers.get(RG, "ilb", raw_response_hook=_hook(seen))
    statuses = [s for _, s, _, _ in seen]
    assert statuses == [200, 200, 200, 429, 200]  # the SDK waited Retry-After, then got in
    remaining = [h["x-ms-ratelimit-remaining-subscription-reads"] for _, _, h, _ in seen]
    assert remaining == ["2", "1", "0", "0", "0"]  # the retry took the refilled token
    glob = [h["x-ms-ratelimit-remaining-subscription-global-reads"] for _, _, h, _ in seen]
    assert int(glob[0]) == 44  # 15 x the principal's bucket, shared by every principal
    throttled = seen[3]
    assert throttled[2]["Retry-After"] == "3"
    assert json.loads(throttled[3])["error"]["code"] == "TooManyRequests"
    # Deletes have their own bucket (2024 limits): untouched by the reads above.
    c.network.network_interfaces.begin_delete(RG, "spare-nic", polling=False,
                                             raw_response_hook=_hook(seen))
    assert seen[-1][2]["x-ms-ratelimit-remaining-subscription-deletes"] == "199"


def test_compute_policies_per_vm_and_subscription(emulator, arm_clients):
    # UpdateVM (start is one): 2 per VM, one back every 3 s; 100 for the subscription.
    limits = {Policy.UPDATE_VM: PolicyLimit((2, 20), (100, 20))}
    emu = emulator(profile=_profile(compute_limits=limits))
    c = arm_clients(emu)
    seen: list = []
    for vm in ("vm1", "vm1", "vm1", "vm2"):
        c.compute.virtual_machines.begin_start(RG, vm, raw_response_hook=_hook(seen)).result()
    posts = [(s, h, body) for m, s, h, body in seen if m == "POST"]
    assert [s for s, _, _ in posts] == [202, 202, 429, 202, 202]
    ratelimit = [h["x-ms-ratelimit-remaining-resource"] for _, h, _ in posts]
    assert ratelimit[:2] == ["Microsoft.Compute/UpdateVMResource;1,"
                             "Microsoft.Compute/UpdateVMSubscription;99",
                             "Microsoft.Compute/UpdateVMResource;0,"
                             "Microsoft.Compute/UpdateVMSubscription;98"]
    assert ratelimit[3].startswith("Microsoft.Compute/UpdateVMResource;0,")  # refilled, taken
    assert ratelimit[4].startswith("Microsoft.Compute/UpdateVMResource;1,")  # vm2: its own
    status, headers, body = posts[2]
    error = json.loads(body)["error"]
    assert headers["Retry-After"] == "3"
    assert error["code"] == "OperationNotAllowed"
    assert [d["target"] for d in error["details"]] == ["UpdateVMResource"]
    assert error["innererror"]["internalErrorCode"] == "TooManyRequestsReceived"


def test_product_honours_retry_after_under_the_profile(emulator, arm_clients):
    """Rule health read by the product (discover_health, its clients and retry policy) under a
    profile whose health operations run 1.5 s and ask for polls every second, with a write
    bucket so small that the POSTs are throttled: every answer arrives, no poll comes before
    its Retry-After, and no throttled request is retried before its token is back."""
    from shared.azure.clients import AzureClients
    from shared.azure.discovery import HEALTH_WORKERS, discover_health

    profile = _profile(lro={OperationKind.RULE_HEALTH: LroTiming(1, 1.5)},
                       arm_limits={"writes": (1, 1.0)})
    emu = emulator("default", profile=profile)
    c = arm_clients(emu)
    clients = AzureClients(emu.subscription_id, arm_endpoint=emu.base_url,
                           metrics_endpoint=emu.metrics_endpoint,
                           credential=c.credential)  # polling_interval None: Retry-After rules
    lbs = [emu.view(d) for d in emu.store.of_type("Microsoft.Network/loadBalancers")]
    emu.metrics.silent.update(lb["id"].lower() for lb in lbs)  # no metric data: the rule API
    health = discover_health(clients, lbs, max_workers=HEALTH_WORKERS)

    assert sorted(h["ruleId"].rsplit("/", 1)[-1] for h in health) == [
        "rule-patient-index-1972", "rule-ucr-registry-1972"]
    assert all(h["response"]["up"] or h["response"]["down"] for h in health)
    assert emu.ops.early_polls == 0
    posts = [e.status for e in emu.requests if e.method == "POST"]
    assert 429 in posts, "the write bucket never ran out: the test tests nothing"
    # A client ignoring Retry-After would meet an empty bucket again: never two in a row
    # for the same rule.
    by_rule: dict = {}
    for e in emu.requests:
        if e.method == "POST" and e.path.endswith("/health"):
            by_rule.setdefault(e.path, []).append(e.status)
    assert all("429,429" not in ",".join(map(str, s)) for s in by_rule.values()), by_rule
    assert all(s[-1] == 202 for s in by_rule.values())



def test_latency_of_a_metrics_batch(emulator):
    """The Azure Monitor batch (the real MetricsClient) spends the metrics latency."""
    from datetime import timedelta

    from azure.identity import ManagedIdentityCredential
    from azure.monitor.querymetrics import MetricsClient

    from emulator.latency import RequestKind
    from shared.core import metric_health as mh

    emu = emulator("default", profile=_profile(
        latency=MappingProxyType({RequestKind.METRICS: 0.08, RequestKind.POST: 0.04})))
    spent: list[float] = []
    emu.profile_stage.sleep = spent.append
    lb = emu.store.of_type("Microsoft.Network/loadBalancers")[0]["id"]
    MetricsClient(emu.metrics_endpoint.format(region="eastus"), ManagedIdentityCredential(),
                  retry_total=0).query_resources(
        resource_ids=[lb], metric_namespace=mh.METRIC_NAMESPACE, metric_names=[mh.METRIC_NAME],
        timespan=timedelta(minutes=5), granularity=timedelta(minutes=1),
        aggregations=["Average"])
    assert spent == [0.08]
