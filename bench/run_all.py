"""`make bench`: run every benchmark in this folder, one after the other, and say which failed.

Each benchmark prints its own figures (times, memory, request counts, ratios) and exits non-zero
when it misses its target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


# Extra arguments per benchmark: discovery runs with the field latency profile, so its wall
# times predict a real subscription (docs/latency-profile.md).
ARGS = {"bench_discovery.py": ["--profile", "field"],
        "bench_fleet_sweep.py": ["--profile", "field"]}


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        args = ARGS.get(script.name, [])
        print(f"\n== {script.name} {' '.join(args)}".rstrip(), flush=True)
        if subprocess.run([sys.executable, str(script), *args], cwd=HERE.parent).returncode != 0:
            failed.append(script.name)
    print(f"\n{len(failed)} of {len(list(HERE.glob('bench_*.py')))} benchmarks missed their "
          f"target{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
