"""Benchmark: ARM requests for a full audit of a generated 2,000-VM subscription on the emulator.

The estate is `bench/estate.py`'s (VMs with two NICs each, ILBs with 2-5 frontends and
NIC-based pools). Both discovery paths of `shared.services.audit.gather` run against the local
ARM emulator; its request log counts every request by kind. Target: O(pages), never
one GET per resource: backend health is one Azure Monitor batch per 50 load balancers, and a
rule health read (a long-running operation) only for a rule the metric has no data for.
Targets for 2,000 VMs: Resource Graph path <= 40 requests in all, ARM path <= 100.

With `--profile field` (or HAIRPIN_BENCH_PROFILE=field; `make bench` passes it) the emulator
answers at field latency, with ARM's Retry-After, operation durations and throttling
(docs/latency-profile.md), and the product polls as it does on Azure (Retry-After, no
polling-interval override): the wall times then predict a real subscription. Target with a
profile: each path under 60 s.

    .venv/bin/python bench/bench_discovery.py [--vms 2000] [--lbs 200] [--page-size 100]
                                              [--profile off|field]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from estate import generate  # noqa: E402

from shared.core.topology import topology_from_snapshot
from shared.core.vocab import HealthSource

LISTED = {"microsoft.network/virtualnetworks", "microsoft.network/networksecuritygroups",
          "microsoft.network/networkinterfaces", "microsoft.network/loadbalancers",
          "microsoft.compute/virtualmachines"}


def kind_of(entry) -> str:
    """What one logged request was, for the table."""
    path = entry.path.lower()
    rtype = (entry.resource_type or "").lower()
    if "microsoft.resourcegraph" in path:
        return "resource graph queries"
    if "/operations/" in path or "/operationresults/" in path:
        return "health LRO polls"
    if entry.method == "POST" and path.endswith("/health"):
        return "health reads (POST)"
    if entry.method == "POST" and path.endswith("/metrics:getbatch"):
        return "Azure Monitor batches"
    if rtype == "microsoft.compute/skus":
        return "SKU list pages"
    if entry.method == "GET" and rtype in LISTED and "/resourcegroups/" not in path:
        return "list pages"
    return f"other {entry.method} (per resource)"


WALL_TARGET_S = 60.0  # per path, with a latency profile (issue 15)
# Requests in all for the 2,000-VM estate (issue 15): Resource Graph + Monitor + SKUs, and ARM's
# list pages (page size 100) + the health batches.
REQUEST_TARGETS = {"arm": 100, "graph": 40}


def health_source(doc) -> str:
    """monitor when any rule's health came from Azure Monitor, else rule (the per-rule API)."""
    sources = {h.get("source") or HealthSource.RULE_API.value for h in doc.get("health", [])}
    return "monitor" if HealthSource.MONITOR.value in sources else "rule"


def run(ctx, emu, subscription: str, resource_graph: bool):
    from shared.services import audit

    emu.requests.reset()
    start = time.perf_counter()
    doc = audit.gather(ctx, subscriptions=[subscription], resource_graph=resource_graph)
    elapsed = time.perf_counter() - start
    return doc, elapsed, Counter(kind_of(e) for e in emu.requests), len(emu.requests)


def print_table(results: dict) -> None:
    """Requests by kind, resources and wall time, one column per path."""
    kinds = sorted({k for _, _, c, _ in results.values() for k in c})
    width = max(len(k) for k in kinds + ["ARM requests, total"])
    print(f"{'':<{width}}  " + "  ".join(f"{name:>14}" for name in results))
    for kind in kinds:
        print(f"{kind:<{width}}  " + "  ".join(f"{c[kind]:>14}" for _, _, c, _ in results.values()))
    print(f"{'ARM requests, total':<{width}}  "
          + "  ".join(f"{n:>14}" for _, _, _, n in results.values()))
    print(f"{'resources discovered':<{width}}  "
          + "  ".join(f"{len(d['resources']):>14}" for d, _, _, _ in results.values()))
    print(f"{'wall time (s)':<{width}}  "
          + "  ".join(f"{t:>14.1f}" for _, t, _, _ in results.values()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--lbs", type=int, default=200)
    parser.add_argument("--page-size", type=int, default=100,
                        help="emulator list page size (ARM's varies by type; 100 is typical)")
    parser.add_argument("--profile", default=os.environ.get("HAIRPIN_BENCH_PROFILE", "off"),
                        help="emulator latency profile: off (default) or field")
    args = parser.parse_args(argv)

    from azure.identity import ManagedIdentityCredential

    from emulator.latency import profile_named
    from emulator.server import Emulator
    from shared.services.context import ServiceContext
    from shared.settings import Settings

    resources, skus, health = generate(args.vms, args.lbs)
    counts = Counter(d["type"].split("/")[-1] for d in resources)
    t0 = time.perf_counter()
    # lro_polls=0: a health read is done at its first status poll; with a profile, when its
    # duration is over.
    profile = profile_named(args.profile)
    emu = Emulator({"resources": resources, "skus": skus, "health": health},
                   page_size=args.page_size, lro_polls=0, profile=profile).start()
    load_s = time.perf_counter() - t0
    os.environ.update(emu.env())
    os.environ.pop("AZURE_CLIENT_ID", None)
    try:
        # No profile: poll at once (the emulator answers at once). A profile: as on Azure.
        ctx = ServiceContext(Settings(arm_endpoint=emu.base_url,
                                      metrics_endpoint=emu.metrics_endpoint),
                             credential=ManagedIdentityCredential(),
                             polling_interval=None if profile else 0)
        results = {name: run(ctx, emu, emu.subscription_id, rg)
                   for name, rg in (("ARM", False), ("Resource Graph", True))}
    finally:
        emu.stop()

    print(f"estate: {len(resources)} resources ({counts['virtualMachines']} VMs, "
          f"{counts['networkInterfaces']} NICs, {counts['loadBalancers']} load balancers, "
          f"{counts['virtualNetworks']} VNets); emulator page size {args.page_size}, "
          f"loaded in {load_s:.1f} s")
    print_table(results)
    return summarize(results, emu, profile, args.vms)


def summarize(results: dict, emu, profile, vms: int) -> int:
    """The checks, then one `bench_discovery:` line per path; 0 when every target is met."""
    (arm_doc, *_), (graph_doc, *_) = results.values()
    same = topology_from_snapshot(arm_doc) == topology_from_snapshot(graph_doc)
    per_resource = sum(c[k] for _, _, c, _ in results.values() for k in c if k.startswith("other"))
    print(f"identical topologies from both paths: {'yes' if same else 'NO'}; "
          f"per-resource GETs: {per_resource}; per-rule health reads: "
          f"{results['ARM'][2]['health reads (POST)']}; throttled (429): "
          f"{sum(1 for e in emu.requests if e.status == 429)} in the last path; "
          f"status reads before their Retry-After: {emu.ops.early_polls}")
    name = profile.name if profile else "off"
    slow = [p for p, (_, t, _, _) in results.items() if profile and t > WALL_TARGET_S]
    if slow:
        print(f"missed: {', '.join(slow)} over {WALL_TARGET_S:.0f} s with profile {name}")
    many = [f"{p} {n} > {REQUEST_TARGETS[p]}" for p, (_, _, _, n) in
            zip(REQUEST_TARGETS, results.values(), strict=True) if n > REQUEST_TARGETS[p]]
    if many and vms == 2000:
        print(f"missed: requests {', '.join(many)}")
    for path, (doc, t, _, n) in zip(("arm", "graph"), results.values(), strict=True):
        print(f"bench_discovery: path={path} resources={len(doc['resources'])} requests={n} "
              f"health_source={health_source(doc)} wall_s={t:.1f} profile={name}")
    return 0 if same and per_resource == 0 and not slow and not (many and vms == 2000) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
