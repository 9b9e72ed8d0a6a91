"""Pure: Azure Monitor's Health Probe Status series -> per-rule backend health, in the shape of
the rule health API's answer, so the topology reads both the same way.

Standard Load Balancer publishes `DipAvailability` (Health Probe Status: the average share of
probes that succeeded in the time grain, 0-100) split by `FrontendIPAddress`, `FrontendPort`,
`BackendIPAddress`, `BackendPort` and `ProtocolType` (docs/azure-facts.md, "Backend health from
Azure Monitor"). A rule's frontend IP, frontend port, backend port and protocol, with one
member's IP, name exactly one series. A member is Up when the latest *complete* minute's value
is above the threshold (the current minute is still being aggregated). A rule is answered from
the metric only when every one of its members has such a value; the others are returned as
`without_data`, for the rule API to answer: one decision, one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.core.arm_ids import normalize
from shared.core.topology import LbRule, PoolMember, Topology
from shared.core.vocab import HealthSource

__all__ = ["METRIC_NAMESPACE", "METRIC_NAME", "DIMENSIONS", "GRAIN", "LOOKBACK", "MetricSeries",
           "MetricHealth", "SeriesKey", "series_filter", "latest_complete", "health_from_metrics",
           "expected_series"]

METRIC_NAMESPACE = "Microsoft.Network/loadBalancers"
METRIC_NAME = "DipAvailability"
DIMENSIONS = ("FrontendIPAddress", "FrontendPort", "BackendIPAddress", "BackendPort",
              "ProtocolType")
GRAIN = timedelta(minutes=1)
# How far back to look for the latest complete minute: Azure Monitor platform metrics usually
# land within a few minutes (docs/azure-facts.md); older data says nothing about now.
LOOKBACK = timedelta(minutes=5)

# (frontend IP, frontend port, backend IP, backend port, protocol), compared lower-case
SeriesKey = tuple[str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """One time series of one load balancer: its dimension values and (time, average) points."""

    lb_id: str
    dimensions: Mapping[str, str]  # dimension name (any case, as the service spells it) -> value
    points: tuple[tuple[datetime, float | None], ...]

    def key(self) -> SeriesKey:
        low = {str(k).lower(): v for k, v in self.dimensions.items()}
        return _key(*(low.get(d.lower()) for d in DIMENSIONS))


@dataclass(frozen=True)
class MetricHealth:
    """Health entries for the rules the metric answers, and the rules it does not."""

    entries: tuple[dict[str, Any], ...]  # {"ruleId", "source", "response"} snapshot entries
    without_data: tuple[str, ...]  # rule IDs to read from the rule health API


def series_filter() -> str:
    """The `$filter` that splits the metric by every dimension (one series per combination)."""
    return " and ".join(f"{d} eq '*'" for d in DIMENSIONS)


def _port(value: Any) -> str:
    try:
        return str(int(str(value)))
    except (TypeError, ValueError):
        return str(value or "").lower()


def _key(frontend_ip, frontend_port, backend_ip, backend_port, protocol) -> SeriesKey:
    return (str(frontend_ip or "").lower(), _port(frontend_port), str(backend_ip or "").lower(),
            _port(backend_port), str(protocol or "").lower())


def latest_complete(points: Iterable[tuple[datetime, float | None]], end: datetime,
                    grain: timedelta = GRAIN) -> float | None:
    """The value of the latest grain that ended by `end` and has a value, else None."""
    best: tuple[datetime, float] | None = None
    for at, value in points:
        if value is None or at + grain > end:
            continue
        if best is None or at > best[0]:
            best = (at, value)
    return best[1] if best else None


def _members(t: Topology, rule: LbRule) -> list[PoolMember]:
    seen: dict[tuple[str, str], PoolMember] = {}
    for pk in rule.pool_keys:
        for m in t.pool_members.get(pk, ()):
            seen.setdefault((m.ip_config_key or "", m.ip or ""), m)
    return [seen[k] for k in sorted(seen)]


def _member_ip(t: Topology, m: PoolMember) -> str | None:
    if m.ip:
        return m.ip
    cfg = t.ip_configs.get(m.ip_config_key) if m.ip_config_key else None
    return cfg.private_ip if cfg else None


def _rule_keys(t: Topology, rule: LbRule) -> list[tuple[PoolMember, SeriesKey | None]]:
    frontend = t.frontends.get(rule.frontend_key) if rule.frontend_key else None
    out = []
    for m in _members(t, rule):
        ip = _member_ip(t, m)
        key = None
        if frontend is not None and frontend.private_ip and ip:
            key = _key(frontend.private_ip, rule.frontend_port, ip, rule.backend_port,
                       rule.protocol)
        out.append((m, key))
    return out


def expected_series(topology: Topology, rule_ids: Iterable[str]) -> int:
    """How many series these rules' members make (the batch query's `top` must cover them)."""
    rules = [topology.rules[k] for k in map(normalize, rule_ids) if k in topology.rules]
    return sum(len(_members(topology, r)) for r in rules)


def health_from_metrics(topology: Topology, rule_ids: Iterable[str],
                        series: Iterable[MetricSeries], *, threshold: float, end: datetime,
                        grain: timedelta = GRAIN) -> MetricHealth:
    """Health of `rule_ids` from the metric's series (read up to `end`)."""
    values: dict[SeriesKey, float] = {}
    lbs_with_data: set[str] = set()
    for s in series:
        value = latest_complete(s.points, end, grain)
        if value is not None:
            values[s.key()] = value
            lbs_with_data.add(normalize(s.lb_id))
    entries: list[dict[str, Any]] = []
    without: list[str] = []
    for rule_id in rule_ids:
        rule = topology.rules.get(normalize(rule_id))
        if rule is None or rule.lb_key not in lbs_with_data:
            without.append(rule_id)
            continue
        backends = []
        for m, key in _rule_keys(topology, rule):
            value = values.get(key) if key else None
            if value is None:
                break
            backends.append(_backend(topology, m, value, threshold))
        else:
            up = sum(1 for b in backends if b["state"] == "Up")
            entries.append({"ruleId": rule.id, "source": HealthSource.MONITOR.value,
                            "response": {"up": up, "down": len(backends) - up,
                                         "loadBalancerBackendAddresses": backends}})
            continue
        without.append(rule_id)
    return MetricHealth(tuple(entries), tuple(without))


def _backend(t: Topology, m: PoolMember, value: float, threshold: float) -> dict[str, Any]:
    cfg = t.ip_configs.get(m.ip_config_key) if m.ip_config_key else None
    out: dict[str, Any] = {"ipAddress": _member_ip(t, m),
                           "state": "Up" if value > threshold else "Down",
                           "reason": f"{METRIC_NAME} {value:g}"}
    if m.ip_config_key:
        out["networkInterfaceIPConfigurationId"] = cfg.id if cfg else m.ip_config_key
    return out
