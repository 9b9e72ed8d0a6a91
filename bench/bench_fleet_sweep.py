"""Benchmark: a fleet sweep fanned out over worker processes, on the emulator + Azurite.

The estate is `bench/estate.py`'s, generated once per subscription (100 subscriptions x 200
VMs by default, 20 internal LBs each). The real timer function (`drift_sweep` in
function_app.py) plans the sweep and puts one work item per subscription on the Azurite queue;
`--workers` processes each run the real queue function (`sweep_worker`) under
`emulator.functions_host.QueueHost` with host.json's queue settings, as Functions instances
would. Mode audit (the default): discovery, evaluation and drift assessment of every VM,
nothing written to ARM. Measured: wall time from the timer to the sweep's summary, ARM
requests per VM (the emulator's request log) and the largest queue backlog (sampled every
0.2 s). `--profile field` (`make bench` passes it) makes the emulator answer with ARM's field
latencies and throttling (docs/latency-profile.md), so the wall time includes waiting on
ARM. Target: every item's result in exactly once and the summary counting every VM.

    .venv/bin/python bench/bench_fleet_sweep.py [--subscriptions 100] [--vms 200] [--workers 4]
                                                [--profile off|field]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from estate import SUB, generate  # noqa: E402

PREFIX = "benchfleet"


def subscription(n: int) -> str:
    return f"00000000-0000-0000-0000-{n + 1:012x}"


def fleet_estate(subscriptions: int, vms: int) -> dict:
    """The same generated estate in each subscription (IDs rewritten)."""
    resources, skus, health = generate(vms, max(1, vms // 10))
    text = json.dumps({"resources": resources, "health": health})
    out: dict = {"resources": [], "health": [], "skus": skus}
    for n in range(subscriptions):
        one = json.loads(text.replace(SUB, subscription(n)))
        out["resources"] += one["resources"]
        out["health"] += one["health"]
    return out


def worker(args) -> int:
    """One worker process: the real queue function under the host's queue listener."""
    import azure.functions as func

    import function_app
    from emulator.functions_host import QueueHost
    from shared.core.storage_names import StorageNames, poison_queue_of
    from shared.storage.clients import StorageClients
    from shared.storage.queues import queue_client
    from shared.storage.sweeps import SweepTable

    conn = os.environ["HAIRPIN_STORAGE_CONNECTION"]
    names = StorageNames(PREFIX)
    table = SweepTable(StorageClients.from_connection_string(conn).table, table=names.sweep_table)
    fn = {f.get_function_name(): f for f in function_app.app.get_functions()}
    call = fn["sweep_worker"].get_user_function()
    queue = queue_client(conn, names.sweep_queue)
    host = QueueHost(queue, lambda body, n: call(func.QueueMessage(body=body)),
                     poison=queue_client(conn, poison_queue_of(names.sweep_queue)))
    host.run(lambda: table.get(args.sweep_id).state == "done", timeout=args.timeout)
    print(json.dumps({"invocations": host.invocations, "failures": host.failures}), flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--vms", type=int, default=200, help="VMs per subscription")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--timeout", type=float, default=3000.0)
    parser.add_argument("--profile", default=os.environ.get("HAIRPIN_BENCH_PROFILE", "off"),
                        help="emulator latency profile: off (default) or field "
                             "(docs/latency-profile.md)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sweep-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    from emulator import azurite
    from emulator.latency import profile_named
    from emulator.server import Emulator

    t0 = time.perf_counter()
    scenario = fleet_estate(args.subscriptions, args.vms)
    # lro_polls=0: an LRO is done at its first poll; with a profile, when its duration is over
    emu = Emulator(scenario, page_size=100, lro_polls=0,
                   profile=profile_named(args.profile)).start()
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        proc, storage = azurite.start(Path(tmp))
        try:
            return run(args, emu, storage.connection_string, load_s)
        finally:
            emu.stop()
            azurite.stop(proc)


def run(args, emu, conn: str, load_s: float) -> int:
    from shared.core.storage_names import StorageNames
    from shared.storage.clients import StorageClients
    from shared.storage.queues import queue_client
    from shared.storage.sweeps import SweepTable

    env = {**os.environ, **emu.env(), "HAIRPIN_STORAGE_CONNECTION": conn,
           "HAIRPIN_STORAGE_PREFIX": PREFIX, "HAIRPIN_MODE": "audit",
           "HAIRPIN_SUBSCRIPTIONS": ",".join(subscription(n) for n in range(args.subscriptions)),
           "HAIRPIN_SWEEP_BUDGET_SECONDS": "540", "PYTHONPATH": str(ROOT)}
    env.pop("AZURE_CLIENT_ID", None)
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    names = StorageNames(PREFIX)
    table = SweepTable(StorageClients.from_connection_string(conn).table,
                       table=names.sweep_table).ensure()
    queue = queue_client(conn, names.sweep_queue)
    from azure.functions.timer import TimerRequest

    import function_app

    timer = {f.get_function_name(): f for f in function_app.app.get_functions()}["drift_sweep"]
    emu.requests.reset()
    start = time.perf_counter()
    timer.get_user_function()(TimerRequest(past_due=False))
    (record,) = table.unfinished() or [None]
    planned_s = time.perf_counter() - start
    backlog, finished_at = [0], [None]
    done = threading.Event()

    def sample() -> None:  # the backlog, and when the summary is in (workers exit later)
        while not done.wait(0.2):
            backlog[0] = max(backlog[0], queue.get_queue_properties().approximate_message_count)
            if finished_at[0] is None and table.get(record.sweep_id).state == "done":
                finished_at[0] = time.perf_counter()

    threading.Thread(target=sample, daemon=True).start()
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", "--sweep-id",
                                 record.sweep_id, "--timeout", str(args.timeout)],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
               for _ in range(args.workers)]
    outs = [json.loads((w.communicate()[0] or "{}").strip().splitlines()[-1] or "{}")
            for w in workers]
    done.set()
    wall = (finished_at[0] or time.perf_counter()) - start
    print(f"estate: {args.subscriptions} subscriptions x {args.vms} VMs "
          f"({len(emu.store)} resources), emulator loaded in {load_s:.1f} s; "
          f"sweep planned in {planned_s:.1f} s")
    return report(args, table, record.sweep_id, outs, wall=wall, backlog=backlog[0],
                  requests=len(emu.requests))


def report(args, table, sweep_id: str, outs: list[dict], *, wall: float, backlog: int,
           requests: int) -> int:
    final = table.get(sweep_id)
    results = table.results(sweep_id)
    summary = final.summary or {}
    vms = args.subscriptions * args.vms
    print(f"plan: {final.items} work items; workers: {args.workers} "
          f"processes, host.json queue settings; invocations {[o.get('invocations') for o in outs]}"
          f", failures {[o.get('failures') for o in outs]}")
    print(f"summary: state {final.state}, {summary.get('vms')} VMs, "
          f"{summary.get('findings')} findings, {len(results)} item results, "
          f"errors {summary.get('errors_count')}")
    ok = (final.state == "done" and len(results) == final.items == args.subscriptions
          and summary.get("vms") == vms and not summary.get("errors_count"))
    print(f"every item exactly once, every VM counted: {'yes' if ok else 'NO'}")
    print(f"bench_fleet_sweep: subscriptions={args.subscriptions} vms={vms} "
          f"workers={args.workers} wall_s={wall:.1f} requests_per_vm={requests / vms:.2f} "
          f"max_backlog={backlog} profile={args.profile}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
