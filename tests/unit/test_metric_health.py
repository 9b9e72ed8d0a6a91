"""shared.core.metric_health: Health Probe Status series -> rule health, and where it is silent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from shared.core import metric_health as mh
from shared.core.risk import evaluate
from shared.core.topology import build_topology, topology_from_snapshot
from shared.core.vocab import HealthSource
from tests.support.paths import ROOT

SCENARIO = json.loads((ROOT / "emulator/scenarios/default.json").read_text())
LB = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-healthshare/"
      "providers/Microsoft.Network/loadBalancers/ilb-healthshare")
RULES = [f"{LB}/loadBalancingRules/rule-patient-index-1972",
         f"{LB}/loadBalancingRules/rule-ucr-registry-1972"]
END = datetime(2026, 12, 2, 15, 30, 30, tzinfo=UTC)
T = build_topology(SCENARIO["resources"])


def series(fip, fport, bip, bport, values, *, lower=True, proto="Tcp"):
    """Points for the 5 minutes before END; the last one is the current, incomplete minute."""
    dims = dict(zip(mh.DIMENSIONS, (fip, str(fport), bip, str(bport), proto), strict=True))
    if lower:  # the service answers with lower-case dimension names
        dims = {k.lower(): v for k, v in dims.items()}
    start = END.replace(second=0) - timedelta(minutes=len(values) - 1)
    points = tuple((start + timedelta(minutes=i), v) for i, v in enumerate(values))
    return mh.MetricSeries(LB, dims, points)


def default_series(vm1=100.0, vm2=0.0, current=None):
    """Both rules: hs-vm1 (10.0.1.10) up, hs-vm2 (10.0.1.20) down, as the scenario's health."""
    out = []
    for fip, fport, bport in (("10.0.1.100", 1972, 1972), ("10.0.1.101", 1972, 1973)):
        out.append(series(fip, fport, "10.0.1.10", bport, [vm1, vm1, current]))
        out.append(series(fip, fport, "10.0.1.20", bport, [vm2, vm2, current]))
    return out


def test_series_map_to_rules_and_members_like_the_rule_api():
    got = mh.health_from_metrics(T, RULES, default_series(), threshold=50, end=END)
    assert got.without_data == ()
    assert [e["ruleId"] for e in got.entries] == RULES
    for entry in got.entries:
        assert entry["source"] == HealthSource.MONITOR
        states = {b["ipAddress"]: b["state"]
                  for b in entry["response"]["loadBalancerBackendAddresses"]}
        assert states == {"10.0.1.10": "Up", "10.0.1.20": "Down"}
        assert (entry["response"]["up"], entry["response"]["down"]) == (1, 1)
        ipcs = {b["networkInterfaceIPConfigurationId"].split("/")[-3]
                for b in entry["response"]["loadBalancerBackendAddresses"]}
        assert ipcs == {"hs-vm1-nic", "hs-vm2-nic"}


def test_same_findings_as_the_rule_api_answer():
    from_rule_api = evaluate(topology_from_snapshot(SCENARIO))
    got = mh.health_from_metrics(T, RULES, default_series(), threshold=50, end=END)
    from_monitor = evaluate(build_topology(SCENARIO["resources"], SCENARIO["skus"], got.entries))

    def plain(ev):
        out = [f.as_dict() for f in ev.findings]
        for f in out:
            for r in f["evidence"]["health"]["rules"]:
                r.pop("source")
        return out

    assert plain(from_monitor) == plain(from_rule_api)
    sources = {r["source"] for f in from_monitor.findings
               for r in f.as_dict()["evidence"]["health"]["rules"]}
    assert sources == {HealthSource.MONITOR}


def test_only_the_latest_complete_minute_counts():
    # The current minute (incomplete) says 0 for hs-vm1: ignored; the minute before says 100.
    got = mh.health_from_metrics(T, RULES, default_series(current=0.0), threshold=50, end=END)
    states = {b["ipAddress"]: b["state"]
              for b in got.entries[0]["response"]["loadBalancerBackendAddresses"]}
    assert states["10.0.1.10"] == "Up"
    # The latest complete minute wins over older ones.
    s = [series("10.0.1.100", 1972, ip, 1972, [100.0, 0.0, None]) for ip in ("10.0.1.10",
                                                                        "10.0.1.20")]
    got = mh.health_from_metrics(T, RULES[:1], s, threshold=50, end=END)
    assert got.entries[0]["response"]["up"] == 0


def test_threshold_is_strictly_above():
    for value, state in ((50.0, "Down"), (50.5, "Up")):
        got = mh.health_from_metrics(T, RULES, default_series(vm1=value), threshold=50, end=END)
        b = got.entries[0]["response"]["loadBalancerBackendAddresses"]
        assert {x["ipAddress"]: x["state"] for x in b}["10.0.1.10"] == state


def test_rules_without_data_are_left_to_the_rule_api():
    # No series at all (a new load balancer, no permission, an error): every rule falls back.
    got = mh.health_from_metrics(T, RULES, [], threshold=50, end=END)
    assert got.entries == () and got.without_data == tuple(RULES)
    # One member of one rule has no value in the window: that rule only falls back.
    s = default_series()
    s[1] = series("10.0.1.100", 1972, "10.0.1.20", 1972, [None, None, None])
    got = mh.health_from_metrics(T, RULES, s, threshold=50, end=END)
    assert got.without_data == (RULES[0],)
    assert [e["ruleId"] for e in got.entries] == [RULES[1]]
    # A series of another protocol or port is not this rule's.
    s = [series("10.0.1.100", 1972, ip, 1972, [100.0, None], proto="Udp")
         for ip in ("10.0.1.10", "10.0.1.20")]
    got = mh.health_from_metrics(T, RULES[:1], s, threshold=50, end=END)
    assert got.without_data == (RULES[0],)


def test_dimension_names_in_any_case_and_the_filter_splits_by_all():
    s = [series("10.0.1.100", 1972, ip, 1972, [100.0, None], lower=False)
         for ip in ("10.0.1.10", "10.0.1.20")]
    got = mh.health_from_metrics(T, RULES[:1], s, threshold=50, end=END)
    assert got.entries[0]["response"]["up"] == 2
    assert mh.series_filter() == ("FrontendIPAddress eq '*' and FrontendPort eq '*' and "
                                  "BackendIPAddress eq '*' and BackendPort eq '*' and "
                                  "ProtocolType eq '*'")
    assert mh.expected_series(T, RULES) == 4


def test_snapshot_source_is_read_into_the_topology():
    got = mh.health_from_metrics(T, RULES, default_series(), threshold=50, end=END)
    t = build_topology(SCENARIO["resources"], (), got.entries)
    assert {h.source for h in t.health.values()} == {HealthSource.MONITOR}
    entries = [{**e, "source": "nonsense"} for e in got.entries]
    t = build_topology(SCENARIO["resources"], (), entries)
    assert {h.source for h in t.health.values()} == {None}
