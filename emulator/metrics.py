"""Azure Monitor metrics of load balancers, from the same health model as the rule health action
(`emulator.resources.health.rule_health`): `DipAvailability` (Health Probe Status) is 100 for a
member the rule health calls Up and 0 otherwise, one series per (frontend IP, frontend port,
backend IP, backend port, protocol).

Two APIs, as the SDKs call them:
- the batch API of `azure-monitor-querymetrics`' `MetricsClient.query_resources`:
  `POST {regional endpoint}/subscriptions/{s}/metrics:getBatch?metricnamespace=&metricnames=`
  with `{"resourceids": [...]}` (REST spec monitor/data-plane/Microsoft.Insights/stable/
  2024-02-01/metricBatch.json). The regional host of Azure (`{region}.metrics.monitor.azure.com`)
  is a path prefix here: `{base}/regions/{region}`. Token audience
  `https://metrics.monitor.azure.com`; up to 50 resource IDs of one subscription, one region,
  one type; `top` (default 10, only with a filter) caps the series returned for the whole batch
  (azure-sdk-for-go#22757 found it per batch, not per resource as the spec says).
- the per-resource ARM API: `GET {resourceId}/providers/Microsoft.Insights/metrics`
  (`timespan=start/end`, `$filter`), ARM token.
Both need `Microsoft.Insights/metrics/read` (the batch at subscription scope, as the SDK's
README asks; the per-resource call at the resource). Load balancers in `silent` (a new one
whose metrics have not started) and Basic SKU ones (no multi-dimensional metrics) answer with
no time series; so do the (frontend IP, backend IP) pairs in `silent_series` (a member just
added to a pool). docs/azure-facts.md lists the sources and what is not confirmed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from emulator.errors import ArmError
from emulator.resources.health import rule_health
from emulator.state import lower

__all__ = ["METRICS_AUDIENCES", "METRICS_READ", "MAX_BATCH", "Metrics"]

METRICS_AUDIENCES = {"https://metrics.monitor.azure.com"}
METRICS_READ = "Microsoft.Insights/metrics/read"
MAX_BATCH = 50
DEFAULT_TOP = 10
NAMESPACE = "Microsoft.Network/loadBalancers"
METRIC = "DipAvailability"
DIMENSIONS = ("FrontendIPAddress", "FrontendPort", "BackendIPAddress", "BackendPort",
              "ProtocolType")
_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


def _bad(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _time(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise _bad(f"Invalid time '{text}'.") from None


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    at = start.replace(second=0, microsecond=0)
    out = []
    while at <= end:
        out.append(at)
        at += timedelta(minutes=1)
    return out


def _split(filter_text: str | None) -> dict[str, str]:
    """`A eq '*' and B eq 'x'` -> {"a": "*", "b": "x"} (lower-case names); no filter: {}."""
    out: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", filter_text or "", flags=re.IGNORECASE):
        if not clause.strip():
            continue
        m = _CLAUSE.match(clause)
        if m is None or m.group(1).lower() not in {d.lower() for d in DIMENSIONS}:
            raise _bad(f"Invalid $filter clause '{clause.strip()}'.")
        out[m.group(1).lower()] = m.group(2)
    return out


class Metrics:
    """The metrics the emulator serves (state: which load balancers have no data yet)."""

    def __init__(self, emu) -> None:
        self.emu = emu
        self.silent: set[str] = {lower(i) for i in
                                 (emu.scenario.get("emulator") or {}).get("metricsSilent", [])}
        # (frontend IP, backend IP) series that have no data yet (a member just added)
        self.silent_series: set[tuple[str, str]] = set()

    # --------------------------------------------------------------- the two APIs
    def batch(self, route, query: dict, body: dict):
        """POST .../metrics:getBatch -> (status, headers, body)."""
        ids = body.get("resourceids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids:
            raise _bad("The request body must have a non-empty 'resourceids' list.")
        if len(ids) > MAX_BATCH:
            raise _bad(f"The maximum number of resource IDs in a batch is {MAX_BATCH}; "
                       f"{len(ids)} were given.")
        self._check_metric(query)
        docs = [self._lb(rid, route.subscription, route.region) for rid in ids]
        end = _time(query.get("endtime"), datetime.now(UTC))
        start = _time(query.get("starttime"), end - timedelta(hours=1))
        split = _split(query.get("filter"))
        top = int(query.get("top") or DEFAULT_TOP) if split else None
        values = []
        for doc in docs:
            series = self._series(doc, start, end, split)
            if top is not None:
                series, top = series[:top], max(0, top - len(series))
            values.append({"starttime": _iso(start), "endtime": _iso(end), "interval": "PT1M",
                           "namespace": NAMESPACE.lower(), "resourceregion": doc["location"],
                           "resourceid": doc["id"], "value": [self._metric(doc, series)]})
        return 200, {}, {"values": values}

    def per_resource(self, route, query: dict):
        """GET {resourceId}/providers/Microsoft.Insights/metrics -> (status, headers, body)."""
        self._check_metric(query, names="metricnames", namespace="metricnamespace")
        doc = self._lb(route.resource_id, route.subscription, None)
        now = datetime.now(UTC)
        start_text, _, end_text = (query.get("timespan") or "").partition("/")
        end = _time(end_text, now)
        start = _time(start_text, end - timedelta(hours=1))
        split = _split(query.get("$filter"))
        series = self._series(doc, start, end, split)
        if split:
            series = series[:int(query.get("top") or DEFAULT_TOP)]
        return 200, {}, {"cost": 0, "timespan": f"{_iso(start)}/{_iso(end)}", "interval": "PT1M",
                         "namespace": NAMESPACE, "resourceregion": doc["location"],
                         "value": [self._metric(doc, series)]}

    # --------------------------------------------------------------- checks
    @staticmethod
    def _check_metric(query: dict, names: str = "metricnames",
                      namespace: str = "metricnamespace") -> None:
        ns = query.get(namespace)
        if ns is not None and ns.lower() != NAMESPACE.lower():
            raise _bad(f"Metric namespace '{ns}' is not supported here (only {NAMESPACE}).")
        wanted = [n for n in (query.get(names) or "").split(",") if n]
        unknown = [n for n in wanted if n.lower() != METRIC.lower()]
        if not wanted or unknown:
            raise _bad("Failed to find metric configuration for provider: Microsoft.Network, "
                       f"resource Type: loadBalancers, metric: {','.join(unknown or wanted)}, "
                       "Valid metrics: DipAvailability")

    def _lb(self, rid: str, subscription: str, region: str | None) -> dict:
        doc = self.emu.store.raw(rid)
        if doc is None or lower(doc.get("type", "")) != lower(NAMESPACE):
            raise ArmError(404, "ResourceNotFound", f"The resource '{rid}' was not found.")
        if lower(rid.split("/")[2]) != lower(subscription):
            raise _bad(f"Resource '{rid}' is not in subscription '{subscription}'.")
        if region is not None and lower(doc.get("location", "")) != lower(region):
            raise _bad(f"Resource '{rid}' is in region '{doc.get('location')}', not in the "
                       f"endpoint's region '{region}'.")
        return doc

    # --------------------------------------------------------------- the model
    def _points(self, doc: dict) -> dict[tuple[str, ...], float]:
        """(frontend IP, frontend port, backend IP, backend port, protocol) -> 100 | 0."""
        if lower(doc["id"]) in self.silent or \
                (doc.get("sku") or {}).get("name", "Standard").lower() != "standard":
            return {}
        props = doc.get("properties") or {}
        frontends = {lower(fe["id"]): (fe.get("properties") or {}).get("privateIPAddress")
                     for fe in props.get("frontendIPConfigurations") or []}
        out: dict[tuple[str, ...], float] = {}
        for rule in props.get("loadBalancingRules") or []:
            rp = rule.get("properties") or {}
            fip = frontends.get(lower((rp.get("frontendIPConfiguration") or {}).get("id", "")))
            if not fip:
                continue
            for b in rule_health(self.emu, doc["id"], rule["name"])["loadBalancerBackendAddresses"]:
                key = (fip, str(rp.get("frontendPort")), b.get("ipAddress") or "",
                       str(rp.get("backendPort")), str(rp.get("protocol")))
                if (key[0], key[2]) not in self.silent_series:
                    out[key] = 100.0 if b.get("state") == "Up" else 0.0
        return out

    def _series(self, doc: dict, start: datetime, end: datetime,
                split: dict[str, str]) -> list[dict]:
        groups: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for key, value in sorted(self._points(doc).items()):
            dims = dict(zip((d.lower() for d in DIMENSIONS), key, strict=True))
            if any(v != "*" and dims[d].lower() != v.lower() for d, v in split.items()):
                continue
            group = tuple((d, dims[d]) for d in (x.lower() for x in DIMENSIONS) if d in split)
            groups.setdefault(group, []).append(value)
        stamps = [_iso(at) for at in _minutes(start, end)]
        return [{"metadatavalues": [{"name": {"value": d, "localizedValue": d}, "value": v}
                                    for d, v in group],
                 "data": [{"timeStamp": at, "average": sum(vals) / len(vals)} for at in stamps]}
                for group, vals in groups.items()]

    @staticmethod
    def _metric(doc: dict, series: list[dict]) -> dict:
        return {"id": f"{doc['id']}/providers/Microsoft.Insights/metrics/{METRIC}",
                "type": "Microsoft.Insights/metrics",
                "name": {"value": METRIC, "localizedValue": "Health Probe Status"},
                "displayDescription": "Average Load Balancer health probe status per time "
                                      "duration",
                "unit": "Count", "timeseries": series, "errorCode": "Success"}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
