"""LRO header shapes and fault injection, seen through the real SDK's polling and retry."""

import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceResponseError

from tests.support.fixtures_emulator import LOC, RG


@pytest.fixture
def env(emulator, arm_clients):
    emu = emulator()
    return emu, arm_clients(emu)


def _raw(emu, method, path, body=None):
    return requests.request(
        method,
        f"{emu.base_url}{path}",
        json=body,
        verify=emu.ca_path,
        headers={"Authorization": f"Bearer {emu.token_for()}"},
        timeout=10,
    )


def _rid(emu, rest):
    return f"/subscriptions/{emu.subscription_id}/resourceGroups/{RG}/providers/{rest}"


def test_lro_header_shapes(env):
    emu, c = env
    # Microsoft.Network PUT: 201 + Azure-AsyncOperation, body provisioningState Updating
    r = _raw(
        emu,
        "PUT",
        _rid(emu, "Microsoft.Network/networkSecurityGroups/n2?api-version=x"),
        {"location": LOC, "properties": {}},
    )
    assert r.status_code == 201
    assert (
        "/providers/Microsoft.Network/locations/westeurope/operations/"
        in r.headers["Azure-AsyncOperation"]
    )
    assert "Location" not in r.headers
    assert r.json()["properties"]["provisioningState"] == "Updating"
    op = r.headers["Azure-AsyncOperation"].replace(emu.base_url, "")
    assert _raw(emu, "GET", op).json() == {"status": "InProgress"}
    assert _raw(emu, "GET", op).json() == {"status": "Succeeded"}
    # Microsoft.Network DELETE: 202 + Azure-AsyncOperation + Location (operationResults)
    r = _raw(emu, "DELETE", _rid(emu, "Microsoft.Network/networkSecurityGroups/n2?api-version=x"))
    assert r.status_code == 202 and "/operationResults/" in r.headers["Location"]
    loc = r.headers["Location"].replace(emu.base_url, "")
    assert _raw(emu, "GET", loc).status_code == 202
    assert _raw(emu, "GET", loc).status_code == 200
    # Microsoft.Compute POST action: 202 + both, Location = the operation with monitor=true
    r = _raw(
        emu, "POST", _rid(emu, "Microsoft.Compute/virtualMachines/vm1/deallocate?api-version=x")
    )
    assert r.status_code == 202
    assert (
        "/providers/Microsoft.Compute/locations/westeurope/operations/"
        in r.headers["Azure-AsyncOperation"]
    )
    assert "monitor=true" in r.headers["Location"]
    body = _raw(emu, "GET", r.headers["Azure-AsyncOperation"].replace(emu.base_url, "")).json()
    assert body["status"] == "InProgress" and body["name"] and body["startTime"]
    body = _raw(emu, "GET", r.headers["Azure-AsyncOperation"].replace(emu.base_url, "")).json()
    assert body["status"] == "Succeeded" and body["endTime"]
    # Microsoft.Compute PUT: 200 + Azure-AsyncOperation
    vm = _raw(emu, "GET", _rid(emu, "Microsoft.Compute/virtualMachines/vm1?api-version=x")).json()
    r = _raw(emu, "PUT", _rid(emu, "Microsoft.Compute/virtualMachines/vm1?api-version=x"), vm)
    assert r.status_code == 200 and "Azure-AsyncOperation" in r.headers
    assert (
        _raw(emu, "GET", "/subscriptions/x/resourceGroups/rg-test?api-version=1").status_code == 404
    )


def test_missing_api_version_and_unknown_route(env):
    emu, _ = env
    r = _raw(emu, "GET", _rid(emu, "Microsoft.Network/loadBalancers/ilb"))
    assert r.json()["error"]["code"] == "MissingApiVersionParameter"
    assert _raw(emu, "GET", "/nonsense?api-version=1").status_code == 404


def test_polling_interval_zero_is_fast(env):
    emu, c = env
    t = time.monotonic()
    for _ in range(5):
        c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
        c.compute.virtual_machines.begin_start(RG, "vm1").result()
    assert time.monotonic() - t < 5


def test_429_retry_after_is_honoured(env):
    emu, c = env
    emu.faults.add("GET", r"/loadBalancers/ilb$", status=429, retry_after=1, times=1)
    t = time.monotonic()
    assert c.network.load_balancers.get(RG, "ilb").name == "ilb"
    assert time.monotonic() - t >= 0.9
    assert [e.status for e in emu.requests] == [429, 200]


def test_500_and_503_are_retried(env):
    emu, c = env
    rule = emu.faults.add("GET", r"/virtualMachines/vm1$", status=500, times=1)
    emu.faults.add("GET", r"/virtualMachines/vm1$", status=503, times=1)
    assert c.compute.virtual_machines.get(RG, "vm1").name == "vm1"
    assert [e.status for e in emu.requests] == [500, 503, 200]
    assert rule.hits == 1
    emu.faults.add("GET", r"/virtualMachines/vm2$", status=500, times=None)  # forever
    with pytest.raises(HttpResponseError) as exc:
        c.compute.virtual_machines.get(RG, "vm2", retry_total=1)
    assert exc.value.status_code == 500 and exc.value.error.code == "InternalServerError"


def test_dropped_connection_is_retried_then_surfaces(env):
    emu, c = env
    emu.faults.add("GET", r"/networkInterfaces/vm1-nic$", drop_connection=True, times=1)
    assert c.network.network_interfaces.get(RG, "vm1-nic").name == "vm1-nic"
    assert [e.status for e in emu.requests] == [0, 200]  # 0: dropped, then the retry
    emu.faults.add("GET", r"/networkInterfaces/vm2-nic$", drop_connection=True, times=None)
    with pytest.raises(ServiceResponseError):
        c.network.network_interfaces.get(RG, "vm2-nic", retry_total=1)


def test_slow_response_and_client_timeout(env):
    emu, c = env
    emu.faults.add("GET", r"/virtualNetworks/vnet1$", delay_seconds=0.5, times=1)
    t = time.monotonic()
    c.network.virtual_networks.get(RG, "vnet1")
    assert time.monotonic() - t >= 0.5


def test_lro_failed_leaves_state_unchanged(env):
    emu, c = env
    emu.faults.add(
        "POST", r"/deallocate$", lro_failed=True, error_code="AllocationFailed", message="injected"
    )
    with pytest.raises(HttpResponseError) as exc:
        c.compute.virtual_machines.begin_deallocate(RG, "vm1").result()
    assert "AllocationFailed" in str(exc.value)
    vm = c.compute.virtual_machines.get(RG, "vm1", expand="instanceView")
    assert vm.instance_view.statuses[-1].code == "PowerState/running"
    emu.faults.add("PUT", r"/networkInterfaces/", lro_failed=True)
    nic = c.network.network_interfaces.get(RG, "spare-nic")
    nic.tags = {"x": "y"}
    with pytest.raises(HttpResponseError):
        c.network.network_interfaces.begin_create_or_update(RG, "spare-nic", nic).result()
    assert c.network.network_interfaces.get(RG, "spare-nic").tags in (None, {})
    c.network.network_interfaces.begin_create_or_update(RG, "spare-nic", nic).result()
    assert c.network.network_interfaces.get(RG, "spare-nic").tags == {"x": "y"}


def test_request_log_counts(env):
    emu, c = env
    c.network.load_balancers.get(RG, "ilb")
    list(c.compute.virtual_machines.list(RG))
    c.compute.virtual_machines.begin_deallocate(RG, "vm2").result()
    assert emu.requests.by_method()["GET"] >= 2
    assert emu.requests.by_type()["microsoft.network/loadbalancers"] == 1
    writes = emu.requests.writes()
    assert [w.action for w in writes] == ["Microsoft.Compute/virtualMachines/deallocate/action"]
    emu.requests.reset()
    assert len(emu.requests) == 0


def test_arm_throttling_token_bucket(emulator, arm_clients):
    emu = emulator(throttle={"reads": (3, 1.0)})
    c = arm_clients(emu)
    t = time.monotonic()
    for _ in range(4):  # the 4th read exceeds the burst of 3: 429, Retry-After 1, retried
        c.network.load_balancers.get(RG, "ilb")
    assert time.monotonic() - t >= 0.9
    assert [e.status for e in emu.requests] == [200, 200, 200, 429, 200]
    r = _raw(emu, "GET", _rid(emu, "Microsoft.Network/loadBalancers/ilb?api-version=x"))
    assert "x-ms-ratelimit-remaining-subscription-reads" in r.headers
