"""Benchmark: a whole `hairpin audit --snapshot` process against the floor of the same work.

The estate is `bench/estate.py`'s (10,000 VMs, 20,000 NICs, 1,000 ILBs by default), written as
one compact snapshot file. Each round runs, one after the other in fresh processes, the floor
(`bench/floor_audit.py`: parse, pool index, join) and the audit with its JSON report written
to a file, and reads each child's wall time, CPU time and peak RSS from the kernel
(`os.wait4`). The machine is shared, so the best of --repeat rounds is compared, and CPU time
is printed next to wall time (wall time includes waiting for a core).

Target: the audit within 2x the floor in wall time and in peak memory.

    .venv/bin/python bench/bench_audit_offline.py [--vms 10000] [--lbs 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.estate import generate  # noqa: E402
from shared.core import snapshot as snapshots  # noqa: E402

TARGET_X = 2.0


def measure(argv: list[str]) -> dict[str, float]:
    """Wall s, CPU s (user + system) and peak RSS MB of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # the audit exits 1 when it finds something
        raise SystemExit(f"{argv[1:3]} exited {proc.returncode}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "mb": usage.ru_maxrss / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--lbs", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3, help="paired rounds; the best counts")
    parser.add_argument("--no-target", action="store_true",
                        help="print the figures and exit 0 (a small estate measures process "
                        "start-up, not the audit)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as tmp:
        snapshot = Path(tmp) / "estate.json"
        resources, skus, health = generate(args.vms, args.lbs)
        snapshot.write_bytes(snapshots.orjson.dumps(
            snapshots.make_snapshot(resources, skus, health)))
        del resources, skus, health
        print(f"snapshot: {args.vms} VMs, {args.lbs} ILBs, "
              f"{snapshot.stat().st_size / 2**20:.1f} MB")
        floor_cmd = [sys.executable, str(ROOT / "bench" / "floor_audit.py"), str(snapshot)]
        audit_cmd = [sys.executable, "-m", "shared.cli", "audit", "--snapshot", str(snapshot),
                     "--format", "json", "--output", str(Path(tmp) / "report.json")]
        floors, audits = [], []
        for _ in range(max(1, args.repeat)):
            floors.append(measure(floor_cmd))
            audits.append(measure(audit_cmd))
    ok = report(args.vms, floors, audits)
    return 0 if ok or args.no_target else 1


def report(vms: int, floors: list[dict], audits: list[dict]) -> bool:
    def best(runs, key):
        return min(r[key] for r in runs)

    for name, runs in (("floor", floors), ("audit", audits)):
        print(f"{name}: wall {best(runs, 'wall'):.2f} s, CPU {best(runs, 'cpu'):.2f} s, "
              f"peak RSS {best(runs, 'mb'):.0f} MB (best of {len(runs)})")
    wall_x = best(audits, "wall") / best(floors, "wall")
    cpu_x = best(audits, "cpu") / best(floors, "cpu")
    mem_x = best(audits, "mb") / best(floors, "mb")
    ok = wall_x <= TARGET_X and mem_x <= TARGET_X
    print(f"targets: wall and memory <= {TARGET_X:g}x the floor: {'OK' if ok else 'MISSED'} "
          f"(CPU time {cpu_x:.2f}x)")
    print(f"bench_audit_offline: vms={vms} wall_x_floor={wall_x:.2f} mem_x_floor={mem_x:.2f}")
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
