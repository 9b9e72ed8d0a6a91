"""The drift sweep: reconcile the configured scope with what the fix needs, resumably.

Parts: `fleet` (the timer's fan-out: work items on a queue, results and summary in Table
storage), `triggers` (the three Functions triggers), `runner` (Sweep: one scope in one
process, which each work item runs, and `run_sweep` for the whole scope inline), `reconcile`
(one remediation call per VM, rate limited), `checkpoint` (resume where a stopped run left
off). The drift itself is decided by the pure `shared.core.drift`, as for events.
"""

from shared.services.sweep.runner import Sweep, SweepBusy, SweepConfig, run_sweep

__all__ = ["Sweep", "SweepBusy", "SweepConfig", "run_sweep"]
