"""Every benchmark runs (at a small scale, in its own process, as `make bench` runs it) and
meets its target: a benchmark that no longer starts is found here, not on the day its figures
are needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.paths import ROOT

SMALL = {
    "bench_audit_offline.py": ["--vms", "200", "--lbs", "20", "--repeat", "1", "--no-target"],
    "bench_evaluate.py": ["--vms", "200", "--lbs", "20", "--repeat", "1", "--no-tracemalloc"],
    "bench_discovery.py": ["--vms", "100", "--lbs", "10"],
    "bench_event_storm.py": ["--events", "60", "--vms", "10", "--remediation", "record"],
    "bench_fleet_sweep.py": ["--subscriptions", "3", "--vms", "20", "--workers", "2"],
    "bench_report_page.py": ["--vms", "200", "--lbs", "20", "--repeat", "1"],
}


def test_every_benchmark_has_a_small_run():
    assert sorted(p.name for p in (ROOT / "bench").glob("bench_*.py")) == sorted(SMALL)


@pytest.mark.parametrize("script", sorted(SMALL))
def test_benchmark_runs_and_meets_its_target(script):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *SMALL[script]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip(), "a benchmark prints its figures"
