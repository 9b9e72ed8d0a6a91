"""The emulator's Azure Monitor metrics through the real `azure-monitor-querymetrics`
MetricsClient (batch API on the regional endpoint) and the per-resource ARM metrics API:
DipAvailability from the same health model as the rule health action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.monitor.querymetrics import MetricsClient

from shared.core import metric_health as mh

SUB = "00000000-0000-0000-0000-000000000001"
P = f"/subscriptions/{SUB}/resourceGroups/rg-healthshare/providers"
LB = f"{P}/Microsoft.Network/loadBalancers/ilb-healthshare"
VM1 = f"{P}/Microsoft.Compute/virtualMachines/hs-vm1"


def client(emu, region="eastus") -> MetricsClient:
    return MetricsClient(emu.metrics_endpoint.format(region=region), ManagedIdentityCredential(),
                         retry_total=0)


def query(c: MetricsClient, ids=(LB,), **kw):
    kw.setdefault("filter", mh.series_filter())
    return c.query_resources(resource_ids=list(ids), metric_namespace=mh.METRIC_NAMESPACE,
                             metric_names=[mh.METRIC_NAME], timespan=timedelta(minutes=5),
                             granularity=timedelta(minutes=1), aggregations=["Average"], **kw)


def states(results) -> dict[tuple[str, str], float]:
    """(frontend IP, backend IP) -> the latest value."""
    out = {}
    for r in results:
        for m in r.metrics:
            for ts in m.timeseries:
                d = ts.metadata_values
                out[(d["frontendipaddress"], d["backendipaddress"])] = ts.data[-1].average
    return out


def test_the_real_client_reads_health_probe_status_per_rule_and_member(emulator):
    emu = emulator("default")
    (result,) = query(client(emu), max_results=50)
    (metric,) = result.metrics
    assert metric.id == f"{LB}/providers/Microsoft.Insights/metrics/DipAvailability"
    assert metric.name == "DipAvailability" and result.resource_region == "eastus"
    dims = [ts.metadata_values for ts in metric.timeseries]
    assert {tuple(sorted(d)) for d in dims} == {tuple(sorted(x.lower() for x in mh.DIMENSIONS))}
    assert sorted((d["frontendipaddress"], d["frontendport"], d["backendport"]) for d in dims) \
        == [("10.0.1.100", "1972", "1972")] * 2 + [("10.0.1.101", "1972", "1973")] * 2
    # the scenario's rule health: hs-vm1 Up, hs-vm2 Down on both rules
    assert states([result]) == {("10.0.1.100", "10.0.1.10"): 100.0,
                                ("10.0.1.100", "10.0.1.20"): 0.0,
                                ("10.0.1.101", "10.0.1.10"): 100.0,
                                ("10.0.1.101", "10.0.1.20"): 0.0}
    points = metric.timeseries[0].data
    steps = {b.timestamp - a.timestamp for a, b in zip(points, points[1:], strict=False)}
    assert len(points) in (5, 6) and steps == {timedelta(minutes=1)}
    (seen,) = emu.requests
    assert seen.method == "POST" and seen.action == "Microsoft.Insights/metrics/read"
    assert seen.path == f"/regions/eastus/subscriptions/{SUB}/metrics:getBatch"
    assert not seen.is_write


def test_a_mirror_failover_shows_in_the_metric_as_in_the_rule_health(emulator, arm_clients):
    emu = emulator("default")
    emu.set_power(VM1, "deallocated")  # the mirror primaries fail over to hs-vm2
    got = states(query(client(emu), max_results=50))
    assert got[("10.0.1.100", "10.0.1.10")] == 0.0 and got[("10.0.1.100", "10.0.1.20")] == 100.0
    rule = arm_clients(emu).network.load_balancer_load_balancing_rules.begin_health(
        "rg-healthshare", "ilb-healthshare", "rule-patient-index-1972").result()
    api = {b.ip_address: b.state for b in rule.load_balancer_backend_addresses}
    assert api == {"10.0.1.10": "Down", "10.0.1.20": "Up"}


def test_top_caps_the_series_of_the_whole_batch(emulator):
    emu = emulator("default")
    assert len(states(query(client(emu), max_results=3))) == 3
    assert len(states(query(client(emu), ids=[LB, LB], max_results=6))) == 4  # same LB twice
    # without a filter: one series, every dimension rolled up (the average of 100/0/100/0)
    (result,) = query(client(emu), filter=None)
    (ts,) = result.metrics[0].timeseries
    assert ts.metadata_values == {} and ts.data[-1].average == 50.0


def test_batch_limits_region_and_audience(emulator):
    emu = emulator("default")
    with pytest.raises(HttpResponseError) as exc:
        query(client(emu), ids=[LB] * 51)
    assert exc.value.status_code == 400 and "50" in exc.value.message
    with pytest.raises(HttpResponseError) as exc:
        query(client(emu, region="westeurope"))
    assert exc.value.status_code == 400 and "eastus" in exc.value.message
    with pytest.raises(HttpResponseError) as exc:
        client(emu).query_resources(resource_ids=[LB], metric_namespace=mh.METRIC_NAMESPACE,
                                    metric_names=["VipAvailabilityX"])
    assert exc.value.status_code == 400
    # an ARM token is not one for Azure Monitor
    arm = MetricsClient(emu.metrics_endpoint.format(region="eastus"), ManagedIdentityCredential(),
                        audience="https://management.azure.com", retry_total=0)
    with pytest.raises(ClientAuthenticationError):
        query(arm)


def test_the_batch_needs_metrics_read_at_subscription_scope(emulator):
    emu = emulator("default", roles={"*": {f"/subscriptions/{SUB}": {"Microsoft.Network/*"}}})
    with pytest.raises(HttpResponseError) as exc:
        query(client(emu))
    assert exc.value.status_code == 403 and "Microsoft.Insights/metrics/read" in exc.value.message
    emu = emulator("default", roles={"*": {f"/subscriptions/{SUB}/resourceGroups/rg-healthshare":
                                           {"Microsoft.Insights/metrics/read"}}})
    with pytest.raises(HttpResponseError) as exc:
        query(client(emu))
    assert exc.value.status_code == 403  # a grant on the group only: not enough
    emu = emulator("default", roles={"*": {f"/subscriptions/{SUB}":
                                           {"Microsoft.Insights/metrics/read"}}})
    assert len(states(query(client(emu), max_results=50))) == 4


def test_new_and_basic_load_balancers_have_no_series(emulator):
    emu = emulator("default")
    emu.metrics.silent.add(LB.lower())
    (result,) = query(client(emu))
    assert result.metrics[0].timeseries == []
    emu.metrics.silent.clear()
    emu.store.raw(LB)["sku"] = {"name": "Basic"}
    (result,) = query(client(emu))
    assert result.metrics[0].timeseries == []


def test_the_per_resource_arm_metrics_api_answers_the_same(emulator):
    emu = emulator("default")
    end = datetime.now(UTC)
    start = end - timedelta(minutes=5)
    got = requests.get(
        f"{emu.base_url}{LB}/providers/Microsoft.Insights/metrics",
        params={"api-version": "2023-10-01", "metricnames": "DipAvailability",
                "timespan": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
                "interval": "PT1M", "aggregation": "Average", "$filter": mh.series_filter(),
                "top": "50", "metricnamespace": mh.METRIC_NAMESPACE},
        headers={"Authorization": f"Bearer {emu.token_for()}"}, verify=emu.ca_path, timeout=10)
    assert got.status_code == 200, got.text
    (metric,) = got.json()["value"]
    values = {(ts["metadatavalues"][0]["value"], ts["metadatavalues"][2]["value"]):
              ts["data"][-1]["average"] for ts in metric["timeseries"]}
    assert values == states(query(client(emu), max_results=50))
    assert emu.requests[0].action == "Microsoft.Insights/metrics/read"
