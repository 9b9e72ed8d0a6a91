"""The drift sweep (timer): reconcile the configured scope with what the fix needs, resumably.

Parts: `runner` (Sweep, run_sweep, sweep_from_env), `reconcile` (one remediation call per VM,
rate limited), `checkpoint` (resume where a stopped sweep left off). The drift itself is
decided by the pure `shared.core.drift`, as for events.
"""

from shared.services.sweep.runner import Sweep, SweepBusy, SweepConfig, run_sweep, sweep_from_env

__all__ = ["Sweep", "SweepBusy", "SweepConfig", "run_sweep", "sweep_from_env"]
