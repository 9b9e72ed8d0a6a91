"""Benchmark: an Event Grid storm. 1,000 subscription events touching 50 VMs (VM writes, NIC
writes, starts/restarts, re-deliveries of the same event id, shuffled out of order) arrive
within the burst window at several host instances at once, as Event Grid pushes them.

Target: exactly one evaluation pass per VM within the burst window and at most one
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
from shared.core.events import DeferredEvent, EventConfig, identity_from_jwt  # noqa: E402
from shared.services.events import EventProcessor  # noqa: E402
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


class StormRig:
    """The emulator (with the remediation on its own identity), Azurite when asked, and the
    function host instances the events are delivered to."""

    def __init__(self, args) -> None:
        from emulator.identity import DEFAULT_IDENTITY, Identity

        per_pool = 10
        self.scenario, self.callers = estate_doc(max(1, args.vms // per_pool), per_pool)
        self.remediator = Identity("33333333-3333-4333-8333-333333333333",
                                   "44444444-4444-4444-8444-444444444444", "remediation")
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-storm-")
        self.proc = None
        # No Retry-After on LROs: the clients poll at once (polling_interval 0, as in the tests).
        self.emu = Emulator(self.scenario, identities=[DEFAULT_IDENTITY, self.remediator])
        self.args = args

    def __enter__(self) -> StormRig:
        import os

        from azure.identity import ManagedIdentityCredential

        self.emu.start()
        os.environ.update(self.emu.env())
        ns = None
        if self.args.storage == "azurite":
            from emulator import azurite as storage_emulator

            self.proc, azurite = storage_emulator.start(Path(self.tmp.name))
            ns = Namespace(azurite)
        settings = make_settings(self.emu, ns, HAIRPIN_MODE="plan",
                                 HAIRPIN_DECLARED_CALLERS=json.dumps(self.callers))
        ctx = make_ctx(self.emu, ns, settings)
        rem_ctx = make_ctx(self.emu, ns, settings)
        rem_ctx.credential = ManagedIdentityCredential(client_id=self.remediator.client_id)
        rem_ctx.journal, rem_ctx.locks, rem_ctx.reports = ctx.journal, ctx.locks, ctx.reports
        if self.args.remediation == "real":
            from shared.services import remediation as target
        else:
            target = Recording()
        self.rem = CountingRemediation(target, rem_ctx)
        me = identity_from_jwt(self.emu.token_for())
        config = EventConfig(window_seconds=self.args.window, clock_skew_seconds=5)
        self.hosts = [EventProcessor(ctx, remediation=self.rem, identity=me, config=config)
                      for _ in range(self.args.instances)]
        return self

    def __exit__(self, *exc) -> None:
        self.emu.stop()
        if self.proc is not None:
            from emulator import azurite as storage_emulator

            storage_emulator.stop(self.proc)
        self.tmp.cleanup()

    def vm_and_nic_ids(self) -> tuple[list[str], list[str]]:
        vms = sorted((d["id"] for d in self.scenario["resources"]
                      if d["type"] == "Microsoft.Compute/virtualMachines"), key=str.lower)
        nics = [v.replace("Microsoft.Compute/virtualMachines/", "Microsoft.Network/"
                          "networkInterfaces/") + "-nic" for v in vms]
        return vms, nics


class Delivery:
    """Events delivered concurrently, round-robin over the host instances."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.passes: Counter = Counter()
        self.deferred = 0
        self.elapsed = 0.0
        self.lock = threading.Lock()

    def run(self, hosts: list, events: list[dict], workers: int) -> Delivery:
        def deliver(i_raw):
            i, raw = i_raw
            try:
                r = hosts[i % len(hosts)].handle(raw)
            except DeferredEvent:
                with self.lock:
                    self.deferred += 1
                return
            with self.lock:
                self.statuses[r.status] += 1
                for vm in r.evaluated:
                    self.passes[vm.lower()] += 1

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(deliver, enumerate(events)))
        self.elapsed = time.perf_counter() - start
        return self


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
    with StormRig(args) as rig:
        vms, nics = rig.vm_and_nic_ids()
        events = storm(vms, nics, args.events)
        rig.emu.requests.reset()
        delivery = Delivery().run(rig.hosts, events, args.workers)
        return report(args, rig, vms, events, delivery)


def report(args, rig: StormRig, vms: list[str], events: list[dict], d: Delivery) -> int:
    requests, rem = rig.emu.requests, rig.rem
    total = len(requests)
    in_remediation = sum(1 for e in requests if e.principal == rig.remediator.principal_id)
    writes = [e for e in requests.writes() if e.status and e.status < 400]
    unique_ids = len({e["id"] for e in events})
    one_pass = len(d.passes) == len(vms) and set(d.passes.values()) == {1}
    max_rem = max(rem.calls.values(), default=0)
    print(f"events: {len(events)} ({unique_ids} distinct ids, "
          f"{len(events) - unique_ids} re-deliveries) over {len(vms)} VMs, "
          f"{args.instances} host instances x {args.workers} concurrent invocations, "
          f"window {args.window:.0f} s, storage {args.storage}")
    print("event results: " + ", ".join(f"{k} {v}" for k, v in sorted(d.statuses.items()))
          + (f", deferred {d.deferred}" if d.deferred else ""))
    print(f"evaluation passes: {sum(d.passes.values())} for {len(d.passes)} VMs "
          f"(per VM: min {min(d.passes.values(), default=0)}, "
          f"max {max(d.passes.values(), default=0)}) -> "
          f"{'exactly one per VM' if one_pass else 'NOT one per VM'}")
    print(f"remediations: {sum(rem.calls.values())} calls for {len(rem.calls)} VMs "
          f"(max per VM {max_rem}; {dict(rem.statuses)}, remediation={args.remediation})")
    methods = ", ".join(f"{m} {n}" for m, n in sorted(requests.by_method().items()))
    print(f"ARM requests: {total} total ({methods}); "
          f"event path {total - in_remediation} ({(total - in_remediation) / len(events):.2f} "
          f"per event), inside remediation {in_remediation}; "
          f"ARM writes {len(writes)}")
    print(f"time: {d.elapsed:.1f} s ({len(events) / d.elapsed:.0f} events/s)")
    ok = one_pass and max_rem <= 1 and not writes
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
