"""Benchmark: an Event Grid storm. 1,000 subscription events touching 50 VMs (VM writes, NIC
writes, starts/restarts, re-deliveries of the same event id, shuffled out of order) arrive
within the burst window at several host instances at once, as Event Grid pushes them.

Target (issue 6): exactly one evaluation pass per VM within the burst window and at most one
remediation per VM; the ARM request count is printed (the event path and the remediation's own
reads separately).

The estate runs on the local ARM emulator (real SDK over HTTPS) with Azurite for the journal's
claims: 5 internal load balancers with 10 opted-in Linux VMs each, all declared to call their
VIP (50 high findings). Remediation is the real service in mode `plan` (the guard records a
pending plan; nothing is deallocated), so its reads count too.

    .venv/bin/python bench/bench_event_storm.py [--events 1000] [--vms 50] [--instances 4]
        [--workers 8] [--storage azurite|memory] [--remediation real|record]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emulator.server import Emulator  # noqa: E402
from shared.core.events import identity_from_jwt  # noqa: E402
from shared.services.events import DeferredEvent, EventConfig, EventProcessor  # noqa: E402
from tests.services.test_sweep import estate_doc  # noqa: E402
from tests.support.events import arm_event, make_ctx, make_settings  # noqa: E402


class Namespace:
    """Table and container names of this run inside one Azurite (as tests' storage_ns)."""

    def __init__(self, azurite):
        self.azurite = azurite
        self.prefix = "bench" + uuid.uuid4().hex[:8]
        self.connection_string = azurite.connection_string

    def container(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def table(self, name: str) -> str:
        return self.prefix + name

    def blob_service(self):
        return self.azurite.blob_service()

    def table_service(self):
        return self.azurite.table_service()


class CountingRemediation:
    """Counts calls per VM and delegates to `target` with `ctx` (the remediation's context, on
    its own emulator identity, so the request log tells its requests from the event path's)."""

    def __init__(self, target, ctx):
        self.target, self.ctx = target, ctx
        self.calls: Counter = Counter()
        self.statuses: Counter = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name):
        fn = getattr(self.target, name)
        if name not in ("apply", "ensure_guest_routes", "verify"):
            return fn

        def call(ctx, vm_id, trigger, **kw):
            out = fn(self.ctx, vm_id, trigger, **kw)
            with self._lock:
                self.calls[vm_id.lower()] += 1
                self.statuses[f"{name}:{getattr(out, 'status', '?')}"] += 1
            return out

        return call


class Recording:
    def _out(self, *a, **k):
        return SimpleNamespace(status="pending", reasons=["recorded"], vms=[])

    apply = ensure_guest_routes = verify = _out

    def resume_interrupted(self, ctx, trigger):
        return []


def storm(vm_ids: list[str], nic_ids: list[str], n_events: int, seed: int = 6) -> list[dict]:
    """n_events events over the VMs: writes, NIC writes, actions, re-deliveries; shuffled."""
    rnd = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(seconds=50)  # the writes happened in the last minute
    kinds = [("Microsoft.Compute/virtualMachines/write", "vm"),
             ("Microsoft.Network/networkInterfaces/write", "nic"),
             ("Microsoft.Compute/virtualMachines/start/action", "vm"),
             ("Microsoft.Compute/virtualMachines/restart/action", "vm")]
    events: list[dict] = []
    while len(events) < n_events:
        i = len(events) % len(vm_ids)
        if events and rnd.random() < 0.2:  # Event Grid delivers an event again
            events.append(json.loads(json.dumps(rnd.choice(events))))
            continue
        op, target = rnd.choice(kinds)
        rid = vm_ids[i] if target == "vm" else nic_ids[i]
        at = t0 + timedelta(seconds=rnd.uniform(0, 40))
        events.append(arm_event(op, rid, at=at))
    rnd.shuffle(events)  # order is not guaranteed
    return events


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--vms", type=int, default=50)
    ap.add_argument("--instances", type=int, default=4, help="function host instances")
    ap.add_argument("--workers", type=int, default=8, help="concurrent invocations")
    ap.add_argument("--window", type=float, default=120.0, help="burst window, seconds")
    ap.add_argument("--storage", choices=("azurite", "memory"), default="azurite")
    ap.add_argument("--remediation", choices=("real", "record"), default="real")
    args = ap.parse_args(argv)

    per_pool = 10
    pools = max(1, args.vms // per_pool)
    scenario, callers = estate_doc(pools, per_pool)
    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="bench-storm-")
    from emulator.identity import DEFAULT_IDENTITY, Identity

    remediator = Identity("33333333-3333-4333-8333-333333333333",
                          "44444444-4444-4444-8444-444444444444", "remediation")
    # No Retry-After on LROs: the clients poll at once (polling_interval 0, as in the tests).
    emu = Emulator(scenario, identities=[DEFAULT_IDENTITY, remediator]).start()
    try:
        import os

        os.environ.update(emu.env())
        ns = None
        if args.storage == "azurite":
            from emulator import azurite as storage_emulator

            proc, azurite = storage_emulator.start(Path(tmp.name))
            ns = Namespace(azurite)
        settings = make_settings(emu, ns, HAIRPIN_MODE="plan",
                                 HAIRPIN_DECLARED_CALLERS=json.dumps(callers))
        ctx = make_ctx(emu, ns, settings)
        rem_ctx = make_ctx(emu, ns, settings)
        from azure.identity import ManagedIdentityCredential

        rem_ctx.credential = ManagedIdentityCredential(client_id=remediator.client_id)
        rem_ctx.journal, rem_ctx.locks, rem_ctx.reports = ctx.journal, ctx.locks, ctx.reports
        if args.remediation == "real":
            from shared.services import remediation as target
        else:
            target = Recording()
        rem = CountingRemediation(target, rem_ctx)
        me = identity_from_jwt(emu.token_for())
        config = EventConfig(window_seconds=args.window, clock_skew_seconds=5)
        hosts = [EventProcessor(ctx, remediation=rem, identity=me, config=config)
                 for _ in range(args.instances)]

        vms = sorted((d["id"] for d in scenario["resources"]
                      if d["type"] == "Microsoft.Compute/virtualMachines"), key=str.lower)
        nics = [v.replace("Microsoft.Compute/virtualMachines/", "Microsoft.Network/"
                          "networkInterfaces/") + "-nic" for v in vms]
        events = storm(vms, nics, args.events)
        emu.requests.reset()
        statuses: Counter = Counter()
        passes: Counter = Counter()
        deferred = 0
        lock = threading.Lock()

        def deliver(i_raw):
            nonlocal deferred
            i, raw = i_raw
            host = hosts[i % len(hosts)]
            try:
                r = host.handle(raw)
            except DeferredEvent:
                with lock:
                    deferred += 1
                return
            with lock:
                statuses[r.status] += 1
                for vm in r.evaluated:
                    passes[vm.lower()] += 1

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(deliver, enumerate(events)))
        elapsed = time.perf_counter() - start

        total = len(emu.requests)
        in_remediation = sum(1 for e in emu.requests if e.principal == remediator.principal_id)
        by_method = emu.requests.by_method()
        writes = [e for e in emu.requests.writes() if e.status and e.status < 400]
        unique_ids = len({e["id"] for e in events})
        one_pass = len(passes) == len(vms) and set(passes.values()) == {1}
        max_rem = max(rem.calls.values(), default=0)
        print(f"events: {len(events)} ({unique_ids} distinct ids, "
              f"{len(events) - unique_ids} re-deliveries) over {len(vms)} VMs, "
              f"{args.instances} host instances x {args.workers} concurrent invocations, "
              f"window {args.window:.0f} s, storage {args.storage}")
        print("event results: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
              + (f", deferred {deferred}" if deferred else ""))
        print(f"evaluation passes: {sum(passes.values())} for {len(passes)} VMs "
              f"(per VM: min {min(passes.values(), default=0)}, "
              f"max {max(passes.values(), default=0)}) -> "
              f"{'exactly one per VM' if one_pass else 'NOT one per VM'}")
        print(f"remediations: {sum(rem.calls.values())} calls for {len(rem.calls)} VMs "
              f"(max per VM {max_rem}; {dict(rem.statuses)}, remediation={args.remediation})")
        methods = ", ".join(f"{m} {n}" for m, n in sorted(by_method.items()))
        print(f"ARM requests: {total} total ({methods}); "
              f"event path {total - in_remediation} ({(total - in_remediation) / len(events):.2f} "
              f"per event), inside remediation {in_remediation}; "
              f"ARM writes {len(writes)}")
        print(f"time: {elapsed:.1f} s ({len(events) / elapsed:.0f} events/s)")
        ok = one_pass and max_rem <= 1 and not writes
        print("RESULT:", "PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        emu.stop()
        if proc is not None:
            from emulator import azurite as storage_emulator

            storage_emulator.stop(proc)
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
