"""Health Probe Status of load balancers from Azure Monitor's batch metrics API.

`azure-monitor-querymetrics`' `MetricsClient.query_resources` (`POST {region}.metrics.monitor.
azure.com/subscriptions/{s}/metrics:getBatch`) reads one metric for up to 50 resources of one
subscription, region and type per call, so one call answers every rule and backend of 50 load
balancers (docs/azure-facts.md, "Backend health from Azure Monitor"). Needs
`Microsoft.Insights/metrics/read`. A batch that fails (no permission, throttled past the budget,
an outage) yields no series for its load balancers: their rules fall back to the rule health
API (`shared.azure.discovery.discover_health`), never to a guess.

The SDK is imported when the first client is built (`AzureClients.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from azure.core.exceptions import AzureError

from shared.core import metric_health as mh
from shared.core.arm_ids import normalize

log = logging.getLogger(__name__)

__all__ = ["MAX_BATCH", "BATCH_WORKERS", "batches", "read_series"]

MAX_BATCH = 50  # resource IDs per metrics:getBatch call
BATCH_WORKERS = 4  # batches in flight


def batches(load_balancers: Iterable[dict]) -> list[tuple[str, list[dict]]]:
    """(region, up to 50 load balancers) groups, in a stable order (one subscription's)."""
    by_region: dict[str, list[dict]] = {}
    for lb in sorted(load_balancers, key=lambda d: normalize(d["id"])):
        by_region.setdefault(str(lb.get("location") or "").lower(), []).append(lb)
    return [(region, lbs[i:i + MAX_BATCH]) for region, lbs in sorted(by_region.items())
            for i in range(0, len(lbs), MAX_BATCH)]


def _lb_of_metric(metric_id: str) -> str:
    """`{lb}/providers/Microsoft.Insights/metrics/DipAvailability` -> `{lb}`."""
    at = metric_id.lower().find("/providers/microsoft.insights/metrics")
    return metric_id[:at] if at > 0 else metric_id


def _one_batch(clients, region: str, lbs: Sequence[dict], top: int,
               start: datetime, end: datetime) -> list[mh.MetricSeries]:
    client = clients.metrics(region)
    try:
        results = client.query_resources(
            resource_ids=[lb["id"] for lb in lbs], metric_namespace=mh.METRIC_NAMESPACE,
            metric_names=[mh.METRIC_NAME], timespan=(start, end), granularity=mh.GRAIN,
            aggregations=["Average"], filter=mh.series_filter(), max_results=max(top, 10))
    except AzureError as exc:
        log.warning("%s of %d load balancers in %s unreadable (%s): their rules fall back to "
                    "the rule health API", mh.METRIC_NAME, len(lbs), region,
                    getattr(exc, "message", None) or exc)
        return []
    out = []
    for result in results:
        for metric in result.metrics:
            lb_id = _lb_of_metric(metric.id or "")
            for ts in metric.timeseries:
                out.append(mh.MetricSeries(lb_id, dict(ts.metadata_values or {}),
                                           tuple((p.timestamp, p.average) for p in ts.data)))
    return out


def read_series(clients, load_balancers: Sequence[dict], top_for: Callable[[Sequence[dict]], int],
                *, end: datetime, on_batch: Callable[[], None] | None = None
                ) -> list[mh.MetricSeries]:
    """Every `DipAvailability` series of these load balancers (one subscription's) over the
    `LOOKBACK` before `end`; `top_for(lbs)` is how many series a batch may return."""
    groups = batches(load_balancers)
    start = end - mh.LOOKBACK

    def run(group: tuple[str, list[dict]]) -> list[mh.MetricSeries]:
        region, lbs = group
        try:
            return _one_batch(clients, region, lbs, top_for(lbs), start, end)
        finally:
            if on_batch:
                on_batch()

    if len(groups) <= 1:
        found = [run(g) for g in groups]
    else:
        with ThreadPoolExecutor(max_workers=min(BATCH_WORKERS, len(groups))) as pool:
            found = list(pool.map(run, groups))
    return [s for group in found for s in group]
