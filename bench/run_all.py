"""`make bench`: run every benchmark in this folder, one after the other, and say which failed.

Each benchmark prints its own figures (times, memory, request counts, ratios) and exits non-zero
when it misses its target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0:
            failed.append(script.name)
    print(f"\n{len(failed)} of {len(list(HERE.glob('bench_*.py')))} benchmarks missed their "
          f"target{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
