"""Figures of `make mutation`: mutmut's results per module, and the surviving mutants.

Reads what `mutmut run` left in mutants/ (one .meta file per mutated module). The last lines
are one per module: `mutation: module=M mutants=N killed=N survived=N no_tests=N other=N`,
then the survivors in the guard and in the plan hash (`_facts`, `build_plan`), the issue's
zero target.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

# mutmut names a mutant <module>.x_<function>__mutmut_<n>
HASH_FUNCTIONS = (".plan.x__facts__", ".plan.x_build_plan__")


def main(root: Path = Path("mutants")) -> int:
    metas = sorted(root.rglob("*.py.meta"))
    if not metas:
        print("no mutmut results under mutants/: run `make mutation`", file=sys.stderr)
        return 2
    survivors: list[str] = []
    lines = []
    for meta in metas:
        module = str(meta.relative_to(root))[: -len(".meta")]
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        status = Counter(status_by_exit_code[c] for c in codes.values())
        survived = sorted(k for k, c in codes.items() if status_by_exit_code[c] == "survived")
        survivors += survived
        other = len(codes) - status["killed"] - status["survived"] - status["no tests"]
        lines.append(f"mutation: module={module} mutants={len(codes)} killed={status['killed']} "
                     f"survived={status['survived']} no_tests={status['no tests']} other={other}")
    print("surviving mutants (`.venv/bin/mutmut show NAME` prints one):")
    for name in survivors:
        print("  " + name)
    guard = [s for s in survivors if ".remediation.guard." in s]
    plan_hash = [s for s in survivors if any(f in s for f in HASH_FUNCTIONS)]
    print("\n".join(lines))
    print(f"mutation: target guard_survived={len(guard)} plan_hash_survived={len(plan_hash)} "
          "(target 0 each)")
    return 0 if not guard and not plan_hash else 1


if __name__ == "__main__":
    sys.exit(main())
