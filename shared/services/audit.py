"""The audit: discover (ARM, Resource Graph or a snapshot file) -> topology -> findings -> report.

One code path for `hairpin audit`, the scheduled audit and `GET /api/audit`:

    gather(ctx, ...)        -> snapshot document {"resources", "skus", "health"}
    run_audit(ctx, ...)     -> AuditResult (topology, evaluation, report document, HTML)
    scheduled_audit(ctx)    -> RunRecord of the JSON + HTML stored under reports/YYYY/MM/DD/
    latest_or_fresh(ctx, fresh)

Both discovery paths read SKUs and backend health the same way (one SKU listing per location;
Azure Monitor's batch metrics, then the rule health API only where they have no data), so they
yield identical topologies.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shared import observability
from shared.core import arm_ids
from shared.core import snapshot as snapshots
from shared.core.journal import Trigger
from shared.core.report import build_report, exit_status, to_json
from shared.core.report import html as report_html
from shared.core.report.overview import trend_between
from shared.core.risk import Evaluation, evaluate
from shared.core.scope import ScopeError, resolve_subscriptions
from shared.core.topology import Topology, gc_paused, topology_from_snapshot
from shared.core.vocab import TriggerKind
from shared.storage import snapshot_files

log = logging.getLogger(__name__)

__all__ = ["AuditResult", "StoredAudit", "OnProgress", "NoSubscription", "subscriptions_to_audit",
           "gather", "previous_report", "run_audit", "publish_findings", "scheduled_audit",
           "latest_or_fresh", "is_true", "prefers_html"]

# (stage, pages fetched so far, resources seen so far); stage: "resources", "skus", "health".
OnProgress = Callable[[str, int, int], None]

SUBSCRIPTION_WORKERS = 4  # subscriptions listed at once (each runs 5 listings in parallel)


class NoSubscription(ValueError):
    """Nothing says which subscription to audit."""


@dataclass(frozen=True)
class AuditResult:
    snapshot: dict[str, Any]
    topology: Topology
    evaluation: Evaluation
    report: dict[str, Any]
    html: str | None
    generated_at: datetime

    @property
    def exit_status(self) -> int:
        return exit_status(self.evaluation)


@dataclass(frozen=True)
class StoredAudit:
    """What `GET /api/audit` serves: a report document, its HTML when asked, and its origin."""

    report: dict[str, Any]
    html: str | None
    run_id: str | None  # None: computed for this request, not read from storage
    fresh: bool


# --------------------------------------------------------------------------- progress

class _Tally:
    """Thread-safe running totals of pages and resources across parallel listings."""

    def __init__(self, on_progress: OnProgress | None) -> None:
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._pages: dict[tuple, int] = {}
        self._items: dict[tuple, int] = {}

    def listing(self, *key) -> Callable[[str, int, int], None]:
        """The `(kind, pages so far, items so far)` callback of one discovery listing."""
        return lambda kind, pages, items: self.set((*key, kind), pages, items)

    def set(self, key: tuple, pages: int, items: int) -> None:
        if self._on_progress is None:
            return
        with self._lock:
            self._pages[key] = pages
            self._items[key] = items
            self._report(key)

    def tick(self, key: tuple) -> None:
        """One more single-request read (a rule's health)."""
        if self._on_progress is None:
            return
        with self._lock:
            self._pages[key] = self._items[key] = self._pages.get(key, 0) + 1
            self._report(key)

    def _report(self, key: tuple) -> None:
        stage = key[0] if key[0] in ("skus", "health") else "resources"
        pages = sum(self._pages.values())
        resources = sum(n for k, n in self._items.items() if k[0] not in ("skus", "health"))
        self._on_progress(stage, pages, resources)


# --------------------------------------------------------------------------- discovery

def subscriptions_to_audit(ctx, explicit: Iterable[str] | None = None,
                           environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """`shared.core.scope.resolve_subscriptions`: explicit, else HAIRPIN_SUBSCRIPTIONS, else
    AZURE_SUBSCRIPTION_ID."""
    try:
        return resolve_subscriptions(explicit, ctx.settings.subscriptions, environ)
    except ScopeError as exc:
        raise NoSubscription(str(exc)) from None


def _subscription_of(doc: Mapping[str, Any]) -> str | None:
    parsed = arm_ids.try_parse(doc.get("id"))
    return parsed.subscription.lower() if parsed else None


def _of_type(docs: Iterable[dict], rtype: str) -> list[dict]:
    low = rtype.lower()
    return [d for d in docs if str(d.get("type", "")).lower() == low]


# The adapters are imported by the live paths only: an offline audit loads no Azure SDK.

def _arm_resources(ctx, subscriptions: Sequence[str], tally: _Tally) -> list[dict]:
    from shared.azure.discovery import discover_subscription

    def one(sub: str) -> list[dict]:
        found = discover_subscription(ctx.clients(sub), include_health=False, include_skus=False,
                                      on_progress=tally.listing("arm", sub))
        return found["resources"]

    workers = max(1, min(SUBSCRIPTION_WORKERS, len(subscriptions)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [_power_state_only(doc) for docs in pool.map(one, subscriptions) for doc in docs]


def _power_state_only(doc: dict) -> dict:
    """A VM's instance view cut to its power state, which is all Resource Graph carries: the
    topology must not depend on the discovery path (agent readiness is then unknown, which
    only drops a note; the guest step checks the agent itself)."""
    if str(doc.get("type", "")).lower() != "microsoft.compute/virtualmachines":
        return doc
    props = doc.get("properties") or {}
    view = props.get("instanceView")
    if not isinstance(view, dict):
        return doc
    power = [s for s in view.get("statuses") or []
             if isinstance(s, dict) and str(s.get("code", "")).lower().startswith("powerstate/")]
    return {**doc, "properties": {**props, "instanceView": {"statuses": power}}}


def _graph_resources(ctx, subscriptions: Sequence[str], tally: _Tally) -> list[dict]:
    from shared.azure.resource_graph import discover_resources

    # ARG is a tenant-level API: any subscription's client reaches it.
    client = ctx.clients(subscriptions[0] if subscriptions else "-").resource_graph
    return discover_resources(client, list(subscriptions),
                              on_page=lambda pages, rows: tally.set(("arg",), pages, rows))


def _skus_and_health(ctx, resources: list[dict], tally: _Tally) -> tuple[list, list]:
    """One SKU listing per location (the sizes in use); backend health from Azure Monitor, per
    rule from ARM where the metric has no data (`shared.azure.discovery.discover_health`)."""
    from shared.azure.discovery import discover_health, discover_skus

    vms_by_location: dict[str, list[dict]] = {}
    for vm in _of_type(resources, "Microsoft.Compute/virtualMachines"):
        if vm.get("location") and _subscription_of(vm):
            vms_by_location.setdefault(str(vm["location"]).lower(), []).append(vm)
    skus: list[dict] = []
    for location, vms in sorted(vms_by_location.items()):
        # Sizes' capabilities do not differ by subscription: the first one that has VMs there.
        sub = min(_subscription_of(vm) for vm in vms)
        skus += discover_skus(ctx.clients(sub), vms, tally.listing("skus", location))

    lbs_by_sub: dict[str, list[dict]] = {}
    for lb in _of_type(resources, "Microsoft.Network/loadBalancers"):
        if _subscription_of(lb):
            lbs_by_sub.setdefault(_subscription_of(lb), []).append(lb)
    nics = _of_type(resources, "Microsoft.Network/networkInterfaces")  # the members' IPs
    health: list[dict] = []
    for sub, lbs in sorted(lbs_by_sub.items()):
        health += discover_health(ctx.clients(sub), lbs, resources=nics,
                                  on_read=lambda: tally.tick(("health",)))
    return _unique_skus(skus), health


def _unique_skus(skus: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for sku in skus:
        seen.setdefault(json.dumps(sku, sort_keys=True, default=str), sku)
    return list(seen.values())


def gather(ctx, *, subscriptions: Iterable[str] | None = None, resource_graph: bool = False,
           snapshot: str | Path | Mapping[str, Any] | None = None,
           on_progress: OnProgress | None = None) -> dict[str, Any]:
    """The estate as a snapshot document, from a file/document or discovered live.

    `snapshot`: a path to a snapshot or scenario file, or an already-loaded document.
    Live discovery: ARM (one paged listing per type per subscription, subscriptions in
    parallel) or, with `resource_graph`, one paged KQL query over all subscriptions (none
    configured: every subscription the identity can read); both then read SKUs and health from
    ARM. Raises SnapshotError, NoSubscription or SDK errors."""
    if snapshot is not None:
        if isinstance(snapshot, Mapping):
            return snapshots.validate(dict(snapshot), "snapshot")
        return snapshot_files.load_file(snapshot)
    tally = _Tally(on_progress)
    subs = subscriptions_to_audit(ctx, subscriptions)
    if resource_graph:
        resources = _graph_resources(ctx, subs, tally)
    else:
        if not subs:
            raise NoSubscription("no subscription to audit: pass --subscription, or set "
                                 "HAIRPIN_SUBSCRIPTIONS or AZURE_SUBSCRIPTION_ID")
        resources = _arm_resources(ctx, subs, tally)
    skus, health = _skus_and_health(ctx, resources, tally)
    return snapshots.make_snapshot(resources, skus, health)


# --------------------------------------------------------------------------- audit

def _verified_routes(ctx) -> frozenset:
    """(VM id, frontend IP) pairs the journal records as fixed and verified."""
    if ctx.journal is None:
        return frozenset()
    return ctx.journal.verified_routes()


def _scope(resource_graph: bool, snapshot, doc: Mapping[str, Any]) -> dict[str, Any]:
    if snapshot is not None:
        source = {"source": "snapshot"}
        if not isinstance(snapshot, Mapping):
            source["snapshot"] = str(snapshot)
    else:
        source = {"source": "resource_graph" if resource_graph else "arm"}
    subs = sorted({s for s in (_subscription_of(d) for d in doc["resources"]) if s})
    return {**source, "subscriptions": subs, "resources": len(doc["resources"])}


def previous_report(ctx) -> dict[str, Any] | None:
    """The newest stored audit report (from the report index in Blob), which the next audit's
    trend compares with; None without storage or before the first stored audit."""
    if ctx.reports is None:
        return None
    record = ctx.reports.reports.latest()
    return ctx.reports.reports.read_json(record) if record is not None else None


def run_audit(ctx, *, subscriptions: Iterable[str] | None = None, resource_graph: bool = False,
              snapshot: str | Path | Mapping[str, Any] | None = None,
              on_progress: OnProgress | None = None, html: bool = True,
              previous: Mapping[str, Any] | None = None) -> AuditResult:
    """Gather, evaluate (with the journal's verified routes when storage is configured) and
    build the report document (and the HTML report unless `html=False`, with the trend against
    `previous`, a stored report document)."""
    subscriptions = list(subscriptions) if subscriptions is not None else None
    doc = gather(ctx, subscriptions=subscriptions, resource_graph=resource_graph,
                 snapshot=snapshot, on_progress=on_progress)
    verified = _verified_routes(ctx)
    generated_at = ctx.clock()
    # Many small acyclic objects: without the pause, full collections over the documents
    # cost as much as writing a 10k-finding report does.
    with gc_paused():
        topology = topology_from_snapshot(doc)
        evaluation = evaluate(topology, ctx.settings, verified)
        report = build_report(evaluation, generated_at,
                              scope=_scope(resource_graph, snapshot, doc))
        page = report_html.render(report, topology, previous) if html else None
    observability.record_findings(evaluation.findings)
    return AuditResult(doc, topology, evaluation, report, page, generated_at)


def _index_summary(report: Mapping[str, Any],
                   previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    summary = report["summary"]
    out = {"findings": summary["findings"], "by_severity": summary["by_severity"],
           "vms_at_risk": summary["vms_at_risk"], "exit_status": summary["exit_status"],
           "resources": report["scope"].get("resources")}
    trend = trend_between(report["findings"], previous)
    if trend is not None:
        out["trend"] = {"new": trend.new, "resolved": trend.resolved,
                        "unchanged": trend.unchanged, "new_high": trend.new_high}
    return out


def scheduled_audit(ctx):
    """Audit what the settings say (subscriptions, Resource Graph or ARM) and store the JSON
    and HTML reports plus their index entry; returns the RunRecord."""
    if ctx.reports is None:
        raise RuntimeError("storage is not configured (HAIRPIN_STORAGE_CONNECTION or "
                           "AzureWebJobsStorage): the scheduled audit has nowhere to write")
    previous = previous_report(ctx)
    result = run_audit(ctx, resource_graph=ctx.settings.use_resource_graph, previous=previous)
    summary = _index_summary(result.report, previous)
    record = ctx.reports.save_audit(to_json(result.report), result.html, at=result.generated_at,
                                    summary=summary)
    log.info("scheduled audit %s: %s", record.run_id, summary)
    publish_findings(ctx, result, Trigger(TriggerKind.TIMER), record.run_id)
    return record


def publish_findings(ctx, result: AuditResult, trigger: Trigger,
                     run_id: str | None = None) -> None:
    """The audit's findings as Log Analytics rows, when a sink is configured (never raises)."""
    if ctx.logs is not None:
        ctx.logs.findings(result.report, trigger, run_id)


def latest_or_fresh(ctx, fresh: bool, *, html: bool = False) -> StoredAudit:
    """The newest stored audit (and its HTML when `html`), or a new one when `fresh`, when
    nothing is stored yet, or when storage is not configured. A fresh one is not stored: a GET
    has no side effects."""
    if not fresh and ctx.reports is not None:
        record = ctx.reports.reports.latest()
        if record is not None:
            report = ctx.reports.reports.read_json(record)
            page = None
            if html:
                page = (ctx.reports.reports.read(record, "html").decode("utf-8")
                        if "html" in record.paths else report_html.render(report))
            return StoredAudit(report, page, record.run_id, False)
    result = run_audit(ctx, resource_graph=ctx.settings.use_resource_graph, html=html,
                       previous=previous_report(ctx) if html else None)
    return StoredAudit(result.report, result.html, None, True)


# --------------------------------------------------------------------------- trigger helpers

def is_true(text: str | None) -> bool:
    """Query-string flags: `?fresh=true` (also 1, yes, on)."""
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def prefers_html(accept: str | None) -> bool:
    """Does an Accept header rank text/html above application/json? (`*/*` alone: JSON.)"""
    def quality(media: str) -> float:
        best = 0.0
        main_type = media.split("/")[0]
        for part in (accept or "").split(","):
            fields = [f.strip() for f in part.split(";")]
            rng = fields[0].lower()
            if rng not in (media, f"{main_type}/*", "*/*"):
                continue
            q = 1.0
            for f in fields[1:]:
                if f.lower().startswith("q="):
                    try:
                        q = float(f[2:])
                    except ValueError:
                        q = 0.0
            # The most specific range decides (RFC 9110 12.5.1); rank by specificity then q.
            specificity = 2 if rng == media else 1 if rng.endswith("/*") and rng != "*/*" else 0
            best = max(best, specificity * 10 + q) if q > 0 else best
        return best

    html, json_q = quality("text/html"), quality("application/json")
    return html > 0 and html > json_q
