"""The drift sweep (timer): reconcile the configured scope with what the fix needs, resumably.

Parts: `runner` (Sweep, run_sweep, sweep_from_env), `reconcile` (one remediation call per VM,
rate limited), `checkpoint` (resume where a stopped sweep left off).
"""

from shared.services.sweep.reconcile import close_stale_routes, routes_pushed
from shared.services.sweep.runner import Sweep, SweepBusy, SweepConfig, run_sweep, sweep_from_env

__all__ = ["Sweep", "SweepBusy", "SweepConfig", "close_stale_routes", "routes_pushed",
           "run_sweep", "sweep_from_env"]
