"""Backend health from Azure Monitor and from the rule health API give the same findings; the
rule API is used only where the metric has no data, in parallel, as ARM's Retry-After says;
each rule's evidence says which source answered."""

from __future__ import annotations

import copy
import json

import pytest
from azure.identity import ManagedIdentityCredential

from shared.core.vocab import HealthSource
from shared.services import audit
from shared.services.context import ServiceContext
from shared.settings import Settings
from tests.support.paths import ROOT

SUB = "00000000-0000-0000-0000-000000000001"
P = f"/subscriptions/{SUB}/resourceGroups/rg-healthshare/providers"
LB = f"{P}/Microsoft.Network/loadBalancers/ilb-healthshare"
VM1 = f"{P}/Microsoft.Compute/virtualMachines/hs-vm1"


def ctx_for(emu) -> ServiceContext:
    settings = Settings(arm_endpoint=emu.base_url, metrics_endpoint=emu.metrics_endpoint)
    return ServiceContext(settings, credential=ManagedIdentityCredential(), polling_interval=0)


def findings(result) -> list[dict]:
    """The findings without the health source (the one thing the two sources may differ in)."""
    out = [f.as_dict() for f in result.evaluation.findings]
    for f in out:
        for rule in f["evidence"]["health"]["rules"]:
            rule.pop("source")
    return out


def sources(result) -> set[str]:
    return {r["source"] for f in result.evaluation.findings
            for r in f.as_dict()["evidence"]["health"]["rules"]}


def both_sources(emu, resource_graph=False):
    """(audit with Azure Monitor, audit with the rule health API only) of the same estate."""
    ctx = ctx_for(emu)
    monitor = audit.run_audit(ctx, subscriptions=[SUB], resource_graph=resource_graph)
    emu.metrics.silent.add(LB.lower())  # no metric data: every rule falls back
    try:
        rule_api = audit.run_audit(ctx, subscriptions=[SUB], resource_graph=resource_graph)
    finally:
        emu.metrics.silent.clear()
    return monitor, rule_api


@pytest.mark.parametrize("scenario", ["default", "default-linux"])
def test_both_sources_give_the_same_findings(emulator, scenario):
    emu = emulator(scenario, lro_polls=0)
    monitor, rule_api = both_sources(emu)
    assert findings(monitor) == findings(rule_api)
    assert [f.severity for f in monitor.evaluation.findings].count("high") == 2
    assert sources(monitor) == {HealthSource.MONITOR}
    assert sources(rule_api) == {HealthSource.RULE_API}
    health_reads = [e for e in emu.requests if e.path.endswith("/health")]
    assert len(health_reads) == 2  # the rule API was called only for the silent run
    # the report says the source per rule too
    page = rule_api.report["findings"][0]["evidence"]["health"]["rules"]
    assert {r["source"] for r in page} == {"rule_api"}


def test_both_sources_agree_after_a_mirror_failover(emulator):
    emu = emulator("default", lro_polls=0)
    emu.set_power(VM1, "deallocated")  # both mirrors' primaries move to hs-vm2
    monitor, rule_api = both_sources(emu, resource_graph=True)
    assert findings(monitor) == findings(rule_api)
    vm2 = [f for f in monitor.evaluation.findings if f.vm_name == "hs-vm2"]
    assert vm2 and all(f.severity == "high" for f in vm2)  # hs-vm2 now hairpins itself


def test_the_rule_api_answers_only_where_the_metric_has_no_data(emulator):
    emu = emulator("default", lro_polls=0)
    # hs-vm2 has no data yet behind the second frontend: that rule only falls back
    emu.metrics.silent_series.add(("10.0.1.101", "10.0.1.20"))
    doc = audit.gather(ctx_for(emu), subscriptions=[SUB])
    by_rule = {h["ruleId"].rsplit("/", 1)[-1]: h["source"] for h in doc["health"]}
    assert by_rule == {"rule-patient-index-1972": "monitor", "rule-ucr-registry-1972": "rule_api"}
    posts = [e.path.rsplit("/", 2)[-2] for e in emu.requests if e.path.endswith("/health")]
    assert posts == ["rule-ucr-registry-1972"]


def test_without_metrics_permission_every_rule_falls_back(emulator):
    emu = emulator("default", lro_polls=0)
    emu.faults.add("POST", "metrics:getBatch", status=403, error_code="AuthorizationFailed",
                   times=None)
    result = audit.run_audit(ctx_for(emu), subscriptions=[SUB])
    assert sources(result) == {HealthSource.RULE_API}
    assert [f.severity for f in result.evaluation.findings].count("high") == 2


def test_the_fallback_runs_in_parallel_and_waits_as_retry_after_says(emulator):
    emu = emulator("default", lro_polls=1, lro_retry_after=1)
    emu.metrics.silent.add(LB.lower())
    audit.gather(ctx_for(emu), subscriptions=[SUB])
    health = [e for e in emu.requests
              if e.path.endswith("/health") or "/operations/" in e.path.lower()]
    posts = sorted(e.time for e in health if e.path.endswith("/health"))
    polls = sorted(e.time for e in health if not e.path.endswith("/health"))
    # Both reads in flight at once: one after the other, the second POST would wait for the
    # first read's 1 s Retry-After.
    assert len(posts) == 2 and posts[1] - posts[0] < 0.5
    # each first status poll says InProgress with Retry-After: 1; the next came that much later
    assert len(polls) == 4 and polls[2] - polls[0] >= 0.9


def test_basic_load_balancers_go_straight_to_the_rule_api(emulator):
    emu = emulator("default", lro_polls=0)
    emu.store.raw(LB)["sku"] = {"name": "Basic"}  # no multi-dimensional metrics
    doc = audit.gather(ctx_for(emu), subscriptions=[SUB])
    assert {h["source"] for h in doc["health"]} == {"rule_api"}
    assert not [e for e in emu.requests if e.path.endswith("metrics:getBatch")]


def test_one_batch_per_50_load_balancers_of_a_region_at_its_endpoint(emulator):
    from shared.azure.monitor import MAX_BATCH, batches

    lbs = [{"id": f"{P}/Microsoft.Network/loadBalancers/lb{i:03}",
            "location": "eastus" if i < 55 else "westeurope"} for i in range(60)]
    got = batches(reversed(lbs))
    assert [(region, len(group)) for region, group in got] == [
        ("eastus", MAX_BATCH), ("eastus", 5), ("westeurope", 5)]
    assert [d["id"] for _, g in got for d in g] == [d["id"] for d in lbs]
    # on the emulator: a second load balancer in another region is read at that region's endpoint
    scenario = json.loads((ROOT / "emulator/scenarios/default.json").read_text())
    other = copy.deepcopy(next(d for d in scenario["resources"] if d["id"] == LB))
    text = json.dumps(other).replace("ilb-healthshare", "ilb-west").replace(
        "10.0.1.10", "10.0.1.11")  # frontends 10.0.1.100/101 -> .110/.111
    other = {**json.loads(text), "location": "westeurope"}  # its pools have no NIC yet
    scenario["resources"].append(other)
    emu = emulator(scenario, lro_polls=0)
    doc = audit.gather(ctx_for(emu), subscriptions=[SUB])
    paths = sorted(e.path.split("/")[2] for e in emu.requests
                   if e.path.endswith("metrics:getBatch"))
    assert paths == ["eastus", "westeurope"]
    east = {h["source"] for h in doc["health"] if "/ilb-healthshare/" in h["ruleId"]}
    assert east == {"monitor"}
